"""Evaluation: baselines, behaviour diagnostics, the eval job and its report (the metrics are gr2.rerank.metrics)."""
