"""Typed results of the LM stages (traces, mid-training, SFT, DAPO, evaluation) and of the held-out checks
`gr2 train ... --evaluate` and `gr2 train eval-next` print after a stage. The base, and what a result
can do, are in gr2/pipelines/results.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from rich.console import Console
from rich.table import Table

from gr2.pipelines.results import NightLine, StageResult


@dataclass(frozen=True)
class TracesResult(StageResult):
    """`gr2 traces`: teacher answers by rejection sampling, into gold.traces."""

    teacher: str
    slates: int
    already_accepted: int
    skipped_without_sid: int
    attempted: int  # slates asked this run
    accepted: int
    acceptance_rate: float
    attempts: int
    attempts_per_accepted: float | None  # None when nothing was accepted
    valid_rate: float
    errors: int
    partition_rule: dict | None = None  # `traces.partition_top: auto`: the choice, its note and each N's scores

    @classmethod
    def of(cls, s: dict) -> Self:
        return cls(s, teacher=s["teacher"], slates=s["slates"], already_accepted=s["already_accepted"],
                   skipped_without_sid=s["skipped_without_sid"], attempted=s["attempted_slates"], accepted=s["accepted_slates"],
                   acceptance_rate=s["acceptance_rate"], attempts=s["attempts_total"], attempts_per_accepted=s["attempts_per_accepted"],
                   valid_rate=s["valid_rate"], errors=s["errors"], partition_rule=s.get("partition_rule"))

    def headline(self) -> str:
        return (f"teacher {self.teacher}: accepted {self.accepted:,} of {self.attempted:,} slates "
                f"({self.acceptance_rate:.1%})")

    def night(self) -> NightLine:
        return NightLine(self.attempted, self.accepted, self.attempted - self.accepted, self.headline())

    def render(self, console: Console) -> None:
        per = self.attempts_per_accepted
        if self.partition_rule:
            rule = self.partition_rule
            t = Table(title=f"partition rule on {rule['slates']:,} {rule['split']} slates (N = 0: the incoming order)")
            for col in ("N", "R@1", "R@5", "NDCG@5", "NDCG@5 - incoming [95% CI]", ""):
                t.add_column(col, justify="left" if col == "" else "right")
            for r in rule["rows"]:
                t.add_row(str(r["top"]), f"{r['R@1']:.3f}", f"{r['R@5']:.3f}", f"{r['NDCG@5']:.3f}",
                          f"{r['diff']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}]", "chosen" if r["top"] == rule["chosen"] else "")
            console.print(t)
            console.print(rule["note"])
        console.print(f"teacher {self.teacher}: {self.slates:,} slates ({self.already_accepted:,} already accepted, "
                      f"{self.skipped_without_sid:,} skipped: items without a SID)")
        console.print(f"  accepted {self.accepted:,} of {self.attempted:,} slates asked ({self.acceptance_rate:.1%}); "
                      f"{self.attempts:,} attempts, {per:.2f} per accepted slate; valid answers {self.valid_rate:.1%}, "
                      f"teacher errors {self.errors:,}" if per else f"  nothing accepted; {self.attempts:,} attempts")


def _float(row: dict, key: str) -> float | None:
    """A figure of a metrics.csv row (read back as text), None where the row or the key is missing."""
    return float(row[key]) if row and key in row else None


def _number(row, key: str) -> float | None:
    """As `_float`, for a summary read back from disk: None also where the value is not a number."""
    try:
        return float(row[key])
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class TrainCurve:
    """The ends of a supervised run's curve: metrics.csv's first and last rows, which its summary keeps
    under `final` ({} before a row was logged). Read leniently: the reports index reads it from every
    summary on disk, and an odd one shows empty cells, not an error."""

    first_loss: float | None
    last_loss: float | None
    last_step: int | None
    seconds: float | None  # wall time at the last step

    @classmethod
    def of(cls, summary: dict) -> Self:
        final = summary.get("final") if isinstance(summary, dict) else None
        first, last = (final.get("first") or {}, final.get("last") or {}) if isinstance(final, dict) else ({}, {})
        step = _number(last, "step")
        return cls(first_loss=_number(first, "loss"), last_loss=_number(last, "loss"),
                   last_step=None if step is None else int(step), seconds=_number(last, "wall_s"))


def _paused(s: dict, stage: str) -> str:
    """The line a run that `pause_after` ended early adds: where it stopped and how it goes on."""
    if not s.get("paused"):
        return ""
    return (f"  paused at step {s['steps_done']:,} of {s['total_steps']:,} (train.{stage}.pause_after): the run is unfinished, "
            f"not LATEST; the same command with a larger pause_after, or none, continues it")


def _paused_short(s: dict) -> str:
    return f"; paused at step {s['steps_done']:,}" if s.get("paused") else ""


@dataclass(frozen=True)
class TrainResult(StageResult):
    """`gr2 train midtrain` and `gr2 train sft`: one training run under <lake>/models/<stage>/<run>."""

    run: str
    model_dir: str
    run_dir: str
    metrics_csv: str
    total_steps: int
    rows: int  # packed rows trained on
    first_loss: float | None
    last_loss: float | None

    @classmethod
    def of(cls, s: dict) -> Self:
        curve = TrainCurve.of(s)
        return cls(s, run=s["run"], model_dir=s["model_dir"], run_dir=s["run_dir"], metrics_csv=s["metrics_csv"],
                   total_steps=s["total_steps"], rows=s["rows"], first_loss=curve.first_loss, last_loss=curve.last_loss)

    def headline(self) -> str:
        loss = f"; loss {self.first_loss:.3f} -> {self.last_loss:.3f}" if self.first_loss is not None and self.last_loss is not None else ""
        return f"{self.run}: {self.total_steps:,} optimizer steps over {self.rows:,} packed rows{loss}{_paused_short(self.details)}"

    def night(self) -> NightLine:
        return NightLine(read=self.rows, note=self.headline())

    def render(self, console: Console) -> None:
        s = self.details
        last = s.get("final", {}).get("last", {})
        first = s.get("final", {}).get("first", {})
        console.print(f"{s['run']}: {s['total_steps']:,} optimizer steps over {s['rows']:,} packed rows "
                      f"(examples {s['examples']}); base {s['base']['source']}"
                      + (f", {s['base']['parameters']:,} parameters" if s["base"].get("parameters") else "")
                      + (f"; embeddings and the lowest {s['frozen_layers']} layers frozen" if s.get("frozen_layers") else ""))
        if last and first:
            console.print(f"  loss {float(first['loss']):.3f} -> {float(last['loss']):.3f}; "
                          f"{float(last['tokens_per_s']):,.0f} tokens/s; peak memory {float(last['peak_mem_mb']):,.0f} MB")
        console.print(f"  model: {s['model_dir']}\n  metrics: {s['metrics_csv']} (TensorBoard: {s['run_dir']}/tensorboard)")
        if note := _paused(s, s["run"].split("-")[0]):
            console.print(note)


@dataclass(frozen=True)
class DapoResult(StageResult):
    """`gr2 train dapo`: one RL run from the SFT model."""

    run: str
    model_dir: str
    run_dir: str
    total_steps: int
    slates: int
    first_reward: float | None  # None when no step was logged
    last_reward: float | None
    valid_rate: float | None  # of the last step's answers

    @classmethod
    def of(cls, s: dict) -> Self:
        return cls(s, run=s["run"], model_dir=s["model_dir"], run_dir=s["run_dir"], total_steps=s["total_steps"],
                   slates=s["slates"], first_reward=_float(s["first"], "reward"), last_reward=_float(s["last"], "reward"),
                   valid_rate=_float(s["last"], "valid_rate"))

    def headline(self) -> str:
        if not self.details.get("last"):
            return ""  # no step logged: the demo prints nothing for the stage, as it always did
        return (f"{self.run}: {self.total_steps} RL steps; reward {self.first_reward:.3f} -> {self.last_reward:.3f}; "
                f"valid answers {self.valid_rate:.1%}{_paused_short(self.details)}")

    def night(self) -> NightLine:
        return NightLine(read=self.slates, note=self.headline())

    def render(self, console: Console) -> None:
        last = self.details["last"]
        if last:
            console.print(f"{self.run}: {self.total_steps} RL steps on {self.slates:,} slates; reward {self.first_reward:.3f} -> "
                          f"{self.last_reward:.3f}; valid answers {self.valid_rate:.1%}, order copies "
                          f"{float(last['order_copy_rate']):.1%}, kept groups {float(last['kept_group_ratio']):.1%}")
        console.print(f"  model: {self.model_dir}\n  metrics: {self.run_dir}/metrics.csv")
        if note := _paused(self.details, "dapo"):
            console.print(note)


@dataclass(frozen=True)
class EvalRow:
    """One re-ranker's row of an evaluation."""

    model: str
    metrics: dict  # name -> value, or [mean, low, high] with bootstrap intervals
    valid_rate: float | None  # share of valid answers; None for a row that does not answer (a baseline)

    @classmethod
    def of(cls, row: dict) -> Self:
        valid = (row.get("diagnostics") or {}).get("valid_rate")
        try:
            valid = float(valid)
        except (TypeError, ValueError):  # absent (a baseline answers nothing) or not a number
            valid = None
        return cls(model=row["model"], metrics=row.get("metrics", {}), valid_rate=valid)

    def mean(self, name: str):
        """The metric's value (the mean where it carries an interval); None where the row lacks it."""
        m = self.metrics.get(name)
        if isinstance(m, (list, tuple)):
            return m[0] if m else None
        return m


@dataclass(frozen=True)
class EvalResult(StageResult):
    """`gr2 eval`: every re-ranker on the same slates, a report and rows in eval.runs."""

    run_id: str
    created_at: str | None
    split: str
    n_slates: int
    k: int
    rows: tuple[EvalRow, ...]  # in the table's order
    report: str

    @classmethod
    def of(cls, r: dict) -> Self:
        return cls(r, run_id=r["run_id"], created_at=r.get("created_at"), split=r["split"], n_slates=r["n_slates"], k=r["k"],
                   rows=tuple(EvalRow.of(row) for row in r["rows"]), report=r["report"])

    @property
    def models(self) -> tuple[str, ...]:
        """The re-rankers, in the table's order."""
        return tuple(row.model for row in self.rows)

    def headline(self) -> str:
        return f"{self.run_id}: {len(self.models)} re-rankers on {self.n_slates:,} {self.split} slates (K={self.k}); report {self.report}"

    def night(self) -> NightLine:
        return NightLine(read=self.n_slates, note=self.headline())

    def render(self, console: Console) -> None:
        from gr2.eval import jobs, report

        r = self.details
        t = Table(title=f"{r['run_id']}: {r['n_slates']:,} {r['split']} slates (K={r['k']}), mean [95% CI]")
        t.add_column("re-ranker")
        names = list(r["rows"][0]["metrics"])
        for n in names:
            t.add_column(n, justify="right")
        t.add_column("valid", justify="right")
        t.add_column("copies input", justify="right")
        for row in r["rows"]:
            d = row.get("diagnostics", {})
            t.add_row(row["model"], *[jobs.fmt(row["metrics"][n]) for n in names],
                      report.valid_note(row), f"{d['order_copy_rate']:.1%}" if d and d["order_copy_rate"] == d["order_copy_rate"] else "")
        console.print(t)
        if r.get("sasrec_source"):
            console.print(f"SASRec-style baseline: {r['sasrec_source']}")
        self._render_differences(console)
        console.print(f"report: {r['report']}")

    def _render_differences(self, console: Console) -> None:
        from gr2.eval import jobs

        diffs = self.details.get("differences") or []
        if not diffs:
            return
        metrics = list(dict.fromkeys(d["metric"] for d in diffs))
        t = Table(title="paired differences on the same slates: model - baseline, mean [95% CI], * = excludes 0")
        t.add_column("re-ranker")
        t.add_column("against")
        for n in metrics:
            t.add_column(n, justify="right")
        pairs: dict = {}
        for d in diffs:
            pairs.setdefault((d["model"], d["against"]), {})[d["metric"]] = jobs.fmt_diff(d["diff"])
        for (model, base), cells in pairs.items():
            t.add_row(model, base, *[cells.get(n, "") for n in metrics])
        console.print(t)


# -- the held-out checks a training command runs after its stage ---------------------------------------


@dataclass(frozen=True)
class NextItemResult(StageResult):
    """Next-item Recall/NDCG of a mid-trained model over the full catalog, next to popularity."""

    split: str
    users: int
    catalog: int
    model: dict  # metric -> mean
    popularity: dict

    @classmethod
    def of(cls, r: dict) -> Self:
        return cls(r, split=r["split"], users=r["users"], catalog=r["catalog"], model=r["model"], popularity=r["popularity"])

    def headline(self) -> str:
        cells = ", ".join(f"{k} {v:.4f} (popularity {self.popularity[k]:.4f})" for k, v in self.model.items())
        return f"next item on {self.split} ({self.users:,} users, {self.catalog:,} items): {cells}"

    def render(self, console: Console) -> None:
        r = self.details
        t = Table(title=f"next item on {r['split']} ({r['users']:,} users, full catalog of {r['catalog']:,} items)")
        t.add_column("model")
        for k in r["model"]:
            t.add_column(k, justify="right")
        ci = r.get("intervals") or {}

        def cells(name: str) -> list[str]:
            return [f"{v:.4f}" + (f" [{ci[name][k][0]:.4f}, {ci[name][k][1]:.4f}]" if name in ci else "") for k, v in r[name].items()]

        t.add_row("mid-trained LM (constrained beam search)", *cells("model"))
        t.add_row("popularity", *cells("popularity"))
        if r.get("difference"):
            from gr2.eval.jobs import fmt_diff

            t.add_row("LM - popularity (paired)", *[fmt_diff(r["difference"][k]) for k in r["model"]])
        console.print(t)
        if ci:
            console.print("mean [95% bootstrap interval over users]; * = the paired interval excludes 0")


@dataclass(frozen=True)
class RerankCheckResult(StageResult):
    """A trained re-ranker's answers on held-out slates: valid share and metrics against the incoming order."""

    split: str
    slates: int
    constrained: bool
    valid_share: float
    json_share: float
    incoming: dict  # metric -> value
    model: dict

    @classmethod
    def of(cls, r: dict) -> Self:
        return cls(r, split=r["split"], slates=r["slates"], constrained=bool(r.get("constrained")), valid_share=r["valid_share"],
                   json_share=r["json_share"], incoming=r["incoming"], model=r["model"])

    def _mode(self) -> str:
        return "constrained ranking" if self.constrained else "free answers"

    def headline(self) -> str:
        cells = ", ".join(f"{k} {self.incoming[k]:.4f} -> {v:.4f}" for k, v in self.model.items())
        return f"re-ranking {self.slates:,} {self.split} slates ({self._mode()}): valid {self.valid_share:.1%}; {cells}"

    def render(self, console: Console) -> None:
        t = Table(title=f"re-ranking {self.slates:,} {self.split} slates ({self._mode()}): valid JSON permutation "
                        f"{self.valid_share:.1%}, JSON answer shape {self.json_share:.1%}")
        t.add_column("order")
        for k in self.model:
            t.add_column(k, justify="right")
        t.add_row("incoming (pre-ranker)", *[f"{v:.4f}" for v in self.incoming.values()])
        t.add_row("model (invalid answers keep the incoming order)", *[f"{v:.4f}" for v in self.model.values()])
        console.print(t)
