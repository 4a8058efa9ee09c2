"""A model folder's converted copy for another runtime, made once beside it and reused.

CTranslate2 (`ct2.py`) and llama.cpp (`llamacpp.py`) both answer from their own copy of the lake's HF
model. :func:`convert_once` builds such a copy in a temporary folder inside the model folder and renames
it into place, stamped with what it was made from (the model's own files, sizes and times, and whatever
the caller adds: the runtime's version, the weights' type). A crashed or concurrent conversion never
leaves a half model where a later call would take it for a finished one; a re-saved model converts again.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def source_files(model_dir: Path) -> dict:
    """Name -> [size, mtime_ns] of the model folder's own files (its converted copies are folders)."""
    return {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(model_dir.iterdir()) if p.is_file()}


def read_stamp(folder: Path, name: str) -> dict | None:
    try:
        return json.loads((folder / name).read_text())
    except (OSError, ValueError):
        return None


def convert_once(model_dir: Path, folder: str, made_with: dict, convert: Callable[[Path], None], stamp: str) -> Path:
    """`model_dir/folder`, made by `convert(empty folder)` unless a copy whose `stamp` file records
    `made_with` and the model's current files is already there."""
    model_dir = Path(model_dir)
    out = model_dir / folder
    want = {**made_with, "source": source_files(model_dir)}
    if read_stamp(out, stamp) == want:
        return out
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder}.", dir=model_dir))
    except OSError as e:
        raise OSError(f"cannot write the {folder} conversion beside the model in {model_dir}: {e}") from e
    try:
        convert(tmp)
        (tmp / stamp).write_text(json.dumps(want, indent=1))
        _swap(tmp, out, want, stamp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _swap(tmp: Path, out: Path, want: dict, stamp: str) -> None:
    """Rename `tmp` to `out`. A rename onto a folder that is not empty fails: then either another
    process finished the same conversion first (keep its), or `out` is stale (move it aside, then in)."""
    try:
        os.rename(tmp, out)
        return
    except OSError:
        if read_stamp(out, stamp) == want:
            return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.rename(out, old)
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
