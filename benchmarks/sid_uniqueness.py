"""SID uniqueness by method: residual k-means (TIGER-style), RQ-VAE without EMA, RQ-VAE with EMA, and
each followed by the random last level.

    # embeddings of a lake built by `gr2 tokenizer embed` (e.g. Amazon Beauty)
    .venv/bin/python benchmarks/sid_uniqueness.py --lake lake-beauty
    # a synthetic catalog of clustered vectors (no text encoder needed), e.g. 1M items
    .venv/bin/python benchmarks/sid_uniqueness.py --synthetic 1000000 --dim 64

Prints a Markdown table: raw uniqueness (distinct full code tuples / items), uniqueness after the
random last level, items a last level could not separate (prefix groups with more than C items),
largest prefix group, utilization of the first level, and seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gr2.tokenizer import collisions, rqvae  # noqa: E402


def lake_embeddings(lake: str, encoder: str | None) -> np.ndarray:
    from deltalake import DeltaTable

    df = DeltaTable(str(Path(lake) / "gold" / "item_embeddings")).to_pandas()
    if encoder:
        df = df[df["encoder"] == encoder]
    return np.stack(df["vector"].to_numpy()).astype(np.float32)


def synthetic_embeddings(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Clustered vectors: a hierarchy of 64 topics x 32 subtopics, with noise, like a category tree."""
    rng = np.random.default_rng(seed)
    topics = rng.normal(size=(64, dim))
    sub = rng.normal(scale=0.5, size=(64, 32, dim))
    t = rng.integers(0, 64, n)
    s = rng.integers(0, 32, n)
    x = topics[t] + sub[t, s] + rng.normal(scale=0.35, size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def residual_kmeans(x: np.ndarray, levels: int, codes: int, iters: int, seed: int) -> np.ndarray:
    """TIGER-style baseline: k-means on the raw vectors, then on each level's residuals (no encoder)."""
    gen = torch.Generator().manual_seed(seed)
    r = torch.from_numpy(x)
    out = []
    for _ in range(levels):
        centers = rqvae.kmeans(r, codes, iters, gen)
        idx = torch.cdist(r, centers).argmin(1)
        out.append(idx)
        r = r - centers[idx]
    return torch.stack(out, 1).numpy()


def finish(name: str, codes: np.ndarray, C: int, seconds: float) -> dict:
    new, _, overflow = collisions.redraw_last_level(codes, C, seed=0)
    over = collisions.overflow_mask(new, overflow).sum() if overflow else 0
    return {
        "method": name, "raw": rqvae.unique_fraction(codes), "after": rqvae.unique_fraction(new),
        "overflow_items": int(over), "largest_group": rqvae.largest_prefix_group(codes),
        "util_a": rqvae.utilization(codes, C)[0], "seconds": seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake")
    ap.add_argument("--encoder")
    ap.add_argument("--synthetic", type=int)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--levels", type=int, default=4)
    ap.add_argument("--codes", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--fit-items", type=int, default=200_000, help="train on at most this many items, assign all")
    args = ap.parse_args()
    x = lake_embeddings(args.lake, args.encoder) if args.lake else synthetic_embeddings(args.synthetic, args.dim)
    L, C = args.levels, args.codes
    rng = np.random.default_rng(0)
    fit_x = x if len(x) <= args.fit_items else x[rng.choice(len(x), args.fit_items, replace=False)]
    print(f"{len(x):,} items, {x.shape[1]} dims; L={L}, C={C}; RQ-VAE trained on {len(fit_x):,} items, {args.epochs} epochs")
    rows = []
    t = time.perf_counter()
    rows.append(finish("residual k-means (TIGER-style)", residual_kmeans(x, L, C, 20, 0), C, time.perf_counter() - t))
    for ema in (False, True):
        t = time.perf_counter()
        cfg = rqvae.RQVAEConfig(input_dim=x.shape[1], levels=L, codes=C, ema=ema, seed=0)
        model, _ = rqvae.train_rqvae(fit_x, cfg, epochs=args.epochs, batch_size=args.batch_size, log_every=0)
        codes = rqvae.encode_codes(model, torch.from_numpy(x)).numpy()
        rows.append(finish(f"RQ-VAE {'with' if ema else 'without'} EMA", codes, C, time.perf_counter() - t))
    print("\n| method | raw uniqueness | + random last level | items in over-full groups | largest prefix group | level-1 utilization | seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['method']} | {r['raw']:.2%} | {r['after']:.2%} | {r['overflow_items']:,} | {r['largest_group']:,} | {r['util_a']:.2f} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
