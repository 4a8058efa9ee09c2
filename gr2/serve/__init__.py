"""The re-rank service: `gr2 serve` (Ray Serve), its engine and a Python client."""
