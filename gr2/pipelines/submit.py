"""Run any gr2 command on a Ray cluster as a Ray Job (`gr2 submit -- etl build --config ...`).

The job's entrypoint is `python -m gr2.cli <argv...>`, run in the cluster with this checkout as its
`working_dir`: the code on the cluster is the code you have, and `python -m gr2.cli` imports it from
the job's working directory (which Ray puts first on the path), whatever gr2 the cluster's image has.
The cluster must have gr2's dependencies installed (docker/ray.Dockerfile does that).

What travels
  * working_dir minus DEFAULT_EXCLUDES (virtual environments, lakes, benchmark output, .git, .env,
    wheels, caches; Ray also honours the folder's .gitignore). Ray refuses uploads over ~512 MiB (its gRPC
    message limit), so the excludes matter: benchmarks/out alone can be gigabytes.
  * --config FILE: a file inside working_dir travels with it and is passed by its relative path. A
    file outside it (or excluded from it) is handled by staging: working_dir is copied (with the same
    excludes) to a temporary folder with the config beside it in `.gr2-submit/`, that folder is
    uploaded, and the temporary copy is deleted once the upload is done. A copy instead of py_modules
    or an inline YAML, because the job then sees one ordinary file at a relative path.
  * env_vars: GR2_* variables of this process (except names that look like secrets: *KEY*, *TOKEN*,
    *SECRET*, *PASSWORD*, *CREDENTIAL*) and RAY_AUTH_MODE, plus what `env=` gives explicitly. Nothing
    else: the cluster's own environment (RAY_AUTH_TOKEN included) is what its processes already have.

Token authentication (on by default from Ray 2.52): the token is read from RAY_AUTH_TOKEN, else the file
named by RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token, and sent as `Authorization: Bearer ...` on every
request, whatever RAY_AUTH_MODE this process has (Ray's SDK only sends it when RAY_AUTH_MODE=token here).
A refused request raises SubmitAuthError, whose message says to set RAY_AUTH_TOKEN; the token itself is
never printed.

Exit codes of a waited job: SUCCEEDED 0, FAILED 1, STOPPED 130.
"""

# Why one module of about 400 lines: its three sections (the connection and its token, what travels, the
# job's life) are each small, and they are one client: the CLI (gr2/cli/submit.py), the exit-code map
# (gr2.platform.exits names gr2.pipelines.submit.SubmitError) and tests/test_ray_cluster_submit.py (down to
# _excluded and _stage) reach it as one module. A split would only add re-exports for them.

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterable

from gr2.platform import exits

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
# gitignore syntax relative to working_dir (how Ray reads runtime_env["excludes"]). Patterns without a
# trailing slash so whole folders are pruned rather than walked file by file. `/lake*` is anchored:
# an unanchored `lake*` would also drop gr2/platform/lake.py.
DEFAULT_EXCLUDES: tuple[str, ...] = (
    ".env",  # docker compose's secrets file (RAY_AUTH_TOKEN): never uploaded
    ".git",
    ".venv",
    "venv",
    "/lake*",
    "/benchmarks/out",
    "/build",
    "/dist",
    "*.whl",
    "*.tar.gz",
    "node_modules",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    "*.egg-info",
    "spark-warehouse",
    "metastore_db",
    "derby.log",
    "ray_results",
    "mlruns",
)
PASSTHROUGH_PREFIXES = ("GR2_",)
PASSTHROUGH_NAMES = ("RAY_AUTH_MODE",)
SECRET_HINTS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL")
# A finished job's status as `gr2 submit`'s exit code (the command inside the job has its own code in the logs).
EXIT_CODES = {"SUCCEEDED": exits.OK, "FAILED": exits.JOB_FAILED, "STOPPED": exits.STOPPED}
TERMINAL = frozenset(EXIT_CODES)
STAGED_CONFIG_DIR = ".gr2-submit"
AUTH_HINT = (
    "Set RAY_AUTH_TOKEN to the cluster's token (or put it in ~/.ray/auth_token, or name a file with "
    "RAY_AUTH_TOKEN_PATH); on the head node `ray get-auth-token` prints it."
)


class SubmitError(RuntimeError):
    """A job could not be submitted or queried; the message says why."""


class SubmitAuthError(SubmitError):
    """The cluster refused the request: no token, or the wrong one."""


@dataclass
class JobResult:
    job_id: str
    status: str
    exit_code: int | None = None  # 0/1/130 once terminal, None while PENDING or RUNNING
    message: str = ""
    entrypoint: str = ""
    start_time: int | None = None  # ms since the epoch, as Ray reports it
    end_time: int | None = None
    logs: str = field(default="", repr=False)  # what was streamed, when submit() waited

    @property
    def ok(self) -> bool:
        return self.status == "SUCCEEDED"


# ---------------------------------------------------------------------------------------------------------
# connection and authentication


def resolve_address(address: str | None = None) -> str:
    """--address, else RAY_ADDRESS, else the local default. Like `ray job`, RAY_ADDRESS must name the
    dashboard (http://host:8265) here, not the GCS port."""
    return (address or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS).rstrip("/")


def find_token(environ: dict | None = None, home: str | Path | None = None) -> str | None:
    """The Ray auth token, looked up where Ray itself looks: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token."""
    env = os.environ if environ is None else environ
    token = env.get("RAY_AUTH_TOKEN", "").strip()
    if token:
        return token
    candidates = []
    if env.get("RAY_AUTH_TOKEN_PATH"):
        candidates.append(Path(env["RAY_AUTH_TOKEN_PATH"]).expanduser())
    candidates.append(Path(home).expanduser() / ".ray" / "auth_token" if home else Path.home() / ".ray" / "auth_token")
    for path in candidates:
        try:
            token = path.read_text().strip()
        except OSError:
            continue
        if token:
            return token
    return None


def _auth_failure(address: str, token: str | None, detail: str) -> SubmitAuthError:
    if token is None:
        what = f"the Ray cluster at {address} requires a token and none was found"
    else:
        what = f"the Ray cluster at {address} rejected the token (it is not this cluster's)"
    return SubmitAuthError(f"authentication failed: {what}. {AUTH_HINT} ({detail})")


def _looks_like_auth(exc: BaseException) -> bool:
    return re.search(r"\b40[13]\b|Unauthorized|Forbidden", str(exc)) is not None


class _Conn:
    """A JobSubmissionClient with the token attached and Ray's errors turned into SubmitError."""

    def __init__(self, address: str | None = None, token: str | None = None):
        self.address = resolve_address(address)
        self.token = token if token is not None else find_token()
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        from ray.job_submission import JobSubmissionClient

        self.client = self._guard(lambda: JobSubmissionClient(self.address, headers=headers))

    def _guard(self, fn):
        from ray.exceptions import AuthenticationError

        try:
            return fn()
        except AuthenticationError as exc:
            raise _auth_failure(self.address, self.token, str(exc).splitlines()[0]) from None
        except ConnectionError as exc:
            raise SubmitError(
                f"cannot reach the Ray Jobs API at {self.address} ({exc}); is the cluster up, and is "
                "--address / RAY_ADDRESS its dashboard URL (http://HOST:8265)?"
            ) from None
        except RuntimeError as exc:
            if _looks_like_auth(exc):
                raise _auth_failure(self.address, self.token, type(exc).__name__) from None
            raise SubmitError(f"Ray Jobs API at {self.address}: {exc}") from None

    def __call__(self, method: str, *args, **kwargs):
        return self._guard(lambda: getattr(self.client, method)(*args, **kwargs))


def _result(info) -> JobResult:
    status = str(info.status)
    return JobResult(
        job_id=info.submission_id or info.job_id or "",
        status=status,
        exit_code=EXIT_CODES.get(status),
        message=info.message or "",
        entrypoint=info.entrypoint or "",
        start_time=info.start_time,
        end_time=info.end_time,
    )


# ---------------------------------------------------------------------------------------------------------
# what travels


def passthrough_env(environ: dict | None = None) -> dict[str, str]:
    """GR2_* (minus secret-looking names) and RAY_AUTH_MODE of this process."""
    env = os.environ if environ is None else environ
    out = {}
    for name, value in env.items():
        if name in PASSTHROUGH_NAMES:
            out[name] = value
        elif name.startswith(PASSTHROUGH_PREFIXES) and not any(h in name.upper() for h in SECRET_HINTS):
            out[name] = value
    return out


def env_options(items: Iterable[str], environ: dict | None = None) -> dict[str, str]:
    """`--env` values for the job's environment. `NAME=VALUE` sets a value; `NAME` alone copies this
    process's value, which is how a secret travels: a value typed on the command line stays in the shell
    history and in `ps`, so a secret-looking name (*KEY*, *TOKEN*, ...) given with `=VALUE` is refused.
    Raises ValueError naming the bad item."""
    env = os.environ if environ is None else environ
    out = {}
    for item in items:
        name, has_value, value = item.partition("=")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"--env expects NAME=VALUE or NAME (a variable of this shell), got {item!r}")
        if has_value and any(h in name.upper() for h in SECRET_HINTS):
            raise ValueError(f"--env {name}=...: a secret on the command line stays in the shell history and in ps; "
                             f"export {name} in this shell and pass --env {name}")
        if not has_value and name not in env:
            raise ValueError(f"--env {name}: {name} is not set in this shell")
        out[name] = value if has_value else env[name]
    return out


def _spec(patterns: Iterable[str]):
    from ray._private.thirdparty.pathspec import PathSpec  # the matcher Ray applies to runtime_env excludes

    return PathSpec.from_lines("gitwildmatch", list(patterns))


def _excluded(root: Path, path: Path, excludes: Iterable[str]) -> bool:
    """Would Ray leave `path` out of the upload of `root` (excludes, or the root's .gitignore)?"""
    patterns = list(excludes)
    gitignore = root / ".gitignore"
    if gitignore.exists():
        patterns += gitignore.read_text().splitlines()
    spec = _spec(patterns)
    rel = path.relative_to(root)
    # A file is out when it, or any folder above it, matches.
    parts = rel.parts
    return any(spec.match_file("/".join(parts[: i + 1])) for i in range(len(parts)))


def _stage(root: Path, config: Path, excludes: Iterable[str]) -> tuple[Path, str]:
    """Copy root (minus excludes) and the config into a temporary folder; return it and the config's path in it."""
    spec = _spec(excludes)
    tmp = Path(tempfile.mkdtemp(prefix="gr2-submit-"))
    dest = tmp / "wd"

    def ignore(folder: str, names: list[str]) -> set[str]:
        rel = Path(folder).relative_to(root)
        return {n for n in names if spec.match_file((rel / n).as_posix())}

    shutil.copytree(root, dest, ignore=ignore, symlinks=True)
    (dest / STAGED_CONFIG_DIR).mkdir(exist_ok=True)
    shutil.copy2(config, dest / STAGED_CONFIG_DIR / config.name)
    return dest, f"{STAGED_CONFIG_DIR}/{config.name}"


def entrypoint(argv: list[str], module: str = "gr2.cli", python: str = "python") -> str:
    return shlex.join([python, "-m", module, *argv])


# ---------------------------------------------------------------------------------------------------------
# the API


def submit(
    argv: list[str],
    address: str | None = None,
    working_dir: str | Path = ".",
    config_file: str | Path | None = None,
    env: dict[str, str] | None = None,
    wait: bool = True,
    excludes: Iterable[str] = DEFAULT_EXCLUDES,
    *,
    module: str = "gr2.cli",
    token: str | None = None,
    submission_id: str | None = None,
    entrypoint_num_cpus: float | None = None,
    out: IO[str] | None = None,
    poll_s: float = 1.0,
) -> JobResult:
    """Submit `python -m <module> <argv...>` (module gr2.cli by default) as a Ray Job.

    With wait=True the job's logs are streamed to `out` (stdout by default) until it ends, and the result
    carries the final status, its exit code (SUCCEEDED 0, FAILED 1, STOPPED 130) and the logs; with
    wait=False it returns as soon as the job is accepted (status PENDING, exit_code None).
    `token` overrides the lookup of find_token().
    """
    excludes = list(excludes)
    argv = list(argv)
    root = Path(working_dir).expanduser().resolve()
    if not root.is_dir():
        raise SubmitError(f"working_dir {root} is not a folder")
    staged: Path | None = None
    upload_dir = root
    if config_file is not None:
        if any(a in ("--config", "-c") or a.startswith("--config=") for a in argv):
            raise SubmitError("give the config once: either submit's --config or the command's own --config")
        cfg = Path(config_file).expanduser().resolve()
        if not cfg.is_file():
            raise SubmitError(f"config file {cfg} does not exist")
        if cfg.is_relative_to(root) and not _excluded(root, cfg, excludes):
            rel = cfg.relative_to(root).as_posix()
        else:
            staged, rel = _stage(root, cfg, excludes)
            upload_dir = staged
        argv += ["--config", rel]
    env_vars = passthrough_env()
    env_vars.update(env or {})
    runtime_env = {"working_dir": str(upload_dir), "excludes": excludes, "env_vars": env_vars}
    cmd = entrypoint(argv, module)
    try:
        conn = _Conn(address, token)
        job_id = conn(
            "submit_job",
            entrypoint=cmd,
            runtime_env=runtime_env,
            submission_id=submission_id,
            entrypoint_num_cpus=entrypoint_num_cpus,
        )
    finally:
        if staged is not None:
            shutil.rmtree(staged.parent, ignore_errors=True)
    print(f"gr2 submit: job {job_id} submitted to {conn.address}: {cmd}", file=sys.stderr, flush=True)
    if not wait:
        return JobResult(job_id=job_id, status="PENDING", entrypoint=cmd)
    logs = follow(conn, job_id, out or sys.stdout, poll_s)
    result = _wait_terminal(conn, job_id, poll_s)
    result.logs = logs
    return result


def _wait_terminal(conn: _Conn, job_id: str, poll_s: float) -> JobResult:
    while True:
        result = _result(conn("get_job_info", job_id))
        if result.status in TERMINAL:
            return result
        time.sleep(poll_s)


def follow(conn: _Conn, job_id: str, out: IO[str], poll_s: float = 1.0) -> str:
    """Stream a job's logs to `out` until it ends; return all of them.

    Uses the SDK's websocket tail; if that is unavailable (an event loop already running in this
    thread) or breaks off, polls get_job_logs and prints what is new.
    """
    seen: list[str] = []

    async def tail() -> None:
        async for chunk in conn.client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()
            seen.append(chunk)

    try:
        asyncio.get_running_loop()
        in_loop = True
    except RuntimeError:
        in_loop = False
    if not in_loop:
        try:
            with warnings.catch_warnings():
                # Ray's SDK passes ssl=None to aiohttp's ws_connect, which aiohttp deprecates; not ours to fix.
                warnings.filterwarnings("ignore", category=DeprecationWarning, message="ssl=None")
                asyncio.run(tail())
            return "".join(seen)
        except Exception as exc:  # noqa: BLE001 - fall back to polling on any transport error
            if _looks_like_auth(exc):
                raise _auth_failure(conn.address, conn.token, "log stream") from None
    # Polling: the logs so far are the full text; print only the part not printed yet.
    printed = len("".join(seen))
    while True:
        status = str(conn("get_job_status", job_id))
        text = conn("get_job_logs", job_id)
        if len(text) > printed:
            out.write(text[printed:])
            out.flush()
            printed = len(text)
        if status in TERMINAL:
            return text
        time.sleep(poll_s)


def status(job_id: str, address: str | None = None, *, token: str | None = None) -> JobResult:
    return _result(_Conn(address, token)("get_job_info", job_id))


def logs(job_id: str, address: str | None = None, *, token: str | None = None) -> str:
    return _Conn(address, token)("get_job_logs", job_id)


def stop(job_id: str, address: str | None = None, *, token: str | None = None) -> bool:
    """Ask the job to stop; True if a stop was requested (False when it had already ended)."""
    return bool(_Conn(address, token)("stop_job", job_id))


def list_jobs(address: str | None = None, *, token: str | None = None) -> list[JobResult]:
    jobs = [_result(j) for j in _Conn(address, token)("list_jobs")]
    return sorted(jobs, key=lambda j: j.start_time or 0)
