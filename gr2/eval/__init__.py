"""Evaluation: ranking metrics and reports."""
