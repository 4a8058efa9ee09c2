"""The real data sets (skipped when ../shared/datasets is absent): counts the issue names, slates, metrics."""

import pytest
from conftest import dataset
from script_modules import load_script

from gr2.config import load_config
from gr2.etl import jobs

pytestmark = [pytest.mark.dataset, pytest.mark.slow]


def test_amazon_beauty_p5(spark, lake):
    path = dataset("amazon_beauty")
    cfg = load_config(overrides=["etl.source=amazon-p5", f"etl.path={path}"], lake=str(lake.root))
    ing = jobs.ingest(spark, cfg)
    assert ing["counts"]["interactions"] == {"accepted": 198502, "quarantined": 0, "duplicates_of_published": 0, "other_dates": 0,
                                                "read": 198502}
    silver = lake.read(spark, "silver.interactions")
    assert silver.count() == 198502
    assert silver.select("user_id").distinct().count() == 22363
    assert lake.read(spark, "silver.items").count() == 12101
    b = jobs.build(spark, cfg)
    assert b["users"] == 22363 and b["examples"]["test"] == 22363
    test = b["incoming_order"]["test"]
    # filter policy: a test slate exists exactly when the pre-ranker put the target in its top 10
    assert abs(test["slates"] - b["coverage"]["test"] * 22363) < 3  # coverage is rounded to 4 places
    assert 0 < test["R@1"] <= test["R@5"] <= 1 and 0 < test["NDCG@5"] <= 1


def test_movielens_100k_time_cut(spark, lake):
    path = dataset("movielens_100k")
    cfg = load_config(overrides=["etl.source=movielens", f"etl.path={path}", "etl.split.protocol=time"], lake=str(lake.root))
    ing = jobs.ingest(spark, cfg)
    assert ing["counts"]["interactions"]["accepted"] == 100000
    b = jobs.build(spark, cfg)
    assert b["users"] == 943 and b["time_cuts"]["valid_start"] < b["time_cuts"]["test_start"]
    slates = lake.read(spark, "gold.slates")
    cut = b["time_cuts"]["test_start"]
    assert slates.where(f"split = 'test' AND ts < '{cut}'").count() == 0
    assert slates.where(f"split = 'train' AND ts >= '{b['time_cuts']['valid_start']}'").count() == 0
    assert b["incoming_order"]["test"]["slates"] > 1000


def test_movielens_in_the_amazon_p5_layout_reads_as_an_amazon_data_set(spark, tmp_path):
    """scripts/movielens_as_p5.py: a second data set in Beauty's layout, for the Amazon recipe unchanged
    (configs/beauty.yaml's source): the amazon-p5 reader parses every rating and every movie, none rejected."""

    from gr2.etl.sources import amazon_p5

    mod = load_script("scripts/movielens_as_p5.py")
    stats = mod.convert(dataset("movielens_100k"), tmp_path / "p5")
    assert stats == {"users": 943, "items": 1682, "interactions": 100000}
    batch = amazon_p5.read(spark, str(tmp_path / "p5"))
    inter = batch.interactions.groupBy(batch.interactions.reason.isNull().alias("ok")).count().collect()
    assert {r.ok: r["count"] for r in inter} == {True: 100000}
    items = batch.items.where("reason IS NULL")
    assert items.count() == 1682 and items.select("item_id").distinct().count() == 1682
    assert items.where("size(categories) = 0").count() == 0
