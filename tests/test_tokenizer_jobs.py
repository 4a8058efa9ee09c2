"""Tokenizer jobs on real Spark + Delta + Ray Train + GE: embed, fit, assign, stability, the gate."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from gr2.config import load_config
from gr2.etl import jobs as etl_jobs
from gr2.etl import synthetic
from gr2.platform.contracts import contract
from gr2.platform.quality import QualityGateError
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


def _vector_lake(spark, lake, x, levels: int, codes: int, extra=()):
    """Items i0000.. with vectors `x` in the lake, and an RQ-VAE (`levels` x `codes`) fitted on them as
    tokenizer version v-test. -> (cfg, model)."""
    import pandas as pd

    from gr2.tokenizer import rqvae

    ids = [f"i{i:04d}" for i in range(len(x))]
    dim = x.shape[1]
    cfg = load_config(overrides=["tokenizer.embedding.encoder=vec", f"tokenizer.levels={levels}", f"tokenizer.codes={codes}", *extra],
                      lake=str(lake.root))
    pdf = pd.DataFrame({"item_id": ids, "vector": list(x), "encoder": "vec", "dim": dim})
    spark.createDataFrame(pdf[["item_id"]]).write.format("delta").save(str(lake.root / "silver" / "items"))
    spark.createDataFrame(pdf).write.format("delta").partitionBy("encoder").save(str(lake.root / "gold" / "item_embeddings"))
    rq_cfg = rqvae.RQVAEConfig(input_dim=dim, hidden_dims=(16,), latent_dim=8, levels=levels, codes=codes, balance="prices")
    model, history = rqvae.train_rqvae(x, rq_cfg, epochs=2, batch_size=64, log_every=0)
    tok.save_model(tok.models_dir(cfg) / "v-test", model, history, "v-test", "vec")
    return cfg, model


def test_assign_on_spark_equals_the_numpy_path_extra_levels_included(spark, lake):
    """Without the spill step, 300 items on 2 x 4 codes leave prefix groups of more than C = 4: Spark's
    per-partition de-collision gives every item exactly the codes the one-process numpy path gives
    (re-drawn last level, then extra levels in base C), and reports where its time went."""
    import numpy as np

    from gr2.platform.sids import sid_string
    from gr2.tokenizer import collisions, rqvae

    x = np.random.default_rng(1).normal(size=(300, 8)).astype(np.float32)
    cfg, model = _vector_lake(spark, lake, x, levels=2, codes=4, extra=["tokenizer.spill=false", "spark.shuffle_partitions=3"])
    raw = rqvae.encode_codes(model, x).numpy()
    new, _, overflow = collisions.redraw_last_level(raw, 4, seed=cfg.tokenizer.seed)
    expected = collisions.fallback_codes(new, collisions.overflow_mask(new, overflow), 4)
    assert overflow and max(map(len, expected)) > 2

    a = tok.assign(spark, cfg, "v-test")
    book = {r.item_id: r for r in lake.read(spark, "gold.sid_codebook").collect()}
    assert [book[f"i{k:04d}"].codes for k in range(len(x))] == expected
    assert all(r.sid == sid_string(r.codes) for r in book.values())
    assert a["final_unique_fraction"] == 1.0 and a["extra_level"] == sum(len(c) > 2 for c in expected)
    assert set(a["timings"]) >= {"random last level per prefix group", "gate and publish gold.sid_codebook", "report"}
    assert all(t > 0 for t in a["timings"].values())


def test_assign_spills_overfull_prefix_groups_like_the_numpy_path(spark, lake):
    """40 near-copies share one raw prefix (C = 8): Spark's spill moves them exactly as spill.spill does,
    so no item needs an extra level; a rerun keeps every SID."""
    import numpy as np

    from gr2.tokenizer import collisions, rqvae, spill

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(400, 8)), rng.normal(size=(1, 8)) + 0.01 * rng.normal(size=(40, 8))]).astype(np.float32)
    ids = [f"i{i:04d}" for i in range(len(x))]
    cfg, model = _vector_lake(spark, lake, x, levels=3, codes=8)

    raw = rqvae.encode_codes(model, x).numpy()
    movers = spill.movers_mask(raw, 8)
    expected, moved = spill.spill(raw, movers, spill.residuals(model, x[movers], 1), model)
    assert movers.sum() >= 32 and moved.sum() > 0

    a = tok.assign(spark, cfg, "v-test")
    assert a["spilled"] == moved.sum() and a["extra_level"] == 0 and a["final_unique_fraction"] == 1.0
    book = {r.item_id: r for r in lake.read(spark, "gold.sid_codebook").collect()}
    assert all(book[i].raw_codes == raw[k].tolist() for k, i in enumerate(ids))
    assert all(book[i].codes[:2] == expected[k, :2].tolist() for k, i in enumerate(ids))
    assert all(book[i].was_collision for k, i in enumerate(ids) if moved[k])
    assert collisions.redraw_last_level(expected, 8, seed=0)[2] == []  # the numpy path needs no extra level either

    tok.assign(spark, cfg, "v-test")  # nightly rerun: every item is kept, nothing moves
    again = {r.item_id: r.sid for r in lake.read(spark, "gold.sid_codebook").collect()}
    assert again == {i: r.sid for i, r in book.items()}
