"""Capacity-aware penultimate level: no prefix group holds more than C items, so no extra level.

The random last level separates up to C items that share their first L-1 codes; a larger group
needs an extra level. Balanced codebooks make such groups rare, but a tight cluster of near-identical
items (a product with many variants, or many noisy copies) still lands on one prefix whatever the
codebooks, because its members are closer to each other than to any code boundary. This step moves
the excess to the next-nearest codes of level L-2 (the last level before the random one), inside the
same first L-2 codes:

1. Items whose first L-1 codes group holds more than C items (counting kept items, which never move)
   become *movers*.
2. Per group of movers sharing their first L-2 codes, a code c of level L-2 has room for C minus the
   non-movers already on (prefix, c). Movers are placed by `balanced.capacity_assign` on their
   (priced) distances to the level L-2 codebook: each code keeps its closest proposers, the rest try
   their next-nearest code. Their last code is then the nearest (priced) level L-1 code to the new
   residual, and the random last level de-collides as before.
3. A mover that finds no room keeps its codes (and gets the extra level downstream).

Movers need their latent residual before level L-2 (`residuals`), so the step runs where the model
is: in the benchmark in-process, and in `gr2 tokenizer assign` on Spark executors for the movers
only (gr2/tokenizer/jobs.py). Deterministic: same codes, residuals and model give the same moves.
"""

from __future__ import annotations

import numpy as np
import torch

from gr2.tokenizer import balanced


def movers_mask(codes: np.ndarray, codes_per_level: int, keep: np.ndarray | None = None) -> np.ndarray:
    """Non-kept items whose first L-1 codes are shared by more than C items (kept items included)."""
    a = np.asarray(codes, dtype=np.int64)
    n, L = a.shape
    keep = np.zeros(n, bool) if keep is None else np.asarray(keep, bool)
    if n == 0 or L < 2:
        return np.zeros(n, bool)
    _, inv, counts = np.unique(a[:, : L - 1], axis=0, return_inverse=True, return_counts=True)
    return (counts[inv.reshape(-1)] > codes_per_level) & ~keep


@torch.no_grad()
def residuals(model, x, level: int, batch_size: int = 65536) -> torch.Tensor:
    """The latent residual each row of x leaves after the (priced) levels < `level`. -> [n, latent]."""
    was_training = model.training
    model.eval()
    out = []
    x = torch.as_tensor(x, dtype=torch.float32)
    for start in range(0, x.shape[0], batch_size):
        r = model.encoder(x[start : start + batch_size])
        for lvl in range(level):
            e = model.codebooks[lvl]
            r = r - e[_assign(model, lvl, r)]
        out.append(r)
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, model.cfg.latent_dim)


def _assign(model, level: int, r: torch.Tensor) -> torch.Tensor:
    d = balanced.sq_distances(r, model.codebooks[level])
    return balanced.balanced_argmin(d, model.code_bias[level] if model._priced(level) else None)


def _priced_distances(model, level: int, r: torch.Tensor) -> torch.Tensor:
    d = balanced.sq_distances(r, model.codebooks[level])
    return d - model.code_bias[level][None, :] if model._priced(level) else d


@torch.no_grad()
def place_group(codes: np.ndarray, residual: torch.Tensor, load: np.ndarray, model) -> tuple[np.ndarray, np.ndarray]:
    """Movers of one group sharing their first L-2 codes: codes [m, L], residuals [m, latent] before
    level L-2, load [C] = items that stay on each (prefix, c). -> (new codes [m, L], moved [m] bool)."""
    a = np.array(codes, dtype=np.int64)
    L, C, j = a.shape[1], model.cfg.codes, a.shape[1] - 2
    moved = np.zeros(len(a), bool)
    new_c = balanced.capacity_assign(_priced_distances(model, j, residual), torch.as_tensor(C - np.asarray(load))).numpy()
    placed = new_c >= 0
    if placed.any():
        r = residual[torch.as_tensor(placed)] - model.codebooks[j][torch.as_tensor(new_c[placed])]
        moved[placed] = new_c[placed] != a[placed, j]
        a[placed, j] = new_c[placed]
        a[placed, L - 1] = _assign(model, L - 1, r).numpy()
    return a, moved


def spill(codes: np.ndarray, movers: np.ndarray, residual: torch.Tensor, model) -> tuple[np.ndarray, np.ndarray]:
    """New codes where movers were placed under the capacities (see the module docstring).

    codes [n, L] (start codes of every item of the affected groups, kept items included); movers [n]
    bool; residual [movers.sum(), latent]: the movers' residuals before level L-2, in item order.
    Returns (new codes [n, L], moved [n] bool: the mover's level L-2 code changed).
    """
    a = np.array(codes, dtype=np.int64)
    n, L = a.shape
    movers = np.asarray(movers, bool)
    moved = np.zeros(n, bool)
    if L < 2 or not movers.any():
        return a, moved
    j = L - 2
    gid = np.unique(a[:, :j], axis=0, return_inverse=True)[1].reshape(-1) if j else np.zeros(n, np.int64)
    groups = np.unique(gid[movers])
    slot = np.full(gid.max() + 1, -1, np.int64)
    slot[groups] = np.arange(len(groups))
    stay = ~movers & (slot[gid] >= 0)
    load = np.zeros((len(groups), model.cfg.codes), np.int64)
    np.add.at(load, (slot[gid[stay]], a[stay, j]), 1)
    mover_idx = np.flatnonzero(movers)  # residual row k belongs to item mover_idx[k]
    order = np.argsort(slot[gid[mover_idx]], kind="stable")
    bounds = np.searchsorted(slot[gid[mover_idx[order]]], np.arange(len(groups) + 1))
    for g in range(len(groups)):
        rows = order[bounds[g] : bounds[g + 1]]
        items = mover_idx[rows]
        a[items], moved[items] = place_group(a[items], residual[torch.as_tensor(rows)], load[g], model)
    return a, moved


# -- on Spark ----------------------------------------------------------------------------------------
def model_from_broadcast(model_bc):
    """The RQ-VAE from a broadcast (config dict, state dict as numpy), in eval mode."""
    from gr2.tokenizer import rqvae

    cfg_dict, state = model_bc.value
    model = rqvae.RQVAE(rqvae.RQVAEConfig(**cfg_dict))
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    return model.eval()


def spill_on_spark(joined, emb, model_bc, levels: int, codes: int):
    """`gr2 tokenizer assign`'s spill: joined (item_id, raw_codes, kept, start_codes) -> (the same with the
    movers' start_codes replaced, plus `spilled`; the number of items moved; the cached frame of the moves,
    or None, for the caller to unpersist once what it built on the result is materialised).

    One aggregation finds the over-full prefix groups (nothing else runs when there are none); only
    the movers are joined to their vectors and re-encoded to their residuals, on the executors, one
    group of first L-2 codes per task, cogrouped with the counts of the items that stay.
    """
    import pandas as pd
    from pyspark.sql import functions as F

    L, C, j = levels, codes, levels - 2
    unchanged = (joined.withColumn("spilled", F.lit(False)), 0, None)
    if L < 2:
        return unchanged
    full = joined.groupBy(F.slice("start_codes", 1, L - 1).alias("_p")).count().where(F.col("count") > C)
    if full.limit(1).count() == 0:
        return unchanged
    group = F.slice("start_codes", 1, j) if j else F.array(F.lit(0))
    tagged = joined.withColumn("_p", F.slice("start_codes", 1, L - 1)).join(
        F.broadcast(full.select("_p", F.lit(True).alias("_full"))), "_p", "left"
    ).withColumn("_mover", F.coalesce("_full", F.lit(False)) & ~F.col("kept"))
    movers = tagged.where("_mover").select("item_id", F.slice("start_codes", 1, L).alias("codes"), group.alias("_g")).join(emb, "item_id")
    stay = (
        tagged.where(~F.col("_mover")).select(group.alias("_g"), F.element_at("start_codes", j + 1).alias("c"))
        .join(movers.select("_g").distinct(), "_g").groupBy("_g", "c").count()
    )

    def place(left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
        if left.empty:
            return pd.DataFrame({"item_id": [], "new_codes": [], "spilled": []})
        torch.set_num_threads(1)
        model = model_from_broadcast(model_bc)
        load = np.zeros(C, np.int64)
        load[right["c"].to_numpy(np.int64)] = right["count"].to_numpy(np.int64)
        x = np.stack(left["vector"].to_numpy()).astype(np.float32)
        new, moved = place_group(np.stack(left["codes"].to_numpy()), residuals(model, x, j), load, model)
        return pd.DataFrame({"item_id": left["item_id"], "new_codes": [list(map(int, c)) for c in new], "spilled": moved})

    placed = movers.groupBy("_g").cogroup(stay.groupBy("_g")).applyInPandas(
        place, "item_id string, new_codes array<int>, spilled boolean"
    ).cache()
    n_spilled = placed.where("spilled").count()
    out = joined.join(placed, "item_id", "left").select(
        "item_id", "raw_codes", "kept", F.coalesce("new_codes", "start_codes").alias("start_codes"),
        F.coalesce("spilled", F.lit(False)).alias("spilled"),
    )
    return out, n_spilled, placed
