"""`gr2 eval`: every re-ranker on the same test slates, with intervals, diagnostics, a report and a row
per metric in eval.runs.

Re-rankers: the incoming order (the pre-ranker), popularity, a SASRec-style sequential model trained
on the same training split, and each trained LM stage found in the lake: the mid-trained model ranks
candidates by the likelihood of their SID after the user's history; the SFT and DAPO models answer
the re-rank prompt (an invalid answer keeps the incoming order and counts against the valid share).
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

from gr2.config import Config
from gr2.eval import baselines, diagnostics, report, runs
from gr2.eval.answers import AnswerLog
from gr2.models import sasrec
from gr2.platform.lake import Lake
from gr2.platform.progress import Steps

STAGES = ("midtrain", "sft", "dapo")


def sid_likelihood_orders(model, tok, cases, history_len: int, on_progress=None, fmt=None) -> list[list[int]]:
    """Order candidates by log p(SID + end of text | "A user bought, in order: ... Next they buy"): the
    mid-training `sequential` example, tokenized exactly as it was trained (`next_item_ids`)."""
    from gr2.models.ranking import Prefix
    from gr2.rerank.catalog import CatalogItem

    orders = []
    for n, (s, _labels) in enumerate(cases):
        hist = [CatalogItem(h.item_id, h.sid, h.title) for h in s.history][-history_len:]
        pairs = [next_item_ids(tok, hist, c, fmt) for c in s.candidates]
        # The history prompt runs once; the candidates' SIDs are scored behind it in one row (tree mask).
        prefix = Prefix(model, pairs[0][0])
        orders.append(sasrec.order_by_scores(prefix.score([c for _, c in pairs])))
        if on_progress:
            on_progress(n + 1, len(cases))
    return orders


def next_item_ids(tok, history, candidate, fmt=None) -> tuple[list[int], list[int]]:
    """(prompt ids, continuation ids) of the mid-training example "history -> candidate", as
    `text.tokenize_example` builds it: the prompt and the completion (" " + SID) tokenized apart,
    then end of text. The SID's leading space belongs to its first token (" a12" with text SIDs), and
    the end of text keeps a SID from scoring as the prefix of a longer one (" d3" of " d31")."""
    from gr2.models.text import sequential, tokenize_example
    from gr2.rerank.formats import RerankFormat

    fmt = fmt or RerankFormat()
    ids, weights = tokenize_example(tok, sequential(history, candidate, fmt.show_sid))
    cut = weights.count(0.0)  # the prompt (with its BOS) is the part that carries no loss
    return ids[:cut], ids[cut:]


# The rows every other learned row is compared with, slate by slate (paired bootstrap).
BASELINES = ("incoming order", "SASRec-style")


def sasrec_baseline(cfg: Config) -> tuple[sasrec.SASRec, str, bool]:
    """(SASRec-style ranker, where it came from, whether it is fitted already). With `eval.sasrec: reuse`
    and sequence models in the lake, the all-users model `gr2 traces` fitted: the same architecture on the
    same training items (every user's, no validation or test item), and the model whose ranks the prompt
    shows, so an LM row above it has learned more than to copy its evidence. It saves the minutes of
    fitting another one."""
    from gr2.models import evidence

    if cfg.eval.sasrec == "reuse":
        try:
            ev = evidence.load(cfg.lake_path)
        except FileNotFoundError:
            pass
        else:
            return ev.full, f"the lake's all-users sequence model, {ev.run}", True
    model = sasrec.SASRec(sasrec.SASRecConfig(max_seconds=cfg.eval.sasrec_seconds, seed=cfg.train.seed))
    return model, f"trained here, up to {cfg.eval.sasrec_seconds:.0f} s", False


def _row(name: str, input_ranks: list[int], orders: list[list[int] | None], k: int, seed: int, llm: bool) -> dict:
    outs = diagnostics.output_ranks(input_ranks, orders)
    positions = [o if o is not None else i for o, i in zip(outs, input_ranks)]  # invalid: keep the incoming order
    row = {"model": name, "metrics": report.metrics_with_ci(positions, seed=seed), "positions": positions}
    if llm:
        row["diagnostics"] = {
            "valid_rate": diagnostics.valid_rate(orders), "order_copy_rate": diagnostics.order_copy_rate(orders),
            "mean_displacement": diagnostics.mean_displacement(orders),
            "landing": diagnostics.target_landing(input_ranks, outs, k).tolist(),
        }
    return row


def run(spark, cfg: Config, steps: Steps | None = None, split: str = "test", stages: tuple[str, ...] = STAGES) -> dict:
    """Every re-ranker on the same `split` slates, with the budget of `cfg.eval`."""
    from gr2.models.engines import check_installed
    from gr2.models.lm import load_model
    from gr2.models.slates import cases_of, rerank_rows
    from gr2.platform.precision import use_autocast
    from gr2.platform.run_store import latest_model
    from gr2.rerank.catalog import load_catalog
    from gr2.rerank.formats import RerankFormat

    check_installed(cfg.eval.engine, "eval.engine")  # before minutes of baselines, not after
    steps = steps or Steps(quiet=True)
    lake = cfg.lake_path
    run_id = f"eval-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
    with steps.step(f"{split} slates and training sequences"):
        catalog, _ = load_catalog(lake)
        # One positive per slate; gold.slates is read once, and each stage's format renders these rows.
        slate_rows = [(r, s) for r, s in rerank_rows(lake, catalog, split, cfg.eval.slates, cfg.train.seed,
                                                         max(10, cfg.train.prompt.history)) if sum(r["labels"]) == 1]
        cases = cases_of(slate_rows, lake, split)
        if not cases:
            raise ValueError(f"no {split} slates with SIDs and one positive; run `gr2 etl build` and `gr2 tokenizer assign`")
        seqs = Lake(lake).read_pandas("gold.sequences", columns=["items", "split"])
        train = sasrec.training_sequences(zip(seqs["items"], seqs["split"]))
        k = len(cases[0][0].candidates)
        input_ranks = [labels.index(1) for _, labels in cases]
        plain = [{"history": [h.item_id for h in s.history], "candidates": [c.item_id for c in s.candidates]} for s, _ in cases]
    # What writes the answers beyond HF: part of the answer log's key (HF's key stays as it was) and of the summary.
    engine_settings = {} if cfg.eval.engine == "hf" else {"engine": cfg.eval.engine, "compute_type": cfg.eval.compute_type}
    rows = []
    sasrec_model, sasrec_source, sasrec_fitted = sasrec_baseline(cfg)
    for name, ranker, source, fitted in (("incoming order", baselines.IncomingOrder(), "", False),
                                         ("popularity", baselines.Popularity(), "", False),
                                         ("SASRec-style", sasrec_model, sasrec_source, sasrec_fitted)):
        with steps.step(f"baseline: {name}" + (f" ({source})" if source else "")):
            if not fitted:
                ranker.fit(train)
            orders = ranker.rank_many([p["history"] for p in plain], [p["candidates"] for p in plain]) \
                if hasattr(ranker, "rank_many") else [ranker.rank(p["history"], p["candidates"]) for p in plain]
            rows.append(_row(name, input_ranks, orders, k, cfg.train.seed, llm=False))
    for stage in stages:
        try:
            model_dir = latest_model(cfg, stage)
        except FileNotFoundError:
            continue
        model, tok = load_model(model_dir)
        model.eval()
        fmt = RerankFormat.of_model(model_dir, RerankFormat.from_config(cfg.train.prompt))  # as it was trained
        asked = cases
        if stage != "midtrain" and fmt.evidence != "none":  # the same slates, each candidate with its evidence
            asked = cases_of(slate_rows, lake, split, fmt)
        with steps.step(f"{stage} model ({model_dir.parent.name})") as live:
            progress = lambda i, n: live.update(f"{i}/{n}")  # noqa: E731
            if stage == "midtrain":
                orders = sid_likelihood_orders(model, tok, cases, cfg.etl.history_len, progress, fmt)
                row = _row("mid-trained (SID likelihood)", input_ranks, orders, k, cfg.train.seed, llm=False)
            else:
                from gr2.models.engines import NAMES, load_generator
                from gr2.models.ranking import rerank_answers

                name = {"sft": "SFT", "dapo": "DAPO"}[stage]
                modes = ("free", "constrained") if cfg.eval.constrained else ("free",)
                autocast = use_autocast(cfg.train.autocast)
                # Answers already written with these settings (a stopped run) are read, not asked again.
                log = AnswerLog.for_model(lake, stage, model_dir, {
                    "split": split, "max_new_tokens": cfg.eval.max_new_tokens, "modes": modes,
                    "batch": cfg.eval.batch, "autocast": autocast, "format": fmt.to_json(), **engine_settings})
                done = log.load()
                if done:
                    live.update(f"{len([1 for s, _ in asked if s.slate_id in done])} answers from {log.path.name}")
                if cfg.eval.engine != "hf":
                    live.update(f"{NAMES[cfg.eval.engine]} {cfg.eval.compute_type} copy of the model")
                generator = load_generator(cfg.eval.engine, model_dir, tok, cfg.eval.compute_type, batch_size=cfg.eval.batch)
                answers = rerank_answers(model, tok, asked, cfg.eval.max_new_tokens, modes, progress, fmt=fmt,
                                         batch_size=cfg.eval.batch, autocast=autocast, done=done,
                                         on_answer=log.append, generator=generator)
                for mode in modes:
                    orders, shaped = answers[mode]
                    row = _row(name + (" + constrained ranking" if mode == "constrained" else ""), input_ranks, orders,
                               k, cfg.train.seed, llm=True)
                    row["diagnostics"]["json_shape_rate"] = shaped / len(cases)
                    row["model_dir"] = str(model_dir)
                    rows.append(row)
                continue
            row["model_dir"] = str(model_dir)
            rows.append(row)
    # Paired differences: the baselines and every learned row (not popularity) against each baseline.
    positions = {r["model"]: r.pop("positions") for r in rows}
    against = [b for b in BASELINES if b in positions]
    models = [name for name in positions if name not in ("incoming order", "popularity")]
    result = {"run_id": run_id, "created_at": datetime.now(timezone.utc).isoformat(), "dataset": str(lake),
              "split": split, "n_slates": len(cases), "k": k, "rows": rows, "sasrec_source": sasrec_source,
              "engine": " ".join(engine_settings.values()) or "hf",
              "differences": report.differences(positions, models, against, seed=cfg.train.seed)}
    with steps.step("report and eval.runs"):
        out = lake / "reports" / "eval" / run_id
        result["report"] = str(report.write_report(out, result))
        runs.publish(spark, lake, result)
    return result


def comparison(spark, cfg: Config, run_a: str, run_b: str) -> str:
    return runs.format_compare(runs.compare(spark, cfg.lake_path, run_a, run_b))


def fmt(value) -> str:
    mean, low, high = report.as_triple(value)
    return f"{mean:.4f}" if low is None or not math.isfinite(low) else f"{mean:.4f} [{low:.3f}, {high:.3f}]"


def fmt_diff(value) -> str:
    """A paired difference as "+0.0250 [+0.005, +0.045] *" (* = the interval excludes 0)."""
    mean, low, high = report.as_triple(value)
    if low is None or not math.isfinite(low):
        return f"{mean:+.4f}"
    return f"{mean:+.4f} [{low:+.3f}, {high:+.3f}]" + (" *" if report.excludes_zero(value) else "")
