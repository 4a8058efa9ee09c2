"""A Spark standalone cluster on 127.0.0.1 from the pyspark package: one master and N workers.

For the tests and benchmarks that are about clusters (the scaling run of docs/benchmarks.md, the ETL test
on a standalone master): SPARK_HOME is the pyspark package folder (`bin/spark-class`), ports are picked
free, each daemon logs into the cluster's folder, and `stop()` kills the JVMs it started (workers first,
so the master does not log them as lost). A driver that uses the cluster runs in its own process with
`env` (a JVM's master cannot be switched once a SparkSession exists).

    with StandaloneCluster(root, workers=2, cores=1, memory="2g") as c:
        subprocess.run([sys.executable, "job.py", c.master], env=c.env)
        c.apps()  # the master's view: applications, their cores and state
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


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


def get_json(url: str, timeout: float = 5) -> dict | list:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def wait_for(what: str, check, procs: dict, logs: dict, timeout: float = 90) -> None:
    """Poll `check()` until it is true; fail at once, with its log's tail, when a process of `procs` (name ->
    Popen; `logs`: name -> its log file) has exited, and after `timeout` seconds with every log's tail."""
    deadline, last = time.time() + timeout, None
    while time.time() < deadline:
        for name, p in procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"{what}: {name} exited with {p.returncode}:\n{Path(logs[name]).read_text()[-3000:]}")
        try:
            if check():
                return
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = exc
        time.sleep(0.5)
    tails = "\n".join(f"--- {n}\n{Path(log).read_text()[-2000:]}" for n, log in logs.items() if Path(log).exists())
    raise TimeoutError(f"{what} not reached in {timeout:.0f}s (last error: {last})\n{tails}")


class StandaloneCluster:
    """A master and `workers` workers of `cores` cores and `memory` each, logging under `root`."""

    def __init__(self, root: Path, workers: int = 1, cores: int = 1, memory: str = "1g", daemon_memory: str = "256m"):
        self.root, self.workers, self.cores, self.memory = Path(root), workers, cores, memory
        self.root.mkdir(parents=True, exist_ok=True)
        self.env = dict(
            os.environ, SPARK_HOME=str(spark_home()), SPARK_LOCAL_IP="127.0.0.1",
            SPARK_LOG_DIR=str(self.root / "spark-logs"), SPARK_WORKER_DIR=str(self.root / "spark-work"),
            SPARK_DAEMON_MEMORY=daemon_memory,  # the master and worker JVMs themselves; executors get their own
            PYSPARK_PYTHON=sys.executable,
        )
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        port, ui = free_ports(2)
        self.master, self.ui = f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui}"
        self._master_port, self._master_ui = port, ui
        self.worker_uis: list[str] = []

    def _spawn(self, name: str, args: list[str]) -> None:
        self.logs[name] = self.root / f"{name}.log"
        with open(self.logs[name], "w") as out:
            self.procs[name] = subprocess.Popen(
                [str(spark_home() / "bin" / "spark-class"), *args], env=self.env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )

    def wait_for(self, what: str, check, timeout: float = 90) -> None:
        wait_for(what, check, {f"the Spark {n}": p for n, p in self.procs.items()},
                 {f"the Spark {n}": log for n, log in self.logs.items()}, timeout)

    def state(self) -> dict:
        return get_json(f"{self.ui}/json/")

    def start(self) -> StandaloneCluster:
        try:
            self._spawn("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                   "--port", str(self._master_port), "--webui-port", str(self._master_ui)])
            self.wait_for("master ALIVE", lambda: self.state()["status"] == "ALIVE")
            for w in range(self.workers):
                port, ui = free_ports(2)
                self._spawn(f"worker{w}", ["org.apache.spark.deploy.worker.Worker", self.master, "--host", "127.0.0.1",
                                           "--port", str(port), "--webui-port", str(ui), "--cores", str(self.cores),
                                           "--memory", self.memory, "--work-dir", str(self.root / "spark-work" / f"w{w}")])
                self.worker_uis.append(f"http://127.0.0.1:{ui}")
            self.wait_for(f"{self.workers} alive worker(s)", lambda: self.state()["aliveworkers"] == self.workers)
        except BaseException:
            self.stop()
            raise
        return self

    def apps(self, name: str | None = None) -> list[dict]:
        """The master's applications (active and completed), those named `name` only when given."""
        s = self.state()
        return [a for a in s["activeapps"] + s["completedapps"] if name is None or a["name"] == name]

    def stop(self) -> None:
        # Workers first; spark-class execs the JVM in the foreground, so a Popen's pid is the JVM, and its
        # session (start_new_session) holds anything it forked.
        for name in sorted((n for n in self.procs if n != "master"), reverse=True) + ["master"]:
            p = self.procs.get(name)
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

    def __enter__(self) -> StandaloneCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
