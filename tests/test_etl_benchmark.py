"""The small version of benchmarks/etl_throughput.py: gr2's Spark ingest + build and the one-process pandas
baseline on the same synthetic logs agree record for record (accepted events, and the slates the
out-of-fold co-occurrence pre-ranker keeps, row for row), and the benchmark reports where Spark's time went."""

from __future__ import annotations

from script_modules import load_script


def _load(name: str):
    return load_script(f"benchmarks/{name}.py")


def test_spark_and_the_pandas_baseline_give_the_same_outputs(spark, tmp_path):
    bench = _load("etl_throughput")
    row = bench.measure(4000, tmp_path / "n4000", master="local[2]", partitions=4)
    assert row["accepted"] == row["pandas_accepted"] > 3000
    assert row["slates"] == row["pandas_slates"] > 0
    assert row["same_slate_rows"] is True  # value for value: histories, candidates, scores, target positions
    assert {"read + validate records", "the co-occurrence fits", "write outputs"} <= set(row["pandas_steps"])
    assert {"validate records", "publish bronze.events"} <= set(row["ingest_steps"])
    assert "pre-rank candidates for every example" in row["build_steps"]


def test_the_baseline_hashes_users_into_folds_as_spark_does(spark):
    from pyspark.sql import functions as F

    etl = _load("pandas_etl")
    words = ["", "u1", "user_000123", "x" * 31, "y" * 32, "z" * 45, "ünïcødé", "AB12" * 9 + "q"]
    got = spark.createDataFrame([(w,) for w in words], "w string").select("w", F.xxhash64("w").alias("h")).collect()
    assert {r.w: r.h for r in got} == {w: etl.spark_xxhash64(w) for w in words}
