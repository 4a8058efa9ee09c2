"""The ETL under hostile input, on real local Spark + Delta + Great Expectations.

Every class of tests/hostile_corpus.py goes into one landing folder beside good files. A seed run
(`ingest` for day D0) publishes D0's events and the catalog; the run under test (`ingest` of all days, on
another run date) must then give every class its expected outcome, and these guarantees must hold for
all of them: every file under the input ends read, skipped or failed with a reason; every record of a
read file is in bronze and, per record, read = accepted + quarantined + duplicates of published; good
records are never lost; a bad line ingested twice leaves one quarantine row.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import hostile_corpus as hc

from gr2.config import EtlConfig, load_config
from gr2.etl import gold, jobs
from gr2.etl.transforms import FILE_KIND


def _expected(cases, landing: Path) -> dict:
    """{(kind, file, line): Rec} for every record of every file the ETL must read."""
    out = {}
    for case in cases:
        for f in case.files:
            if f.fate == "read" and f.link is None:
                path = str((landing / f.path).resolve())
                out.update({(f.kind, path, line): rec for line, rec in f.records.items()})
    return out


def test_every_file_and_record_of_the_hostile_corpus_is_accounted_for(spark, lake, tmp_path):
    landing = tmp_path / "landing"
    cases = hc.corpus(datetime.now(timezone.utc))
    assert len(cases) >= 25
    hc.write(cases, landing)
    cfg = load_config(overrides=["etl.source=events", f"etl.path={landing}"], lake=str(lake.root))

    seed = jobs.ingest(spark, cfg, hc.D0.date())
    run = jobs.ingest(spark, cfg)

    # -- files: read, skipped or failed, each with its reason ----------------------------------------
    files = [(c.name, f) for c in cases for f in c.files]
    skipped = {s["file"]: s["reason"] for s in run["skipped_files"]}
    failed = {s["file"]: s["reason"] for s in run["failed_files"]}
    read = {str((landing / f.path).resolve()) for _, f in files if f.fate == "read"}
    for name, f in files:
        given, real = str((landing / f.path).absolute()), str((landing / f.path).resolve())
        if f.fate == "skipped":
            assert skipped.pop(given).startswith(f.why), (name, f.path)
        elif f.fate == "failed":
            assert failed.pop(real).startswith(f.why), (name, f.path)
    assert not skipped and not failed, f"skipped or failed with no class expecting it: {skipped} {failed}"
    n_skipped = sum(f.fate == "skipped" for _, f in files)
    n_failed = sum(f.fate == "failed" for _, f in files)
    assert run["files"] == seed["files"] == {"read": len(read), "skipped": n_skipped, "failed": n_failed}
    for entry in landing.rglob("*"):  # nothing under the input passed over in silence
        if entry.is_file() or entry.is_symlink():
            given, real = str(entry.absolute()), str(entry.resolve())
            assert given in {s["file"] for s in run["skipped_files"]} or real in {s["file"] for s in run["failed_files"]} \
                or real in read, entry

    # -- records: every record of a read file is in bronze, and nothing else -------------------------
    exp = _expected(cases, landing)
    bronze = {(r.kind, r.file, r.line): r.raw for r in lake.read(spark, "bronze.events").collect()}
    assert set(bronze) == set(exp)

    # -- quarantine: one row per bad record (two runs, two run dates), one per failed file ------------
    rows = lake.read(spark, "quarantine").collect()
    assert max(Counter((r.kind, r.file, r.line) for r in rows).values()) == 1, "a bad line ingested again adds no row"
    assert {r.ingest_date for r in rows} == {hc.D0.date()}, "every row is the seed run's; the second run added none"
    quarantined = {(r.kind, r.file, r.line): r for r in rows if r.kind != FILE_KIND}
    for key, rec in exp.items():
        if rec.outcome == "quarantined":
            assert key in quarantined and quarantined[key].reason.startswith(rec.reason), (key, rec, quarantined.get(key))
    assert set(quarantined) == {k for k, r in exp.items() if r.outcome == "quarantined"}
    file_rows = {r.file: (r.line, r.raw, r.reason) for r in rows if r.kind == FILE_KIND}
    assert file_rows == {s["file"]: (0, "", s["reason"]) for s in run["failed_files"]}

    # -- silver: every good record, exactly once; nothing else ----------------------------------------
    silver = lake.read(spark, "silver.interactions")
    keys = [(r.user_id, r.item_id, r.ts, r.event) for r in silver.collect()]
    good = {r.key for (kind, _, _), r in exp.items() if kind == "interactions" and r.outcome in ("accepted", "published")}
    assert len(keys) == len(set(keys)) and set(keys) == good, set(keys) ^ good
    items = {r.item_id for r in lake.read(spark, "silver.items").collect()}
    assert items == {r.key[0] for (kind, _, _), r in exp.items() if kind == "items" and r.outcome != "quarantined"}

    # -- counts: read = accepted + quarantined + duplicates of published (+ other dates) --------------
    def n(kind, outcome):
        return sum(1 for (k, _, _), r in exp.items() if k == kind and r.outcome == outcome)

    for kind in ("interactions", "items"):
        total = sum(1 for k in exp if k[0] == kind)
        assert run["counts"][kind] == {"read": total, "accepted": n(kind, "accepted"), "quarantined": n(kind, "quarantined"),
                                       "duplicates_of_published": n(kind, "published"), "other_dates": 0}, kind
    assert seed["counts"]["interactions"] == {
        "read": len([k for k in exp if k[0] == "interactions"]), "accepted": n("interactions", "published"),
        "quarantined": n("interactions", "quarantined"), "duplicates_of_published": 0, "other_dates": n("interactions", "accepted")}
    assert seed["counts"]["items"]["accepted"] == n("items", "published")
    assert run["tables"]["silver.interactions"]["rows_written"] == n("interactions", "accepted")
    assert run["tables"]["silver.items"]["skipped"], "every item was published by the seed run"
    report = json.loads(Path(run["report"]).read_text())
    assert report["counts"] == run["counts"] and report["files"] == run["files"]

    # -- raw text: CRLF cut off, a Parquet row the same JSON whichever way its file was read ---------
    assert all("\r" not in raw for (_, f, _), raw in bronze.items() if f.endswith("crlf.jsonl"))
    odd = str((landing / "part[0] {x},y:z \u00e9.parquet").resolve())
    plain = str((landing / "plain.parquet").resolve())
    for line in (1, 2):
        a, b = json.loads(bronze[("interactions", odd, line)]), json.loads(bronze[("interactions", plain, line)])
        assert a.pop("user_id").replace("pq-odd", "") == b.pop("user_id").replace("pq-plain", "") and a == b
        assert a["ts"] == f"2024-03-02T1{line}:00:00.000Z"
    assert json.loads(bronze[("interactions", odd, 1)])["seen_at"] == "2024-03-02T09:00:00.000"

    # -- logged slates: accepted at ingest, judged at build; only positive events are clicks ----------
    slates, rejected = gold.logged_slates(silver, gold.build_sequences(silver), EtlConfig(k=3))
    got = {r.slate_id: None for r in slates.collect()} | {r.slate_id: r.reason for r in rejected.collect()}
    want = {sid: why for c in cases for sid, why in c.build.items()}
    assert got.keys() == want.keys()
    assert all(got[s] is None if w is None else got[s].startswith(w) for s, w in want.items()), got
    users = {r.user_id for r in gold.build_sequences(silver).collect()}
    assert "et-4" not in users and "et-3" in users, "a dislike is in silver but in no sequence"


def test_amazon_p5_hostile_lines(spark, lake, tmp_path):
    """P5 lines hold many records: a bad token quarantines its record, not its line; ids, bytes, BOM, CRLF."""
    seq, item_lines = hc.p5_corpus()
    folder = tmp_path / "p5"
    folder.mkdir()
    (folder / "sequential_data.txt").write_bytes(b"\n".join(line for line, _ in seq) + b"\n")
    (folder / "items.jsonl").write_bytes(b"\n".join(line for line, _ in item_lines) + b"\n")
    cfg = load_config(overrides=["etl.source=amazon-p5", f"etl.path={folder}"], lake=str(lake.root))
    s = jobs.ingest(spark, cfg)

    exp = {}  # (line, position) -> Rec; position 0 for a line-level record
    for n, (line, recs) in enumerate(seq, start=1):
        whole_line = len(line.split()) < 2  # no items: the line itself is the one (rejected) record
        exp.update({(n, 0 if whole_line else pos): r for pos, r in enumerate(recs, start=1)})
    rows = lake.read(spark, "quarantine").collect()
    got = {(r.line, int(r.raw.rsplit("@", 1)[1]) if "@" in r.raw else 0): r.reason for r in rows if r.kind == "interactions"}
    want = {k: r.reason for k, r in exp.items() if r.outcome == "quarantined"}
    assert got.keys() == want.keys() and all(got[k].startswith(w) for k, w in want.items()), (got, want)
    silver = {(r.user_id, r.item_id, r.ts, r.event) for r in lake.read(spark, "silver.interactions").collect()}
    assert silver == {r.key for r in exp.values() if r.outcome == "accepted"}
    items = {r.line: r.reason for r in rows if r.kind == "items"}
    assert {n: r.reason for n, (_, r) in enumerate(item_lines, start=1) if r.outcome == "quarantined"}.keys() == items.keys()
    assert all(items[n].startswith(r.reason) for n, (_, r) in enumerate(item_lines, start=1) if r.outcome == "quarantined")
    assert {r.item_id for r in lake.read(spark, "silver.items").collect()} == {"1", "2", "3"}
    c = s["counts"]["interactions"]
    assert c == {"read": len(exp), "accepted": len(silver), "quarantined": len(want), "duplicates_of_published": 0, "other_dates": 0}
    assert s["files"] == {"read": 2, "skipped": 0, "failed": 0}


def test_the_docs_list_every_class_of_the_corpus():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "tables.md").read_text()
    assert hc.markdown(hc.corpus(datetime.now(timezone.utc), unreadable=True)) in doc, \
        "regenerate the table: .venv/bin/python tests/hostile_corpus.py"
