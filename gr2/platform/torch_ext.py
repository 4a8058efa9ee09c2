"""Torch C++ extensions (DeepSpeed's CPU shared-memory op) built once, safely.

torch.utils.cpp_extension guards each build folder with a `lock` file (FileBaton) and waits, with no time
limit, while that file exists. A build killed half-way (a stopped job, a CI run cut off at its time limit)
leaves the file behind, and every later build of that op, in any process, then waits forever: that is how
a CI run spent its whole time budget in `make setup`. A real build here takes about a minute, so a lock
older than `STALE_AFTER_S` belongs to no live build and is removed before building.

`python -m gr2.platform.torch_ext build-shm-op` is what scripts/bootstrap.sh runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

STALE_AFTER_S = 600.0


def extensions_root() -> Path:
    """Where torch builds its C++ extensions (TORCH_EXTENSIONS_DIR, else ~/.cache/torch_extensions)."""
    env = os.environ.get("TORCH_EXTENSIONS_DIR")
    return Path(env) if env else Path.home() / ".cache" / "torch_extensions"


def clear_stale_build_locks(max_age_s: float = STALE_AFTER_S, root: Path | None = None) -> list[Path]:
    """Remove build locks older than max_age_s under root (torch's own TORCH_EXTENSIONS_DIR layout puts
    them at <root>/<op>/lock, and at <root>/<python-cpu-tag>/<op>/lock by default); the paths removed."""
    root = extensions_root() if root is None else root
    if not root.is_dir():
        return []
    removed = []
    now = time.time()
    for lock in [*root.glob("*/lock"), *root.glob("*/*/lock")]:
        try:
            if now - lock.stat().st_mtime > max_age_s:
                lock.unlink()
                removed.append(lock)
        except FileNotFoundError:  # a build finished and released it meanwhile
            continue
    return removed


def build_shm_op(max_age_s: float = STALE_AFTER_S) -> None:
    """Build (or load the cached build of) DeepSpeed's CPU shared-memory communication op."""
    for lock in clear_stale_build_locks(max_age_s):
        print(f"torch_ext: removed a stale build lock left by a killed build: {lock}", file=sys.stderr)
    from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder

    ShareMemCommBuilder().load(verbose=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gr2.platform.torch_ext", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build-shm-op", "clear-locks"])
    parser.add_argument("--stale-after", type=float, default=STALE_AFTER_S,
                        help="seconds after which a build lock counts as left by a dead build (default %(default)s)")
    args = parser.parse_args(argv)
    if args.command == "clear-locks":
        for lock in clear_stale_build_locks(args.stale_after):
            print(f"removed {lock}")
        return 0
    build_shm_op(args.stale_after)
    return 0


if __name__ == "__main__":
    sys.exit(main())
