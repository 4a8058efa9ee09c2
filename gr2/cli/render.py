"""What the commands print: the summary tables of ingest, build, training, next-item and re-rank
evaluations and `gr2 eval` (the demo prints the same ones)."""

from __future__ import annotations

from rich.table import Table

from gr2.platform.progress import console


def fmt(v) -> str:
    return f"{v:,}" if isinstance(v, int) else str(v)


def print_ingest_summary(s: dict) -> None:
    t = Table(title=f"ingest {s['source']} ({s['date']})", title_justify="left")
    for col in ("records", "read", "accepted", "quarantined", "already published", "other dates"):
        t.add_column(col, justify="right" if col != "records" else "left")
    for kind, c in s["counts"].items():
        t.add_row(kind, *[fmt(c[k]) for k in ("read", "accepted", "quarantined", "duplicates_of_published", "other_dates")])
    console.print(t)
    for kind, c in s["counts"].items():
        console.print(f"  {kind}: read {c['read']:,} = accepted {c['accepted']:,} + quarantined {c['quarantined']:,}"
                      f" + duplicates of published {c['duplicates_of_published']:,}"
                      + (f" + other dates {c['other_dates']:,}" if c["other_dates"] else ""))
    if "files" in s:
        f = s["files"]
        console.print(f"  files: read {f['read']:,}, skipped {f['skipped']:,}, failed {f['failed']:,}")
    for kind, reasons in s["reasons"].items():
        for reason, n in reasons.items():
            console.print(f"  quarantined {kind}: {n:,} x {reason}")
    for item in s.get("failed_files") or []:
        console.print(f"  [red]failed file:[/] {item['file']} ({item['reason']}); quarantined as a file record, "
                      "the other files were ingested")
    skipped = s.get("skipped_files") or []
    for item in skipped[:20]:
        console.print(f"  skipped file: {item['file']} ({item['reason']})")
    if len(skipped) > 20:
        console.print(f"  ... and {len(skipped) - 20:,} more skipped files (all in the report)")
    for name, r in s["tables"].items():
        state = "unchanged" if r["skipped"] else f"+{r['rows_written']:,} rows"
        console.print(f"  {name}: {state} (version {r['version']})")
    console.print(f"  report: {s.get('report')}")


def print_build_summary(s: dict) -> None:
    console.print(f"users {s['users']:,}; examples {s['examples']}; slates published {s['slates']:,} "
                  f"(K={s['k']}, split {s['protocol']}, policy {s['policy']})")
    if "time_cuts" in s:
        console.print(f"  time cuts: {s['time_cuts']}")
    console.print(f"  pre-ranker coverage (target in top K): {s['coverage']}")
    if "logged_slates" in s:
        console.print(f"  logged slates: {s['logged_slates']}")
    if s.get("unused_events"):
        console.print(f"  events in no sequence or slate (neither a positive event nor an impression): {s['unused_events']}")
    t = Table(title="incoming (pre-ranker) order on the published slates", title_justify="left")
    t.add_column("split")
    metrics = ["slates", "R@1", "R@3", "R@5", "NDCG@3", "NDCG@5"]
    for m in metrics:
        t.add_column(m, justify="right")
    for split, row in s["incoming_order"].items():
        t.add_row(split, *[fmt(row[m]) if m == "slates" else f"{row[m]:.4f}" for m in metrics])
    console.print(t)
    console.print(f"  report: {s.get('report')}")


def print_train_summary(s: dict) -> None:
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


def print_next_item(r: dict) -> None:
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


def print_rerank(r: dict) -> None:
    mode = "constrained ranking" if r.get("constrained") else "free answers"
    t = Table(title=f"re-ranking {r['slates']:,} {r['split']} slates ({mode}): valid JSON permutation {r['valid_share']:.1%}, "
                    f"JSON answer shape {r['json_share']:.1%}")
    t.add_column("order")
    for k in r["model"]:
        t.add_column(k, justify="right")
    t.add_row("incoming (pre-ranker)", *[f"{v:.4f}" for v in r["incoming"].values()])
    t.add_row("model (invalid answers keep the incoming order)", *[f"{v:.4f}" for v in r["model"].values()])
    console.print(t)


def print_eval(r: dict) -> None:
    from gr2.eval import jobs, report

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
    diffs = r.get("differences") or []
    if diffs:
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
    console.print(f"report: {r['report']}")
