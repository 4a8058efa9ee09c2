"""The tokenizer run report: JSON with every figure, and one HTML page with the plots people look at."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def plots(summary: dict, history: list[dict], raw_codes: np.ndarray) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    levels = list(range(len(summary["raw_metrics"].get("utilization", []))))
    if levels:
        fig, ax = plt.subplots(1, 2, figsize=(9, 3))
        names = [chr(ord("a") + i) for i in levels]
        ax[0].bar(names, summary["raw_metrics"]["utilization"], color="#4c72b0")
        ax[0].set_ylim(0, 1)
        ax[0].set_title("codebook utilization per level")
        ax[1].bar(names, summary["raw_metrics"]["perplexity"], color="#55a868")
        ax[1].axhline(summary["codes"], color="grey", ls="--", lw=1)
        ax[1].set_title(f"perplexity per level (max {summary['codes']})")
        out["levels"] = _png(fig)
        plt.close(fig)
    if len(raw_codes) and raw_codes.shape[1] > 1:
        _, counts = np.unique(raw_codes[:, :-1], axis=0, return_counts=True)
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.hist(counts, bins=min(50, max(counts)), color="#8172b2")
        ax.axvline(summary["codes"], color="red", ls="--", lw=1, label=f"C = {summary['codes']}")
        ax.set_yscale("log")
        ax.set_xlabel("items per prefix group")
        ax.set_title("prefix group sizes")
        ax.legend()
        out["groups"] = _png(fig)
        plt.close(fig)
    if history:
        fig, ax = plt.subplots(1, 2, figsize=(9, 3))
        epochs = [h["epoch"] for h in history]
        ax[0].plot(epochs, [h["eval_recon_loss"] for h in history], marker="o")
        ax[0].set_title("reconstruction loss")
        ax[0].set_xlabel("epoch")
        ax[1].plot(epochs, [h["unique_fraction"] for h in history], marker="o", color="#c44e52")
        ax[1].set_title("raw uniqueness")
        ax[1].set_xlabel("epoch")
        out["training"] = _png(fig)
        plt.close(fig)
    return out


def write(folder: Path, summary: dict, history: list[dict], raw_codes: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    images = plots(summary, history, raw_codes)
    rows = [
        ("tokenizer version", summary["version"]),
        ("levels x codes", f"{summary['levels']} x {summary['codes']}"),
        ("items with a SID", f"{summary['assigned']:,} of {summary['items']:,}"),
        ("raw uniqueness (argmin codes)", f"{summary['raw_unique_fraction']:.4%}"),
        ("uniqueness after the random last level", f"{summary['final_unique_fraction']:.4%}"),
        ("items re-drawn", f"{summary['redrawn']:,}"),
        ("items given an extra level", f"{summary['extra_level']:,}"),
        ("largest prefix group", summary["raw_metrics"].get("largest_prefix_group", "-")),
    ]
    table = "\n".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    figs = "\n".join(f'<figure><img alt="{k}" src="data:image/png;base64,{v}"></figure>' for k, v in images.items())
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>gr2 tokenizer {html.escape(summary['version'])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:960px}}th{{text-align:left;padding-right:2em}}
figure{{display:inline-block;margin:1em 0}}</style></head>
<body><h1>Semantic-ID tokenizer {html.escape(summary['version'])}</h1><table>{table}</table>{figs}</body></html>"""
    path = folder / "index.html"
    path.write_text(page)
    return path
