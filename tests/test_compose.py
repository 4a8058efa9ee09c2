"""docker-compose.yml and docker/: versions in step with the installed packages, UIs on 127.0.0.1 only,
the lake volume everywhere, no secrets in the files. `docker compose config` runs where the compose
plugin exists (skipped otherwise); everything else reads the files with PyYAML and needs no docker."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
DOCKER = REPO / "docker"
RAY_VERSION = version("ray")
PYSPARK_VERSION = version("pyspark")
DELTA_VERSION = version("delta-spark")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def services(compose: dict) -> dict[str, dict]:
    return compose["services"]


def dockerfile_of(svc: dict) -> str | None:
    build = svc.get("build")
    if build is None:
        return None
    return build if isinstance(build, str) else build.get("dockerfile", "Dockerfile")


def from_lines(path: Path) -> list[str]:
    return [line.split()[1] for line in path.read_text().splitlines() if line.startswith("FROM ")]


def test_docker_compose_config():
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client on this machine")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"`docker compose` is not available here (no compose plugin): {probe.stderr.strip()[:200]}")
    env = dict(os.environ, RAY_AUTH_TOKEN="test-token-for-compose-config")
    r = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True, env=env, cwd=REPO)
    assert r.returncode == 0, r.stderr
    # Without the token, compose refuses to start anything, with the message from the file.
    env.pop("RAY_AUTH_TOKEN")
    r = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True, env=env, cwd=REPO)
    assert r.returncode != 0 and "RAY_AUTH_TOKEN" in r.stderr


def test_expected_services(compose):
    assert {"spark-master", "spark-worker", "ray-head", "ray-worker", "scheduler", "reports", "serving"} <= set(services(compose))


def test_published_ports_bind_localhost_only(compose):
    published = 0
    for name, svc in services(compose).items():
        for port in svc.get("ports", []):
            if isinstance(port, dict):  # long syntax
                assert port.get("host_ip") == "127.0.0.1", (name, port)
            else:
                assert str(port).startswith("127.0.0.1:"), (name, port)
            published += 1
    assert published >= 3  # Spark UI, Ray dashboard / Jobs API, reports
    ports = {str(p) for svc in services(compose).values() for p in svc.get("ports", [])}
    assert {"127.0.0.1:8080:8080", "127.0.0.1:8265:8265"} <= ports
    # The scalable worker publishes nothing (replicas would clash) and has no fixed container name.
    assert "ports" not in services(compose)["spark-worker"] and "container_name" not in services(compose)["spark-worker"]


def test_image_tags_match_installed_versions(compose):
    ray_services = spark_services = 0
    for name, svc in services(compose).items():
        dockerfile = dockerfile_of(svc)
        image = svc.get("image", "")
        if dockerfile == "docker/ray.Dockerfile" or image.startswith("gr2-ray"):
            assert image == f"gr2-ray:{RAY_VERSION}", name
            ray_services += 1
        elif dockerfile == "docker/spark.Dockerfile" or image.startswith("gr2-spark"):
            assert image == f"gr2-spark:{PYSPARK_VERSION}", name
            spark_services += 1
    assert ray_services >= 3 and spark_services >= 2  # head, worker, scheduler; master, worker


def test_dockerfiles_exist_and_pin_the_same_versions(compose):
    built = {dockerfile_of(s) for s in services(compose).values()} - {None}
    for dockerfile in built:
        assert (REPO / dockerfile).is_file(), dockerfile
    ray_df = DOCKER / "ray.Dockerfile"
    spark_df = DOCKER / "spark.Dockerfile"
    assert from_lines(ray_df) == [f"rayproject/ray:{RAY_VERSION}-py311-cpu"]
    spark_from = from_lines(spark_df)
    assert len(spark_from) == 1 and spark_from[0].startswith(f"apache/spark:{PYSPARK_VERSION}-scala2.13-"), spark_from
    assert "python3" in spark_from[0]
    for df in (ray_df, spark_df):
        text = df.read_text()
        assert f"ARG DELTA_VERSION={DELTA_VERSION}" in text, df
        assert "ARG SCALA_BINARY=2.13" in text, df
        assert "download.pytorch.org/whl/cpu" in text, df  # CPU torch, not the CUDA wheels
        assert text.count("ADD --checksum=sha256:") == 2, df  # both Delta JARs, verified
    from gr2.platform.spark import DELTA_VERSION as GR2_DELTA
    from gr2.platform.spark import SCALA_BINARY

    assert GR2_DELTA == DELTA_VERSION and SCALA_BINARY == "2.13"
    for script in ("entrypoint.sh", "nightly.sh"):
        assert (DOCKER / script).is_file()
        assert f"docker/{script}" in ray_df.read_text()


def test_every_service_mounts_the_lake(compose):
    assert "lake" in compose["volumes"]
    for name, svc in services(compose).items():
        mounts = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in svc.get("volumes", [])]
        assert any(m.split(":")[:2] == ["lake", "/lake"] for m in mounts), (name, mounts)
    assert "lake:/lake:ro" in services(compose)["reports"]["volumes"]  # the web server only reads


def test_ray_token_comes_from_the_environment(compose):
    for name in ("ray-head", "ray-worker", "scheduler", "serving"):
        env = services(compose)[name]["environment"]
        assert env["RAY_AUTH_MODE"] == "token", name
        assert env["RAY_AUTH_TOKEN"].startswith("${RAY_AUTH_TOKEN:?"), name  # required, never a default
    assert services(compose)["scheduler"]["environment"]["RAY_ADDRESS"] == "http://ray-head:8265"
    assert services(compose)["serving"]["environment"]["GR2_SERVE_TOKEN"].startswith("${GR2_SERVE_TOKEN:?")


def test_no_literal_secrets():
    files = [COMPOSE, *DOCKER.iterdir(), REPO / "configs" / "compose.yaml"]
    secret_key = re.compile(r"(token|secret|password|passwd|access_key|api_key|credential)", re.I)
    for path in files:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.lstrip().startswith("#"):
                continue
            m = re.match(r"\s*-?\s*([A-Za-z0-9_.]+)\s*[:=]\s*(.+)$", line)
            if not m or not secret_key.search(m.group(1)):
                continue
            value = m.group(2).strip().strip("'\"")
            assert value.startswith("${") or value in ("", "token"), f"{path.name}:{n}: literal secret? {line.strip()}"
    assert not (REPO / ".env").exists() or ".env" in (REPO / ".gitignore").read_text(), ".env must stay out of git"


def test_compose_config_file_is_valid():
    from gr2.config import load_config

    cfg = load_config(REPO / "configs" / "compose.yaml")
    assert cfg.lake == "/lake"
    assert cfg.spark.master == "spark://spark-master:7077"
    assert cfg.spark.jars_dir == "/opt/gr2/jars"  # where docker/ray.Dockerfile puts the Delta JARs
    assert "/opt/gr2/jars/" in (DOCKER / "ray.Dockerfile").read_text()
