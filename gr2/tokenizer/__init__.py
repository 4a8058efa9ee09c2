"""Semantic-ID tokenizer: RQ-VAE (torch), de-collision and assignment (the SID vocabulary is gr2.platform.sids)."""
