"""Balanced codes for the residual quantizer: per-code prices, Sinkhorn, capacity-constrained k-means.

Why: at a million items the plain argmin quantizer leaves most first-level codes unused and piles
items into a few prefix groups, more than the C items a random last level can separate (see
docs/benchmarks.md). The pieces here keep every level's codes in use and evenly filled:

* **Prices** (`code_bias`, [L, C], saved in the model): level l assigns a residual r to
  argmin_c ||r - e_c||^2 - b_c. A code that would get too many items gets a lower price and one that
  gets too few a higher one. This is the dual of the capacity-constrained assignment problem, so
  with the right prices the per-item argmin *is* the balanced assignment; and it stays a per-item
  rule, so `gr2 tokenizer assign` applies it on Spark executors one Arrow batch at a time, with no
  global step: the global information is C numbers per level, learned at fit time. Ties break to
  the lowest code (torch's argmin), deterministic everywhere.
* **Sinkhorn-Knopp** (LC-Rec's uniform assignment): entropic optimal transport of n residuals to C
  codes with uniform marginals; its code potentials (times the temperature) are prices. It gives the
  starting prices at codebook init; `refine_prices` then adjusts them on the hard counts of the
  argmin (a hard-count Sinkhorn), which is what the per-item rule needs.
* **Online prices during training**: every EMA step nudges each level's prices towards equal batch
  counts (a stochastic dual ascent), so EMA centroids are fitted to balanced clusters and no code dies.
* **Calibration** (`calibrate_prices`): after the last epoch, each level's prices are refined on the
  fit items (a fixed-seed sample of at most 65,536 per level), level after level, starting from the online ones.
* **Balanced k-means** (OneRec's balanced residual k-means): Lloyd iterations whose assignment step
  gives every cluster at most ceil(n / k) points (`capacity_assign`, greedy by distance); an option
  for the codebook initialization (`tokenizer.init=balanced`).

Prices balance each level's marginal counts, not the codes inside one prefix: a tight cluster of
near-identical items still shares one prefix. spill.py handles those groups at assign time.

Pure torch, single-process, deterministic given its inputs.
"""

from __future__ import annotations

import math

import torch


def sq_distances(x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances [n, C] between rows of x [n, D] and e [C, D]."""
    return (x.pow(2).sum(1, keepdim=True) - 2 * x @ e.t() + e.pow(2).sum(1)[None, :]).clamp_min_(0)


def balanced_argmin(d: torch.Tensor, prices: torch.Tensor | None) -> torch.Tensor:
    """The per-item rule: argmin_c d[:, c] - prices[c] (plain argmin without prices)."""
    return (d if prices is None else d - prices[None, :]).argmin(1)


# -- Sinkhorn-Knopp --------------------------------------------------------------------------------
def sinkhorn_prices(d: torch.Tensor, epsilon: float = 0.05, iters: int = 50) -> torch.Tensor:
    """Prices [C] (in the units of d) from log-domain Sinkhorn with uniform marginals over n x C.

    The plan is P_ic ~ exp(f_i + g_c - d_ic / t), t = epsilon * mean(d) (so epsilon is scale-free);
    the hard assignment argmax_c P_ic is argmin_c d_ic - t * g_c, so the prices are t * g.
    Smaller epsilon: closer to the exact balanced assignment, more iterations needed.
    """
    n, C = d.shape
    s = float(d.mean()) or 1.0
    t = epsilon * s
    cost = d.float() / t
    log_a, log_b = -math.log(n), -math.log(C)
    f = torch.zeros(n, dtype=torch.float32, device=d.device)
    g = torch.zeros(C, dtype=torch.float32, device=d.device)
    for _ in range(iters):
        f = log_a - torch.logsumexp(g[None, :] - cost, dim=1)
        g = log_b - torch.logsumexp(f[:, None] - cost, dim=0)
    g = g - g.mean()
    return (g * t).to(d.dtype)


def refine_prices(d: torch.Tensor, prices: torch.Tensor | None = None, iters: int = 150, step: float = 0.3,
                  decay: float = 0.99) -> torch.Tensor:
    """Hard-count Sinkhorn: prices -= step_t * gap * log(count / mean count), on argmin(d - prices).

    `gap` is the median gap between an item's best and second-best cost, the scale at which a price
    moves items between neighbouring codes; step_t = step * decay**t damps the oscillation between
    codes that trade the same items. Stops once every count is within 5% of the mean; returns the
    prices with the smallest largest deviation seen (deterministic).
    """
    n, C = d.shape
    target = n / C
    top2 = d.topk(min(C, 2), dim=1, largest=False).values
    gap = float((top2[:, -1] - top2[:, 0]).median()) or float(d.mean()) * 1e-3 or 1e-6
    p = torch.zeros(C, dtype=d.dtype, device=d.device) if prices is None else prices.clone()
    best, best_dev = p.clone(), math.inf
    for t in range(iters):
        if t % 10 == 0:  # every 10th step a full pass; in between each item weighs only its 16 cheapest codes
            near = (d - p[None, :]).topk(min(C, 16), dim=1, largest=False).indices
            near_d = d.gather(1, near)
        pick = near.gather(1, (near_d - p[near]).argmin(1, keepdim=True)).squeeze(1)
        counts = torch.bincount(pick, minlength=C).to(d.dtype)
        dev = float((counts - target).abs().max())
        if dev < best_dev:
            best, best_dev = p.clone(), dev
        if dev <= 0.05 * target:
            break
        p = p - step * decay**t * gap * torch.log((counts + 1) / (target + 1))
        p = p - p.mean()
    return best


def balanced_prices(d: torch.Tensor, prices: torch.Tensor | None = None, max_items: int = 65536, iters: int = 150) -> torch.Tensor:
    """Prices such that argmin(d - prices) is near-uniform over the C codes.

    Starts from `prices` (e.g. those learned online during training) or, without them, from a short
    Sinkhorn run; then `refine_prices` on the hard counts. Fitted on a fixed-seed sample of
    `max_items` rows when d has more.
    """
    if d.shape[0] > max_items:
        d = d[torch.randperm(d.shape[0], generator=torch.Generator().manual_seed(0))[:max_items].to(d.device)]
    return refine_prices(d, sinkhorn_prices(d, iters=20) if prices is None else prices, iters)


# -- capacity-constrained assignment and balanced k-means -----------------------------------------
def capacity_assign(d: torch.Tensor, capacity) -> torch.Tensor:
    """Greedy capacity-constrained assignment: each item gets one code, code c at most capacity[c]
    items (an int: the same for every code). Deterministic (stable sorts). -> codes [n], -1 where no
    code with room was left (only when the capacities sum to less than n).

    Done in rounds: each unplaced item proposes its nearest code with room; a code keeps its closest
    proposers up to its room and the others propose again. Codes with infinite cost are never picked.
    """
    n, C = d.shape
    cap = torch.as_tensor(capacity, dtype=torch.long, device=d.device).expand(C).clone()
    assign = torch.full((n,), -1, dtype=torch.long, device=d.device)
    load = torch.zeros(C, dtype=torch.long, device=d.device)
    work = d.clone()
    work[:, cap <= 0] = math.inf
    pending = torch.arange(n, device=d.device)
    while pending.numel():
        dist, choice = work[pending].min(1)
        pending, choice, dist = pending[dist < math.inf], choice[dist < math.inf], dist[dist < math.inf]
        if not pending.numel():
            break
        order = torch.argsort(dist, stable=True)  # closest proposers first ...
        order = order[torch.argsort(choice[order], stable=True)]  # ... grouped by code
        ch = choice[order]
        first = torch.ones_like(ch, dtype=torch.bool)
        first[1:] = ch[1:] != ch[:-1]
        start = torch.cummax(torch.where(first, torch.arange(len(ch), device=d.device), 0), 0).values
        rank = torch.arange(len(ch), device=d.device) - start
        ok = rank < (cap - load)[ch]
        assign[pending[order[ok]]] = ch[ok]
        load += torch.bincount(ch[ok], minlength=C)
        full = (load >= cap).nonzero().flatten()
        rejected = pending[order[~ok]]
        if full.numel() and rejected.numel():
            work[rejected[:, None], full[None, :]] = math.inf
        pending = rejected
    return assign


def balanced_kmeans(x: torch.Tensor, k: int, iters: int, init: torch.Tensor) -> torch.Tensor:
    """Lloyd iterations from `init` [k, D] (e.g. k-means++ seeds) whose assignment step is
    `capacity_assign` with capacity ceil(n / k) (OneRec's balanced k-means). -> centers [k, D]."""
    n = x.shape[0]
    capacity = math.ceil(n / k)
    c = init.clone()
    for _ in range(iters):
        assign = capacity_assign(sq_distances(x, c), capacity)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        c = torch.where((counts > 0)[:, None], sums / counts.clamp_min(1)[:, None], c)
    return c


# -- online prices and dead codes during training --------------------------------------------------
@torch.no_grad()
def update_prices(prices: torch.Tensor, d: torch.Tensor, idx: torch.Tensor, rate: float) -> None:
    """One stochastic dual-ascent step on a batch (in place): prices -= rate * gap * (count - mean) / mean."""
    n, C = d.shape
    counts = torch.bincount(idx, minlength=C).to(d.dtype)
    target = n / C
    top2 = d.topk(2, dim=1, largest=False).values
    gap = (top2[:, 1] - top2[:, 0]).mean()
    prices.sub_(rate * gap * (counts - target) / target)
    prices.sub_(prices.mean())


@torch.no_grad()
def calibrate_prices(model, x: torch.Tensor) -> None:
    """Set `model.code_bias` from the fit sample x [n, input_dim], level after level (each level sees
    the residuals that the balanced levels before it leave), starting from the current prices. Only
    the levels of cfg.balance_levels get prices; the others stay at 0."""
    cfg = model.cfg
    was_training = model.training
    model.eval()
    residual = torch.cat([model.encoder(x[i : i + 65536]) for i in range(0, x.shape[0], 65536)])
    for level in range(cfg.levels):
        e = model.codebooks[level]
        d = sq_distances(residual, e)
        model.code_bias[level] = balanced_prices(d, model.code_bias[level]) if model._priced(level) else 0.0
        residual = residual - e[balanced_argmin(d, model.code_bias[level])]
    model.train(was_training)
