"""Tokenizer jobs on real Spark + Delta + Ray Train + GE: embed, fit, assign, stability, the gate."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from gr2.config import load_config
from gr2.etl import jobs as etl_jobs
from gr2.etl import synthetic
from gr2.platform.quality import QualityGateError
from gr2.platform.contracts import contract
from gr2.tokenizer import embeddings
from gr2.tokenizer import jobs as tok


@pytest.fixture()
def tok_lake(spark, lake, tmp_path):
    landing = tmp_path / "landing"
    cfg = load_config(
        overrides=[
            "etl.source=events", f"etl.path={landing}", "etl.synthetic.users=300", "etl.synthetic.items=200",
            "etl.synthetic.bad_record_rate=0", "tokenizer.levels=3", "tokenizer.codes=16", "tokenizer.hidden_dims=[64]",
            "tokenizer.latent_dim=16", "tokenizer.epochs=8", "tokenizer.batch_size=64",
        ],
        lake=str(lake.root),
    )
    synthetic.generate(spark, cfg.etl.synthetic, landing)
    etl_jobs.ingest(spark, cfg)
    return cfg


def test_embed_fit_assign_gives_unique_stable_sids(spark, lake, tok_lake):
    cfg = tok_lake
    e = tok.embed(spark, cfg)
    assert e["embedded"] == 200 and e["dim"] == 384 and e["quarantined"] == 0
    f = tok.fit(spark, cfg)
    assert (lake.root / "models" / "tokenizer" / f["version"] / "model.safetensors").exists()
    assert f["final"]["eval_recon_loss"] < f["first"]["eval_recon_loss"]
    assert lake.read(spark, "gold.sid_centroids").count() == 3 * 16

    a = tok.assign(spark, cfg)
    assert a["assigned"] == 200 and a["final_unique_fraction"] == 1.0
    book = {r.item_id: r for r in lake.read(spark, "gold.sid_codebook").collect()}
    assert len({r.sid for r in book.values()}) == 200
    assert all(r.sid.startswith("<a_") and r.codes[: len(r.raw_codes) - 1] == r.raw_codes[:-1] for r in book.values())
    assert sum(r.was_collision for r in book.values()) == a["redrawn"]

    # A nightly rerun keeps every SID of this version as it was.
    tok.assign(spark, cfg)
    again = {r.item_id: r.sid for r in lake.read(spark, "gold.sid_codebook").collect()}
    assert again == {k: r.sid for k, r in book.items()}

    # The gate refuses a codebook with one duplicated SID; the published version stays.
    version = lake.version(spark, "gold.sid_codebook")
    table = lake.read(spark, "gold.sid_codebook")
    first, second = sorted(book)[:2]
    broken = table.withColumn("sid", F.when(F.col("item_id") == second, F.lit(book[first].sid)).otherwise(F.col("sid")))
    c = contract("gold.sid_codebook")
    audit, checks = c.audit, c.checks
    with pytest.raises(QualityGateError) as err:
        lake.publish_overwrite(spark, broken, "gold.sid_codebook", checks, audit=audit,
                               partition_by=["tokenizer_version"], replace_where=f"tokenizer_version = '{a['version']}'")
    assert "expect_compound_columns_to_be_unique on tokenizer_version,sid: 2 row(s) broke it" in str(err.value)
    assert lake.version(spark, "gold.sid_codebook") == version


def test_bad_vectors_are_rejected_with_reasons(spark):
    df = spark.createDataFrame(
        [("a", [1.0, 2.0], None), ("b", [1.0, float("nan")], None), ("c", [1.0], None), ("d", None, "empty text"), ("e", [0.5, 0.5], None)],
        embeddings.EMBEDDED,
    )
    checked, dim = embeddings.check_vectors(df)
    got = {r.item_id: r.reason for r in checked.collect()}
    assert dim == 2 and got["a"] is None and got["e"] is None
    assert got["b"] == "vector has NaN or infinite values"
    assert got["c"] == "vector has dimension 1, expected 2"
    assert got["d"] == "empty text"


def test_fit_on_too_few_items_says_what_to_do(spark, lake, tok_lake):
    cfg = tok_lake.model_copy(update={"tokenizer": tok_lake.tokenizer.model_copy(update={"codes": 256})})
    tok.embed(spark, cfg)
    with pytest.raises(ValueError, match="needs at least C=256 items; lower tokenizer.codes"):
        tok.fit(spark, cfg)
