"""The `gr2` command line (typer), one module per group of commands:

    core.py       the app and its groups, exit codes for whatever a command raises, --verbose, the options
                  every command shares (--config, --set, --lake), --help's reflowing
    data.py       gr2 etl ingest | build, gr2 tokenizer embed | fit | assign
    train.py      gr2 train midtrain | eval-next | sft | dapo, gr2 model list | pull, gr2 traces
    rerank.py     gr2 eval, gr2 serve
    quality.py    gr2 quality report | run
    pipelines.py  gr2 nightly, gr2 demo
    submit.py     gr2 submit (the job itself: gr2/pipelines/submit.py)

The stage commands run their stage through the registry (gr2/pipelines/stages.py) and print the typed
result it returns (`result.render(console)`). Importing a command module registers its commands on `app`, and `gr2 --help` lists them in that order,
so the imports below keep theirs. The console script
(`gr2 = "gr2.cli:app"`) and `python -m gr2.cli` (how gr2 submit runs a command as a Ray Job) both run `app`.
"""

from __future__ import annotations

from gr2.cli.core import app, tidy_help

# The order of registration is the order of `gr2 --help`: keep these imports as they are.
# isort: off
from gr2.cli import data  # noqa: F401
from gr2.cli import train  # noqa: F401
from gr2.cli import rerank  # noqa: F401
from gr2.cli import quality  # noqa: F401
from gr2.cli import pipelines  # noqa: F401
from gr2.cli import submit  # noqa: F401
# isort: on

tidy_help(app)

__all__ = ["app"]
