"""Tokenizer jobs: embed items, fit the RQ-VAE (a Ray Train job), assign SIDs on Spark.

Model store: `<lake>/models/tokenizer/<version>/` holds model.safetensors, config.json and
history.json; `<lake>/models/tokenizer/LATEST` names the newest version. A fit always writes a new
version; `gold.sid_codebook` rows are keyed by (tokenizer_version, item_id), so a retrained tokenizer
never rewrites the SIDs of another version.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import functions as F
from pyspark.sql import types as T

from gr2.config import Config
from gr2.platform import quality as qc
from gr2.platform.contracts import contract
from gr2.platform.keys import QUARANTINE_KEY
from gr2.platform.lake import Lake
from gr2.platform.progress import Steps
from gr2.platform.run_store import RunStore
from gr2.platform.sids import sid_string
from gr2.tokenizer import collisions, embeddings, rqvae, spill


def encoder_name(cfg: Config) -> str:
    e = cfg.tokenizer.embedding
    if e.encoder:
        return e.encoder
    if e.kind == "table":
        return f"table:{Path(e.table or '').name}"
    text = Path(e.model_path).name if e.model_path else "all-MiniLM-L6-v2"
    return {"text": text, "cooccurrence": f"cooc{e.cooc_dim}", "text+cooccurrence": f"{text}+cooc{e.cooc_dim}"}[e.kind]


def models_dir(cfg: Config) -> Path:
    return cfg.lake_path / "models" / "tokenizer"


def latest_version(cfg: Config) -> str:
    return RunStore(cfg.lake_path, "tokenizer", what="fitted tokenizer").require_latest("run `gr2 tokenizer fit` first")


# -- embed ---------------------------------------------------------------------------------------


def embed(spark, cfg: Config, steps: Steps | None = None, only_new: bool = False) -> dict:
    """silver.items (+ gold.cooccurrence) -> gold.item_embeddings for this encoder; rejects -> quarantine.

    With `only_new` (the nightly job), only items without a vector for this encoder are embedded and
    merged in. Co-occurrence vectors come from one SVD of the whole catalog, so encoders that use them
    always re-embed every item.
    """
    steps = steps or Steps(quiet=True)
    lake = Lake(cfg.lake_path)
    e = cfg.tokenizer.embedding
    items = lake.read(spark, "silver.items")
    name = encoder_name(cfg)
    incremental = only_new and "cooccurrence" not in e.kind and lake.exists(spark, "gold.item_embeddings")
    if incremental:
        have = lake.read(spark, "gold.item_embeddings").where(F.col("encoder") == name).select("item_id")
        items = items.join(have, "item_id", "left_anti")
        if items.limit(1).count() == 0:
            return {"encoder": name, "dim": None, "items": 0, "embedded": 0, "quarantined": 0, "table": None, "incremental": True}
    with steps.step(f"embed items ({name})"):
        if e.kind == "table":
            df = embeddings.table_embeddings(spark, e.table)
            df = items.select("item_id").join(df, "item_id", "left").withColumn(
                "reason", F.when(F.col("vector").isNull(), F.lit("no vector in the embedding table")).otherwise(F.col("reason"))
            )
        else:
            parts = []
            if "text" in e.kind:
                parts.append(embeddings.text_embeddings(items, e.model_path or embeddings.default_text_model(), e.batch_size))
            if "cooccurrence" in e.kind:
                ids = [r.item_id for r in items.select("item_id").orderBy("item_id").collect()]
                parts.append(embeddings.cooccurrence_embeddings(spark, lake.read(spark, "gold.cooccurrence"), ids, e.cooc_dim))
            df = parts[0] if len(parts) == 1 else embeddings.concat(*parts)
        checked, dim = embeddings.check_vectors(df)
        checked = checked.cache()
        counts = {r["ok"]: r["count"] for r in checked.groupBy(F.col("reason").isNull().alias("ok")).count().collect()}
    n_ok, n_bad = counts.get(True, 0), counts.get(False, 0)
    with steps.step("publish gold.item_embeddings"):
        good = checked.where("reason IS NULL").select("item_id", "vector", F.lit(name).alias("encoder"), F.lit(dim).alias("dim"))
        checks = [qc.rows(n_ok), *contract("gold.item_embeddings").checks]
        if incremental:
            res = lake.publish_merge(spark, good, "gold.item_embeddings", ["encoder", "item_id"], checks)
        else:
            res = lake.publish_overwrite(spark, good, "gold.item_embeddings", checks,
                                         partition_by=["encoder"], replace_where=f"encoder = '{name}'")
    if n_bad:
        bad = checked.where("reason IS NOT NULL").select(
            F.lit("silver.items").alias("source"), F.lit("embedding").alias("kind"), F.lit("silver.items").alias("file"),
            F.lit(0).cast("long").alias("line"), F.to_json(F.struct("item_id")).alias("raw"), "reason",
            F.lit("tokenizer").alias("stage"), F.current_date().alias("ingest_date"),
        )
        lake.publish_merge(spark, bad, "quarantine", QUARANTINE_KEY, [qc.rows(n_bad), *contract("quarantine").checks])
    checked.unpersist()
    return {"encoder": name, "dim": dim, "items": n_ok + n_bad, "embedded": n_ok, "quarantined": n_bad, "table": res.__dict__,
            "incremental": incremental}


# -- fit -----------------------------------------------------------------------------------------


def rqvae_config(cfg: Config, input_dim: int) -> rqvae.RQVAEConfig:
    t = cfg.tokenizer
    return rqvae.RQVAEConfig(
        input_dim=input_dim, hidden_dims=tuple(t.hidden_dims), latent_dim=t.latent_dim, levels=t.levels, codes=t.codes,
        ema=t.ema, decay=t.decay, commitment=t.commitment, dead_code_threshold=t.dead_code_threshold,
        diversity_weight=t.diversity_weight, kmeans_iters=t.kmeans_iters, seed=t.seed, init=t.init,
        init_max_items=t.init_max_items, balance=t.balance, balance_levels=t.balance_levels, price_rate=t.price_rate,
    )


def _train_loop(config: dict) -> None:
    """Runs inside the Ray Train worker: train, then report the model as a checkpoint."""
    import ray.train
    from safetensors.torch import save_file

    x = np.load(config["data"])
    rq_cfg = rqvae.RQVAEConfig(**config["rqvae"])
    scalar = lambda row: {k: v for k, v in row.items() if isinstance(v, (int, float))}  # noqa: E731
    model, history = rqvae.train_rqvae(
        x, rq_cfg, epochs=config["epochs"], batch_size=config["batch_size"], lr=config["lr"],
        log_every=config["log_every"], on_log=lambda row: print(json.dumps({"rqvae": scalar(row)}), flush=True),
    )
    with tempfile.TemporaryDirectory() as d:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, f"{d}/model.safetensors")
        Path(d, "history.json").write_text(json.dumps(history))
        ray.train.report(scalar(history[-1]), checkpoint=ray.train.Checkpoint.from_directory(d))


def fit(spark, cfg: Config, steps: Steps | None = None) -> dict:
    """Train the RQ-VAE on gold.item_embeddings as a Ray Train job; write a new tokenizer version."""
    steps = steps or Steps(quiet=True)
    lake = Lake(cfg.lake_path)
    t = cfg.tokenizer
    name = encoder_name(cfg)
    with steps.step(f"load embeddings ({name})"):
        emb = lake.read(spark, "gold.item_embeddings").where(F.col("encoder") == name).select("item_id", "vector").toPandas()
        if emb.empty:
            raise ValueError(f"gold.item_embeddings has no rows for encoder {name}; run `gr2 tokenizer embed` first")
        x = np.stack(emb["vector"].to_numpy()).astype(np.float32)
        if len(x) < t.codes:
            raise ValueError(
                f"fitting on {len(x)} items needs at least C={t.codes} items; lower tokenizer.codes or add items"
            )
        rq_cfg = rqvae_config(cfg, x.shape[1])
    version = f"v{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{t.levels}x{t.codes}"
    out = models_dir(cfg) / version
    work = cfg.lake_path / "_ray"
    work.mkdir(parents=True, exist_ok=True)
    data_path = work / f"{version}.npy"
    np.save(data_path, x)
    with steps.step(f"train RQ-VAE on Ray Train ({len(x):,} items, {t.epochs} epochs)"):
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer

        from gr2.platform.ray_cluster import ensure_ray

        ensure_ray()
        trainer = TorchTrainer(
            _train_loop,
            train_loop_config={
                "data": str(data_path), "rqvae": rq_cfg.to_dict(), "epochs": t.epochs,
                "batch_size": t.batch_size, "lr": t.lr, "log_every": max(1, t.epochs // 10),
            },
            scaling_config=ScalingConfig(num_workers=1, use_gpu=False),
            run_config=RunConfig(name=f"tokenizer-{version}", storage_path=str(work)),
        )
        result = trainer.fit()
        if result.error:
            raise RuntimeError(f"RQ-VAE training failed: {result.error}")
        out.mkdir(parents=True, exist_ok=True)
        with result.checkpoint.as_directory() as d:
            for f in ("model.safetensors", "history.json"):
                shutil.copy(Path(d) / f, out / f)
    data_path.unlink(missing_ok=True)
    meta = {"version": version, "encoder": name, "rqvae": rq_cfg.to_dict(), "items": len(x),
            "epochs": t.epochs, "batch_size": t.batch_size, "lr": t.lr}
    (out / "config.json").write_text(json.dumps(meta, indent=2))
    model = load_model(out)
    with steps.step("publish gold.sid_centroids"):
        cb = model.codebooks.detach().numpy()
        rows = [(version, lvl, code, cb[lvl, code].tolist()) for lvl in range(cb.shape[0]) for code in range(cb.shape[1])]
        centroids = spark.createDataFrame(rows, "tokenizer_version string, level int, code int, vector array<float>")
        lake.publish_overwrite(
            spark, centroids, "gold.sid_centroids", [qc.rows(len(rows)), *contract("gold.sid_centroids").checks],
            partition_by=["tokenizer_version"], replace_where=f"tokenizer_version = '{version}'",
        )
    RunStore(cfg.lake_path, "tokenizer").publish(version)  # LATEST, atomically, once the version is whole
    history = json.loads((out / "history.json").read_text())
    return {"version": version, "encoder": name, "items": len(x), "model_dir": str(out), "final": history[-1], "first": history[0]}


def save_model(folder: Path, model: rqvae.RQVAE, history: list, version: str, encoder: str, **meta) -> Path:
    """A model fitted outside `fit` (a benchmark's, a test's) as tokenizer version `version` of the items
    embedded by `encoder`: the three files `load_model` and `assign` read."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "history.json").write_text(json.dumps(history))
    (folder / "config.json").write_text(json.dumps({"version": version, "encoder": encoder, "rqvae": model.cfg.to_dict(), **meta}))
    return folder


def load_model(folder: Path) -> rqvae.RQVAE:
    from safetensors.torch import load_file

    meta = json.loads((Path(folder) / "config.json").read_text())
    model = rqvae.RQVAE(rqvae.RQVAEConfig(**meta["rqvae"]))
    model.load_state_dict(load_file(str(Path(folder) / "model.safetensors")))
    model.eval()
    return model


# -- assign --------------------------------------------------------------------------------------

RAW = T.StructType([T.StructField("item_id", T.StringType()), T.StructField("raw_codes", T.ArrayType(T.IntegerType()))])
ASSIGNED = T.StructType(
    [
        T.StructField("item_id", T.StringType()),
        T.StructField("raw_codes", T.ArrayType(T.IntegerType())),
        T.StructField("codes", T.ArrayType(T.IntegerType())),
        T.StructField("sid", T.StringType()),
        T.StructField("was_collision", T.BooleanType()),
        T.StructField("overflow", T.BooleanType()),
    ]
)


def encode_on_executors(emb, model_bc):
    """(item_id, vector) -> (item_id, raw_codes): the broadcast model's argmin codes, per Arrow batch.

    The broadcast holds (config dict, state dict as numpy); each task rebuilds the module once.
    """
    import torch

    def encode(batches):
        torch.set_num_threads(1)
        model = spill.model_from_broadcast(model_bc)
        for pdf in batches:
            x = np.stack(pdf["vector"].to_numpy()).astype(np.float32) if len(pdf) else np.zeros((0, model.cfg.input_dim), np.float32)
            codes = rqvae.encode_codes(model, torch.from_numpy(x)).numpy() if len(pdf) else np.zeros((0, model.cfg.levels), np.int64)
            yield pd.DataFrame({"item_id": pdf["item_id"], "raw_codes": [c.astype(np.int32).tolist() for c in codes]})

    return emb.mapInPandas(encode, RAW)


def decollide_frame(pdf: pd.DataFrame, levels: int, codes: int, seed: int, extra_level: bool) -> pd.DataFrame:
    """The random last level for every item of `pdf`, which must hold whole prefix groups (any number of
    them): kept items first, then by item_id; over-full groups fall back to extra levels. Rows are
    sorted by item_id first, so the answer does not depend on the order a shuffle delivered them in."""
    pdf = pdf.sort_values("item_id", kind="stable").reset_index(drop=True)
    keep = pdf["kept"].to_numpy(dtype=bool)
    start_lists = pdf["start_codes"].to_numpy()
    start = np.stack([np.asarray(c[:levels]) for c in start_lists]).astype(np.int64) if len(pdf) else np.zeros((0, levels), np.int64)
    new, was, overflow = collisions.redraw_last_level(start, codes, seed, keep=keep)
    if "spilled" in pdf:  # moved to a next-nearest code by the spill step: also a de-collision
        was = was | pdf["spilled"].to_numpy(dtype=bool)
    over = collisions.overflow_mask(new, overflow) & ~keep if overflow else np.zeros(len(pdf), bool)
    out_codes = collisions.fallback_codes(new, over, codes) if over.any() and extra_level else new.tolist()
    for i in np.flatnonzero(keep):  # kept items keep their full code list, extra level included
        out_codes[i] = list(start_lists[i])
    return pd.DataFrame({
        "item_id": pdf["item_id"], "raw_codes": pdf["raw_codes"], "codes": out_codes,
        "sid": [sid_string(c) for c in out_codes], "was_collision": was & ~keep, "overflow": over,
    })


def decollide_groups(df, levels: int, codes: int, seed: int, extra_level: bool):
    """Per prefix group (first L-1 codes): random last level, kept items first; over-full groups fall back.

    Hash-partitioned by prefix, so each partition holds whole groups, and de-collided a partition at a
    time in one vectorised call (`collisions` works on any number of groups at once). A pandas call per
    group (groupBy().applyInPandas) cost a Python round trip for each of up to one group per item."""
    prefix = F.slice("start_codes", 1, max(levels - 1, 1)) if levels > 1 else F.array(F.lit(0))

    def per_partition(batches):
        frames = [b for b in batches if len(b)]  # a group may straddle Arrow batches: gather the partition
        if frames:
            yield decollide_frame(pd.concat(frames, ignore_index=True), levels, codes, seed, extra_level)

    return df.repartition(prefix).mapInPandas(per_partition, ASSIGNED)


def assign(spark, cfg: Config, version: str | None = None, steps: Steps | None = None) -> dict:
    """SIDs for every embedded item under one tokenizer version; items that have one keep it.

    Each step ends in an action, so the steps' times (`summary["timings"]`) say where the time goes:
    encoding (cached: the spill step and the re-draw both read it), spill, the random last level
    (cached: the gate, the publish and the report read it), gate + Delta commit, the report."""
    steps = steps or Steps(quiet=True)
    lake = Lake(cfg.lake_path)
    version = version or latest_version(cfg)
    folder = models_dir(cfg) / version
    model = load_model(folder)
    meta = json.loads((folder / "config.json").read_text())
    L, C = model.cfg.levels, model.cfg.codes
    items = lake.read(spark, "silver.items").select("item_id")
    emb = lake.read(spark, "gold.item_embeddings").where(F.col("encoder") == meta["encoder"]).select("item_id", "vector")
    with steps.step(f"encode items on executors ({version})"):
        payload = (model.cfg.to_dict(), {k: v.detach().numpy() for k, v in model.state_dict().items()})
        model_bc = spark.sparkContext.broadcast(payload)
        raw = encode_on_executors(emb, model_bc)
        if lake.exists(spark, "gold.sid_codebook"):
            prev = lake.read(spark, "gold.sid_codebook").where(F.col("tokenizer_version") == version).select("item_id", F.col("codes").alias("prev"))
        else:
            prev = spark.createDataFrame([], "item_id string, prev array<int>")
        joined = raw.join(prev, "item_id", "left").select(
            "item_id", "raw_codes", F.col("prev").isNotNull().alias("kept"), F.coalesce("prev", "raw_codes").alias("start_codes")
        ).cache()
        n_encoded = joined.count()
    n_spilled = 0
    if cfg.tokenizer.spill:
        with steps.step("spill over-full prefix groups to next-nearest codes"):
            start, n_spilled, moves = spill.spill_on_spark(joined, emb, model_bc, L, C)
    else:
        start, moves = joined, None
    with steps.step("random last level per prefix group"):
        assigned = decollide_groups(start, L, C, cfg.tokenizer.seed, cfg.tokenizer.overflow == "extra_level").cache()
        stats = assigned.agg(
            F.count(F.lit(1)).alias("n"), F.countDistinct(F.array_join("raw_codes", ",")).alias("raw_unique"),
            F.countDistinct("sid").alias("final_unique"),
            F.sum(F.col("was_collision").cast("int")).alias("redrawn"), F.sum(F.col("overflow").cast("int")).alias("overflow"),
        ).collect()[0]
        if moves is not None:  # `assigned` is cached and counted: the moves it was built from can go
            moves.unpersist()
        if stats["overflow"] and cfg.tokenizer.overflow == "fail":
            raise ValueError(f"{stats['overflow']} item(s) sit in prefix groups with more than C={C} items; "
                             "set tokenizer.overflow=extra_level or raise tokenizer.codes")
    stamp = datetime.now(timezone.utc).replace(tzinfo=None)
    table = assigned.select(
        "item_id", "codes", "raw_codes", "sid", F.lit(version).alias("tokenizer_version"),
        "was_collision", F.lit(stamp).alias("assigned_at"),
    )
    with steps.step("gate and publish gold.sid_codebook"):
        c = contract("gold.sid_codebook")
        res = lake.publish_overwrite(
            spark, table, "gold.sid_codebook", [qc.rows(stats["n"]), *c.checks, qc.between("max_code", None, C - 1)],
            audit=c.audit,
            partition_by=["tokenizer_version"], replace_where=f"tokenizer_version = '{version}'",
        )
    with steps.step("report"):
        n_items = items.count()
        raw_pdf = assigned.select("raw_codes").toPandas()  # Arrow: one columnar transfer, not a Row per item
        codes = np.stack(raw_pdf["raw_codes"].to_numpy()) if len(raw_pdf) else np.zeros((0, L), np.int64)
        assigned.unpersist()
        joined.unpersist()
        summary = {
            "version": version, "levels": L, "codes": C, "items": n_items, "assigned": stats["n"],
            "without_sid": n_items - stats["n"],
            "raw_unique_fraction": stats["raw_unique"] / max(stats["n"], 1),
            # the gate has just checked (version, sid) unique on exactly these rows: no re-read of the table
            "final_unique_fraction": stats["final_unique"] / max(stats["n"], 1),
            "redrawn": stats["redrawn"], "spilled": n_spilled, "extra_level": stats["overflow"],
            "raw_metrics": rqvae.code_metrics(codes, C) if len(codes) else {},
            "table": res.__dict__, "encoded": n_encoded,
        }
        from gr2.tokenizer import report

        history = json.loads((folder / "history.json").read_text())
        stamp_dir = cfg.lake_path / "reports" / "tokenizer" / f"{version}-{stamp:%Y%m%dT%H%M%S}"
        summary["report"] = str(report.write(stamp_dir, summary, history, codes))
    summary["timings"] = dict(steps.timings)
    return summary
