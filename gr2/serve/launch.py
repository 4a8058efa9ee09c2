"""Start and stop the re-rank service: pick the model run, the token, and run the Serve application."""

from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import asdict
from pathlib import Path

from gr2.config import Config, ConfigError
from gr2.serve.engine import HF_COMPUTE_TYPES

TOKEN_ENV = "GR2_SERVE_TOKEN"
APP_NAME = "gr2-reranker"


def model_dir(cfg: Config, stage: str, run: str | None) -> Path:
    """The served model: run `run` of `stage`, else the stage's LATEST run."""
    from gr2.platform.run_store import latest_model, model_runs

    if run is None:
        return latest_model(cfg, stage)
    store = model_runs(cfg, stage)
    path = store.path(run) / "model"
    if not path.is_dir():
        done = [r for r in store.runs() if (store.path(r) / "model").is_dir()]
        raise FileNotFoundError(f"no {stage} run {run!r} under {store.root}; runs there: {done or 'none'}")
    return path


def token(cfg: Config) -> str | None:
    """The bearer token: $GR2_SERVE_TOKEN, else the lake's <lake>/_serve/token (created once, mode 600).
    None when serve.auth is off."""
    if not cfg.serve.auth:
        return None
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    path = token_path(cfg)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def token_path(cfg: Config) -> Path:
    return cfg.lake_path / "_serve" / "token"


def settings(cfg: Config, stage: str | None = None, run: str | None = None):
    from gr2.models.engines import check_installed
    from gr2.platform.precision import use_autocast
    from gr2.rerank.formats import RerankFormat
    from gr2.serve.app import ServeSettings

    check_installed(cfg.serve.engine, "serve.engine")
    if cfg.serve.engine == "hf" and cfg.serve.compute_type not in HF_COMPUTE_TYPES:
        raise ConfigError(f"serve.compute_type={cfg.serve.compute_type} needs serve.engine ctranslate2 or llamacpp; "
                          f"Hugging Face runs {' or '.join(HF_COMPUTE_TYPES)}")
    stage = stage or cfg.serve.stage
    path = model_dir(cfg, stage, run)
    fmt = RerankFormat.of_model(path, RerankFormat.from_config(cfg.train.prompt))
    sv = cfg.serve
    return ServeSettings(
        lake=str(cfg.lake_path), model_dir=str(path), stage=stage, run=path.parent.name, k=cfg.etl.k, token=token(cfg),
        default_mode=sv.mode, deadline_ms=sv.deadline_ms, max_deadline_ms=sv.max_deadline_ms,
        max_new_tokens=sv.max_new_tokens, max_body_bytes=sv.max_body_bytes, max_batch=sv.max_batch,
        batch_wait_ms=sv.batch_wait_ms, autocast=use_autocast(cfg.train.autocast), fmt=asdict(fmt),
        ranking_decoder=sv.ranking_decoder, threads=sv.threads, decode_threads=sv.decode_threads, engine=sv.engine,
        compute_type=sv.compute_type, prefix_cache=sv.prefix_cache, prompt_lookup=sv.prompt_lookup,
        engine_process=sv.engine_process,
    )


def start(cfg: Config, stage: str | None = None, run: str | None = None, address: str | None = None,
          host: str | None = None, port: int | None = None, timeout_s: float = 300.0) -> str:
    """Deploy the service (local Ray, or the cluster at `address`) and wait until it answers /readyz.
    Returns its base URL."""
    import ray
    from ray import serve

    from gr2.platform.progress import verbose
    from gr2.platform.ray_cluster import ensure_ray
    from gr2.serve.app import build

    s = settings(cfg, stage, run)
    if address:
        os.environ["RAY_ADDRESS"] = address
    ensure_ray()
    if not verbose():  # "Started Serve", "Application ... is ready": gr2 prints its own line
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
    host, port = host or cfg.serve.host, port or cfg.serve.port
    serve.start(http_options={"host": host, "port": port}, logging_config={"enable_access_log": False})
    serve.run(build(s), name=APP_NAME, route_prefix="/", blocking=False)
    url = f"http://{host}:{port}"
    wait_ready(url, timeout_s)
    assert ray.is_initialized()
    return url


def wait_ready(url: str, timeout_s: float) -> dict:
    import json
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            last = str(e)
        time.sleep(0.5)
    raise TimeoutError(f"the service at {url} was not ready after {timeout_s:.0f} s ({last})")


# The Serve controller ends its own graceful_shutdown task by killing itself, and the driver's error listener
# prints that task's failure ("(raylet) Task ServeController.graceful_shutdown failed ... killed by
# `ray.kill`") on every normal stop: expected, so it is not shown (ray-project/ray#35391 is the same noise).
_EXPECTED_ON_STOP = "ServeController.graceful_shutdown failed"


def stop() -> None:
    import ray
    import ray._private.worker as ray_worker
    from ray import serve

    if not ray.is_initialized():
        return
    show = ray_worker.print_to_stdstream

    def quiet(data, ignore_prefix):
        lines = [line for line in data.get("lines", []) if _EXPECTED_ON_STOP not in line]
        if lines:
            show({**data, "lines": lines}, ignore_prefix)

    ray_worker.print_to_stdstream = quiet  # the listener thread looks it up at each message
    try:
        serve.shutdown()
    finally:
        ray.shutdown()  # stops the listener thread
        ray_worker.print_to_stdstream = show
