"""Training: GR2 re-ranker models, teacher traces, verifiable rewards and DAPO optimisation (the re-rank
task they train on is gr2.rerank)."""
