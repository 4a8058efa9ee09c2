"""Evidence the re-rank prompt can show beside each candidate (`train.prompt.evidence`).

A 135M student trained for an hour on 2 CPU cores cannot learn from titles and SIDs which item follows
which: that is collaborative knowledge, learned from millions of interactions (the paper's mid-training
gives an 8B model that; ours saw 2.5% of an epoch and learned none, docs/training.md). So the prompt can
carry it: `sequential` writes a SASRec-style model's rank of each candidate ("seq #2") next to the
candidate, and the student learns to weigh that rank against the incoming order and the categories it
reads. The teacher's trace cites the same figure, so every claim in a trace can be checked against the
prompt the student reads (without evidence the teacher cites co-occurrence counts the student never sees).

Which model ranks a slate (no slate's evidence may come from a model trained on its own label):
* training slates (traces, SFT, DAPO): the model of the user's *other* fold (`fold`), fitted on the
  other half of the users' training items, as the statistical teacher is cross-fitted;
* validation and test slates, and serving: the model fitted on every user's training items (their
  labels are validation/test items, which no model saw).

The three models are fitted once by `gr2 traces` (`fit`) and saved as a run under
`<lake>/models/sequential/<run>/` with a LATEST pointer; SFT, DAPO, evaluation and serving `load` them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from gr2.models.sasrec import SASRec, SASRecConfig, training_sequences
from gr2.platform.keys import fold
from gr2.platform.run_store import RunStore
from gr2.rerank.slate import ItemText, sequence_note

STAGE = "sequential"
MODES = ("none", "sequential")
FOLDS = (0, 1)


def note(rank: int) -> str:
    """How a candidate's evidence reads in the prompt: its 1-based place in the sequence model's order."""
    return sequence_note(rank)


@dataclass
class SequentialEvidence:
    """The cross-fitted models (`by_fold[f]` never saw a user of fold f) and the model of all users."""

    by_fold: dict[int, SASRec]
    full: SASRec
    run: str = ""

    def model_for(self, user_id: str | None, split: str) -> SASRec:
        if split == "train":
            if user_id is None:
                raise ValueError("a training slate's evidence needs its user id (the cross-fitted model of the other fold)")
            return self.by_fold[fold(user_id)]
        return self.full

    def ranks(self, user_id: str | None, split: str, history: Sequence[str], candidates: Sequence[str]) -> list[int]:
        return self.ranks_many([user_id], split, [history], [candidates])[0]

    def ranks_many(self, user_ids: Sequence[str | None], split: str, histories: Sequence[Sequence[str]],
                   candidates: Sequence[Sequence[str]]) -> list[list[int]]:
        """Each candidate's 0-based place in its model's order (ties and unknown items keep the incoming order)."""
        out: list[list[int] | None] = [None] * len(histories)
        groups: dict[int, list[int]] = {}
        for n, u in enumerate(user_ids):
            groups.setdefault(id(self.model_for(u, split)), []).append(n)
        for rows in groups.values():
            model = self.model_for(user_ids[rows[0]], split)
            orders = model.rank_many([list(histories[n]) for n in rows], [list(candidates[n]) for n in rows])
            for n, order in zip(rows, orders):
                rank = [0] * len(order)
                for r, i in enumerate(order):
                    rank[i] = r
                out[n] = rank
        return out  # type: ignore[return-value]

    def scorer(self, f: int) -> Callable[[Sequence[str], Sequence[str]], list[float]]:
        """The statistical teacher's sequential scorer for training slates of fold `f` (its own model's
        scores, so the teacher's "sequence model #k" is the rank the prompt shows)."""
        model = self.by_fold[f]
        cache: dict[tuple, list[float]] = {}

        def score(history, candidates) -> list[float]:
            key = (tuple(history), tuple(candidates))
            if key not in cache:  # rejection sampling asks several times per slate
                cache[key] = model.score_many([list(history)], [list(candidates)])[0]
            return cache[key]

        return score


def annotate(slate, ranks: Sequence[int]):
    """The slate (a Slate or anything with `candidates`) with each candidate's evidence note."""
    cands = [replace(c, note=note(r)) for c, r in zip(slate.candidates, ranks)]
    return replace(slate, candidates=cands)


def annotate_rows(evidence: SequentialEvidence | None, built: Sequence[tuple[dict, object]], split: str) -> list:
    """The slates of (gold.slates row, slate) pairs with evidence notes (the slates as they are when
    `evidence` is None). The model reads each row's whole stored history (etl.history_len items) and the
    row's user, not only the few items the prompt shows, so a slate's evidence is the same whatever
    `train.prompt.history` is."""
    slates = [s for _, s in built]
    if evidence is None or not slates:
        return slates
    ranks = evidence.ranks_many([r["user_id"] for r, _ in built], split, [list(r["history"]) for r, _ in built],
                                [[c.item_id for c in s.candidates] for s in slates])
    return [annotate(s, r) for s, r in zip(slates, ranks)]


def annotate_items(evidence: SequentialEvidence | None, history_ids: Sequence[str],
                   candidates: Sequence[ItemText]) -> list[ItemText]:
    """Serving: a request's candidates with notes from the all-users model, which reads the whole history
    the caller sent (it may be longer than the prompt shows)."""
    if evidence is None:
        return list(candidates)
    ranks = evidence.ranks(None, "serve", list(history_ids), [c.item_id for c in candidates])
    return [replace(c, note=note(r)) for c, r in zip(candidates, ranks)]


# -- fitting and storage ---------------------------------------------------------------------------------


def fit(sequences: Sequence[tuple[str, Sequence[str], Sequence[str]]], epochs: int, seconds: float, seed: int,
        on_progress: Callable[[str], None] | None = None) -> SequentialEvidence:
    """The three models from gold.sequences rows (user_id, items, per-item split), each within `epochs`
    and `seconds`."""
    rows = list(sequences)
    cfg = SASRecConfig(epochs=epochs, max_seconds=seconds, seed=seed)
    models = {}
    for f in FOLDS:
        t0 = time.perf_counter()
        train = training_sequences((items, splits) for uid, items, splits in rows if fold(uid) != f)
        models[f] = SASRec(cfg).fit(train)
        if on_progress:
            on_progress(f"fold {f} model: {len(train):,} users, {_fit_note(models[f], time.perf_counter() - t0)}")
    t0 = time.perf_counter()
    train = training_sequences((items, splits) for _, items, splits in rows)
    full = SASRec(cfg).fit(train)
    if on_progress:
        on_progress(f"all-users model: {len(train):,} users, {_fit_note(full, time.perf_counter() - t0)}")
    return SequentialEvidence(models, full)


def _fit_note(m: SASRec, seconds: float) -> str:
    last = m.history[-1] if m.history else {}
    return (f"{last.get('epoch', 0)} epochs, loss {last.get('loss', float('nan')):.2f}, {seconds:.0f} s"
            + (" (stopped at its time budget)" if m.stopped_early else ""))


def save(ev: SequentialEvidence, lake: Path, fingerprint: dict | None = None) -> str:
    """A new run under <lake>/models/sequential/, made LATEST once complete (atomically). `fingerprint`
    (what the models were fitted from and with) lets a later run reuse them (`reusable`)."""
    import torch

    store = RunStore(lake, STAGE)
    run = store.new_id()
    out = store.path(run)
    out.mkdir(parents=True, exist_ok=True)
    for name, m in [*((f"fold{f}", ev.by_fold[f]) for f in FOLDS), ("all", ev.full)]:
        torch.save({"config": asdict(m.cfg), "vocab": m.vocab, "state": m.model.state_dict(), "history": m.history},
                   out / f"{name}.pt")
    (out / "summary.json").write_text(json.dumps(
        {name: m.history[-1] if m.history else {} for name, m in [("fold0", ev.by_fold[0]), ("fold1", ev.by_fold[1]),
                                                                   ("all", ev.full)]}, indent=2))
    (out / "fingerprint.json").write_text(json.dumps(fingerprint or {}, sort_keys=True))
    store.publish(run)
    ev.run = run
    return run


def load(lake: Path, run: str | None = None) -> SequentialEvidence:
    """The LATEST (or the named) sequential models of the lake; FileNotFoundError says what to run."""
    import torch

    from gr2.models.sasrec import SASRecNet

    store = RunStore(lake, STAGE, what="sequential evidence models")
    root = store.root
    if run is None:
        run = store.require_latest("train.prompt.evidence=sequential needs these sequence models: run `gr2 traces` "
                                   "(it fits them) first")

    def one(name: str) -> SASRec:
        blob = torch.load(root / run / f"{name}.pt", map_location="cpu", weights_only=True)
        m = SASRec(SASRecConfig(**blob["config"]))
        m.vocab, m.history = dict(blob["vocab"]), list(blob["history"])
        m.model = SASRecNet(len(m.vocab), m.cfg)
        m.model.load_state_dict(blob["state"])
        m.model.eval()
        return m

    return SequentialEvidence({f: one(f"fold{f}") for f in FOLDS}, one("all"), run)


def reusable(lake: Path, fingerprint: dict) -> SequentialEvidence | None:
    """The LATEST models when they were fitted from the same data with the same settings (a rerun of
    `gr2 traces`, or new teacher weights, need not spend minutes refitting them), else None."""
    store = RunStore(lake, STAGE)
    run = store.latest()
    if run is None:
        return None
    try:
        same = json.loads((store.path(run) / "fingerprint.json").read_text()) == json.loads(json.dumps(fingerprint, sort_keys=True))
    except (OSError, ValueError):
        return None
    return load(lake, run) if same else None


def for_format(fmt, lake: Path) -> SequentialEvidence | None:
    """The evidence a model's format asks for (None for `evidence: none`)."""
    mode = getattr(fmt, "evidence", "none")
    if mode == "none":
        return None
    if mode != "sequential":
        raise ValueError(f"unknown prompt evidence {mode!r}; known: {MODES}")
    return load(lake)
