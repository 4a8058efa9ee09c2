"""`traces.partition_top: auto`: the teacher's rule chosen on each data set's own validation slates.

The recipe's teacher (`traces.reasoning: partition`) puts the candidates the sequence model ranks #1..#N
first, then the rest, each in slate order, and the student learns to redo it from its prompt. Whether that
is worth teaching depends on the data set: on Amazon Beauty the SASRec-style model is about as good as the
co-occurrence pre-ranker and N = 4 gains +3 NDCG@5 points over the incoming order; on MovieLens-100k (943
users) it is far weaker, every N loses to the incoming order, and a student that learned N = 4 there ended
below it (docs/training.md). So `auto` scores each N of `traces.partition_choices` on the validation
slates, with the evidence the student's prompt shows there (the all-users sequence model), and takes the
best NDCG@5 among the N whose paired bootstrap 95% interval over the incoming order lies above 0. Where
none does, N = 0: the teacher keeps the slate's order, so the re-ranker learns to do no harm, and the run
says so.

`gr2 traces` makes the choice and saves it beside the lake's models (`models/traces/partition_rule.json`),
with its table; SFT reads it back to find that teacher's traces (`resolve_top`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gr2.config import Config
from gr2.models import evidence as ev
from gr2.models.slates import rerank_rows
from gr2.platform.files import write_json_atomic
from gr2.rerank.metrics import paired_bootstrap_diff, per_slate_values, slate_metrics
from gr2.rerank.slate import sequence_rank
from gr2.training.teachers import partition_order

SPLIT = "valid"
METRIC = "NDCG@5"
RULE_FILE = Path("models") / "traces" / "partition_rule.json"


@dataclass
class RuleChoice:
    """The chosen N (0 = keep the slate's order) and what every N scored."""

    top: int
    split: str
    slates: int
    evidence_run: str
    # one row per N (0 first): N, R@1, R@5, NDCG@5, and NDCG@5's paired difference from the incoming order
    rows: list[dict] = field(default_factory=list)

    def line(self) -> str:
        """One sentence for the console."""
        best = max((r for r in self.rows if r["top"]), key=lambda r: r[METRIC], default=None)
        if self.top:
            r = next(r for r in self.rows if r["top"] == self.top)
            return (f"partition rule chosen on {self.slates:,} {self.split} slates: seq #1-#{self.top} first, {METRIC} "
                    f"{r[METRIC]:.3f} ({r['diff']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}] over the incoming order)")
        tail = (f"; the best, seq #1-#{best['top']}, {best['diff']:+.3f} [{best['low']:+.3f}, {best['high']:+.3f}]"
                if best else "")
        return (f"no partition rule beats the incoming order on {self.slates:,} {self.split} slates{tail}: the teacher "
                "keeps the slate's order (N = 0), so the student will learn to keep it too")


def score_tops(seq_ranks: list[list[int]], targets: list[int], tops: list[int], n_boot: int = 2000,
               seed: int = 0) -> list[dict]:
    """Each N's metrics on these slates (`seq_ranks[i]`: the sequence model's 0-based rank of each candidate
    in slate order; `targets[i]`: the target's slate position), N = 0 (the incoming order) first."""
    if not targets:
        raise ValueError("no slates to choose a rule on")
    base = per_slate_values(targets, METRIC)
    rows = []
    for top in [0] + sorted(set(tops) - {0}):
        at = [partition_order(r, top).index(t) for r, t in zip(seq_ranks, targets)]
        diff, low, high = paired_bootstrap_diff(base, per_slate_values(at, METRIC), n_boot=n_boot, seed=seed)
        m = slate_metrics(at)
        rows.append({"top": top, "R@1": m["R@1"], "R@5": m["R@5"], METRIC: m[METRIC], "diff": diff, "low": low,
                     "high": high})
    return rows


def choose(rows: list[dict]) -> int:
    """The best N by NDCG@5 among those reliably above the incoming order (interval above 0), else 0."""
    above = [r for r in rows if r["top"] and r["low"] > 0]
    return max(above, key=lambda r: (r[METRIC], -r["top"]))["top"] if above else 0


def choose_on_lake(cfg: Config, catalog: dict, evidence: ev.SequentialEvidence, n_boot: int = 2000) -> RuleChoice:
    """Score and choose on the lake's validation slates (deltalake reads, the saved sequence models: seconds)."""
    built = rerank_rows(cfg.lake_path, catalog, SPLIT, 0, cfg.train.seed, cfg.train.prompt.history)
    targets_by_id = {r["slate_id"]: r["target"] for r, _ in built}
    ranks, targets = [], []
    for s in ev.annotate_rows(evidence, built, SPLIT):
        ids = [c.item_id for c in s.candidates]
        if targets_by_id[s.slate_id] in ids:
            ranks.append([sequence_rank(c.note) for c in s.candidates])
            targets.append(ids.index(targets_by_id[s.slate_id]))
    if not targets:
        raise ValueError(f"traces.partition_top: auto needs {SPLIT} slates with their target among the candidates, and "
                         f"gold.slates in {cfg.lake_path} has none: run `gr2 etl build`, or set traces.partition_top to a number")
    rows = score_tops(ranks, targets, cfg.traces.partition_choices, n_boot=n_boot, seed=cfg.train.seed)
    return RuleChoice(top=choose(rows), split=SPLIT, slates=len(targets), evidence_run=evidence.run, rows=rows)


def save(choice: RuleChoice, lake: Path) -> Path:
    path = Path(lake) / RULE_FILE
    write_json_atomic(path, asdict(choice))
    return path


def load(lake: Path) -> RuleChoice | None:
    path = Path(lake) / RULE_FILE
    return RuleChoice(**json.loads(path.read_text())) if path.exists() else None


def resolve_top(cfg: Config) -> int:
    """The N the configured partition teacher lifts: the config's number, or the one `gr2 traces` chose."""
    if cfg.traces.partition_top != "auto":
        return int(cfg.traces.partition_top)
    choice = load(cfg.lake_path)
    if choice is None:
        raise FileNotFoundError(f"traces.partition_top is auto and {Path(cfg.lake_path) / RULE_FILE} does not exist: "
                                "`gr2 traces` chooses the rule on the validation slates; run it first")
    return choice.top
