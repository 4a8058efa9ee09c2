"""Spark sessions with Delta Lake, started from locally cached JARs.

The delta-spark wheel carries no JARs. We resolve `delta-spark` and `delta-storage` from Maven Central
once (with `mvn dependency:copy`) into `spark.jars_dir`, and every later session puts those files on
the classpath by path, so sessions start offline and CI does not hit the network per test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from gr2.config import SparkConfig

# delta-spark 4.0.x is built for Spark 4.0 / Scala 2.13; keep in step with pyproject.toml.
DELTA_VERSION = "4.0.1"
SCALA_BINARY = "2.13"
DELTA_ARTIFACTS = (f"io.delta:delta-spark_{SCALA_BINARY}:{DELTA_VERSION}", f"io.delta:delta-storage:{DELTA_VERSION}")


class SparkSetupError(RuntimeError):
    pass


def _jar_name(coordinate: str) -> str:
    _, artifact, version = coordinate.split(":")
    return f"{artifact}-{version}.jar"


def ensure_delta_jars(jars_dir: str | Path) -> list[Path]:
    """Return the local Delta JARs, fetching them with Maven the first time."""
    folder = Path(jars_dir).expanduser()
    wanted = [folder / _jar_name(c) for c in DELTA_ARTIFACTS]
    missing = [c for c, p in zip(DELTA_ARTIFACTS, wanted) if not p.exists()]
    if not missing:
        return wanted
    mvn = shutil.which("mvn")
    if mvn is None:
        raise SparkSetupError(
            f"Delta Lake JARs are not in {folder} and Maven (mvn) is not installed to fetch them. "
            f"Install Maven, or copy {', '.join(_jar_name(c) for c in missing)} into {folder}."
        )
    folder.mkdir(parents=True, exist_ok=True)
    for coordinate in missing:
        print(f"gr2: fetching {coordinate} into {folder} (once)", file=sys.stderr)
        proc = subprocess.run(
            [mvn, "-q", "-B", "dependency:copy", f"-Dartifact={coordinate}", f"-DoutputDirectory={folder}"],
            capture_output=True,
            text=True,
            cwd=folder,
        )
        if proc.returncode != 0:
            raise SparkSetupError(f"mvn could not fetch {coordinate}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    still = [p for p in wanted if not p.exists()]
    if still:
        raise SparkSetupError(f"after mvn dependency:copy these JARs are still missing: {still}")
    return wanted


# Spark's JVM starts with this log4j2 file unless --verbose: without one it announces its default profile,
# the log level and a missing native-Hadoop library on every start, before setLogLevel can run. The
# root stays at WARN, the level Spark gives a PySpark driver anyway: at any other level it announces
# "Setting default log level". get_spark lowers it to ERROR once the session is up.
QUIET_LOG4J2 = """rootLogger.level = warn
logger.hadoop_native.name = org.apache.hadoop.util.NativeCodeLoader
logger.hadoop_native.level = error
rootLogger.appenderRef.stderr.ref = stderr
appender.stderr.type = Console
appender.stderr.name = stderr
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
"""


def quiet_log4j2_file(folder) -> Path:
    path = Path(folder).expanduser() / "log4j2-quiet.properties"
    if not path.exists() or path.read_text() != QUIET_LOG4J2:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(QUIET_LOG4J2)
        tmp.replace(path)
    return path


def spark_conf(cfg: SparkConfig) -> dict[str, str]:
    jars = ensure_delta_jars(cfg.jars_dir)
    conf = {
        "spark.jars": ",".join(str(j) for j in jars),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.shuffle.partitions": str(cfg.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.memory": cfg.driver_memory,
        "spark.ui.showConsoleProgress": "false",
        "spark.ui.enabled": "false",
        "spark.sql.adaptive.enabled": "true",
        # Delta table writes of small tables are dominated by file count; keep them few.
        "spark.databricks.delta.optimizeWrite.enabled": "true",
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.databricks.delta.stats.collect": "true",
        "spark.python.worker.reuse": "true",
        # Columnar driver <-> executor transfers (toPandas, createDataFrame from pandas).
        "spark.sql.execution.arrow.pyspark.enabled": "true",
    }
    from gr2.platform.progress import verbose

    if not verbose():
        conf["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile=file:{quiet_log4j2_file(cfg.jars_dir)}"
    if cfg.master.startswith("local"):
        conf["spark.driver.host"] = "127.0.0.1"
        conf["spark.driver.bindAddress"] = "127.0.0.1"
    conf.update(cfg.conf)
    return conf


def get_spark(cfg: SparkConfig | None = None):
    """The active session if there is one, else a new one with Delta configured."""
    from pyspark.sql import SparkSession

    cfg = cfg or SparkConfig()
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    # Executors must run the same Python as the driver (a venv, not the system python).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    conf = spark_conf(cfg)
    from gr2.platform.progress import verbose

    if not verbose():
        _launch_filtered_gateway(cfg, conf)
    builder = SparkSession.builder.master(cfg.master).appName(cfg.app_name)
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


# Lines the JVM writes to its stderr before any logger exists, so log4j2's quiet file cannot stop them.
# Spark 4's launcher adds `--add-modules=jdk.incubator.vector`, and the JVM announces it on every start.
JVM_NOISE = (b"WARNING: Using incubator modules",)


def _launch_filtered_gateway(cfg: SparkConfig, conf: dict[str, str]) -> None:
    """Start Spark's JVM as pyspark would, but with its stderr through a pipe that drops `JVM_NOISE` and
    passes every other line on to this process's stderr (Spark's errors stay visible). The SparkContext
    that getOrCreate builds next takes this gateway instead of launching its own."""
    import threading

    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    if SparkContext._gateway is not None or "PYSPARK_GATEWAY_PORT" in os.environ:
        return
    spark_conf_ = SparkConf(loadDefaults=False).setMaster(cfg.master).setAppName(cfg.app_name).setAll(list(conf.items()))
    # The reader runs before the JVM does, so a JVM that dies at start still has its error printed.
    read_end, write_end = os.pipe()

    def forward():  # for the JVM's life: a full pipe would block the JVM, so it is always drained
        with os.fdopen(read_end, "rb") as pipe:
            for line in iter(pipe.readline, b""):
                if not line.startswith(JVM_NOISE):
                    try:
                        os.write(2, line)
                    except OSError:
                        pass

    threading.Thread(target=forward, name="gr2-spark-stderr", daemon=True).start()
    try:
        gateway = launch_gateway(spark_conf_, popen_kwargs={"stderr": write_end})
    finally:
        os.close(write_end)  # the JVM holds its own copy; ours would keep the pipe open after it exits
    SparkContext._ensure_initialized(gateway=gateway, conf=spark_conf_)
