"""The lake manifest on real Delta tables: readers see whole runs, writers merge into the newest commit."""

import pytest

from gr2.platform import manifest
from gr2.platform import quality as qc

ITEMS = "item_id string, title string"


def _items(spark, *ids):
    return spark.createDataFrame([(i, i.upper()) for i in ids], ITEMS)


def _ids(df) -> list[str]:
    return sorted(r.item_id for r in df.select("item_id").collect())


def test_a_failed_publication_leaves_readers_on_the_previous_run_and_the_rerun_completes(spark, lake):
    # A lake written before the manifest existed: two plain Delta commits, no _manifest.json.
    path = str(lake.path("silver.items"))
    _items(spark, "a").write.format("delta").save(path)
    _items(spark, "b").write.format("delta").mode("append").save(path)
    assert manifest.load(lake.root) is None
    assert _ids(lake.read(spark, "silver.items")) == ["a", "b"], "a table the manifest does not name is read at its newest commit"
    assert sorted(lake.read_pandas("silver.items")["item_id"]) == ["a", "b"]

    checks = [qc.unique("item_id")]
    with pytest.raises(RuntimeError, match="killed"):
        with lake.publication("ingest"):
            lake.publish_merge(spark, _items(spark, "c"), "silver.items", ["item_id"], checks)
            lake.publish_overwrite(spark, _items(spark, "s"), "gold.sequences", checks)
            assert _ids(lake.read(spark, "silver.items")) == ["a", "b", "c"], "a run reads its own commits"
            raise RuntimeError("killed between two tables")

    assert lake.version(spark, "silver.items") == 2, "the commit itself happened"
    assert _ids(lake.read(spark, "silver.items")) == ["a", "b"], "readers stay on the version held before it"
    assert sorted(lake.read_pandas("silver.items")["item_id"]) == ["a", "b"]
    assert _ids(lake.read(spark, "silver.items", latest=True)) == ["a", "b", "c"]
    assert lake.exists(spark, "gold.sequences")
    for read in (lambda: lake.read(spark, "gold.sequences"), lambda: lake.read_pandas("gold.sequences")):
        with pytest.raises(FileNotFoundError, match="no completed publication"):
            read()
    held = manifest.load(lake.root)["tables"]
    assert held["silver.items"]["version"] == 1 and held["gold.sequences"]["version"] is None

    # The rerun merges into the newest commit: "c" is there already, so nothing is written, and the
    # manifest moves to the version that holds it when the run completes.
    with lake.publication("ingest") as run:
        res = lake.publish_merge(spark, _items(spark, "c"), "silver.items", ["item_id"], checks)
        lake.publish_overwrite(spark, _items(spark, "s"), "gold.sequences", checks)
        assert manifest.load(lake.root)["tables"]["silver.items"]["version"] == 1, "nothing moves before the end"
    assert res.skipped and res.version == 2
    m = manifest.load(lake.root)
    assert m["tables"]["silver.items"]["version"] == 2 and m["tables"]["silver.items"]["run"] == run.id
    assert m["tables"]["gold.sequences"]["version"] == lake.version(spark, "gold.sequences")
    assert m["last_run"]["name"] == "ingest" and m["last_run"]["tables"] == ["gold.sequences", "silver.items"]
    assert _ids(lake.read(spark, "silver.items")) == ["a", "b", "c"] and _ids(lake.read(spark, "gold.sequences")) == ["s"]


def test_a_publish_outside_a_publication_moves_the_manifest_at_once(spark, lake):
    checks = [qc.unique("item_id")]
    res = lake.publish_overwrite(spark, _items(spark, "a"), "silver.items", checks)
    m = manifest.load(lake.root)
    assert m["tables"]["silver.items"]["version"] == res.version == 0
    assert m["last_run"]["name"] == "publish silver.items"

    # A commit that no publication made (a hand fix, another tool) is not what readers see...
    path = str(lake.path("silver.items"))
    _items(spark, "b").write.format("delta").mode("append").save(path)
    assert _ids(lake.read(spark, "silver.items")) == ["a"] and lake.read_version("silver.items") == 0
    # ...until the next publish, which merges into the newest commit and so exposes it.
    with lake.publication("outer") as outer:
        with lake.publication("inner") as inner:
            assert inner is outer, "a nested block joins the outer run"
            lake.publish_merge(spark, _items(spark, "c"), "silver.items", ["item_id"], checks)
        assert lake.read_version("silver.items") == 2  # this thread's own run
        assert manifest.load(lake.root)["tables"]["silver.items"]["version"] == 0, "the inner end moves nothing"
    assert _ids(lake.read(spark, "silver.items")) == ["a", "b", "c"]

    # A run that changes no version (the same batch again) leaves the file as it was.
    before = manifest.load(lake.root)
    with lake.publication("again"):
        assert lake.publish_merge(spark, _items(spark, "c"), "silver.items", ["item_id"], checks).skipped
    lake.publish_merge(spark, _items(spark, "a"), "silver.items", ["item_id"], checks)
    assert manifest.load(lake.root) == before
