"""The real ETL (ingest + build) on a Spark standalone cluster: a master and one worker on 127.0.0.1.

Master and worker come from the pyspark pip package (SPARK_HOME = the package folder, `bin/spark-class`),
on free ports picked here, logging into tmp_path; the worker offers 1 core and 1 GiB. The ETL runs in a
fresh Python process (the test session may already hold a local SparkSession, and a JVM's master cannot
be switched), with `spark.master=spark://127.0.0.1:PORT` set through the gr2 config. The test then checks
that the master saw the application and its executor ran on the worker, and reads the Delta tables the
job published with the `deltalake` package, without Spark. Teardown kills the two JVMs it started.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from pathlib import Path

import pyspark
import pytest

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]

SPARK_HOME = Path(pyspark.__file__).resolve().parent


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


def wait_for(what: str, check, procs: dict[str, subprocess.Popen], logs: dict[str, Path], timeout: float = 90):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        for name, p in procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"{what}: the Spark {name} exited with {p.returncode}:\n{logs[name].read_text()[-3000:]}")
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = exc
        time.sleep(0.5)
    tails = "\n".join(f"--- {n}\n{log.read_text()[-2000:]}" for n, log in logs.items() if log.exists())
    raise TimeoutError(f"{what} not reached in {timeout:.0f}s (last error: {last})\n{tails}")


def stop(procs: dict[str, subprocess.Popen]) -> None:
    # Worker first, so the master does not log it as lost. spark-class execs the JVM in the foreground, so
    # the Popen's pid is the JVM; its session (start_new_session) holds anything it forked.
    for name in ("worker", "master"):
        p = procs.get(name)
        if p is None or p.poll() is not None:
            continue
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=10)


@pytest.fixture()
def standalone(tmp_path):
    master_port, master_ui, worker_port, worker_ui = free_ports(4)
    env = dict(
        os.environ,
        SPARK_HOME=str(SPARK_HOME),
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_LOG_DIR=str(tmp_path / "spark-logs"),
        SPARK_WORKER_DIR=str(tmp_path / "spark-work"),
        SPARK_DAEMON_MEMORY="256m",  # the master and worker JVMs themselves; executors get their own
        PYSPARK_PYTHON=sys.executable,
    )
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    logs = {"master": tmp_path / "master.log", "worker": tmp_path / "worker.log"}
    procs: dict[str, subprocess.Popen] = {}
    master_url = f"spark://127.0.0.1:{master_port}"
    ui = f"http://127.0.0.1:{master_ui}"
    try:
        with open(logs["master"], "w") as out:
            procs["master"] = subprocess.Popen(
                [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                 "--port", str(master_port), "--webui-port", str(master_ui)],
                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        wait_for("master ALIVE", lambda: get_json(f"{ui}/json/")["status"] == "ALIVE", procs, logs)
        with open(logs["worker"], "w") as out:
            procs["worker"] = subprocess.Popen(
                [spark_class, "org.apache.spark.deploy.worker.Worker", master_url, "--host", "127.0.0.1",
                 "--port", str(worker_port), "--webui-port", str(worker_ui), "--cores", "1", "--memory", "1g",
                 "--work-dir", str(tmp_path / "spark-work")],
                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        wait_for("1 alive worker", lambda: get_json(f"{ui}/json/")["aliveworkers"] == 1, procs, logs)
        yield {"master": master_url, "ui": ui, "worker_ui": f"http://127.0.0.1:{worker_ui}", "env": env, "logs": logs}
    finally:
        stop(procs)
        assert all(p.poll() is not None for p in procs.values())


ETL = textwrap.dedent(
    """
    import json, sys
    from gr2.config import load_config
    from gr2.etl import jobs
    from gr2.platform.progress import Steps
    from gr2.platform.spark import get_spark

    master, lake, app = sys.argv[1:4]
    conf = {
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.executor.memory": "640m",
        "spark.executor.cores": "1",
        "spark.cores.max": "1",
    }
    cfg = load_config(
        overrides=[
            f"spark.master={master}",
            f"spark.app_name={app}",
            "spark.driver_memory=1g",
            "spark.shuffle_partitions=2",
            "spark.conf=" + json.dumps(conf),  # a YAML flow mapping: the keys themselves hold dots
            "etl.source=synthetic",
            "etl.synthetic.users=150",
            "etl.synthetic.items=80",
            "etl.synthetic.days=20",
            "etl.synthetic.partitions=2",
            "etl.k=5",
            "etl.history_len=5",
        ],
        lake=lake,
    )
    spark = get_spark(cfg.spark)
    assert spark.sparkContext.master == master, spark.sparkContext.master
    try:
        steps = Steps(quiet=True)
        ingest = jobs.ingest(spark, cfg, steps=steps)
        build = jobs.build(spark, cfg, steps=steps)
    finally:
        spark.stop()
    print("RESULT " + json.dumps({"ingest": ingest["counts"], "slates": build["slates"], "users": build["users"],
                                  "step_seconds": {k: round(v, 1) for k, v in steps.timings.items()}}))
    """
)


def test_etl_on_standalone_cluster(standalone, tmp_path):
    from deltalake import DeltaTable

    lake = tmp_path / "lake"
    app = f"gr2-standalone-{uuid.uuid4().hex[:8]}"
    script = tmp_path / "etl_job.py"
    script.write_text(ETL)
    t0 = time.time()
    # Its own session, so the driver JVM it starts goes too if the test is cut short.
    proc = subprocess.Popen(
        [sys.executable, str(script), standalone["master"], str(lake), app], env=standalone["env"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=480)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    elapsed = time.time() - t0
    assert proc.returncode == 0, f"{stdout[-3000:]}\n{stderr[-5000:]}"
    result = json.loads(next(line for line in stdout.splitlines() if line.startswith("RESULT "))[7:])
    print(f"ETL on the standalone cluster took {elapsed:.1f}s: {result}")

    # The master ran our application (completed once the session stopped) ...
    state = {}
    deadline = time.time() + 30
    while time.time() < deadline:
        state = get_json(f"{standalone['ui']}/json/")
        if any(a["name"] == app for a in state["completedapps"]):
            break
        time.sleep(0.5)
    apps = [a for a in state["completedapps"] + state["activeapps"] if a["name"] == app]
    assert apps, f"{app} not among the master's applications: {state}"
    # ... and its executor ran on the worker, not in the driver.
    worker = get_json(f"{standalone['worker_ui']}/json/")
    executors = [e for e in worker["finishedexecutors"] + worker["executors"] if e["appid"] == apps[0]["id"]]
    assert executors, worker

    # The published tables, read without Spark.
    def rows(table: str) -> int:
        return DeltaTable(str(lake / table)).to_pyarrow_table().num_rows

    assert rows("silver/interactions") == result["ingest"]["interactions"]["accepted"] > 0
    assert rows("silver/items") == result["ingest"]["items"]["accepted"] > 0
    assert rows("gold/sequences") == result["users"] > 0
    assert rows("gold/slates") == result["slates"] > 0
    assert rows("bronze/events") > 0
