"""Shared fixtures: one real local Spark session with Delta for the whole run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATASETS = Path(os.environ.get("GR2_DATASETS", SHARED / "datasets"))

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


def dataset(name: str) -> Path:
    path = DATASETS / name
    if not path.exists():
        pytest.skip(f"data set {path} is absent")
    return path


@pytest.fixture(scope="session")
def spark():
    from gr2.config import SparkConfig
    from gr2.platform.spark import get_spark

    session = get_spark(SparkConfig(master="local[2]", shuffle_partitions=4, driver_memory="3g"))
    yield session
    session.stop()


@pytest.fixture()
def lake(tmp_path):
    from gr2.platform.lake import Lake

    return Lake(tmp_path / "lake")
