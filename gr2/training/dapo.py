"""DAPO policy-optimisation pieces (Yu et al. 2025, arXiv 2503.14476) as pure torch.

GR2 trains its re-ranker with DAPO on the verifiable rewards in
:mod:`gr2.training.rewards`. The pieces here are the parts of DAPO that differ
from PPO/GRPO:

* group-relative advantages (no critic): each prompt's G sampled answers are
  normalised within the group;
* dynamic sampling: groups whose rewards are all equal have zero advantage and
  give no gradient, so they are dropped and the batch is refilled;
* clip-higher: decoupled ``eps_low`` / ``eps_high`` so low-probability tokens can
  grow (keeps entropy from collapsing);
* token-level loss: every valid token of the batch weighs the same, so long
  answers are not down-weighted as in a per-sample mean;
* overlong reward shaping / filtering for truncated answers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def group_advantages(rewards: Tensor, eps: float = 1e-6) -> Tensor:
    """``(r - mean) / (std + eps)`` within each group (last dim; shape [G] or [B, G]).

    Population std (correction 0), so a one-sample group gives 0 instead of NaN and
    an all-equal group gives exactly 0."""
    rewards = torch.as_tensor(rewards, dtype=torch.float32)
    mean = rewards.mean(dim=-1, keepdim=True)
    std = rewards.std(dim=-1, correction=0, keepdim=True)
    return (rewards - mean) / (std + eps)


def keep_group(rewards: Tensor, atol: float = 1e-9) -> bool:
    """False when every reward of the group matches (no learning signal)."""
    rewards = torch.as_tensor(rewards, dtype=torch.float64)
    return bool((rewards.max() - rewards.min()) > atol)


def dynamic_sampling_mask(rewards: Tensor, atol: float = 1e-9) -> Tensor:
    """Bool [B]: True for groups (rows of [B, G]) to keep, i.e. rewards not all equal."""
    rewards = torch.as_tensor(rewards, dtype=torch.float64)
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [B, G], got shape {tuple(rewards.shape)}")
    return (rewards.amax(dim=1) - rewards.amin(dim=1)) > atol


def overlong_penalty(lengths: Tensor | Sequence[int], max_len: int, cache_len: int) -> Tensor:
    """DAPO soft overlong punishment, added to the reward.

    0 when ``len <= max_len - cache_len``; falls linearly to -1 at ``max_len``;
    -1 beyond. ``cache_len = 0`` is a hard step at ``max_len``."""
    if not 0 <= cache_len <= max_len:
        raise ValueError(f"need 0 <= cache_len <= max_len, got cache_len={cache_len}, max_len={max_len}")
    lengths = torch.as_tensor(lengths, dtype=torch.float32)
    start = max_len - cache_len
    if cache_len > 0:
        ramp = (start - lengths) / cache_len
    else:
        ramp = torch.zeros_like(lengths)
    out = torch.where(lengths <= start, torch.zeros_like(lengths), ramp)
    return torch.where(lengths > max_len, torch.full_like(lengths, -1.0), out)


def overlong_mask(truncated: Tensor) -> Tensor:
    """Overlong filtering: True = sample counts in the loss; truncated samples are
    excluded, since a cut-off answer's reward says nothing about its reasoning.
    Multiply into the token mask as ``mask & overlong_mask(t)[:, None]``."""
    return ~torch.as_tensor(truncated, dtype=torch.bool)


def dapo_loss(
    logp_new: Tensor,
    logp_old: Tensor,
    advantages: Tensor,
    mask: Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    logp_ref: Tensor | None = None,
    kl_coef: float = 0.0,
) -> tuple[Tensor, dict[str, float]]:
    """Clipped surrogate with clip-higher and token-level aggregation.

    Per token: ``-min(r A, clip(r, 1-eps_low, 1+eps_high) A)`` with
    ``r = exp(logp_new - logp_old)``, plus ``kl_coef * k3`` to the reference when
    ``kl_coef > 0`` and ``logp_ref`` is given (DAPO itself drops the KL term).
    The loss is the sum over all valid tokens of all samples divided by the number
    of valid tokens. Padding never reaches ``exp`` (log-ratios are masked first),
    so garbage there cannot make NaNs.

    Stats: ``clip_fraction`` (valid tokens whose gradient the clip cut off),
    ``clip_low_fraction``, ``clip_high_fraction``, ``ratio_mean``, ``kl`` (mean k3,
    0.0 without a reference) and ``n_tokens``."""
    valid = mask.to(torch.bool)
    n_tokens = valid.sum()
    denom = n_tokens.clamp(min=1).to(logp_new.dtype)
    zero = torch.zeros((), dtype=logp_new.dtype, device=logp_new.device)

    log_ratio = torch.where(valid, logp_new - logp_old, zero)
    ratio = torch.exp(log_ratio)
    adv = advantages.to(logp_new.dtype).unsqueeze(-1)
    surr = ratio * adv
    surr_clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv
    per_token = -torch.minimum(surr, surr_clipped)

    kl_tok = None
    if logp_ref is not None:
        ref_log_ratio = torch.where(valid, logp_ref - logp_new, zero)
        kl_tok = torch.exp(ref_log_ratio) - ref_log_ratio - 1.0  # k3 >= 0, unbiased for KL(new||ref)
        if kl_coef > 0:
            per_token = per_token + kl_coef * kl_tok

    loss = torch.where(valid, per_token, zero).sum() / denom

    with torch.no_grad():
        clip_low = valid & (ratio < 1.0 - eps_low) & (adv < 0)
        clip_high = valid & (ratio > 1.0 + eps_high) & (adv > 0)
        d = float(denom)
        stats = {
            "clip_fraction": float((clip_low | clip_high).sum()) / d,
            "clip_low_fraction": float(clip_low.sum()) / d,
            "clip_high_fraction": float(clip_high.sum()) / d,
            "ratio_mean": float(torch.where(valid, ratio, zero).sum()) / d,
            "kl": float(torch.where(valid, kl_tok, zero).sum()) / d if kl_tok is not None else 0.0,
            "n_tokens": float(n_tokens),
        }
    return loss, stats


def combine_stats(stats: list[dict]) -> dict[str, float]:
    """One step's figures from its micro-batches. Entropy is a per-token figure, so it is weighted by
    each micro-batch's trained tokens; a micro-batch with none (every answer cut by overlong filtering)
    has no entropy and is skipped instead of turning the step's figure into NaN. The rest are means."""
    keys = {k for st in stats for k, v in st.items() if isinstance(v, (int, float))}
    out = {}
    for k in sorted(keys):
        if k == "entropy":
            pairs = [(st[k], st.get("n_tokens", 1.0)) for st in stats if k in st and st.get("n_tokens", 1.0) > 0
                     and not math.isnan(st[k])]
            weight = sum(w for _, w in pairs)
            out[k] = sum(v * w for v, w in pairs) / weight if weight else float("nan")
        else:
            out[k] = float(np.mean([st[k] for st in stats if k in st]))
    return out


def token_entropy(logits: Tensor, mask: Tensor) -> float:
    """Mean policy entropy over valid tokens, from logits [N, T, V]; DAPO watches it
    to catch entropy collapse (what clip-higher is there to prevent)."""
    with torch.no_grad():
        logp = torch.log_softmax(logits.float(), dim=-1)
        p = logp.exp()
        ent = torch.where(p > 0, -p * logp, torch.zeros_like(p)).sum(dim=-1)  # -inf logits count 0
        valid = mask.to(torch.bool)
        n = int(valid.sum())
        return float(ent[valid].sum()) / n if n else float("nan")
