"""Semantic-ID tokenizer: SID vocabulary, RQ-VAE (torch), de-collision and assignment."""
