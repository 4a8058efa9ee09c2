"""Benchmarks and scripts are files, not a package: the tests that check their parts import them by path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script(relative: str):
    """The module of `relative` (e.g. "benchmarks/reward_ablation.py"), imported as running it would: its
    folder on sys.path (scripts import their neighbours) and the module registered under its name (so
    dataclasses and pickles defined in it can find it)."""
    path = ROOT / relative
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module
