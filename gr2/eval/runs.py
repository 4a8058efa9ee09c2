"""The ``eval.runs`` Delta table: every number of every evaluation run, so runs can be compared.

Grain: one metric of one model of one run. Columns: ``run_id``, ``created_at`` (timestamp, UTC),
``model``, ``dataset``, ``split``, ``metric``, ``value``, ``ci_low``, ``ci_high`` (95% bootstrap
interval; null for diagnostics), ``n_slates``. Natural key (run_id, model, metric); written by MERGE
(new keys only) behind a Great Expectations gate, so publishing the same run again writes nothing.

The ranking metrics of a run's rows (``R@1`` ... with their CI), its scalar diagnostics
(``valid_rate``, ``order_copy_rate``, ``mean_displacement``; non-finite values are left out) and its
paired differences (metric ``R@1 - incoming order``: the model's row minus the baseline's on the same
slates, with the paired bootstrap interval) are stored.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path

from gr2.eval.report import DIAGNOSTIC_SCALARS, as_triple
from gr2.platform.keys import EVAL_RUN_KEY
from gr2.rerank.metrics import METRIC_KS

TABLE = "eval.runs"
KEYS = EVAL_RUN_KEY
SCHEMA = (
    "run_id string, created_at timestamp, model string, dataset string, split string, metric string, "
    "value double, ci_low double, ci_high double, n_slates long"
)
COLUMNS = [c.split()[0] for c in SCHEMA.split(", ")]


def _created_at(run: dict) -> datetime:
    value = run.get("created_at")
    if value is None:
        return datetime.now(timezone.utc)
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value


def _opt(x) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def to_rows(run: dict) -> list[tuple]:
    """The run as ``eval.runs`` rows, in COLUMNS order."""
    for field in ("run_id", "rows"):
        if field not in run:
            raise ValueError(f"run has no {field!r}")
    created = _created_at(run)
    n_slates = None if run.get("n_slates") is None else int(run["n_slates"])
    base = (str(run["run_id"]), created)
    out = []
    for r in run["rows"]:
        model = str(r["model"])
        for metric, v in (r.get("metrics") or {}).items():
            mean, low, high = as_triple(v)
            if not math.isfinite(mean):
                continue
            out.append((*base, model, run.get("dataset"), run.get("split"), str(metric), mean, _opt(low), _opt(high), n_slates))
        diag = r.get("diagnostics") or {}
        for name in DIAGNOSTIC_SCALARS:
            v = diag.get(name)
            if v is not None and math.isfinite(float(v)):
                out.append((*base, model, run.get("dataset"), run.get("split"), name, float(v), None, None, n_slates))
    for d in run.get("differences") or []:
        mean, low, high = as_triple(d["diff"])
        if math.isfinite(mean):
            out.append((*base, str(d["model"]), run.get("dataset"), run.get("split"), diff_metric(d["metric"], d["against"]),
                        mean, _opt(low), _opt(high), n_slates))
    return out


def diff_metric(metric: str, against: str) -> str:
    """The eval.runs metric name of a paired difference: "R@1 - incoming order"."""
    return f"{metric} - {against}"


def publish(spark, lake_root: str | Path, run: dict):
    """MERGE the run into ``eval.runs`` (new (run_id, model, metric) keys only); returns the
    :class:`gr2.platform.lake.PublishResult` (``skipped`` when the run is already there)."""
    from gr2.platform import quality as qc
    from gr2.platform.contracts import contract
    from gr2.platform.lake import Lake

    rows = to_rows(run)
    if not rows:
        raise ValueError(f"run {run.get('run_id')!r} has no finite metric to publish")
    df = spark.createDataFrame(rows, SCHEMA)
    return Lake(lake_root).publish_merge(spark, df, TABLE, KEYS, [qc.rows(len(rows)), *contract(TABLE).checks])


def _metric_order(name: str) -> tuple[int, str]:
    order = list(METRIC_KS) + list(DIAGNOSTIC_SCALARS)
    return (order.index(name), "") if name in order else (len(order), name)


class UnknownRunError(KeyError, ValueError):
    """A run id that is not in eval.runs: bad input (exit 2), still a KeyError for callers that look it up."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def compare(spark, lake_root: str | Path, run_a: str, run_b: str):
    """One row per (model, metric) of either run: ``a``, ``b`` and ``diff = b - a`` (NaN where one run
    lacks the pair). Raises when a run is not in the table."""
    import pandas as pd
    from pyspark.sql import functions as F

    from gr2.platform.lake import Lake

    df = Lake(lake_root).read(spark, TABLE).where(F.col("run_id").isin(run_a, run_b)).select("run_id", "model", "metric", "value")
    pdf = df.toPandas()
    missing = [r for r in (run_a, run_b) if r not in set(pdf["run_id"])]
    if missing:
        raise UnknownRunError(f"run(s) {', '.join(missing)} not in {TABLE} under {lake_root}; <lake>/reports/index.html lists the evaluation runs")
    a = pdf[pdf.run_id == run_a].set_index(["model", "metric"])["value"].rename("a")
    b = pdf[pdf.run_id == run_b].set_index(["model", "metric"])["value"].rename("b")
    out = pd.concat([a, b], axis=1).reset_index()
    out.columns = ["model", "metric", "a", "b"]
    out["a"] = out["a"].astype(float)
    out["b"] = out["b"].astype(float)
    out["diff"] = out["b"] - out["a"]
    out["_order"] = out["metric"].map(_metric_order)
    out = out.sort_values(["model", "_order"]).drop(columns="_order").reset_index(drop=True)
    out.attrs.update(run_a=run_a, run_b=run_b)
    return out


def format_compare(df) -> str:
    """A plain-text table of :func:`compare`'s frame (a and b headed by the run ids when known)."""
    head_a = str(df.attrs.get("run_a", "a"))
    head_b = str(df.attrs.get("run_b", "b"))

    def num(x, sign: bool = False) -> str:
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return "-"
        return f"{x:+.4f}" if sign else f"{x:.4f}"

    table = [("model", "metric", head_a, head_b, "diff")]
    table += [(str(r.model), str(r.metric), num(r.a), num(r.b), num(r.diff, sign=True)) for r in df.itertuples(index=False)]
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    lines = []
    for n, row in enumerate(table):
        cells = [row[i].ljust(widths[i]) if i < 2 else row[i].rjust(widths[i]) for i in range(5)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
