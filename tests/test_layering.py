"""gr2's layers, read from the source with `ast` (nothing is imported, so lazy imports inside
functions count too):

    gr2.config  <  gr2.platform  <  gr2.rerank  <  gr2.models  <  stages (etl, tokenizer, training, eval, serve)  <  gr2.pipelines  <  gr2.cli

A module may import its own package and the layers below it, never a layer above. gr2.config imports
nothing of gr2. gr2.rerank is the re-rank task every stage shares (what a slate is, the catalog its
items come from, its prompt, the answer's contract, the metrics), so it may import gr2.config and
gr2.platform only. gr2.models is what every stage asks of a trained model (loading an LM, decoding, the
text it is asked in, the sequence model behind the evidence notes, the held-out slates): training writes
the models, eval and serving read them through it, never through gr2.training. Between two different
stages an import is "sideways": the ones that exist are listed in KNOWN_SIDEWAYS so that a new one fails
here, and a listed one that is gone fails too, so the list only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "gr2"

STAGES = ("gr2.etl", "gr2.tokenizer", "gr2.training", "gr2.eval", "gr2.serve")
# Layer rank per top-level unit of gr2; the stages share one rank.
RANKS = {"gr2.config": 0, "gr2.platform": 1, "gr2.rerank": 2, "gr2.models": 3, **dict.fromkeys(STAGES, 4),
         "gr2.pipelines": 5, "gr2.cli": 6}

# (importing file, imported module) pairs between different stages that exist today. Each ties one
# stage to another's internals; remove a pair when its import goes (the test says so).
KNOWN_SIDEWAYS: set[tuple[str, str]] = set()  # none left: keep it that way


def _unit(module: str) -> str | None:
    """The layered unit a gr2 module belongs to (gr2.etl for gr2.etl.sources.events), or None for gr2 itself."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else None


def _exists(module: str) -> bool:
    path = ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _gr2_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import of a gr2 module in the file, at any depth. `from pkg import name`
    names the submodule pkg.name when that is a module file, else pkg."""
    here = _module_of(path)
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing module's package
                pkg = here.split(".") if path.name == "__init__.py" else here.split(".")[:-1]
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.append((node.lineno, sub if _exists(sub) else base))
    return [(line, m) for line, m in out if m == "gr2" or m.startswith("gr2.")]


def _scan() -> tuple[list[str], set[tuple[str, str]]]:
    """(violations, sideways pairs found)."""
    bad, sideways = [], set()
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        src = _unit(_module_of(path))
        if src is not None and src not in RANKS:
            bad.append(f"{rel}: {src} has no layer; add it to RANKS in tests/test_layering.py")
            continue
        for line, mod in _gr2_imports(path):
            dst = _unit(mod)
            where = f"{rel}:{line}: import of {mod}"
            if dst == src or dst is None:  # its own package, or the bare gr2 package (a version string)
                continue
            if src in (None, "gr2.config"):  # gr2/__init__.py and the config schema stand on nothing of gr2
                bad.append(f"{where}: {src or 'gr2/__init__.py'} may import nothing of gr2")
            elif dst not in RANKS:
                bad.append(f"{where}: {dst} has no layer; add it to RANKS in tests/test_layering.py")
            elif RANKS[dst] > RANKS[src]:
                bad.append(f"{where}: {src} (layer {RANKS[src]}) may not import {dst} (layer {RANKS[dst]}, above it)")
            elif RANKS[dst] == RANKS[src]:  # two different stages
                sideways.add((rel, mod))
                if (rel, mod) not in KNOWN_SIDEWAYS:
                    bad.append(f"{where}: a new import between stages ({src} -> {dst}); import from a lower "
                               "layer instead, or move what both need down to gr2.rerank (the re-rank task) or gr2.platform")
    return bad, sideways


def test_every_import_points_down_the_layers():
    bad, _ = _scan()
    assert not bad, "layering broken:\n" + "\n".join(bad)


def test_the_allow_list_of_sideways_imports_only_shrinks():
    _, found = _scan()
    gone = sorted(KNOWN_SIDEWAYS - found)
    assert not gone, ("these allowed imports between stages no longer exist; remove them from KNOWN_SIDEWAYS:\n"
                      + "\n".join(f"  {p}" for p in gone))


def test_the_scanner_sees_lazy_imports_and_names_the_submodule():
    """Imports inside functions count, and `from gr2.x import mod` is the module gr2.x.mod."""
    lines = _gr2_imports(PKG / "pipelines" / "stages.py")
    assert any(m == "gr2.etl.jobs" for _, m in lines), "the lazy `from gr2.etl import jobs` inside a stage's job"
    assert any(m == "gr2.pipelines.results" for _, m in lines)
