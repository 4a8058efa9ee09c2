"""Code metrics of raw semantic IDs (pure numpy): utilization, perplexity, uniqueness, largest prefix group."""

from __future__ import annotations

import numpy as np
import torch


def _np_codes(codes) -> np.ndarray:
    a = codes.cpu().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
    if a.ndim != 2:
        raise ValueError(f"codes must be a 2-D array [items, levels], got shape {a.shape}")
    return a.astype(np.int64, copy=False)


def utilization(codes, codes_per_level: int) -> list[float]:
    """Per level, the share of the C codes used by at least one item."""
    a = _np_codes(codes)
    return [len(np.unique(a[:, j])) / codes_per_level for j in range(a.shape[1])]


def perplexity(codes, codes_per_level: int) -> list[float]:
    """Per level, exp(entropy) of the code distribution (C when uniform, 1 when collapsed)."""
    a = _np_codes(codes)
    out = []
    for j in range(a.shape[1]):
        p = np.bincount(a[:, j], minlength=codes_per_level).astype(np.float64)
        p = p[p > 0] / max(p.sum(), 1)
        out.append(float(np.exp(-(p * np.log(p)).sum())) if p.size else 0.0)
    return out


def unique_fraction(codes) -> float:
    """Distinct full code tuples / items (1.0 when every item has its own SID)."""
    a = _np_codes(codes)
    if a.shape[0] == 0:
        return 1.0
    return len(np.unique(a, axis=0)) / a.shape[0]


def largest_prefix_group(codes) -> int:
    """The size of the largest group of items sharing their first L-1 codes (all items when L == 1)."""
    a = _np_codes(codes)
    if a.shape[0] == 0:
        return 0
    if a.shape[1] <= 1:
        return a.shape[0]
    _, counts = np.unique(a[:, :-1], axis=0, return_counts=True)
    return int(counts.max())


def code_metrics(codes, codes_per_level: int) -> dict:
    """All the code metrics in one dict (JSON-friendly)."""
    return {
        "utilization": utilization(codes, codes_per_level),
        "perplexity": perplexity(codes, codes_per_level),
        "unique_fraction": unique_fraction(codes),
        "largest_prefix_group": largest_prefix_group(codes),
    }
