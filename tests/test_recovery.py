"""A run killed half way leaves every published table at its previous version; the next run completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date

from gr2.config import load_config
from gr2.etl import jobs, synthetic


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
    assert lake.read(spark, "silver.interactions").count() == n_before

    again = jobs.ingest(spark, cfg)
    total = again["counts"]["interactions"]["accepted"]
    assert total > n_before
    assert lake.read(spark, "silver.interactions").count() == total
    assert not any(staging.iterdir()), "the next run cleaned the killed run's staging"
