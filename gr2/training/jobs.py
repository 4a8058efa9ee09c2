"""Training stages as jobs: mid-training and SFT (DAPO is rl.py; the held-out checks are gr2/eval/heldout.py).

Each job: read the tables it needs with Ray Data, build examples, launch the shared Ray Train +
DeepSpeed loop, and leave a model folder (`save_pretrained`, safetensors) under
`<lake>/models/<stage>/<run>/model` with `metrics.csv`, TensorBoard logs and a summary JSON beside it,
plus the stage's LATEST pointer (gr2/platform/run_store.py keeps the runs of every model kind).
"""

from __future__ import annotations

import json
from pathlib import Path

from gr2.config import Config
from gr2.models import evidence as ev
from gr2.models.lm import load_model, load_tokenizer
from gr2.models.text import Example, tokenize_example
from gr2.platform.lake import Lake
from gr2.platform.progress import Steps
from gr2.platform.run_store import latest_model, model_runs
from gr2.rerank.catalog import load_catalog
from gr2.rerank.slate import item_text, slate_of_row
from gr2.training import data, engines, examples, loop
from gr2.training import model as lm
from gr2.training.supervised import LmLoss


def start_run(cfg: Config, stage: str) -> tuple[str, Path, bool]:
    """(run id, run folder, resumed): the stage's unfinished run when one was started with the same
    training settings (a stopped sitting, a killed driver), else a new run. Ray Train resumes a run of
    the same name and storage path from its latest checkpoint, so the same command continues the run."""
    store = model_runs(cfg, stage)
    run, resumed = store.begin(run_fingerprint(cfg, stage))
    return run, store.path(run), resumed


# Settings that say how a run is carried out, not what it trains: changing one mid-run keeps the run.
OPERATIONAL = ("checkpoint_every", "max_failures", "pause_after")


def run_fingerprint(cfg: Config, stage: str) -> str:
    """What makes two `gr2 train <stage>` commands the same run: the shared training settings and this
    stage's own, as far as they differ from the schema's defaults. A later stage's budget (say
    train.dapo.max_steps) edited while SFT runs, a checkpoint cadence, or a new schema key at its default
    (a code upgrade between sittings) must not make the same command start over."""
    import hashlib

    others = {s for s in ("midtrain", "sft", "dapo") if s != stage}
    dump = cfg.train.model_dump(mode="json", exclude=others | set(OPERATIONAL), exclude_defaults=True)
    own = {k: v for k, v in (dump.pop(stage, None) or {}).items() if k not in OPERATIONAL}
    if own:
        dump[stage] = own
    return hashlib.sha256(json.dumps(dump, sort_keys=True).encode()).hexdigest()[:16]


def finish_run(cfg: Config, stage: str, run: str, publish: bool = True) -> None:
    """The run is complete: no later command resumes it, and if `publish`, it becomes the stage's LATEST."""
    store = model_runs(cfg, stage)
    if publish:
        store.publish(run)
    else:
        store.close(run)


def catalog_texts(catalog: dict) -> list[str]:
    """What the small model's BPE tokenizer is trained on: the catalog and the task templates."""
    templates = [e.prompt + e.completion for e in examples.item_alignment(next(iter(catalog.values())))]
    templates += ["A user bought, in order: . Next they buy", "Their interests: mostly ; favourite brands ."]
    from gr2.rerank.prompt import build_rerank_messages, format_response, render_rerank_prompt

    sample = [item_text(c) for c in list(catalog.values())[:3]]
    templates.append(render_rerank_prompt(build_rerank_messages(sample[:1], sample[1:]))
                     + format_response("1. The user likes 2. Candidate 3. Decision", [c.sid for c in sample[1:]]))
    return templates * 50 + [f"{i.title}. {' > '.join(i.categories)}. {i.brand}" for i in catalog.values()]


def _max_positions(t) -> int:
    """Room for the longest row any stage packs (a small model's position table is fixed at build)."""
    return max(4096, t.max_len, t.midtrain.max_len or 0, t.sft.max_len or 0)


def base_model_path(cfg: Config, log=None) -> str:
    """The pretrained base's local folder: train.model.path, else the registry base (pulled on first use)."""
    from gr2.training import bases

    m = cfg.train.model
    if m.path:
        return m.path
    return str(bases.pull(m.base, m.cache_dir, log=log))


def prepare_base(cfg: Config, catalog: dict, shape: dict, out: Path) -> dict:
    """The base model with the SID vocabulary added, saved to `out`."""
    m = cfg.train.model
    if m.path or m.base:
        path = base_model_path(cfg)
        model, tok = load_model(path, trust_remote_code=m.trust_remote_code)
        source = m.path or f"{m.base} (registry base, {path})"
    else:
        built = lm.build_small_model(out.parent / "base", catalog_texts(catalog), family=m.family, vocab_size=m.vocab_size,
                                     hidden=m.hidden, layers=m.layers, heads=m.heads, max_positions=_max_positions(cfg.train),
                                     seed=cfg.train.seed)
        model, tok = load_model(built)
        source = f"small {m.family} (hidden {m.hidden}, {m.layers} layers), BPE {m.vocab_size} trained on the catalog"
    if cfg.train.prompt.sid_format == "tokens":
        added = lm.add_sid_tokens(model, tok, shape["levels"], shape["codes"], init=m.sid_init, seed=cfg.train.seed)
    else:  # SIDs written in the model's own vocabulary: nothing to add
        added = {"added": 0, "vocab_before": len(tok), "vocab_after": len(tok)}
    lm.save(model, tok, out, {"source": source, **shape, **added})
    params = sum(p.numel() for p in model.parameters())
    return {"source": source, "parameters": params, **added}


def midtrain(cfg: Config, steps: Steps | None = None) -> dict:
    """Stage 1: teach the LM the item language (alignment, sequential preference, persona)."""
    import ray.data

    from gr2.platform.ray_cluster import ensure_ray
    from gr2.rerank.formats import RerankFormat

    steps = steps or Steps(quiet=True)
    t, mt = cfg.train, cfg.train.midtrain
    lake = cfg.lake_path
    run, run_dir, resumed = start_run(cfg, "midtrain")
    fmt = RerankFormat.from_config(t.prompt)
    with steps.step(f"catalog and SID vocabulary{f' (resuming {run})' if resumed else ''}"):
        ensure_ray()
        catalog, shape = load_catalog(lake)
        base = prepare_base(cfg, catalog, shape, run_dir / "init")
    with steps.step("mid-training examples from Delta (Ray Data)"):
        show = fmt.show_sid  # SIDs as new tokens or as text, as the re-rank prompts will write them
        # One pipeline, two tasks: built once and held in the object store, since the counts, the mixture
        # and the packing each read it again (each lazy re-read rebuilt every example from gold.sequences).
        from_sequences = _sequence_examples(lake, catalog, cfg.etl.history_len, show).materialize()
        per_task = {
            "item_alignment": ray.data.from_items(
                [data.example_row(e) for item in catalog.values() for e in examples.item_alignment(item, show)]
            ),
            "sequential": from_sequences.filter(lambda r: r["task"] == "sequential"),
            "persona": from_sequences.filter(lambda r: r["task"] == "persona"),
        }
        if mt.task_weights.get("candidate_listing", 0) > 0:  # reads gold.slates only when asked for
            per_task["candidate_listing"] = _listing_examples(lake, catalog)
        available = {k: ds.count() for k, ds in per_task.items()}
        usable = {k: min(v, mt.max_examples) if mt.max_examples else v for k, v in available.items()}
        counts = examples.mixture_counts(usable, mt.task_weights)
        mixed = data.mixture_dataset(per_task, counts, available, t.seed)
        row_len = _row_len(t, mt)
        packed, rows, cut, _ = _pack(mixed, str(run_dir / "init"), row_len, batch_size=512)
    # A cut mid-training example lost the oldest part of its prompt (history items): tolerable, but shown.
    cut_note = f", {cut:,} cut to {row_len} tokens" if cut else ""
    with steps.step(f"Ray Train + {engines.engine_name(t)}: {sum(counts.values()):,} examples in {rows:,} rows{cut_note}") as live:
        out = loop.run(packed, model_path=str(run_dir / "init"), tokenizer_path=str(run_dir / "init"), run_dir=run_dir,
                       name=run, stage_cfg=mt, train_cfg=t, total_rows=rows, hook=LmLoss(), on_progress=_live(live))
    fmt.save(run_dir / "model")  # how this model spells SIDs: the next-item evaluation asks it that way
    if not out["paused"]:
        finish_run(cfg, "midtrain", run)
    summary = {"run": run, "base": base, "examples": counts, "available": available, "rows": rows, "cut_examples": cut, **out,
               "frozen_layers": t.freeze_layers, "final": _last_metrics(run_dir)}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


# The share of SFT examples that may be longer than a row and left out (beyond it the run is refused).
MAX_LEFT_OUT_SHARE = 0.01


def too_long_refusal(too_long: int, examples: int, row_len: int, longest: int) -> str | None:
    """Why SFT refuses to run when more than MAX_LEFT_OUT_SHARE of its examples are longer than a row
    (None: it runs, leaving those out)."""
    if too_long <= MAX_LEFT_OUT_SHARE * examples:
        return None
    return (f"{too_long:,} of {examples:,} SFT examples are longer than the row length of {row_len} tokens "
            f"(train.sft.max_len, else train.max_len): set train.sft.max_len to at least {longest} (the longest "
            "prompt + answer), or shorten the prompts (train.prompt.history, train.prompt.title_words, traces.reasoning)")


def _row_len(t, stage) -> int:
    return stage.max_len or t.max_len


def _pack(ds, tokenizer_path: str, max_len: int, batch_size: int):
    """(packed rows without the bookkeeping columns, row count, examples cut to fit max_len, longest example)."""
    from ray.data.aggregate import Max, Sum

    packed = ds.map_batches(data.packer(tokenizer_path, max_len), batch_size=batch_size, batch_format="numpy").materialize()
    rows = packed.count()  # known from the materialized blocks' metadata
    stats = packed.aggregate(Sum("cut"), Max("longest")) if rows else {}  # one pass, not one per statistic
    cut, longest = int(stats.get("sum(cut)") or 0), int(stats.get("max(longest)") or 0)
    # Materialized again: a lazy projection would need a CPU task while the trainer's workers hold them all.
    return packed.drop_columns(["cut", "longest"]).materialize(), rows, cut, longest


def _live(live):
    return lambda step, total, loss, tps: live.update(f"step {step:,}/{total:,}, loss {loss:.3f}, {tps:,.0f} tokens/s")


def _sequence_examples(lake: Path, catalog: dict, history_len: int, show):
    def build(row: dict) -> list[dict]:
        pairs = [(catalog.get(i), s) for i, s in zip(row["items"], row["split"])]
        pairs = [(c, s) for c, s in pairs if c is not None]  # items without a SID are skipped
        exs = examples.sequence_examples([c for c, _ in pairs], [s for _, s in pairs], history_len, show=show)
        return [data.example_row(e) for e in exs]

    return data.read_table(lake, "gold.sequences").flat_map(build)


def _listing_examples(lake: Path, catalog: dict):
    def build(row: dict) -> list[dict]:
        if row["split"] != "train" or any(i not in catalog for i in row["candidates"]):
            return []
        return [data.example_row(examples.candidate_listing([catalog[i] for i in row["candidates"]]))]

    return data.read_table(lake, "gold.slates").flat_map(build)


def _last_metrics(run_dir: Path) -> dict:
    import csv

    path = run_dir / "metrics.csv"
    if not path.exists():
        return {}
    rows = list(csv.DictReader(path.open()))
    return {"first": rows[0], "last": rows[-1]} if rows else {}


# -- SFT on teacher traces ---------------------------------------------------------------------------


def sft_example(prompt: str, response: str, candidate_sids: list[str], reasoning_weight: float, ranking_weight: float,
                fmt=None):
    """A canonical teacher trace as an SFT example in the student's format (`fmt`, the paper's by default):
    its reasoning and ranking parts weighted apart. None when the trace is not a valid permutation."""
    from gr2.rerank.formats import RerankFormat
    from gr2.rerank.prompt import parse_response

    fmt = fmt or RerankFormat()
    parsed = parse_response(response, candidate_sids)
    if not parsed.ok:
        return None
    answer = fmt.answer(parsed.reasoning or "", parsed.ranking, candidate_sids)
    cut = answer.index(fmt.ranking_marker())
    return Example("sft", prompt, answer, parts=[(answer[:cut], reasoning_weight), (answer[cut:], ranking_weight)])


def sft(cfg: Config, steps: Steps | None = None) -> dict:
    """Stage 2: supervised fine-tuning of the mid-trained model on accepted teacher traces."""
    from gr2.platform.ray_cluster import ensure_ray
    from gr2.rerank.formats import RerankFormat
    from gr2.training import traces as tr

    steps = steps or Steps(quiet=True)
    t, st = cfg.train, cfg.train.sft
    lake = cfg.lake_path
    run, run_dir, resumed = start_run(cfg, "sft")
    with steps.step(f"accepted traces and slates{f' (resuming {run})' if resumed else ''}"):
        ensure_ray()
        catalog, shape = load_catalog(lake)
        if st.init == "base":  # straight from the pretrained base (with the SID vocabulary when SIDs are tokens)
            base = run_dir / "init"
            if not (base / "config.json").exists():
                prepare_base(cfg, catalog, shape, base)
        else:
            base = Path(st.init) if st.init else latest_model(cfg, "midtrain")
        if st.init and not (base / "config.json").exists():
            raise FileNotFoundError(f"train.sft.init={st.init} holds no saved model (config.json); give a run's model/ folder")
        teacher = tr.teacher_name(cfg)
        traces = data.read_table(lake, "gold.traces").filter(lambda r: bool(r["accepted"]) and r["teacher"] == teacher)
        slates = Lake(lake).read_pandas("gold.slates", columns=["slate_id", "user_id", "history", "candidates", "target", "split"])
        fmt = RerankFormat.from_config(t.prompt)
        # The student's prompt is rendered here, in its own format and chat template; gold.traces keeps the
        # canonical prompt the teacher saw.
        tok = load_tokenizer(base)
        # Only the slates that have an accepted trace of this teacher need a prompt (rendering all of them
        # through a chat template took most of a minute on Beauty).
        accepted = Lake(lake).read_pandas("gold.traces", columns=["slate_id", "teacher", "accepted"])
        wanted = set(accepted["slate_id"][accepted["accepted"] & (accepted["teacher"] == teacher)])
        prompts, cands = {}, {}
        rows = slates[(slates["split"] == "train") & slates["slate_id"].isin(wanted)].to_dict("records")
        built = [(r, s) for r in rows if (s := slate_of_row(r, catalog, fmt.history)) is not None]
        # the cross-fitted sequence model's rank beside each candidate, when the format shows it
        for s in ev.annotate_rows(ev.for_format(fmt, lake), built, "train"):
            prompts[s.slate_id] = tr.prompt_of(s, fmt, tok)
            cands[s.slate_id] = [c.sid for c in s.candidates]

        def to_example(row: dict) -> list[dict]:
            if row["slate_id"] not in prompts:
                return []
            e = sft_example(prompts[row["slate_id"]], row["response"], cands[row["slate_id"]], st.reasoning_weight,
                            st.ranking_weight, fmt)
            # its length in tokens as packed, so the few longer than a row can be left out before packing
            return [{**data.example_row(e), "length": len(tokenize_example(tok, e)[0])}] if e else []

        exs = traces.flat_map(to_example)
        if st.max_examples:
            exs = exs.limit(st.max_examples)
        exs = exs.materialize()  # built (and tokenized) once: the count and the packing both read it
        n_examples = exs.count()
        if not n_examples:
            raise ValueError(f"gold.traces holds no accepted traces of teacher {teacher} for training slates; run "
                             "`gr2 traces` with the same traces.* settings first")
        row_len = _row_len(t, st)
        # A cut SFT example would lose its history or candidates but keep the answer that cites them: the
        # model would learn to write SIDs it was never shown. So an example longer than a row is never cut:
        # a few (a long title, another data set's longer category names) are left out and counted, and
        # more than that is refused, since the row length is then wrong for these prompts.
        too_long = exs.filter(lambda r: r["length"] > row_len).count()
        if refusal := too_long_refusal(too_long, n_examples, row_len, longest=int(exs.max("length"))):
            raise ValueError(refusal)
        if too_long:
            exs = exs.filter(lambda r: r["length"] <= row_len).materialize()
            n_examples -= too_long
        packed, rows, cut, _ = _pack(exs.drop_columns(["length"]).random_shuffle(seed=t.seed), str(base), row_len,
                                     batch_size=256)
        assert not cut, "examples longer than a row were left out above"
    left_out = f", {too_long:,} longer than {row_len} tokens left out" if too_long else ""
    with steps.step(f"Ray Train + {engines.engine_name(t)}: {n_examples:,} traces in {rows:,} rows{left_out}") as live:
        out = loop.run(packed, model_path=str(base), tokenizer_path=str(base), run_dir=run_dir, name=run,
                       stage_cfg=st, train_cfg=t, total_rows=rows, hook=LmLoss(), on_progress=_live(live))
    fmt.save(run_dir / "model")  # evaluation and DAPO ask this model in the form it was trained on
    if not out["paused"]:
        finish_run(cfg, "sft", run)
    summary = {"run": run, "base": {"source": str(base), "parameters": None}, "examples": {"sft": n_examples},
               "left_out_too_long": too_long, "rows": rows, **out, "frozen_layers": t.freeze_layers, "final": _last_metrics(run_dir)}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
