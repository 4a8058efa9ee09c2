"""The small version of benchmarks/etl_throughput.py: gr2's Spark ingest + build and the one-process pandas
baseline on the same synthetic logs agree record for record (accepted events, and the slates the
out-of-fold co-occurrence pre-ranker keeps, row for row), and the benchmark reports where Spark's time went."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from script_modules import load_script

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    return load_script(f"benchmarks/{name}.py")


def test_spark_and_the_pandas_baseline_give_the_same_outputs(tmp_path):
    # The command itself, in a process of its own: --stages needs a Spark UI, which the tests' session has off.
    out = subprocess.run(
        [sys.executable, "benchmarks/etl_throughput.py", "--sizes", "4000", "--work", str(tmp_path), "--master", "local[2]",
         "--partitions", "4", "--stages"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    row = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("{")))
    assert row["accepted"] == row["pandas_accepted"] > 3000
    assert row["slates"] == row["pandas_slates"] > 0
    assert row["same_slate_rows"] is True  # value for value: histories, candidates, scores, target positions
    assert {"read + validate records", "the co-occurrence fits", "write outputs"} <= set(row["pandas_steps"])
    assert {"validate records", "publish bronze.events"} <= set(row["ingest_steps"])
    assert "pre-rank candidates for every example" in row["build_steps"]
    # each step's Spark jobs carry its name, so the stage metrics add up per step
    validate, score = row["stages"]["validate records"], row["stages"]["pre-rank candidates for every example"]
    assert validate["tasks"] > 0 and validate["task_s"] > 0 and score["jobs"] >= 1
    inside = sum(v["task_s"] for k, v in row["stages"].items() if k != "(outside the steps)")
    assert row["stages"].get("(outside the steps)", {}).get("task_s", 0) < 0.05 * inside, "Delta's own jobs count in their step"
    assert re.search(r"\| validate records \| [\d.]+ \| \d+ \| \d+ \| \d+ \|", out.stdout)


def test_the_baseline_hashes_users_into_folds_as_spark_does(spark):
    from pyspark.sql import functions as F

    etl = _load("pandas_etl")
    words = ["", "u1", "user_000123", "x" * 31, "y" * 32, "z" * 45, "ünïcødé", "AB12" * 9 + "q"]
    got = spark.createDataFrame([(w,) for w in words], "w string").select("w", F.xxhash64("w").alias("h")).collect()
    assert {r.w: r.h for r in got} == {w: etl.spark_xxhash64(w) for w in words}
