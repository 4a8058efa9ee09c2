"""gr2: Generative Reasoning Re-rankers for recommender systems."""

__version__ = "0.1.0"
