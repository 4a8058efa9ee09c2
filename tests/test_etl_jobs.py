"""ETL jobs end to end on real local Spark + Delta + Great Expectations: a company's event logs with
bad records and logged slates, idempotent daily ingest, the build's slates, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from pyspark.sql import functions as F
from typer.testing import CliRunner

from gr2.cli import app
from gr2.config import load_config
from gr2.etl import jobs
from gr2.platform.lake import Lake

ITEMS = [{"item_id": f"i{n}", "title": f"Item {n}", "categories": ["Dept", f"Leaf{n % 3}"], "brand": "B"} for n in range(1, 13)]


def _day_events(day: int, users=("u1", "u2", "u3", "u4")):
    out = []
    for ui, u in enumerate(users):
        for j in range(3):
            item = f"i{(ui * 3 + j + day) % 12 + 1}"
            out.append({"user_id": u, "item_id": item, "ts": f"2024-03-{day:02d}T{10 + j}:00:{ui:02d}Z", "event": "purchase"})
    return out


GOOD = _day_events(1) + _day_events(2) + _day_events(3)
BAD_LINES = [
    '{"user_id": "u1", "item_id": "i1", "ts": ',  # malformed JSON
    json.dumps({"user_id": "", "item_id": "i1", "ts": "2024-03-01T00:00:00Z"}),  # empty user
    json.dumps({"user_id": "u1", "item_id": "i1", "ts": "yesterday"}),  # unparseable ts
    json.dumps({"user_id": "u1", "item_id": "i1", "ts": "1971-01-01T00:00:00Z"}),  # absurd ts
    json.dumps({"user_id": "u1", "item_id": "ghost", "ts": "2024-03-01T09:00:00Z", "event": "purchase"}),  # no metadata
    json.dumps(GOOD[0]),  # duplicate of the first good event
]
SLATES = [
    # s1: a logged slate of K=3 with a click -> kept as it is
    *[{"user_id": "u1", "item_id": f"i{n}", "ts": "2024-03-02T20:00:00Z", "event": "impression", "slate_id": "s1", "position": p}
      for p, n in enumerate([5, 6, 7], start=1)],
    {"user_id": "u1", "item_id": "i6", "ts": "2024-03-02T20:00:05Z", "event": "click", "slate_id": "s1"},
    # s2: shown, never clicked -> quarantined at build
    *[{"user_id": "u2", "item_id": f"i{n}", "ts": "2024-03-02T21:00:00Z", "event": "impression", "slate_id": "s2", "position": p}
      for p, n in enumerate([1, 2, 3], start=1)],
]


def write_logs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "items.jsonl").write_text("\n".join(json.dumps(i) for i in ITEMS) + "\n")
    lines = [json.dumps(e) for e in GOOD] + BAD_LINES + [json.dumps(e) for e in SLATES]
    (folder / "events.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def cfg_for(lake: Lake, logs: Path, *sets: str):
    return load_config(
        overrides=["etl.source=events", f"etl.path={logs}", "etl.k=3", "etl.history_len=4", "etl.prerank.policy=insert", *sets],
        lake=str(lake.root),
    )


def snapshot(spark, lake: Lake) -> dict:
    out = {}
    for table in ("bronze.events", "silver.items", "silver.interactions", "quarantine"):
        df = lake.read(spark, table)
        out[table] = (lake.version(spark, table), sorted(map(str, df.drop("ingest_date").collect())))
    return out


def test_ingest_quarantines_bad_records_conserves_counts_and_is_idempotent(spark, lake, tmp_path):
    logs = write_logs(tmp_path / "logs")
    cfg = cfg_for(lake, logs)
    s = jobs.ingest(spark, cfg)
    c = s["counts"]["interactions"]
    n_lines = len(GOOD) + len(BAD_LINES) + len(SLATES)
    assert c["read"] == n_lines == c["accepted"] + c["quarantined"]
    assert c["quarantined"] == len(BAD_LINES) and c["accepted"] == len(GOOD) + len(SLATES)
    q = {r.line: r.reason for r in lake.read(spark, "quarantine").where("kind = 'interactions'").collect()}
    first_bad = len(GOOD) + 1
    assert q[first_bad].startswith("malformed JSON")
    assert q[first_bad + 1] == "missing or empty user_id"
    assert q[first_bad + 2].startswith("unparseable timestamp")
    assert q[first_bad + 3].startswith("absurd timestamp")
    assert q[first_bad + 4] == "event for an item with no metadata"
    assert q[first_bad + 5] == "duplicate event"
    assert lake.read(spark, "silver.interactions").count() == len(GOOD) + len(SLATES)
    assert lake.read(spark, "bronze.events").count() == n_lines + len(ITEMS)

    before = snapshot(spark, lake)
    again = jobs.ingest(spark, cfg)
    assert all(t["skipped"] for t in again["tables"].values())
    assert snapshot(spark, lake) == before, "ingesting the same data again changes nothing"
    # ...and says so: every record accepted before is now a duplicate of a published one
    for kind in ("interactions", "items"):
        first, second = s["counts"][kind], again["counts"][kind]
        assert first["duplicates_of_published"] == 0 and first["accepted"] > 0
        assert second == {**first, "accepted": 0, "duplicates_of_published": first["accepted"]}, kind


def test_daily_ingest_takes_one_day_and_reruns_change_nothing(spark, lake, tmp_path):
    from datetime import date

    logs = write_logs(tmp_path / "logs")
    cfg = cfg_for(lake, logs)
    d1 = jobs.ingest(spark, cfg, date(2024, 3, 1))
    c = d1["counts"]["interactions"]
    assert c["accepted"] == len(_day_events(1)) and c["read"] == c["accepted"] + c["quarantined"] + c["other_dates"]
    jobs.ingest(spark, cfg, date(2024, 3, 2))
    before = snapshot(spark, lake)
    jobs.ingest(spark, cfg, date(2024, 3, 1))
    assert snapshot(spark, lake) == before
    days = {r.d for r in lake.read(spark, "silver.interactions").select(F.to_date("ts").alias("d")).collect()}
    assert {str(d) for d in days} == {"2024-03-01", "2024-03-02"}


def test_build_publishes_valid_slates_and_quarantines_unclicked_logged_slates(spark, lake, tmp_path):
    logs = write_logs(tmp_path / "logs")
    cfg = cfg_for(lake, logs)
    jobs.ingest(spark, cfg)
    s = jobs.build(spark, cfg)
    slates = lake.read(spark, "gold.slates").collect()
    assert len(slates) == s["slates"] > 0
    for row in slates:
        assert len(row.candidates) == len(set(row.candidates)) == 3
        assert sum(row.labels) >= 1 and row.target in row.candidates
        assert row.candidates[row.target_position] == row.target
        assert row.split in ("train", "valid", "test")
    logged = [r for r in slates if r.origin == "logged"]
    assert [(r.slate_id, r.candidates, r.labels, r.target) for r in logged] == [("s1", ["i5", "i6", "i7"], [0, 1, 0], "i6")]
    assert logged[0].history and all(h in {e["item_id"] for e in GOOD if e["user_id"] == "u1"} for h in logged[0].history)
    assert s["logged_slates"] == {"accepted": 1, "quarantined": 1}
    q = lake.read(spark, "quarantine").where("stage = 'build'").collect()
    assert [r.reason for r in q] == ["slate without the clicked item"] and "s2" in q[0].raw
    # every example of the insert policy becomes a slate; test slates exist for every user
    assert s["examples"]["test"] == 4 and sum(1 for r in slates if r.split == "test" and r.origin == "prerank") == 4
    seq = {r.user_id: r for r in lake.read(spark, "gold.sequences").collect()}
    assert seq["u1"].split[-2:] == ["valid", "test"] and seq["u1"].n_items == 10


def test_cli_prints_conservation_and_fails_clearly(spark, lake, tmp_path):
    logs = write_logs(tmp_path / "logs")
    (logs / "notes.txt").write_text("not data")
    (logs / "broken.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00 not a gzip stream")
    runner = CliRunner()
    args = ["--source", "events", "--path", str(logs), "--lake", str(lake.root), "--set", "etl.k=3"]
    res = runner.invoke(app, ["etl", "ingest", *args])
    assert res.exit_code == 0, res.output  # one corrupt file does not stop the run
    out = " ".join(res.output.split())
    assert "skipped file:" in out and "notes.txt (not a data file" in out
    assert "failed file:" in out and "broken.jsonl.gz (corrupt gzip file" in out
    n = len(GOOD) + len(BAD_LINES) + len(SLATES)
    assert (f"interactions: read {n:,} = accepted {len(GOOD) + len(SLATES):,} + quarantined {len(BAD_LINES):,} "
            f"+ duplicates of published 0") in out
    assert "files: read 2, skipped 1, failed 1" in out
    # the failed file is one quarantine row of kind "file" (tests/test_hostile_input.py ingests one twice)
    rows = lake.read(spark, "quarantine").where("kind = 'file'").collect()
    assert [(r.file.rsplit("/", 1)[-1], r.line, r.raw, r.reason.split(":")[0]) for r in rows] == [
        ("broken.jsonl.gz", 0, "", "corrupt gzip file")]
    missing = runner.invoke(app, ["etl", "ingest", "--source", "events", "--path", str(tmp_path / "nope"), "--lake", str(lake.root)])
    assert missing.exit_code == 2 and "nope" in missing.output
    bad_key = runner.invoke(app, ["etl", "build", "--lake", str(lake.root), "--set", "etl.kk=3"])
    assert bad_key.exit_code == 2 and "etl.kk" in bad_key.output


def test_cli_gate_failure_exits_3_and_keeps_published_slates(spark, lake, tmp_path):
    logs = write_logs(tmp_path / "logs")
    runner = CliRunner()
    base = ["--lake", str(lake.root), "--set", f"etl.path={logs}", "--set", "etl.source=events"]
    assert runner.invoke(app, ["etl", "ingest", *base]).exit_code == 0
    assert runner.invoke(app, ["etl", "build", *base, "--set", "etl.k=3"]).exit_code == 0
    version = lake.version(spark, "gold.slates")
    # 12 items cannot fill slates of 20 distinct candidates: the gate refuses and says how many rows broke
    res = runner.invoke(app, ["etl", "build", *base, "--set", "etl.k=20", "--set", "etl.prerank.policy=insert"])
    assert res.exit_code == 3, res.output
    assert "quality gate refused gold.slates" in res.output and "n_distinct_candidates" in res.output
    assert "row(s) broke it" in res.output
    assert lake.version(spark, "gold.slates") == version


def test_training_slates_are_pre_ranked_out_of_fold(spark, tmp_path):
    """Users with disjoint items: a training target can only reach its slate's candidates through its own
    user's transition. Fitted on everything (oof_folds=0) it does, which is the leak; out of fold it scores
    0, like every held-out target (whose transition no fit ever sees)."""
    folder = tmp_path / "logs"
    folder.mkdir()
    users = [f"u{n}" for n in range(6)]
    items = [{"item_id": f"{u}-i{j}", "title": f"{u} item {j}", "categories": ["Dept"], "brand": "B"} for u in users for j in range(8)]
    events = [{"user_id": u, "item_id": f"{u}-i{j}", "ts": f"2024-03-{1 + j:02d}T10:00:00Z", "event": "purchase"}
              for u in users for j in range(8)]
    (folder / "items.jsonl").write_text("\n".join(json.dumps(i) for i in items) + "\n")
    (folder / "events.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    target_scores = {}
    for folds in (0, 2):
        lake = Lake(tmp_path / f"lake{folds}")
        cfg = cfg_for(lake, folder, f"etl.prerank.oof_folds={folds}")
        jobs.ingest(spark, cfg)
        summary = jobs.build(spark, cfg)
        assert summary["oof_folds"] == folds
        rows = lake.read(spark, "gold.slates").where("origin = 'prerank'").collect()
        target_scores[folds] = {split: [r.scores[r.target_position] for r in rows if r.split == split]
                                for split in ("train", "test")}
    assert len(target_scores[0]["train"]) == len(target_scores[2]["train"]) > 0
    assert all(s > 0 for s in target_scores[0]["train"]), "fitted on everything, a training target votes for itself"
    assert all(s == 0 for s in target_scores[2]["train"]), "out of fold, no training target sees its own transition"
    assert all(s == 0 for s in target_scores[0]["test"] + target_scores[2]["test"])
