"""`gr2 nightly` on real Spark + Delta + GE + Ray Train: a failed night resumes at the failed step, a late
file with new items gets SIDs without touching old ones, a rerun of a date changes no table, and a broken
published table stops the night with the gate's exit code."""

from __future__ import annotations

import json
from datetime import date

import pytest
from pyspark.sql import functions as F
from typer.testing import CliRunner

from gr2.cli import app
from gr2.config import load_config
from gr2.etl import synthetic
from gr2.pipelines import nightly as nl
from gr2.pipelines.reports import validations
from gr2.platform import exits
from gr2.platform.contracts import CONTRACTED

D1, D2 = date(2026, 1, 2), date(2026, 1, 3)


def _statuses(summary: dict) -> dict[str, str]:
    return {s["name"]: s["status"] for s in summary["steps"]}


def _snapshot(spark, lake) -> dict:
    """Version and content (sorted rows) of every table the nightly job writes."""
    out = {}
    for t in ("bronze.events", "silver.interactions", "silver.items", "gold.sequences", "gold.slates",
              "gold.item_embeddings", "gold.sid_codebook"):
        df = lake.read(spark, t)
        rows = sorted(map(str, df.drop(*[c for c in df.columns if c in ("assigned_at",)]).collect()))
        out[t] = (lake.version(spark, t), hash(tuple(rows)))
    return out


def test_dates_and_backfill_ranges():
    assert nl.dates("2026-01-02", None, None) == [D1]
    assert nl.dates(None, "2026-01-02", "2026-01-04") == [D1, D2, date(2026, 1, 4)]
    for args, message in [(("2026-01-02", "2026-01-02", None), "not both"), ((None, "2026-01-02", None), "both --from and --to"),
                          ((None, "2026-01-03", "2026-01-02"), "before --from")]:
        with pytest.raises(ValueError, match=message):
            nl.dates(*args)


def cfg_overrides(landing) -> list[str]:
    return [
        "etl.source=events", f"etl.path={landing}", "etl.synthetic.users=150", "etl.synthetic.items=120",
        "etl.synthetic.days=2", "etl.synthetic.end_date=2026-01-03", "etl.synthetic.bad_record_rate=0",
        "tokenizer.levels=3", "tokenizer.codes=16", "tokenizer.hidden_dims=[64]", "tokenizer.latent_dim=16",
        "tokenizer.epochs=4", "tokenizer.batch_size=64",
    ]


def test_nightly_resumes_is_idempotent_and_assigns_new_items(spark, lake, tmp_path, monkeypatch):
    landing = tmp_path / "landing"
    cfg = load_config(overrides=cfg_overrides(landing), lake=str(lake.root))
    synthetic.generate(spark, cfg.etl.synthetic, landing)

    # Night 1 fails in build: ingest's work is kept, later steps do not run, the exit code says "retry".
    monkeypatch.setenv(nl.FAIL_ENV, "build")
    s = nl.run_night(spark, cfg, D1, quiet=True)
    assert s["exit_code"] == exits.FAILED
    assert _statuses(s) == {"ingest": "ok", "build": "failed", "embed": "not-run", "sids": "not-run",
                            "quality": "not-run", "publish": "not-run"}
    assert "injected failure" in s["steps"][1]["error"]
    assert json.loads((lake.root / "reports" / "nightly" / f"{D1}.json").read_text())["exit_code"] == exits.FAILED
    ingest = s["steps"][0]
    assert ingest["read"] == ingest["written"] + ingest["rejected"] + ingest["details"]["counts"]["interactions"]["other_dates"]

    # The rerun resumes at build; the first night fits the tokenizer.
    monkeypatch.delenv(nl.FAIL_ENV)
    s = nl.run_night(spark, cfg, D1, quiet=True)
    assert s["exit_code"] == exits.OK
    assert _statuses(s) == {"ingest": "up-to-date", "build": "ok", "embed": "ok", "sids": "ok", "quality": "ok", "publish": "ok"}
    assert "first night: fitted tokenizer" in s["steps"][3]["note"]
    published = json.loads((lake.root / "_nightly" / "published.json").read_text())
    assert published["date"] == str(D1) and published["versions"]["gold.sid_codebook"] is not None
    pinned = {t: e["version"] for t, e in json.loads((lake.root / "_manifest.json").read_text())["tables"].items()}
    assert all(pinned[t] == v for t, v in published["versions"].items()), "published.json and the lake manifest agree"
    old_sids = {r.item_id: r.sid for r in lake.read(spark, "gold.sid_codebook").collect()}
    assert len(old_sids) == 120

    # A late file brings three new items (and events on them) before night 2.
    items = [json.loads(x) for x in (landing / "items.jsonl").read_text().splitlines()[:3]]
    new = [{**it, "item_id": f"late-{i}", "title": f"{it['title']} (new edition {i})"} for i, it in enumerate(items)]
    (landing / "items_late.jsonl").write_text("".join(json.dumps(x) + "\n" for x in new))
    users = [r.user_id for r in lake.read(spark, "silver.interactions").select("user_id").distinct().limit(3).collect()]
    (landing / "events_late.jsonl").write_text("".join(
        json.dumps({"user_id": u, "item_id": it["item_id"], "ts": f"{D2}T23:00:0{i}Z", "event": "click"}) + "\n"
        for i, (u, it) in enumerate(zip(users, new))))
    s = nl.run_night(spark, cfg, D2, quiet=True)
    assert s["exit_code"] == exits.OK
    st = _statuses(s)
    assert st["ingest"] == st["build"] == st["embed"] == st["sids"] == "ok"
    assert s["steps"][2]["written"] == 3  # only the new items were embedded
    book = {r.item_id: r.sid for r in lake.read(spark, "gold.sid_codebook").collect()}
    assert len(book) == 123 and len(set(book.values())) == 123
    assert all(book[i] == sid for i, sid in old_sids.items())  # old items keep their SIDs

    # Rerunning night 2 changes no table: every derived step is up to date, ingest's MERGE writes nothing.
    before = _snapshot(spark, lake)
    s = nl.run_night(spark, cfg, D2, quiet=True)
    assert s["exit_code"] == exits.OK
    assert set(_statuses(s).values()) == {"up-to-date"}
    before_d1 = _snapshot(spark, lake)
    s = nl.run_night(spark, cfg, D1, quiet=True)  # an older date, after a later one ran
    assert s["exit_code"] == exits.OK and s["steps"][0]["written"] == 0
    assert all(r["status"] == "up-to-date" for r in s["steps"][1:])
    assert _snapshot(spark, lake) == before == before_d1

    # A duplicate slipped into a published table behind the gates' back: `gr2 quality run` (the nightly quality
    # step's function, contracts.recheck) refuses it with exit 3, naming the table and the check; readers
    # still see the published version, and the results sit with every gate's (`gr2 quality report`).
    published = lake.version(spark, "silver.items")
    path = str(lake.path("silver.items"))
    spark.read.format("delta").load(path).limit(1).write.format("delta").mode("append").save(path)
    sets = [x for o in cfg_overrides(landing) for x in ("--set", o)]
    res = CliRunner().invoke(app, ["quality", "run", "--lake", str(lake.root), *sets], env={"COLUMNS": "200"})
    out = " ".join(res.output.split())
    assert res.exit_code == exits.GATE, res.output
    lines = {ln.split()[1]: ln for ln in res.output.splitlines() if ln.split()[:1] in (["ok"], ["FAILED"], ["skipped"])}
    assert set(lines) == set(CONTRACTED) and lines["silver.items"].split()[0] == "FAILED", res.output
    assert all(lines[t].split()[0] != "FAILED" for t in CONTRACTED if t != "silver.items"), res.output
    assert f"quality gate refused silver.items (version {published + 1}): 1 check(s) failed" in out
    assert "expect_column_values_to_be_unique on item_id: 2 row(s) broke it" in out
    assert f"readers still see version {published}" in out and "Traceback" not in res.output
    assert [v.success for v in validations(lake.root) if v.suite == "silver_items_recheck_gate"] == [False]
    assert lake.read(spark, "silver.items").where(F.col("item_id").startswith("late-")).count() == 3


def test_a_date_partitioned_landing_folder_is_read_one_night_at_a_time(tmp_path):
    cfg = load_config(overrides=["etl.source=events", "etl.path=/data/logs/dt={date}"], lake=str(tmp_path))
    night = nl.Night(None, cfg, D1)
    assert night.cfg.etl.path == "/data/logs/dt=2026-01-02" and cfg.etl.path.endswith("{date}")
    plain = load_config(overrides=["etl.source=events", "etl.path=/data/logs"], lake=str(tmp_path))
    assert nl.Night(None, plain, D1).cfg is plain
