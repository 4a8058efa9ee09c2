"""A quiet console: gr2's own progress and summaries, third-party noise only with --verbose."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gr2.config import SparkConfig
from gr2.platform import spark as sp

START_SPARK = (
    "from gr2.platform.progress import quiet_by_default; quiet_by_default();"
    "from gr2.config import SparkConfig; from gr2.platform.spark import get_spark;"
    "s = get_spark(SparkConfig(master='local[1]', driver_memory='1g')); print(s.range(3).count()); s.stop()"
)


def _env(verbose: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("GR2_VERBOSE", "TQDM_DISABLE", "DS_ACCELERATOR", "PYTHONWARNINGS")}
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    if verbose:
        env["GR2_VERBOSE"] = "1"
    return env


@pytest.mark.parametrize("verbose", [False, True])
def test_spark_starts_without_its_log4j_banner_unless_verbose(verbose):
    res = subprocess.run([sys.executable, "-c", START_SPARK], env=_env(verbose), capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0 and res.stdout.strip() == "3", res.stderr[-2000:]
    if verbose:  # Spark's own default profile, which announces itself (the other lines depend on the host)
        assert "Using Spark's default log4j profile" in res.stderr, res.stderr[-2000:]
        assert "Using incubator modules" in res.stderr, res.stderr[-2000:]  # the JVM's own line, before any logger
    else:
        for line in ("Using Spark's default log4j profile", "NativeCodeLoader", "Setting default log level",
                     "Using incubator modules"):
            assert line not in res.stderr, (line, res.stderr[-2000:])


def test_quiet_defaults_reach_child_processes_unless_verbose():
    probe = ("from gr2.platform.progress import quiet_by_default; quiet_by_default(); import os, glob;"
             "print(os.environ.get('TQDM_DISABLE'), os.environ.get('DS_ACCELERATOR'), bool(glob.glob('/dev/nvidia[0-9]*')))")
    quiet = subprocess.run([sys.executable, "-c", probe], env=_env(False), capture_output=True, text=True).stdout.split()
    assert quiet[0] == "1" and quiet[1] == ("None" if quiet[2] == "True" else "cpu")
    loud = subprocess.run([sys.executable, "-c", probe], env=_env(True), capture_output=True, text=True).stdout.split()
    assert loud[:2] == ["None", "None"]


def test_the_quiet_log4j2_file_is_only_used_when_not_verbose(tmp_path, monkeypatch):
    monkeypatch.delenv("GR2_VERBOSE", raising=False)
    jars = SparkConfig().jars_dir
    conf = sp.spark_conf(SparkConfig())
    path = sp.quiet_log4j2_file(jars)
    assert conf["spark.driver.extraJavaOptions"] == f"-Dlog4j2.configurationFile=file:{path}"
    assert "rootLogger.level = warn" in path.read_text()
    monkeypatch.setenv("GR2_VERBOSE", "1")
    assert "spark.driver.extraJavaOptions" not in sp.spark_conf(SparkConfig())
