"""Training: GR2 re-ranker prompts, models, verifiable rewards and DAPO optimisation."""
