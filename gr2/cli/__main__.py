"""`python -m gr2.cli ...`: how gr2 submit runs a command as a Ray Job (gr2/pipelines/submit.py)."""

from gr2.cli import app

app()
