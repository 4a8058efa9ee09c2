"""`<lake>/reports/index.html`: one page that leads to every report, with its history.

Gathered from what the jobs already write, nothing is recomputed:
  * quality: every Great Expectations validation (the publish gates and the nightly re-checks), newest
    first, each linked to its Data Docs page (rebuilt into reports/quality by `build_docs`);
  * nightly: each date's step summary (reports/nightly/<date>.json);
  * evaluation: every `gr2 eval` report (reports/eval/<run>/report.html) with its headline metrics, and a
    plot of NDCG@5 per model across runs;
  * training: every mid-training / SFT / DAPO run (models/<stage>/<run>/summary.json);
  * ETL and tokenizer: the per-run reports of ingest, build and SID assignment.
Links are relative, so the folder can be served by any static web server or opened from disk.

The summaries of evaluations and training runs are the stages' own, read through their typed forms in
gr2/pipelines/lm_results.py (EvalResult, TrainCurve); nightly runs and GE validations are read through
gr2/pipelines/run_results.py (NightRun, Validation). So a renamed key is fixed there, not here. An eval
summary that cannot be read as one (cut short, not JSON) is still listed, without figures; such a nightly
file is left out (it has no date to list it under).
"""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, TypeVar

from gr2.eval.report import valid_percent
from gr2.pipelines.lm_results import EvalResult, EvalRow, TrainCurve
from gr2.pipelines.run_results import NightRun, Validation
from gr2.platform import quality
from gr2.platform.files import write_text_atomic

T = TypeVar("T")
PLOT_MODELS = 6  # lines in the eval history plot (the models seen in most runs)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _typed(of: Callable[..., T], summary, *args, **kwargs) -> T | None:
    """A summary read from disk as its typed result (`of`: the result class's reader); None where it cannot be
    read as one: an index lists what it finds, so one odd file must not stop it."""
    try:
        return of(summary, *args, **kwargs) if isinstance(summary, dict) else None
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def validations(lake: Path) -> list[Validation]:
    """Every GE validation result under the lake's context, newest first, with its Data Docs page."""
    store = quality.context_root(lake) / "gx" / "uncommitted" / "validations"
    out = []
    for f in store.glob("*/*/*/*.json"):
        rel = f.relative_to(store).with_suffix(".html")
        v = _typed(Validation.of, _read_json(f) or None, suite=f.parts[-4], href=f"quality/validations/{rel.as_posix()}")
        if v is not None:
            out.append(v)
    return sorted(out, key=lambda v: v.time, reverse=True)


def nightly_runs(lake: Path) -> list[NightRun]:
    """Every nightly run (reports/nightly/runs/), newest first; a date's latest file stands in for runs
    written before run history was kept. A file that cannot be read as a run is left out."""
    folder = lake / "reports" / "nightly"
    out = []
    for f in list(folder.glob("runs/*.json")) + list(folder.glob("*.json")):
        run = _typed(NightRun.of, _read_json(f), href=f.relative_to(lake / "reports").as_posix())
        if run is not None:
            out.append(run)
    seen, unique = set(), []
    for run in sorted(out, key=lambda r: (r.finished_at, r.href.count("/")), reverse=True):
        key = (run.date, run.finished_at)
        if key not in seen:
            seen.add(key)
            unique.append(run)
    return unique


def eval_runs(lake: Path) -> list[dict]:
    """Every `gr2 eval` run, newest first: its name, when it ran, its rows (EvalRow) and its report page."""
    out = []
    for f in (lake / "reports" / "eval").glob("*/summary.json"):
        d = _read_json(f)
        if not d:
            continue
        page = f"eval/{f.parent.name}/report.html"
        # summary.json is written before the job adds the report's path to its result: the page beside it
        r = _typed(lambda s: EvalResult.of({**s, "report": str(f.parent / "report.html")}), d)
        if r is None:
            out.append({"run": f.parent.name, "created": "", "rows": (), "href": page})
        else:
            out.append({"run": r.run_id, "created": r.created_at or "", "rows": r.rows, "href": page})
    return sorted(out, key=lambda r: (r["created"], r["run"]), reverse=True)


def _valid_cell(row: EvalRow) -> str:
    """An LM row's share of valid answers; where some were invalid, say that those slates kept the incoming
    order (an SFT row with 0% valid answers otherwise reads as a model that equals the pre-ranker)."""
    valid = row.valid_rate
    if valid is None:
        return ""
    if valid >= 1.0:
        return "100%"
    cls = "bad" if valid < 0.5 else "warn"
    return f'<span class="{cls}">{valid_percent(valid)}</span> (invalid: incoming order kept)'


def training_runs(lake: Path) -> list[dict]:
    """Every mid-training, SFT and DAPO run, newest first, with the ends of its curve (TrainCurve). A DAPO
    run's cells stay empty, as they always have: its summary keeps its first and last metrics rows at the
    top level (DapoResult reads them there), not under `final`."""
    out = []
    for stage in ("midtrain", "sft", "dapo"):
        for f in (lake / "models" / stage).glob("*/summary.json"):
            c = TrainCurve.of(_read_json(f) or {})
            out.append({"stage": stage, "run": f.parent.name, "steps": c.last_step, "loss_first": c.first_loss,
                        "loss_last": c.last_loss, "seconds": c.seconds})
    return sorted(out, key=lambda r: r["run"], reverse=True)


def stage_reports(lake: Path) -> list[dict]:
    out = []
    for f in (lake / "reports" / "etl").glob("*.json"):
        if "latest" not in f.name:
            out.append({"kind": f"etl {f.stem.split('-')[0]}", "name": f.stem, "href": f"etl/{f.name}"})
    for d in (lake / "reports" / "tokenizer").glob("*/"):
        page = next((p for p in ("index.html", "report.html", "summary.json") if (d / p).exists()), None)
        if page:
            out.append({"kind": "tokenizer", "name": d.name, "href": f"tokenizer/{d.name}/{page}"})
    return sorted(out, key=lambda r: r["name"], reverse=True)


def history_svg(runs: list[dict], metric: str = "NDCG@5", width: int = 640, height: int = 220) -> str:
    """A line per model of `metric` across eval runs (as `eval_runs` lists them; oldest left); empty with
    fewer than 2 runs."""
    runs = list(reversed(runs))
    if len(runs) < 2:
        return ""
    series: dict[str, list] = {}
    for i, r in enumerate(runs):
        for row in r["rows"]:
            v = row.mean(metric)
            if isinstance(v, (int, float)):
                series.setdefault(row.model, []).append((i, float(v)))
    series = dict(sorted(series.items(), key=lambda kv: -len(kv[1]))[:PLOT_MODELS])
    values = [v for pts in series.values() for _, v in pts]
    if not values:
        return ""
    lo, hi = min(values), max(values)
    hi = hi if hi > lo else lo + 1e-9
    pad, colors = 36, ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
    x = lambda i: pad + (width - 2 * pad) * i / (len(runs) - 1)  # noqa: E731
    y = lambda v: height - pad - (height - 2 * pad) * (v - lo) / (hi - lo)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{metric} per model across eval runs">',
             f'<text x="{pad}" y="16" font-size="12">{metric} per eval run (oldest left)</text>',
             f'<text x="2" y="{y(hi) + 4:.0f}" font-size="10">{hi:.3f}</text><text x="2" y="{y(lo) + 4:.0f}" font-size="10">{lo:.3f}</text>']
    for k, (model, pts) in enumerate(series.items()):
        c = colors[k % len(colors)]
        path = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in pts)
        parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{path}"/>')
        parts.append(f'<text x="{width - pad - 150}" y="{30 + 14 * k}" font-size="11" fill="{c}">{html.escape(model)}</text>')
    parts.append("</svg>")
    return "".join(parts)


CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;font-size:14px;text-align:left}
th{background:#f3f3f3}.ok{color:#176f2c;font-weight:600}.bad{color:#b00020;font-weight:600}.warn{color:#9a6700;font-weight:600}.dim{color:#777}
h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:1.6em}"""


def _table(headers: list[str], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f'<p class="dim">{html.escape(empty)}</p>'
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _a(href: str, text: str) -> str:
    return f'<a href="{html.escape(href)}">{html.escape(text)}</a>'


def _num(v, digits: int = 4) -> str:
    return "" if v is None else (f"{v:,}" if isinstance(v, int) else f"{v:.{digits}f}" if isinstance(v, float) else html.escape(str(v)))


def render_index(lake: Path, docs_built: bool) -> str:
    vals, nights, evals, trains, stages = validations(lake), nightly_runs(lake), eval_runs(lake), training_runs(lake), stage_reports(lake)
    failed = sum(not v.success for v in vals)
    quality_rows = [[html.escape(v.time[:19].replace("T", " ")), html.escape(v.suite),
                     '<span class="ok">passed</span>' if v.success else '<span class="bad">FAILED</span>',
                     f"{v.passed}/{v.checks}", _a(v.href, "Data Docs") if docs_built else ""] for v in vals]
    night_rows = []
    for n in nights:
        code = '<span class="ok">0</span>' if n.exit_code == 0 else f'<span class="bad">{html.escape(str(n.exit_code))}</span>'
        night_rows.append([_a(n.href, n.date), code, f"{n.seconds:.0f}s", html.escape(", ".join(n.ran()) or "none"),
                           html.escape(n.failure()[:160]), html.escape(n.finished_at)])
    eval_rows = []
    for r in evals:
        for row in r["rows"]:
            eval_rows.append([_a(r["href"], r["run"]), html.escape(str(row.model)),
                              *[_num(row.mean(m)) for m in ("R@1", "R@5", "NDCG@5")], _valid_cell(row)])
    train_rows = [[html.escape(t["stage"]), html.escape(t["run"]), _num(t["steps"]), _num(t["loss_first"]), _num(t["loss_last"]),
                   _num(t["seconds"], 0)] for t in trains]
    stage_rows = [[html.escape(s["kind"]), _a(s["href"], s["name"])] for s in stages]
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>gr2 reports</title><style>{CSS}</style></head>
<body><h1>gr2 reports</h1><p class="dim">lake {html.escape(str(lake))} &middot; built {stamp}</p>
<p>{len(vals)} quality validations ({failed} failed) &middot; {len(nights)} nightly runs &middot; {len(evals)} eval runs
&middot; {len(trains)} training runs</p>
<h2 id="quality">Data quality (Great Expectations)</h2>
<p>{_a("quality/index.html", "Data Docs home") if docs_built else '<span class="dim">Data Docs not built yet</span>'}</p>
{_table(["validated at (UTC)", "suite", "result", "expectations met", "page"], quality_rows, "no validation has run yet")}
<h2 id="nightly">Nightly runs</h2>
{_table(["date", "exit", "time", "steps run", "failure", "finished"], night_rows, "gr2 nightly has not run yet")}
<h2 id="eval">Evaluation</h2>
{history_svg(evals)}
{_table(["run", "model", "R@1", "R@5", "NDCG@5", "valid answers"], eval_rows, "gr2 eval has not run yet")}
<h2 id="training">Training runs</h2>
{_table(["stage", "run", "steps", "first loss", "last loss", "seconds"], train_rows, "no training run yet")}
<h2 id="stages">ETL and tokenizer reports</h2>
{_table(["kind", "report"], stage_rows, "no ETL or tokenizer report yet")}
</body></html>"""


def build_index(lake: Path) -> Path:
    """Rebuild the Data Docs (when any gate has run) and write `<lake>/reports/index.html`."""
    lake = Path(lake)
    docs_built = False
    if (quality.context_root(lake) / "gx").exists():
        quality.build_docs(lake)
        docs_built = True
    out = lake / "reports" / "index.html"
    write_text_atomic(out, render_index(lake, docs_built))
    return out
