"""The evaluation run report: ``summary.json`` with every number, ``report.md`` for a terminal or a
pull request, and one self-contained ``report.html`` (plots embedded as base64 PNG).

A run is a dict::

    {"run_id": ..., "dataset": ..., "split": ..., "n_slates": ...,
     "rows": [{"model": "sasrec",
               "metrics": {"R@1": (mean, low, high), ...},          # see metrics_with_ci
               "diagnostics": {"valid_rate": ..., "order_copy_rate": ...,
                               "mean_displacement": ..., "landing": [[...K...] x K]}},  # optional
              ...]}
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gr2.eval.diagnostics import bootstrap_ci, paired_bootstrap_diff
from gr2.rerank.metrics import METRIC_KS, per_slate_values

PLOTTED = ("R@1", "R@5", "NDCG@5")
DIAGNOSTIC_SCALARS = ("valid_rate", "order_copy_rate", "mean_displacement")

EXPLANATIONS = {
    "R@k": "Recall at k: the share of slates whose target (the item the user actually chose next) is among the "
    "first k items of the re-ranked slate. With one relevant item per slate this equals hit rate at k; R@1 "
    "is the share of slates where the target is ranked first.",
    "NDCG@k": "Normalized discounted cumulative gain at k: a target at 0-based output position p inside the "
    "top k scores 1 / log2(p + 2) (1 at the top, 0.63 second, 0.5 third ...), 0 outside; with one relevant item "
    "the ideal DCG is 1, so this is the mean discount. It rewards moving the target up even within the top k.",
    "95% CI": "Percentile bootstrap over slates (1000 resamples by default): the slates are resampled with "
    "replacement and the metric recomputed; the interval holds the middle 95% of those means. Two models "
    "whose intervals overlap widely are not reliably different on this evaluation set.",
    "paired difference": "Model minus baseline on the same slates, with a percentile bootstrap that resamples "
    "slates jointly for both (1000 resamples): shared easy and hard slates cancel, so the interval is narrower "
    "than the two rows' own intervals suggest. An interval that excludes 0 (marked *) is a difference at the "
    "95% level; one that contains 0 is not, however large the mean.",
    "valid_rate": "Share of answers that are an exact permutation of the K candidates (LLM re-rankers can "
    "answer with missing, repeated or unknown items; non-LLM baselines are always valid).",
    "order_copy_rate": "Share of valid answers identical to the incoming order. A re-ranker that copies its "
    "input is never badly wrong and never useful (the naive-reward hack of GR2); the incoming-order baseline "
    "scores 1.",
    "mean_displacement": "Mean |output position - input position| per item over valid answers: how far the "
    "re-ranker moves items (0 for a copy).",
    "position bias": "Heatmap rows are the target's position in the incoming slate, columns its position after "
    "re-ranking; each row is normalized to the share of that row's targets. A strong diagonal means targets stay "
    "where they were found; a bright first column means targets are lifted to the top wherever they started.",
}


# -- numbers ---------------------------------------------------------------------------------------


def metrics_with_ci(positions: Sequence[int], n_boot: int = 1000, seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """``{"R@1": (mean, low, high), ...}`` for every metric of :func:`gr2.rerank.metrics.slate_metrics`
    with a 95% percentile-bootstrap interval over slates (target positions are 0-based, -1 = absent)."""
    pos = list(positions)
    if not pos:
        raise ValueError("metrics_with_ci needs at least one slate")
    return {m: bootstrap_ci(per_slate_values(pos, m), n_boot=n_boot, seed=seed) for m in METRIC_KS}


def differences(positions: dict[str, Sequence[int]], models: Sequence[str], against: Sequence[str],
                metrics: Sequence[str] = PLOTTED, n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """Paired bootstrap of ``model - baseline`` for each model, baseline and metric, over the slates both
    ranked (`positions[name]` = the target's 0-based output position per slate, in one slate order):
    ``[{"model", "against", "metric", "diff": (mean, low, high)}, ...]``."""
    out = []
    for base in against:
        for model in models:
            if model == base:
                continue
            for m in metrics:
                diff = paired_bootstrap_diff(per_slate_values(positions[base], m), per_slate_values(positions[model], m),
                                             n_boot=n_boot, seed=seed)
                out.append({"model": model, "against": base, "metric": m, "diff": diff})
    return out


def excludes_zero(diff) -> bool:
    """True when a (mean, low, high) interval lies wholly above or below 0."""
    _, low, high = as_triple(diff)
    return low is not None and high is not None and (low > 0 or high < 0)


def _fmt_diff(value) -> str:
    mean, low, high = as_triple(value)
    if low is None or high is None:
        return f"{mean:+.4f}"
    return f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]" + (" *" if excludes_zero(value) else "")


def valid_note(row: dict) -> str:
    """An LM row's valid share for every table and plot that shows the row; where answers were invalid,
    say that those slates kept the incoming order (a 0%-valid row otherwise reads as the pre-ranker)."""
    valid = (row.get("diagnostics") or {}).get("valid_rate")
    if valid is None or not _finite(valid):
        return ""
    return valid_percent(valid) + ("" if valid >= 1.0 else " (invalid: incoming order kept)")


def valid_percent(valid: float) -> str:
    """A valid share as a percentage that never reads 100% while an answer was invalid (299 of 300 is
    99.7%, not 100%) nor 0% while one was valid."""
    text = f"{valid:.0%}"
    if (text == "100%" and valid < 1.0) or (text == "0%" and valid > 0.0):
        text = f"{valid:.1%}"
    return text


def _diff_table(run: dict) -> tuple[list[str], list[tuple[str, str, list[str]]]]:
    """(metrics, [(model, against, [cell per metric])]) of the run's paired differences."""
    diffs = run.get("differences") or []
    metrics = [m for m in PLOTTED if any(d["metric"] == m for d in diffs)]
    pairs: dict[tuple[str, str], dict[str, str]] = {}
    for d in diffs:
        pairs.setdefault((d["model"], d["against"]), {})[d["metric"]] = _fmt_diff(d["diff"])
    return metrics, [(model, base, [cells.get(m, "-") for m in metrics]) for (model, base), cells in pairs.items()]


def as_triple(value) -> tuple[float, float | None, float | None]:
    if isinstance(value, (list, tuple)):
        mean = value[0]
        low = value[1] if len(value) > 1 else None
        high = value[2] if len(value) > 2 else None
        return float(mean), (None if low is None else float(low)), (None if high is None else float(high))
    return float(value), None, None


def _finite(x) -> bool:
    return isinstance(x, (int, float, np.floating, np.integer)) and math.isfinite(float(x))


def _fmt(x, digits: int = 4) -> str:
    return f"{float(x):.{digits}f}" if _finite(x) else "-"


def _fmt_ci(value) -> str:
    mean, low, high = as_triple(value)
    if low is None or high is None:
        return _fmt(mean)
    return f"{_fmt(mean)} [{_fmt(low)}, {_fmt(high)}]"


def _metric_names(rows: list[dict]) -> list[str]:
    names: list[str] = [m for m in METRIC_KS if any(m in r.get("metrics", {}) for r in rows)]
    for r in rows:
        names += [m for m in r.get("metrics", {}) if m not in names]
    return names


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    return str(obj)


# -- plots -----------------------------------------------------------------------------------------


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def plots(run: dict) -> dict[str, str]:
    """Base64 PNGs: ``metrics`` (bars with CI error bars) and ``landing:<model>`` heatmaps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, str] = {}
    rows = run.get("rows", [])
    shown = [m for m in PLOTTED if any(m in r.get("metrics", {}) for r in rows)]
    if rows and shown:
        fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(rows) + 2), 3.2))
        width = 0.8 / len(shown)
        colors = ("#4c72b0", "#55a868", "#c44e52")
        x = np.arange(len(rows))
        for j, metric in enumerate(shown):
            means, lo, hi = [], [], []
            for r in rows:
                mean, low, high = as_triple(r["metrics"].get(metric, float("nan")))
                means.append(mean)
                lo.append(mean - low if low is not None and _finite(low) else 0.0)
                hi.append(high - mean if high is not None and _finite(high) else 0.0)
            ax.bar(x + (j - (len(shown) - 1) / 2) * width, means, width, yerr=[lo, hi], capsize=3, label=metric, color=colors[j % 3])
        ax.set_xticks(x)
        ax.set_xticklabels([r["model"] + (f"\nvalid {valid_note(r).split()[0]}" if valid_note(r) else "") for r in rows],
                           fontsize=7)
        ax.set_ylim(0, 1.05)
        ax.set_title("ranking metrics (95% bootstrap CI)")
        ax.legend(fontsize=8)
        out["metrics"] = _png(fig)
        plt.close(fig)
    diffs = run.get("differences") or []
    if diffs:
        out["differences"] = _forest(plt, diffs)
    for r in rows:
        landing = (r.get("diagnostics") or {}).get("landing")
        if landing is None:
            continue
        counts = np.asarray(landing, dtype=np.float64)
        if counts.ndim != 2 or counts.size == 0:
            continue
        share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
        k = counts.shape[0]
        fig, ax = plt.subplots(figsize=(4.2, 3.6))
        im = ax.imshow(share, cmap="viridis", vmin=0, vmax=1, origin="upper")
        ax.set_xlabel("target output position")
        ax.set_ylabel("target input position")
        ticks = list(range(k))
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        ax.set_title(f"{r['model']}: where targets land")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of row")
        out[f"landing:{r['model']}"] = _png(fig)
        plt.close(fig)
    return out


def _forest(plt, diffs: list[dict]) -> str:
    """One line per (model, baseline, metric): the paired difference and its interval around a 0 line."""
    labels, means, lo, hi, colors = [], [], [], [], []
    palette = {m: c for m, c in zip(PLOTTED, ("#4c72b0", "#55a868", "#c44e52"))}
    for d in diffs:
        mean, low, high = as_triple(d["diff"])
        labels.append(f"{d['model']} vs {d['against']}: {d['metric']}")
        means.append(mean)
        lo.append(mean - low if low is not None else 0.0)
        hi.append(high - mean if high is not None else 0.0)
        colors.append(palette.get(d["metric"], "#333333"))
    y = np.arange(len(diffs))[::-1]
    fig, ax = plt.subplots(figsize=(7.5, 0.28 * len(diffs) + 1.2))
    for yi, m, below, above, c in zip(y, means, lo, hi, colors):
        ax.errorbar(m, yi, xerr=[[below], [above]], fmt="o", color=c, capsize=3, markersize=4)
    ax.axvline(0.0, color="#888888", linewidth=1)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel("model - baseline (95% paired bootstrap CI)")
    ax.set_title("paired differences")
    png = _png(fig)
    plt.close(fig)
    return png


# -- pages -----------------------------------------------------------------------------------------


def _markdown(run: dict, metrics: list[str], diag_rows: list[dict]) -> str:
    lines = [
        f"# Evaluation run {run.get('run_id', '')}",
        "",
        f"dataset: {run.get('dataset', '-')} | split: {run.get('split', '-')} | slates: {run.get('n_slates', '-')}",
        "",
        *([f"SASRec-style baseline: {run['sasrec_source']}", ""] if run.get("sasrec_source") else []),
        "## Ranking metrics (mean [95% CI])",
        "",
        "| model | " + " | ".join(metrics) + " | valid |",
        "|---|" + "---|" * (len(metrics) + 1),
    ]
    for r in run.get("rows", []):
        cells = [_fmt_ci(r["metrics"][m]) if m in r.get("metrics", {}) else "-" for m in metrics]
        lines.append(f"| {r['model']} | " + " | ".join(cells) + f" | {valid_note(r)} |")
    diff_metrics, diff_rows = _diff_table(run)
    if diff_rows:
        lines += ["", "## Paired differences (model - baseline, mean [95% CI], * = excludes 0)", "",
                  "| model | against | " + " | ".join(diff_metrics) + " |", "|---|---|" + "---|" * len(diff_metrics)]
        lines += [f"| {model} | {base} | " + " | ".join(cells) + " |" for model, base, cells in diff_rows]
    if diag_rows:
        lines += ["", "## Behaviour diagnostics", "", "| model | " + " | ".join(DIAGNOSTIC_SCALARS) + " |", "|---|" + "---|" * len(DIAGNOSTIC_SCALARS)]
        for r in diag_rows:
            d = r["diagnostics"]
            lines.append(f"| {r['model']} | " + " | ".join(_fmt(d.get(k)) for k in DIAGNOSTIC_SCALARS) + " |")
        lines += ["", "Position-bias heatmaps are in report.html."]
    lines += ["", "## What the numbers mean", ""]
    lines += [f"- **{k}**: {v}" for k, v in EXPLANATIONS.items()]
    return "\n".join(lines) + "\n"


def _html(run: dict, metrics: list[str], diag_rows: list[dict], images: dict[str, str]) -> str:
    esc = html.escape
    title = f"gr2 evaluation {run.get('run_id', '')}"
    head = "".join(f"<th>{esc(m)}</th>" for m in metrics)
    body = "\n".join(
        f"<tr><th>{esc(str(r['model']))}</th>"
        + "".join(f"<td>{esc(_fmt_ci(r['metrics'][m])) if m in r.get('metrics', {}) else '-'}</td>" for m in metrics)
        + f"<td>{esc(valid_note(r))}</td></tr>"
        for r in run.get("rows", [])
    )
    parts = [
        f"<h1>{esc(title)}</h1>",
        f"<p>dataset <b>{esc(str(run.get('dataset', '-')))}</b>, split <b>{esc(str(run.get('split', '-')))}</b>, "
        f"<b>{esc(str(run.get('n_slates', '-')))}</b> slates"
        + (f"; SASRec-style baseline: {esc(run['sasrec_source'])}" if run.get("sasrec_source") else "") + "</p>",
        "<h2>Ranking metrics</h2><p>mean [95% bootstrap CI]</p>",
        f'<table class="m"><tr><th>model</th>{head}<th>valid</th></tr>\n{body}</table>',
    ]
    if "metrics" in images:
        parts.append(f'<figure><img alt="metrics" src="data:image/png;base64,{images["metrics"]}"></figure>')
    diff_metrics, diff_rows = _diff_table(run)
    if diff_rows:
        dh = "".join(f"<th>{esc(m)}</th>" for m in diff_metrics)
        dr = "\n".join(f"<tr><th>{esc(model)}</th><td>{esc(base)}</td>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>"
                       for model, base, cells in diff_rows)
        parts += ["<h2>Paired differences</h2><p>model - baseline on the same slates, mean [95% paired bootstrap CI]; "
                  "* = the interval excludes 0</p>", f'<table class="m"><tr><th>model</th><th>against</th>{dh}</tr>\n{dr}</table>']
        if "differences" in images:
            parts.append(f'<figure><img alt="paired differences" src="data:image/png;base64,{images["differences"]}"></figure>')
    if diag_rows:
        dhead = "".join(f"<th>{esc(k)}</th>" for k in DIAGNOSTIC_SCALARS)
        drows = "\n".join(
            f"<tr><th>{esc(str(r['model']))}</th>" + "".join(f"<td>{esc(_fmt(r['diagnostics'].get(k)))}</td>" for k in DIAGNOSTIC_SCALARS) + "</tr>"
            for r in diag_rows
        )
        parts += ["<h2>Behaviour diagnostics</h2>", f'<table class="m"><tr><th>model</th>{dhead}</tr>\n{drows}</table>']
        heat = [f'<figure><img alt="{esc(k)}" src="data:image/png;base64,{v}"></figure>' for k, v in images.items() if k.startswith("landing:")]
        if heat:
            parts += ["<h3>Position bias</h3>", "\n".join(heat)]
    parts.append("<h2>What the numbers mean</h2>")
    parts += [f"<p><b>{esc(k)}</b>: {esc(v)}</p>" for k, v in EXPLANATIONS.items()]
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:960px}}th{{text-align:left;padding-right:2em}}
table.m td{{padding-right:1.5em;font-variant-numeric:tabular-nums}}figure{{display:inline-block;margin:1em 0}}</style></head>
<body>{"".join(parts)}</body></html>"""


def write_report(out_dir: Path, run: dict) -> Path:
    """Write ``summary.json``, ``report.md`` and ``report.html`` under `out_dir`; returns the HTML path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = run.get("rows", [])
    metrics = _metric_names(rows)
    diag_rows = [r for r in rows if r.get("diagnostics")]
    (out_dir / "summary.json").write_text(json.dumps(_jsonable(run), indent=2))
    (out_dir / "report.md").write_text(_markdown(run, metrics, diag_rows))
    path = out_dir / "report.html"
    path.write_text(_html(run, metrics, diag_rows, plots(run)))
    return path
