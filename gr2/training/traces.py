"""`gr2 traces`: teacher reasoning traces for training slates, by rejection sampling, into gold.traces.

Slates are read from gold.slates (training split) and written as prompts by `gr2/rerank/prompt.py`; a teacher
answers up to N times per slate without seeing the label; every attempt is stored with whether it was
accepted. The offline `statistical` teacher is cross-fitted: users are split into two folds by a hash
and the teacher answering a slate was built from the other fold's training sequences only, so it
cannot quote the very transition it is asked to predict. Slates already accepted for the same teacher
are skipped on a rerun (resumption).
"""

from __future__ import annotations

from datetime import datetime, timezone

from gr2.config import Config
from gr2.models import evidence as ev
from gr2.platform import quality as qc
from gr2.platform.contracts import contract
from gr2.platform.keys import (
    TRACE_KEY,
    fold,  # noqa: F401 - the fold of a user, where traces' callers look for it
)
from gr2.platform.lake import Lake
from gr2.platform.progress import Steps
from gr2.rerank.catalog import load_catalog
from gr2.rerank.prompt import build_rerank_messages, render_rerank_prompt
from gr2.rerank.slate import Slate, slate_of_row
from gr2.training import rule_choice
from gr2.training.rejection import rejection_sample, summarize
from gr2.training.teachers import DEFAULT_WEIGHTS, OpenAITeacher, StatisticalTeacher

TRACES_SCHEMA = (
    "slate_id string, user_id string, teacher string, attempt int, temperature double, prompt string, "
    "response string, error string, ranking array<string>, valid boolean, accepted boolean, target_rank int, "
    "created_at timestamp"
)


def prompt_of(s: Slate, fmt=None, tokenizer=None) -> str:
    """The prompt of a slate: the paper's canonical one (what teachers see), or a student's format."""
    if fmt is None:
        return render_rerank_prompt(build_rerank_messages(s.history, s.candidates))
    return fmt.prompt(s.history, s.candidates, tokenizer)


def teacher_name(cfg: Config) -> str:
    """The name gold.traces stores for the configured teacher (SFT trains on that teacher's traces)."""
    if cfg.traces.teacher == "openai":
        return f"openai:{cfg.traces.endpoint.model}"
    top = rule_choice.resolve_top(cfg) if cfg.traces.reasoning == "partition" else 0
    return StatisticalTeacher.name_for(cfg.traces.reasoning, cfg.traces.weights, top)


def needs_sequential(cfg: Config) -> bool:
    """Whether `gr2 traces` fits the sequential models: the teacher weighs them, or the prompt shows them."""
    return cfg.traces.teacher == "statistical" and bool(cfg.traces.weights.get("sequential", DEFAULT_WEIGHTS["sequential"])) \
        or cfg.train.prompt.evidence == "sequential"


def fit_sequential(cfg: Config, sequences, on_progress=None) -> ev.SequentialEvidence:
    """The cross-fitted and all-users SASRec-style models (evidence.py), with the configured budget."""
    return ev.fit(sequences, cfg.traces.sequential_epochs, cfg.traces.sequential_seconds, cfg.train.seed, on_progress)


def make_teachers(cfg: Config, sequences, catalog: dict, evidence: ev.SequentialEvidence | None = None,
                  partition_top: int | None = None) -> dict[int, object]:
    """One teacher per fold (statistical: fitted on the other fold), or one endpoint for both. With
    traces.weights.sequential > 0 the statistical teacher weighs the fold's sequential model (fitted here
    when `evidence` is not given). `partition_top` is the partition rule's N where `auto` was resolved
    (else the config's)."""
    if cfg.traces.teacher == "openai":
        e = cfg.traces.endpoint
        t = OpenAITeacher(base_url=e.base_url, model=e.model, api_key_env=e.api_key_env, concurrency=e.concurrency,
                          timeout_s=e.timeout_s, max_retries=e.max_retries, max_tokens=e.max_tokens)
        return {0: t, 1: t}
    sequences = list(sequences)
    meta = {k: {"title": c.title, "categories": list(c.categories), "brand": c.brand, "sid": c.sid} for k, c in catalog.items()}
    sequential = cfg.traces.weights.get("sequential", DEFAULT_WEIGHTS["sequential"])
    if sequential and evidence is None:
        evidence = fit_sequential(cfg, sequences)
    top = partition_top if partition_top is not None else (
        rule_choice.resolve_top(cfg) if cfg.traces.reasoning == "partition" else 0)
    out = {}
    for f in (0, 1):
        train = [
            [i for i, s in zip(items, splits) if s == "train"]
            for uid, items, splits in sequences if fold(uid) != f
        ]
        out[f] = StatisticalTeacher(train, meta, detail=cfg.traces.detail, weights=cfg.traces.weights, reasoning=cfg.traces.reasoning,
                                    partition_top=top, sequential=evidence.scorer(f) if sequential else None)
    return out


def run(spark, cfg: Config, steps: Steps | None = None) -> dict:
    from pyspark.sql import functions as F

    steps = steps or Steps(quiet=True)
    lake = Lake(cfg.lake_path)
    tc = cfg.traces
    with steps.step("training slates and catalog"):
        catalog, _ = load_catalog(cfg.lake_path)
        slates = lake.read(spark, "gold.slates").where(F.col("split") == "train")
        slates = slates.withColumn("_h", F.xxhash64("slate_id", F.lit(cfg.train.seed))).orderBy("_h")
        if tc.max_slates:
            slates = slates.limit(tc.max_slates)
        rows = slates.select("slate_id", "user_id", "history", "candidates", "target").toPandas()
        seqs = lake.read(spark, "gold.sequences").select("user_id", "items", "split").toPandas()
        seq_rows = list(zip(seqs["user_id"], seqs["items"], seqs["split"]))
    evidence = None
    if needs_sequential(cfg):
        # what the models are fitted from and with: the same again reuses the LATEST ones
        fingerprint = {"gold.sequences": lake.version(spark, "gold.sequences"), "epochs": tc.sequential_epochs,
                       "seconds": tc.sequential_seconds, "seed": cfg.train.seed}
        evidence = ev.reusable(cfg.lake_path, fingerprint)
        if evidence is not None:
            with steps.step(f"sequential models: reusing {evidence.run} (same gold.sequences version and settings)"):
                evidence_run = evidence.run
        else:
            with steps.step("sequential models (SASRec-style; per user fold and all users)") as st:
                evidence = fit_sequential(cfg, seq_rows, on_progress=st.update)
                evidence_run = ev.save(evidence, cfg.lake_path, fingerprint)
    choice = None
    if tc.teacher == "statistical" and tc.reasoning == "partition" and tc.partition_top == "auto":
        with steps.step(f"partition rule: N of {tc.partition_choices} scored on the {rule_choice.SPLIT} slates") as st:
            choice = rule_choice.choose_on_lake(cfg, catalog, evidence)
            rule_choice.save(choice, cfg.lake_path)
            st.update(choice.line())
    with steps.step("teachers"):
        teachers = make_teachers(cfg, seq_rows, catalog, evidence, choice.top if choice else None)
        name = teachers[0].name
        done = set()
        if lake.exists(spark, "gold.traces"):
            done = {r[0] for r in lake.read(spark, "gold.traces").where((F.col("teacher") == name) & F.col("accepted"))
                    .select("slate_id").distinct().collect()}
    by_fold: dict[int, list] = {0: [], 1: []}
    records = rows.to_dict("records")
    built = [(r, s) for r in records if (s := slate_of_row(r, catalog, cfg.train.prompt.history)) is not None]
    skipped = len(records) - len(built)
    # Each candidate carries the cross-fitted sequence model's rank of the slate's whole stored history: the
    # teacher weighs and cites exactly the "seq #k" the student's prompt will show (evidence.py).
    shown = ev.annotate_rows(evidence, built, "train")
    users = {}
    for (r, _), s in zip(built, shown):
        users[s.slate_id] = r["user_id"]
        by_fold[fold(r["user_id"])].append(s)
    attempts = []
    total = sum(len(v) for v in by_fold.values())
    with steps.step(f"rejection sampling: {total:,} slates x up to {tc.attempts} attempts ({name})") as st:
        for f, group in by_fold.items():
            def progress(p, f=f):
                st.update(f"fold {f} round {p.round + 1}: accepted {p.accepted_total:,}, pending {p.pending:,}")
            attempts += rejection_sample(group, teachers[f], tc.attempts, tc.temperature, tc.accept_top_k,
                                         seed=cfg.train.seed, already_accepted=done, on_progress=progress)
    stats = summarize(attempts)
    prompts = {s.slate_id: prompt_of(s) for g in by_fold.values() for s in g}
    stamp = datetime.now(timezone.utc).replace(tzinfo=None)
    records = [
        (a.slate_id, users[a.slate_id], a.teacher, a.attempt, float(a.temperature), prompts[a.slate_id], a.response,
         a.error, a.ranking, a.valid, a.accepted, a.target_rank, stamp)
        for a in attempts
    ]
    with steps.step("gate and publish gold.traces"):
        df = spark.createDataFrame(records, TRACES_SCHEMA)
        c = contract("gold.traces")
        res = lake.publish_merge(spark, df, "gold.traces", TRACE_KEY, [qc.rows(len(records)), *c.checks],
                                 audit=c.audit) if records else None
    stats["attempted_slates"] = stats.pop("slates")
    return {"teacher": name, "slates": total, "skipped_without_sid": skipped, "already_accepted": len(done & set(prompts)),
            **stats, "written": res.__dict__ if res else None,
            "sequential_models": {"run": evidence_run, **_fits(evidence)} if evidence else None,
            "partition_rule": {"chosen": choice.top, "note": choice.line(), "split": choice.split, "slates": choice.slates,
                               "rows": choice.rows} if choice else None}


def _fits(evidence: ev.SequentialEvidence) -> dict:
    last = lambda m: {k: m.history[-1][k] for k in ("epoch", "loss")} if m.history else {}  # noqa: E731
    return {"fold0": last(evidence.by_fold[0]), "fold1": last(evidence.by_fold[1]), "all": last(evidence.full)}
