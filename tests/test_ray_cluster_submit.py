"""gr2 submit against a real two-node Ray cluster on 127.0.0.1, token authentication on.

A head and one worker node (`ray start --block`, 1 CPU each, their own --temp-dir, free ports picked
here, RAY_AUTH_MODE=token with a token made up for this run) form the cluster; the tests submit jobs to
its Jobs API through gr2.pipelines.submit: a Ray Train smoke job (TorchTrainer, 2 gloo workers, one per
node), a staged --config outside the working dir, the typer command, and requests without / with a wrong
token. Teardown stops only the processes started here: every one of them carries a marker in its
environment, and whatever still has it after the `ray start --block` parents are told to stop is killed.
`ray stop` is not used, as it would stop every Ray on the machine.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner

from gr2.pipelines import submit as sub
from gr2.platform.standalone import free_ports, wait_for

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
RAY = str(VENV_BIN / "ray")
MARKER_VAR = "GR2_TEST_RAY_CLUSTER"


def marked_pids(marker: str) -> list[int]:
    """Processes whose environment carries our marker (everything this test's Ray started)."""
    needle = f"{MARKER_VAR}={marker}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def stop_processes(procs: list[subprocess.Popen], marker: str, grace_s: float = 5.0) -> list[int]:
    """SIGTERM the `ray start --block` parents and every marked Ray process, then SIGKILL what is left
    after grace_s. (`ray start --block` alone takes 20 s and more to wind its node down.) Returns the
    pids that needed SIGKILL."""
    targets = {p.pid for p in procs if p.poll() is None} | set(marked_pids(marker))
    for pid in targets:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + grace_s
    while time.time() < deadline and (marked_pids(marker) or any(p.poll() is None for p in procs)):
        time.sleep(0.3)
    left = marked_pids(marker)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)
    deadline = time.time() + 10
    while time.time() < deadline and marked_pids(marker):  # SIGKILL is not instant either
        time.sleep(0.2)
    return left


class Cluster:
    def __init__(self, address: str, token: str, tmp: Path):
        self.address, self.token, self.tmp = address, token, tmp

    def get(self, path: str, token: str | None = "default") -> requests.Response:
        tok = self.token if token == "default" else token
        headers = {"Authorization": f"Bearer {tok}"} if tok else {}
        return requests.get(self.address + path, headers=headers, timeout=10)

    def alive_nodes(self) -> list[dict]:
        r = self.get("/nodes?view=summary")
        r.raise_for_status()
        rows = r.json()["data"]["summary"]
        return [n for n in rows if n.get("raylet", {}).get("state") == "ALIVE"]


def _wait(what: str, check, timeout: float, procs: list[subprocess.Popen], logs: list[Path]):
    wait_for(what, check, {f"`ray start` ({log.name})": p for p, log in zip(procs, logs)},
             {f"`ray start` ({log.name})": log for log in logs}, timeout)


@pytest.fixture(scope="module")
def cluster():
    # A short path: Ray's Unix sockets live under the temp dir and socket paths are limited to 107 bytes.
    tmp = Path(tempfile.mkdtemp(prefix="gr2ray-", dir="/tmp"))
    token = secrets.token_hex(32)
    marker = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=token,
        RAY_USAGE_STATS_ENABLED="0",
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",  # the job's `python` is this venv's
        **{MARKER_VAR: marker},
    )
    (gcs, dash, client_h, agent_h, agent_grpc_h, rtenv_h, metrics_h, nm_h, om_h,
     client_w, agent_w, agent_grpc_w, rtenv_w, metrics_w, nm_w, om_w) = free_ports(16)
    common = ["--block", "--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--temp-dir", str(tmp / "ray"),
              "--object-store-memory", str(100 * 1024 * 1024), "--disable-usage-stats"]
    head_cmd = [RAY, "start", "--head", "--port", str(gcs), "--dashboard-port", str(dash), "--dashboard-host", "127.0.0.1",
                "--include-dashboard", "true", "--ray-client-server-port", str(client_h),
                "--dashboard-agent-listen-port", str(agent_h), "--dashboard-agent-grpc-port", str(agent_grpc_h),
                "--runtime-env-agent-port", str(rtenv_h), "--metrics-export-port", str(metrics_h),
                "--node-manager-port", str(nm_h), "--object-manager-port", str(om_h), *common]
    worker_cmd = [RAY, "start", "--address", f"127.0.0.1:{gcs}",
                  "--dashboard-agent-listen-port", str(agent_w), "--dashboard-agent-grpc-port", str(agent_grpc_w),
                  "--runtime-env-agent-port", str(rtenv_w), "--metrics-export-port", str(metrics_w),
                  "--node-manager-port", str(nm_w), "--object-manager-port", str(om_w), *common]
    procs: list[subprocess.Popen] = []
    logs = [tmp / "head.log", tmp / "worker.log"]
    c = Cluster(f"http://127.0.0.1:{dash}", token, tmp)
    try:
        t0 = time.time()
        with open(logs[0], "w") as out:
            procs.append(subprocess.Popen(head_cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True, cwd=tmp))
        _wait("head dashboard", lambda: c.get("/api/version").ok, 120, procs, logs)
        with open(logs[1], "w") as out:
            procs.append(subprocess.Popen(worker_cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True, cwd=tmp))
        _wait("2 alive nodes", lambda: len(c.alive_nodes()) == 2, 120, procs, logs)
        print(f"ray cluster up in {time.time() - t0:.1f}s at {c.address}")
        yield c
    finally:
        left = stop_processes(procs, marker)
        if left:
            print(f"killed {len(left)} Ray processes that outlived their parents: {left}")
        assert not marked_pids(marker), "Ray processes of this test are still running"
        shutil.rmtree(tmp, ignore_errors=True)


def test_token_auth_is_enforced(cluster):
    assert cluster.get("/api/jobs/", token=None).status_code == 401
    assert cluster.get("/api/jobs/").status_code == 200


def test_train_smoke_job_uses_both_nodes(cluster):
    node_ids = {n["raylet"]["nodeId"] for n in cluster.alive_nodes()}
    out = io.StringIO()
    t0 = time.time()
    result = sub.submit(
        ["--num-workers", "2", "--steps", "20", "--placement-strategy", "STRICT_SPREAD",
         "--storage-path", str(cluster.tmp / "ray_results")],
        address=cluster.address,
        working_dir=REPO,  # the checkout itself, with DEFAULT_EXCLUDES (no .venv, lake, benchmarks/out)
        module="gr2.platform.smoke",
        token=cluster.token,
        out=out,
    )
    print(f"smoke job {result.job_id}: {result.status} in {time.time() - t0:.1f}s")
    assert result.status == "SUCCEEDED", result.logs[-4000:]
    assert result.exit_code == 0
    assert out.getvalue() == result.logs  # streamed as it ran, and returned
    loss = re.search(r"smoke: loss ([\d.]+) -> ([\d.]+) after 20 steps on 2 workers", result.logs)
    assert loss, result.logs[-4000:]
    assert float(loss.group(2)) < float(loss.group(1))
    nodes = re.search(r"smoke: worker nodes (\S+) (\S+) \(2 distinct\)", result.logs)
    assert nodes, result.logs[-4000:]
    assert {nodes.group(1), nodes.group(2)} == node_ids  # one worker on the head, one on the worker node
    assert result.entrypoint.startswith("python -m gr2.platform.smoke --num-workers 2")

    # status / logs / list of the finished job
    assert sub.status(result.job_id, cluster.address, token=cluster.token).status == "SUCCEEDED"
    assert "smoke: loss" in sub.logs(result.job_id, cluster.address, token=cluster.token)
    assert result.job_id in [j.job_id for j in sub.list_jobs(cluster.address, token=cluster.token)]


def test_config_outside_working_dir_is_staged_and_env_filtered(cluster, tmp_path, monkeypatch):
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "probe.py").write_text(
        "import os, sys\n"
        "args = sys.argv[1:]\n"
        "print('probe argv', args)\n"
        "print('probe config', open(args[args.index('--config') + 1]).read().strip())\n"
        "print('probe env', os.environ.get('GR2_PROBE'), os.environ.get('GR2_API_KEY'), os.environ.get('OTHER_PROBE'))\n"
    )
    cfg = tmp_path / "elsewhere" / "job.yaml"
    cfg.parent.mkdir()
    cfg.write_text("etl:\n  k: 7\n")
    monkeypatch.setenv("GR2_PROBE", "through")
    monkeypatch.setenv("GR2_API_KEY", "must-not-travel")
    monkeypatch.setenv("OTHER_PROBE", "must-not-travel")
    result = sub.submit(["hello world"], cluster.address, wd, cfg, {"GR2_EXPLICIT": "1"}, module="probe",
                        token=cluster.token, out=io.StringIO())
    assert result.status == "SUCCEEDED", result.logs
    assert "probe argv ['hello world', '--config', '.gr2-submit/job.yaml']" in result.logs
    assert "probe config etl:\n  k: 7" in result.logs.replace("\r", "")
    assert "probe env through None None" in result.logs
    assert "must-not-travel" not in result.logs
    assert not list(Path(tempfile.gettempdir()).glob("gr2-submit-*/wd/probe.py"))  # staging copy removed

    # A failing job maps to exit code 1.
    failed = sub.submit(["x"], cluster.address, wd, module="no_such_module_gr2", token=cluster.token, out=io.StringIO())
    assert (failed.status, failed.exit_code) == ("FAILED", 1)


def test_cli_command(cluster, tmp_path, monkeypatch):
    from gr2.cli import app
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("RAY_AUTH_TOKEN", cluster.token)
    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    runner = CliRunner()
    # The real gr2 CLI, run on the cluster from the uploaded checkout; --help's own option passes through.
    r = runner.invoke(app, ["submit", "--", "etl", "--help"])
    assert r.exit_code == 0, r.output
    assert "ingest" in r.output and "build" in r.output
    job_id = re.search(r"job (raysubmit_\w+) SUCCEEDED", r.output).group(1)

    r = runner.invoke(app, ["submit", "--status", job_id])
    assert r.exit_code == 0 and "SUCCEEDED" in r.output, r.output
    r = runner.invoke(app, ["submit", "--logs", job_id])
    assert r.exit_code == 0 and "ingest" in r.output
    r = runner.invoke(app, ["submit", "--list"])
    assert r.exit_code == 0 and job_id in r.output

    # A command that fails on the cluster gives exit code 1. The working dir holds no gr2 here: the
    # cluster runs this venv, where gr2 is installed (editable), so `python -m gr2.cli` still imports.
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "note.txt").write_text("not code\n")
    r = runner.invoke(app, ["submit", "--working-dir", str(wd), "--env", "GR2_X=1", "--", "no-such-command"])
    assert r.exit_code == 1, r.output
    assert "No such command" in r.output and "FAILED" in r.output

    # --no-wait prints the job id and returns.
    r = runner.invoke(app, ["submit", "--no-wait", "--working-dir", str(wd), "--", "--help"])
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines()[-1].startswith("raysubmit_")
    r = runner.invoke(app, ["submit", "--help"])
    assert "--no-wait" in r.output


def test_stop_maps_to_130(cluster, tmp_path):
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "sleeper.py").write_text("import time\nprint('sleeping', flush=True)\ntime.sleep(300)\n")
    r = sub.submit([], cluster.address, wd, module="sleeper", token=cluster.token, wait=False)
    assert r.status == "PENDING" and r.exit_code is None
    deadline = time.time() + 60
    while sub.status(r.job_id, cluster.address, token=cluster.token).status == "PENDING" and time.time() < deadline:
        time.sleep(0.5)
    assert sub.stop(r.job_id, cluster.address, token=cluster.token)
    while time.time() < deadline:
        final = sub.status(r.job_id, cluster.address, token=cluster.token)
        if final.status in sub.TERMINAL:
            break
        time.sleep(0.5)
    assert (final.status, final.exit_code) == ("STOPPED", 130)


def test_without_token_the_message_says_to_set_it(cluster, tmp_path, monkeypatch):
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token either
    assert sub.find_token() is None
    with pytest.raises(sub.SubmitAuthError) as err:
        sub.submit(["--help"], cluster.address, tmp_path, out=io.StringIO())
    msg = str(err.value)
    assert "RAY_AUTH_TOKEN" in msg and "none was found" in msg
    assert cluster.token not in msg

    with pytest.raises(sub.SubmitAuthError) as err:
        sub.status("raysubmit_nope", cluster.address, token="not-the-token")
    msg = str(err.value)
    assert "RAY_AUTH_TOKEN" in msg and "rejected" in msg
    assert cluster.token not in msg and "not-the-token" not in msg

    # The command says the same, with exit code 2.
    from gr2.cli import app
    r = CliRunner().invoke(app, ["submit", "--address", cluster.address, "--list"])
    assert r.exit_code == 2
    assert "RAY_AUTH_TOKEN" in r.output and cluster.token not in r.output


def test_unreachable_address_is_a_clear_error():
    (port,) = free_ports(1)
    with pytest.raises(sub.SubmitError, match="cannot reach the Ray Jobs API"):
        sub.list_jobs(f"http://127.0.0.1:{port}", token="x")


def test_excludes_and_passthrough_without_a_cluster(tmp_path):
    root = tmp_path / "repo"
    for rel in ["gr2/platform/lake.py", "lake/bronze/x.parquet", "lake-small/a", "benchmarks/out/big.bin",
                "benchmarks/run.py", ".venv/bin/python", "dist/gr2-0.1.0-py3-none-any.whl", "configs/a.yaml",
                "gr2/__pycache__/x.pyc", "ignored_by_git/x", ".env"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    (root / ".gitignore").write_text("/ignored_by_git/\n")
    ex = list(sub.DEFAULT_EXCLUDES)
    assert not sub._excluded(root, root / "gr2/platform/lake.py", ex)
    assert not sub._excluded(root, root / "configs/a.yaml", ex)
    assert sub._excluded(root, root / "lake/bronze/x.parquet", ex)
    assert sub._excluded(root, root / "lake-small/a", ex)
    assert sub._excluded(root, root / "ignored_by_git/x", ex)
    staged, rel = sub._stage(root, root / "configs/a.yaml", ex)
    try:
        files = sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file())
        assert files == [".gitignore", ".gr2-submit/a.yaml", "benchmarks/run.py", "configs/a.yaml",
                         "gr2/platform/lake.py", "ignored_by_git/x"]
        assert rel == ".gr2-submit/a.yaml"
    finally:
        shutil.rmtree(staged.parent)
    env = {"GR2_LAKE": "/lake", "GR2_OPENAI_API_KEY": "s", "GR2_DB_PASSWORD": "s", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": "s", "AWS_SECRET_ACCESS_KEY": "s", "HOME": "/root"}
    assert sub.passthrough_env(env) == {"GR2_LAKE": "/lake", "RAY_AUTH_MODE": "token"}
    assert sub.entrypoint(["etl", "ingest", "--set", "etl.path=a b"]) == "python -m gr2.cli etl ingest --set 'etl.path=a b'"
    assert sub.find_token({"RAY_AUTH_TOKEN": " abc \n"}) == "abc"
    tok = tmp_path / "tok"
    tok.write_text("fromfile\n")
    assert sub.find_token({"RAY_AUTH_TOKEN_PATH": str(tok)}, home=tmp_path / "nohome") == "fromfile"
    assert sub.find_token({}, home=tmp_path / "nohome") is None


@pytest.mark.parametrize("items, environ, expected", [
    (["GR2_LAKE=/lake", "MODE=a=b"], {}, {"GR2_LAKE": "/lake", "MODE": "a=b"}),
    (["OPENAI_API_KEY"], {"OPENAI_API_KEY": "sk-1"}, {"OPENAI_API_KEY": "sk-1"}),  # a secret travels by name
    (["OPENAI_API_KEY=sk-1"], {}, "export OPENAI_API_KEY in this shell and pass --env OPENAI_API_KEY"),
    (["RAY_AUTH_TOKEN=abc"], {}, "stays in the shell history"),
    (["MISSING"], {}, "MISSING is not set in this shell"),
    (["1BAD=x"], {}, "expects NAME=VALUE or NAME"),
    (["=x"], {}, "expects NAME=VALUE or NAME"),
])
def test_env_options_pass_secrets_by_name_never_by_value(items, environ, expected):
    if isinstance(expected, dict):
        assert sub.env_options(items, environ) == expected
    else:
        with pytest.raises(ValueError, match=re.escape(expected)):
            sub.env_options(items, environ)
