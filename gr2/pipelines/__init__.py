"""Orchestration above the stages: `gr2 demo` (every stage in a row), `gr2 nightly` (the scheduled ETL),
the reports index over what the stages wrote, and `gr2 submit` (a gr2 command as a Ray Job).

A pipeline may import any stage (gr2.etl, gr2.tokenizer, gr2.training, gr2.eval, gr2.serve) and every
layer below them (gr2.models, gr2.rerank, gr2.platform, gr2.config); no stage or platform module imports a pipeline (tests/test_layering.py holds the rule).
"""
