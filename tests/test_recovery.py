"""A run killed half way leaves every published table at its previous version; the next run completes.

Readers that follow the lake manifest (`Lake.read`) see the previous run whole even though the killed
run had already committed bronze.events: the manifest moves only when a run completes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date

from gr2.config import load_config
from gr2.etl import jobs, synthetic
from gr2.platform import manifest

TABLES = ("bronze.events", "silver.items", "silver.interactions", "quarantine")


def test_killed_ingest_leaves_tables_as_they_were_and_rerun_completes(spark, lake, tmp_path):
    landing = tmp_path / "landing"
    sets = [
        "etl.source=events", f"etl.path={landing}", "etl.synthetic.users=400", "etl.synthetic.items=200",
        "etl.synthetic.days=3", "etl.synthetic.end_date=2025-06-03",
    ]
    cfg = load_config(overrides=sets, lake=str(lake.root))
    synthetic.generate(spark, cfg.etl.synthetic, landing)

    first = jobs.ingest(spark, cfg, date(2025, 6, 1))
    before = {t: lake.version(spark, t) for t in ("silver.interactions", "silver.items", "quarantine")}
    n_before = lake.read(spark, "silver.interactions").count()
    assert n_before == first["counts"]["interactions"]["accepted"] > 0
    pinned = {t: lake.read_version(t) for t in TABLES}
    assert pinned == {t: lake.version(spark, t) for t in TABLES}, "a completed run leaves readers on its newest commits"
    seen = {t: lake.read(spark, t).count() for t in TABLES}

    # A late file brings raw lines bronze has not seen, so the killed run commits bronze.events first.
    item_ids = [json.loads(x)["item_id"] for x in (landing / "items.jsonl").read_text().splitlines()[:4]]
    late = [json.dumps({"user_id": "late-user", "item_id": i, "ts": f"2025-06-03T23:00:0{n}Z", "event": "click"})
            for n, i in enumerate(item_ids)]
    (landing / "events_late.jsonl").write_text("\n".join([*late, "{not json"]) + "\n")

    # Ingest every day in another process and kill it (driver and JVM) while it stages silver.interactions.
    cmd = [sys.executable, "-m", "gr2.cli", "etl", "ingest", "--lake", str(lake.root), "--set", "spark.driver_memory=1g",
           "--set", "spark.master=local[1]"] + [a for s in sets for a in ("--set", s)]
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1")
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    staging = lake.root / "_staging" / "silver.interactions"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (staging.exists() and any(staging.iterdir())):
        time.sleep(0.05)
    assert proc.poll() is None, f"the ingest ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)

    assert {t: lake.version(spark, t) for t in before} == before, "a killed run published nothing it had not finished"
    assert lake.version(spark, "bronze.events") > pinned["bronze.events"], "the killed run had committed bronze.events"
    assert lake.read(spark, "bronze.events", latest=True).count() == seen["bronze.events"] + len(late) + 1
    # ...yet a reader that follows the manifest sees the previous run, all four tables of it.
    assert {t: lake.read_version(t) for t in TABLES} == pinned
    assert {t: lake.read(spark, t).count() for t in TABLES} == seen
    assert len(lake.read_pandas("bronze.events", columns=["line"])) == seen["bronze.events"]
    assert lake.read(spark, "silver.interactions").count() == n_before

    again = jobs.ingest(spark, cfg)
    c = again["counts"]["interactions"]
    assert c["duplicates_of_published"] == n_before, "the first run's events are counted, not written again"
    total = c["accepted"] + c["duplicates_of_published"]
    assert total > n_before
    assert lake.read(spark, "silver.interactions").count() == total
    # The completed run moves the manifest to the newest commit of every table, the killed run's bronze
    # commit included (its merge found those lines there and wrote nothing).
    assert again["tables"]["bronze.events"]["skipped"]
    now = {t: lake.read_version(t) for t in TABLES}
    assert now == {t: lake.version(spark, t) for t in TABLES}
    assert all(now[t] > pinned[t] for t in ("bronze.events", "silver.interactions", "quarantine"))
    assert manifest.load(lake.root)["last_run"]["name"] == "ingest"
    assert lake.read(spark, "bronze.events").count() == seen["bronze.events"] + len(late) + 1
    assert lake.read(spark, "quarantine").where("raw = '{not json'").count() == 1
    assert not any(staging.iterdir()), "the next run cleaned the killed run's staging"
