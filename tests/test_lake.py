"""Write-audit-publish on real Delta tables with real Great Expectations gates."""

from pathlib import Path

import pytest

from gr2.platform import quality as qc
from gr2.platform.contracts import contract
from gr2.platform.quality import QualityGateError


def test_failed_gate_keeps_the_previous_version(spark, lake):
    good = spark.createDataFrame([(1, "a"), (2, "b")], "item_id int, title string")
    first = lake.publish_overwrite(spark, good, "silver.items", [qc.unique("item_id"), qc.rows(2)])
    assert first.version == 0
    bad = spark.createDataFrame([(1, "a"), (1, "dup"), (3, None)], "item_id int, title string")
    with pytest.raises(QualityGateError) as err:
        lake.publish_overwrite(spark, bad, "silver.items", [qc.unique("item_id"), qc.not_null("title"), qc.rows(3)])
    msg = str(err.value)
    assert "expect_column_values_to_be_unique on item_id: 2 row(s) broke it" in msg
    assert "expect_column_values_to_not_be_null on title: 1 row(s) broke it" in msg
    assert "previous version of silver.items stays published" in msg
    assert lake.version(spark, "silver.items") == 0
    assert sorted(r.item_id for r in lake.read(spark, "silver.items").collect()) == [1, 2]
    assert not any((lake.root / "_staging" / "silver.items").glob("*")), "staging is cleaned up"
    assert (qc.docs_dir(lake.root) / "index.html").exists(), "Data Docs are written for every gate"


def _validation_results(lake) -> list[dict]:
    import json

    files = sorted((qc.context_root(lake.root) / "gx" / "uncommitted" / "validations").rglob("*.json"),
                   key=lambda p: p.stat().st_mtime_ns)
    return [json.loads(p.read_text()) for p in files]


def test_a_passing_gate_counts_and_a_failing_one_collects_example_values(spark, lake):
    """counts_first: where the gate passes GE runs no query for unexpected values, and uniqueness is a
    distinct count; where it fails, the gate runs again as written with SUMMARY, so the Data Docs page of
    the failure counts the duplicate rows and lists their values."""
    good = spark.createDataFrame([(1, "a"), (2, "b")], "item_id int, title string")
    assert qc.gate(good, "silver.items", [qc.unique("item_id"), qc.not_null("title")], lake.root) == []
    unique, not_null = _validation_results(lake)[-1]["results"]
    assert unique["expectation_config"]["type"] == "expect_column_proportion_of_unique_values_to_be_between"
    assert unique["result"]["observed_value"] == 1.0
    passed = not_null["result"]
    assert passed["unexpected_count"] == 0 and passed.get("partial_unexpected_list", []) == []
    assert "partial_unexpected_counts" not in passed  # SUMMARY's part: not computed
    pages = sorted((qc.docs_dir(lake.root) / "validations").rglob("*.html"))
    assert pages, "the passing gate's result is rendered into the Data Docs"
    bad = spark.createDataFrame([(7, "a"), (7, "dup"), (3, "c")], "item_id int, title string")
    before = len(_validation_results(lake))
    with pytest.raises(QualityGateError, match="2 row"):
        qc.gate(bad, "silver.items", [qc.unique("item_id")], lake.root)
    assert len(_validation_results(lake)) == before + 1  # one stored result per gate run, not one per pass
    assert len(sorted((qc.docs_dir(lake.root) / "validations").rglob("*.html"))) == len(pages) + 1
    failed = _validation_results(lake)[-1]["results"][0]
    assert failed["expectation_config"]["type"] == "expect_column_values_to_be_unique"
    assert failed["result"]["unexpected_count"] == 2 and failed["result"]["partial_unexpected_list"] == [7, 7]


@pytest.mark.parametrize("counts_first", [True, False])
def test_a_compound_key_gate_refuses_duplicates_and_only_them(spark, lake, counts_first):
    """A compound key is checked as one struct column's distinct count first: the same verdicts as GE's own
    check, which skips rows whose key is all null (the first pass counts them; the second clears them)."""
    schema = "file string, line long, raw string"
    good = spark.createDataFrame([("f", 1, "a"), ("f", 2, "b"), ("g", 1, "c"), (None, None, "x"), (None, None, "y")],
                                 schema)
    check = [qc.compound_unique(["file", "line"])]
    assert qc.gate(good, "bronze.events", check, lake.root, counts_first=counts_first) == []
    bad = good.unionByName(spark.createDataFrame([("g", 1, "again")], schema))
    with pytest.raises(QualityGateError, match="expect_compound_columns_to_be_unique on file,line: 2 row"):
        qc.gate(bad, "bronze.events", check, lake.root, counts_first=counts_first)


def _pages(lake) -> list[Path]:
    return sorted((qc.docs_dir(lake.root) / "validations").rglob("*.html"))


def test_a_publication_renders_its_gates_data_docs_once_at_the_end_even_when_a_gate_refuses(spark, lake):
    """Inside a publication the gates' pages wait for its end (GE compiles its templates afresh for every
    update), then all appear with the index; a refused gate still gets its page, which its error names."""
    good = spark.createDataFrame([(1, "a"), (2, "b")], "item_id int, title string")
    with lake.publication("two tables"):
        lake.publish_overwrite(spark, good, "silver.items", [qc.unique("item_id")])
        lake.publish_overwrite(spark, good.withColumnRenamed("title", "name"), "gold.cooccurrence", [qc.rows(2)])
        assert _pages(lake) == [], "no page is rendered while the publication runs"
    assert len(_pages(lake)) == 2 and (qc.docs_dir(lake.root) / "index.html").exists()
    index = (qc.docs_dir(lake.root) / "index.html").read_text()
    assert "silver_items_gate" in index and "gold_cooccurrence_gate" in index
    bad = spark.createDataFrame([(7, "a"), (7, "dup")], "item_id int, title string")
    with pytest.raises(QualityGateError) as err, lake.publication("refused"):
        lake.publish_overwrite(spark, bad, "silver.items", [qc.unique("item_id")])
    assert len(_pages(lake)) == 3 and err.value.docs == qc.docs_dir(lake.root) / "index.html"
    assert qc._context(lake.root) is qc._context(lake.root), "one GE context per lake per process"


def _files_seen_by_the_gate(seen: list):
    """An audit that records the staged table's data files as the gate reads them."""
    def audit(staged):
        seen.extend(sorted(Path(f).name for f in staged.inputFiles()))
        return staged
    return audit


@pytest.mark.parametrize("how", ["overwrite", "merge", "partitioned"])
def test_a_first_publish_moves_the_gated_files_into_place(spark, lake, how):
    """The staged table that passed its gate becomes the table: the same data files, written once; a later
    publish of the existing table still commits through Delta (a new version, the old one kept)."""
    rows = spark.createDataFrame([(1, "a", "x"), (2, "b", "y")], "item_id int, title string, encoder string")
    seen: list = []
    checks = [qc.unique("item_id"), qc.rows(2)]
    if how == "merge":
        res = lake.publish_merge(spark, rows, "silver.items", ["item_id"], checks, audit=_files_seen_by_the_gate(seen))
    else:
        res = lake.publish_overwrite(spark, rows, "silver.items", checks, audit=_files_seen_by_the_gate(seen),
                                     partition_by=["encoder"] if how == "partitioned" else None)
    assert (res.rows_written, res.version) == (2, 0)
    table = lake.read(spark, "silver.items")
    assert sorted(Path(f).name for f in table.inputFiles()) == seen and seen, "the gated files, not a second write"
    assert sorted((r.item_id, r.title) for r in table.collect()) == [(1, "a"), (2, "b")]
    if how == "partitioned":
        assert sorted(p.name for p in lake.path("silver.items").glob("encoder=*")) == ["encoder=x", "encoder=y"]
    assert not any((lake.root / "_staging" / "silver.items").glob("*")), "nothing left in staging"
    more = spark.createDataFrame([(3, "c", "x")], "item_id int, title string, encoder string")
    if how == "merge":
        again = lake.publish_merge(spark, more, "silver.items", ["item_id"], [qc.unique("item_id")])
    else:
        again = lake.publish_overwrite(spark, more, "silver.items", [qc.unique("item_id")])
    assert again.version == 1 and again.rows_written == 1, "the rows written, from the staging write's log"
    assert lake.read(spark, "silver.items", version=0).count() == 2, "the first version stays readable"


def test_a_first_publish_over_a_folder_with_other_files_writes_the_table(spark, lake):
    """A table folder that holds something else (not a Delta table) cannot take the rename: the rows are
    written into it instead, as before."""
    folder = lake.path("silver.items")
    folder.mkdir(parents=True)
    (folder / "README.txt").write_text("left here by hand")
    rows = spark.createDataFrame([(1, "a")], "item_id int, title string")
    res = lake.publish_overwrite(spark, rows, "silver.items", [qc.unique("item_id")])
    assert res.rows_written == 1 and [r.item_id for r in lake.read(spark, "silver.items").collect()] == [1]
    assert (folder / "README.txt").exists()


def test_merge_is_idempotent_and_updates_changed_rows(spark, lake):
    rows = spark.createDataFrame([("a", "A"), ("b", "B")], "item_id string, title string")
    checks = [qc.unique("item_id")]
    lake.publish_merge(spark, rows, "silver.items", ["item_id"], checks, update_columns=["title"])
    again = lake.publish_merge(spark, rows, "silver.items", ["item_id"], checks, update_columns=["title"])
    assert again.skipped and again.version == 0
    changed = spark.createDataFrame([("a", "A2"), ("c", "C")], "item_id string, title string")
    res = lake.publish_merge(spark, changed, "silver.items", ["item_id"], checks, update_columns=["title"])
    assert res.rows_written == 2 and res.version == 1
    assert {r.item_id: r.title for r in lake.read(spark, "silver.items").collect()} == {"a": "A2", "b": "B", "c": "C"}


def test_slate_gate_refuses_short_slates_and_missing_targets(spark, lake):
    c = contract("gold.slates", k=3)
    audit, checks = c.audit, c.checks
    schema = "slate_id string, user_id string, history array<string>, candidates array<string>, target string, labels array<int>, split string"
    ok = ("s1", "u", ["h"], ["a", "b", "c"], "a", [1, 0, 0], "test")
    short = ("s2", "u", ["h"], ["a", "b"], "a", [1, 0], "test")
    no_target = ("s3", "u", ["h"], ["a", "b", "c"], "z", [0, 0, 0], "train")
    with pytest.raises(QualityGateError) as err:
        lake.publish_overwrite(spark, spark.createDataFrame([ok, short, no_target], schema), "gold.slates", checks, audit=audit)
    msg = str(err.value)
    assert "n_candidates: 1 row(s) broke it" in msg
    assert "target_in_candidates: 1 row(s) broke it" in msg
    assert "has_positive: 1 row(s) broke it" in msg
    assert not lake.exists(spark, "gold.slates")


def test_trace_gate_refuses_an_accepted_invalid_answer_and_a_repeated_attempt(spark, lake):
    """gold.traces' contract, read by `gr2 traces`' merge gate and by `gr2 quality run`: an accepted trace
    must be a valid answer (SFT would learn a broken format), and (slate, teacher, attempt) is the key."""
    from gr2.training.traces import TRACES_SCHEMA

    c = contract("gold.traces")

    def trace(slate, attempt, valid, accepted):
        return (slate, "u", "teacher-a", attempt, 0.8, "prompt", "answer", None, ["x"], valid, accepted, 0, None)

    good = [trace("s1", 0, True, True), trace("s2", 0, False, False), trace("s2", 1, None, False)]
    res = lake.publish_merge(spark, spark.createDataFrame(good, TRACES_SCHEMA), "gold.traces", ["slate_id", "teacher", "attempt"],
                             [qc.rows(3), *c.checks], audit=c.audit)
    assert res.rows_written == 3
    bad = [trace("s3", 0, False, True), trace("s4", 0, None, True), trace("s5", 0, True, True), trace("s5", 0, True, True)]
    with pytest.raises(QualityGateError) as err:
        lake.publish_merge(spark, spark.createDataFrame(bad, TRACES_SCHEMA), "gold.traces", ["slate_id", "teacher", "attempt"],
                           c.checks, audit=c.audit)
    msg = str(err.value)
    assert "accepted_invalid: 2 row(s) broke it" in msg and "unique on slate_id,teacher,attempt: 2 row(s)" in msg, msg
    assert lake.version(spark, "gold.traces") == 0
    assert contract("eval.runs").checks  # eval.runs has one too: both are re-checked by `gr2 quality run`


def test_quarantine_keeps_rejects_that_share_a_locator(spark, lake):
    from gr2.etl.schema import QUARANTINE_COLUMNS
    from gr2.platform.keys import QUARANTINE_KEY

    # two logged slates rejected at build: same file, line 0 and reason, different raw text
    rows = [("events", "slate", "gold.slates", 0, raw, "slate without the clicked item", "build", None) for raw in ("s2", "s3")]
    bad = spark.createDataFrame(rows, "source string, kind string, file string, line long, raw string, reason string, stage string, ingest_date date")
    assert bad.columns == QUARANTINE_COLUMNS
    # the table exists already (an earlier run), so the rows go through the MERGE on the key
    lake.publish_merge(spark, bad.limit(0).unionByName(bad.where("raw = 's2'")), "quarantine", QUARANTINE_KEY, [qc.rows(1)])
    lake.publish_merge(spark, bad, "quarantine", QUARANTINE_KEY, [qc.rows(2)])
    assert sorted(r.raw for r in lake.read(spark, "quarantine").collect()) == ["s2", "s3"]


def test_every_nightly_table_has_one_contract_and_a_multi_click_slate_meets_it(spark, lake):
    from gr2.pipelines.nightly import PUBLISHED

    for table in PUBLISHED:
        assert contract(table, k=3).checks, table
    with pytest.raises(ValueError, match="needs k"):
        contract("gold.slates")
    with pytest.raises(KeyError, match="no contract for table 'gold.nope'"):
        contract("gold.nope")
    # A logged slate with two clicks has no single target; the publish gate and the nightly re-check
    # read the same contract, so neither may refuse it (an inline nightly list once required a target).
    c = contract("gold.slates", k=3)
    schema = "slate_id string, user_id string, history array<string>, candidates array<string>, target string, labels array<int>, split string"
    two_clicks = spark.createDataFrame([("s1", "u", ["h"], ["a", "b", "c"], None, [1, 1, 0], "test")], schema)
    assert qc.gate(c.frame(two_clicks), "gold.slates", c.checks, lake.root, raise_on_failure=False) == []


def test_versions_and_first_publish_counts_come_from_the_delta_log_as_spark_reports_them(spark, tmp_path):
    """`log_version` (a listing) equals Delta's history across commits and past a checkpoint (every 10th
    commit); `first_commit_rows` equals a count of a one-commit table, and declines otherwise."""
    from delta.tables import DeltaTable

    from gr2.platform.lake import first_commit_rows, log_version

    path = tmp_path / "t"
    spark.range(7).write.format("delta").save(str(path))
    assert log_version(path) == 0 and first_commit_rows(path) == 7
    for _ in range(11):
        spark.range(3).write.format("delta").mode("append").save(str(path))
        assert log_version(path) == DeltaTable.forPath(spark, str(path)).history(1).collect()[0]["version"]
    assert log_version(path) == 11 and any((path / "_delta_log").glob("*.checkpoint.parquet"))
    assert first_commit_rows(path) is None, "a later commit changed the rows"
    assert log_version(tmp_path / "none") is None
    spark.conf.set("spark.databricks.delta.stats.collect", "false")
    try:
        spark.range(5).write.format("delta").save(str(tmp_path / "nostats"))
    finally:
        spark.conf.unset("spark.databricks.delta.stats.collect")
    assert first_commit_rows(tmp_path / "nostats") is None, "no statistics: the caller counts"


def test_a_gate_leaves_nothing_cached_in_the_session(spark, lake):
    """Great Expectations caches what it validates unless told not to, and never un-caches it: a nightly
    would carry every staged table in memory to its end (before the fix, these 20,000 rows: 310 KB)."""
    def cached() -> dict[str, int]:  # Delta keeps each table's log state cached (a few hundred bytes): not rows
        infos = spark.sparkContext._jsc.sc().getRDDStorageInfo()
        return {i.name(): i.memSize() + i.diskSize() for i in infos if not i.name().startswith("Delta Table State")}

    rows = spark.range(20_000).selectExpr("cast(id as int) as item_id", "concat('title ', id) as title")
    before = cached()
    lake.publish_overwrite(spark, rows, "silver.items", [qc.unique("item_id"), qc.not_null("title"), qc.rows(20_000)])
    lake.publish_merge(spark, rows.where("item_id < 10"), "silver.items", ["item_id"], [qc.unique("item_id")])
    assert cached() == before
