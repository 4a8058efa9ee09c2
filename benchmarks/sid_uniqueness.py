"""SID uniqueness by method: residual k-means (TIGER-style), balanced residual k-means (OneRec-style),
RQ-VAE without EMA, with EMA, with EMA + dead-code reset, with LC-Rec-style Sinkhorn prices on the
last level, with balanced prices on every level; each followed by the random last level, with and
without the capacity-aware penultimate level (`spill`, gr2/tokenizer/spill.py); plus GRID's extra
de-duplication digit for reference.

    # embeddings of a lake built by `gr2 tokenizer embed` (e.g. Amazon Beauty), or a .npy of vectors
    .venv/bin/python benchmarks/sid_uniqueness.py --lake lake-beauty
    .venv/bin/python benchmarks/sid_uniqueness.py --npy beauty_minilm.npy
    # a synthetic catalog of clustered vectors (no text encoder needed), e.g. 1M items
    .venv/bin/python benchmarks/sid_uniqueness.py --synthetic 1000000 --dim 64
    # generated product titles (category / brand structure) through a hashed char n-gram TF-IDF
    .venv/bin/python benchmarks/sid_uniqueness.py --synthetic 1000000 --proxy text --dim 128

Prints a Markdown table: raw uniqueness (distinct full code tuples / items), uniqueness after the
random last level, items a last level could not separate (prefix groups with more than C items:
they would get an extra level), the same after the spill step and the items it moved, the largest
prefix group of the raw codes, utilization of the first level, and seconds (fit + encode + spill).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gr2.tokenizer import balanced, collisions, proxy, rqvae, spill  # noqa: E402

synthetic_embeddings = proxy.clustered_embeddings  # the name other benchmarks import


def lake_embeddings(lake: str, encoder: str | None) -> np.ndarray:
    from deltalake import DeltaTable

    df = DeltaTable(str(Path(lake) / "gold" / "item_embeddings")).to_pandas()
    if encoder:
        df = df[df["encoder"] == encoder]
    return np.stack(df["vector"].to_numpy()).astype(np.float32)


class KMeansQuantizer(nn.Module):
    """Residual k-means codebooks (no encoder) with the interface `spill` needs."""

    def __init__(self, codebooks: torch.Tensor, prices: torch.Tensor | None):
        super().__init__()
        L, C, D = codebooks.shape
        self.cfg = SimpleNamespace(levels=L, codes=C, latent_dim=D)
        self.encoder = nn.Identity()
        self.codebooks = codebooks
        self.code_bias = prices

    def _priced(self, level: int) -> bool:
        return self.code_bias is not None

    def codes(self, x: np.ndarray, batch_size: int = 65536) -> np.ndarray:
        out = []
        for start in range(0, len(x), batch_size):
            r = torch.from_numpy(x[start : start + batch_size])
            cols = []
            for level in range(self.cfg.levels):
                idx = spill._assign(self, level, r)
                cols.append(idx)
                r = r - self.codebooks[level][idx]
            out.append(torch.stack(cols, 1))
        return torch.cat(out).numpy()


def residual_kmeans(fit_x: np.ndarray, levels: int, codes: int, iters: int, seed: int, balance: bool) -> KMeansQuantizer:
    """TIGER-style k-means on the raw vectors then on each level's residuals; with `balance`, OneRec-style
    balanced k-means (capacity-constrained Lloyd) and per-code prices, so assignment stays per item."""
    gen = torch.Generator().manual_seed(seed)
    r = torch.from_numpy(fit_x)
    books, prices = [], []
    for _ in range(levels):
        centers = rqvae.kmeans(r, codes, 0 if balance else iters, gen)
        if balance:
            centers = balanced.balanced_kmeans(r, codes, iters, centers)
        d = balanced.sq_distances(r, centers)
        p = balanced.balanced_prices(d) if balance else None
        idx = balanced.balanced_argmin(d, p)
        books.append(centers)
        prices.append(p)
        r = r - centers[idx]
    return KMeansQuantizer(torch.stack(books), torch.stack(prices) if balance else None)


def finish(name: str, codes: np.ndarray, C: int, seconds: float, model=None, x=None) -> dict:
    new, _, overflow = collisions.redraw_last_level(codes, C, seed=0)
    over = int(collisions.overflow_mask(new, overflow).sum()) if overflow else 0
    row = {
        "method": name, "raw": rqvae.unique_fraction(codes), "after": rqvae.unique_fraction(new),
        "overflow_items": over, "largest_group": rqvae.largest_prefix_group(codes),
        "util_a": rqvae.utilization(codes, C)[0], "seconds": seconds, "spill_over": None, "moved": None,
    }
    if model is not None:
        t = time.perf_counter()
        movers = spill.movers_mask(codes, C)
        spilled, moved = spill.spill(codes, movers, spill.residuals(model, x[movers], codes.shape[1] - 2), model)
        new, _, overflow = collisions.redraw_last_level(spilled, C, seed=0)
        row["spill_over"] = int(collisions.overflow_mask(new, overflow).sum()) if overflow else 0
        row["moved"] = int(moved.sum())
        row["seconds"] += time.perf_counter() - t
    return row


RQVAE_METHODS = {  # name -> RQVAEConfig options
    "no-ema": ("RQ-VAE without EMA", {"ema": False}),
    "ema": ("RQ-VAE with EMA (default until 2026-12-04)", {}),
    "ema+dead": ("RQ-VAE with EMA + dead-code reset", {"dead_code_threshold": 0.5}),
    "ema+lcrec": ("RQ-VAE with EMA + dead-code reset + Sinkhorn prices, last level (LC-Rec-style)",
                  {"dead_code_threshold": 0.5, "balance": "prices", "balance_levels": "last"}),
    "ema+prices": ("RQ-VAE with EMA + dead-code reset + balanced prices, all levels",
                   {"dead_code_threshold": 0.5, "balance": "prices"}),
    "ema+prices+binit": ("RQ-VAE with EMA + dead-code reset + balanced prices + balanced k-means init",
                         {"dead_code_threshold": 0.5, "balance": "prices", "init": "balanced"}),
}
METHODS = ["kmeans", "balanced-kmeans", "no-ema", "ema", "ema+dead", "ema+lcrec", "ema+prices", "grid"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake")
    ap.add_argument("--encoder")
    ap.add_argument("--npy", help="a .npy file of item vectors [items, dim]")
    ap.add_argument("--synthetic", type=int)
    ap.add_argument("--proxy", choices=["clustered", "text"], default="clustered")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--levels", type=int, default=4)
    ap.add_argument("--codes", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--fit-items", type=int, default=200_000, help="train on at most this many items, assign all")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {METHODS + ['ema+prices+binit']}")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t = time.perf_counter()
    if args.lake:
        x = lake_embeddings(args.lake, args.encoder)
    elif args.npy:
        x = np.load(args.npy).astype(np.float32)
    elif args.proxy == "text":
        cat = proxy.text_catalog(args.synthetic, seed=args.seed)
        x = proxy.text_embeddings(cat, dim=args.dim, seed=args.seed)
        print("e.g.", " / ".join(cat.title(i) for i in range(3)))
    else:
        x = proxy.clustered_embeddings(args.synthetic, args.dim, seed=args.seed)
    print(f"data: {time.perf_counter() - t:.0f} s")
    L, C = args.levels, args.codes
    rng = np.random.default_rng(0)
    fit_x = x if len(x) <= args.fit_items else x[np.sort(rng.choice(len(x), args.fit_items, replace=False))]
    print(f"{len(x):,} items, {x.shape[1]} dims; L={L}, C={C}; fitted on {len(fit_x):,} items ({args.epochs} RQ-VAE epochs), all assigned")
    rows, codes_of = [], {}
    for m in args.methods.split(","):
        t = time.perf_counter()
        if m in ("kmeans", "balanced-kmeans"):
            q = residual_kmeans(fit_x, L, C, 20, args.seed, balance=m == "balanced-kmeans")
            codes = q.codes(x)
            name = "residual k-means (TIGER-style)" if m == "kmeans" else "balanced residual k-means + prices (OneRec-style)"
        elif m in RQVAE_METHODS:
            name, kw = RQVAE_METHODS[m]
            cfg = rqvae.RQVAEConfig(input_dim=x.shape[1], levels=L, codes=C, seed=args.seed, **kw)
            q, _ = rqvae.train_rqvae(fit_x, cfg, epochs=args.epochs, batch_size=args.batch_size, log_every=0)
            codes = rqvae.encode_codes(q, torch.from_numpy(x)).numpy()
        elif m == "grid":  # GRID: a de-duplication digit on every SID, over the EMA codes
            if "ema" not in codes_of:
                continue
            rows.append({"method": "GRID-style extra digit on every SID (RQ-VAE with EMA)", "raw": rows[[r["m"] for r in rows].index("ema")]["raw"],
                         "after": 1.0, "overflow_items": len(x), "largest_group": rqvae.largest_prefix_group(codes_of["ema"]),
                         "util_a": rqvae.utilization(codes_of["ema"], C)[0], "seconds": 0.0, "spill_over": None, "moved": None, "m": m})
            continue
        else:
            raise SystemExit(f"unknown method {m!r}")
        codes_of[m] = codes
        rows.append({**finish(name, codes, C, time.perf_counter() - t, q, x), "m": m})
        print(rows[-1], flush=True)
    print("\n| method | raw uniqueness | + random last level | items needing an extra level "
          "| + spill: items needing an extra level | items moved by spill | largest prefix group | level-1 utilization | seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        so = "—" if r["spill_over"] is None else f"{r['spill_over']:,}"
        mv = "—" if r["moved"] is None else f"{r['moved']:,}"
        over = f"{r['overflow_items']:,} ({r['overflow_items'] / len(x):.2%})"
        print(f"| {r['method']} | {r['raw']:.2%} | {r['after']:.2%} | {over} | {so} | {mv} | {r['largest_group']:,} "
              f"| {r['util_a']:.2f} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
