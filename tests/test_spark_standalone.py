"""The real ETL (ingest + build) and SID assignment on a Spark standalone cluster of two workers on 127.0.0.1:
the small version of `benchmarks/cluster_scaling.py`, run through its own child processes.

Master and workers come from the pyspark pip package (`gr2.platform.standalone`), on free ports, logging
into tmp_path; each worker offers 1 core and 1 GiB. Set-up (synthetic logs, item vectors and an RQ-VAE)
runs in a child process with local Spark; the jobs run in a second child process (the test session may
already hold a local SparkSession, and a JVM's master cannot be switched) with `spark.master=spark://...`
and `spark.cores.max=2` set through the gr2 config. The test checks the jobs' counts, that the master saw
the application with both cores and that executors ran on both workers, and reads the Delta tables the
jobs published with the `deltalake` package, without Spark. Teardown kills the JVMs it started.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from script_modules import load_script

from gr2.platform.standalone import StandaloneCluster, get_json

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "cluster_scaling.py"


def _bench():
    return load_script("benchmarks/cluster_scaling.py")


def test_etl_and_sid_assignment_on_a_two_worker_cluster(tmp_path):
    from deltalake import DeltaTable

    bench = _bench()
    work = tmp_path / "work"
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYTHONPATH=os.pathsep.join([str(BENCH.parents[1]), *sys.path]))
    common = ["--work", str(work), "--events", "3000", "--items", "600", "--executor-memory", "640m"]
    gen = bench.run_child(["--prepare", *common], env, 600)
    assert gen["events"] > 2500

    with StandaloneCluster(tmp_path / "cluster", workers=2, cores=1, memory="1g") as c:
        r = bench.run_child(["--job", "2", "--master", c.master, *common], {**env, **c.env}, 600)
        apps = c.apps()
        worker_execs = [get_json(f"{ui}/json/") for ui in c.worker_uis]
    assert all(p.poll() is not None for p in c.procs.values())

    # The master ran the application on both cores, and each worker ran one of its executors.
    assert len(apps) == 1 and apps[0]["cores"] == 2, apps
    for w in worker_execs:
        assert [e for e in w["finishedexecutors"] + w["executors"] if e["appid"] == apps[0]["id"]], w
    assert r["executors"] == 2 and r["shuffle_write_bytes"] > 0 and r["driver_python_rss_peak"] > 0

    # Counts, and the published tables read without Spark.
    def rows(lake: str, table: str) -> int:
        return DeltaTable(str(work / lake / table)).to_pyarrow_table().num_rows

    assert rows("etl-lake-w2", "silver/interactions") == r["accepted"] > 0
    assert rows("etl-lake-w2", "gold/slates") == r["slates"] > 0
    assert rows("etl-lake-w2", "bronze/events") > 0
    assert r["assigned"] == 600 and r["unique"] == 1.0 and rows("assign-lake-w2", "gold/sid_codebook") == 600
    assert {"ingest", "build", "assign"} <= set(r) and all(r[j]["steps"] for j in ("ingest", "build", "assign"))
