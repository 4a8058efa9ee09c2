"""Great Expectations gates: every table is validated by a GE checkpoint before it is published.

Callers describe what must hold as a list of GE expectations (built with the helpers below); `gate`
runs them as a checkpoint against the staged DataFrame, updates the lake's Data Docs, and raises
`QualityGateError` naming each broken expectation and how many rows broke it.
"""

from __future__ import annotations

import contextvars
import copy
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


def _gx():
    """Great Expectations, imported on first use: importing it takes about 7 s on a slow 2-core VM, and
    every process that imports the lake (each Ray Data worker that unpickles a training job's function,
    every CLI command) would pay that even when it never runs a gate."""
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    return gx


def _gxe():
    _gx()
    from great_expectations import expectations

    return expectations


class QualityGateError(RuntimeError):
    """A table failed its gate; the published version was left as it was."""

    def __init__(self, table: str, failures: list["Failure"], docs: Path | None):
        self.table = table
        self.failures = failures
        self.docs = docs
        lines = [f"quality gate refused {table}: {len(failures)} check(s) failed"]
        lines += [f"  - {f}" for f in failures]
        lines.append(f"  the previous version of {table} stays published")
        if docs:
            lines.append(f"  details: {docs}")
        super().__init__("\n".join(lines))


@dataclass
class Failure:
    check: str
    column: str | None
    unexpected: int | None
    observed: object
    expected: str

    def __str__(self) -> str:
        where = f" on {self.column}" if self.column else ""
        got = f"{self.unexpected} row(s) broke it" if self.unexpected is not None else f"observed {self.observed}"
        return f"{self.check}{where}: {got} (expected {self.expected})"


# Short constructors keep call sites readable: checks.unique("item_id"), checks.rows(n) ...
def unique(column: str):
    return _gxe().ExpectColumnValuesToBeUnique(column=column)


def not_null(column: str):
    return _gxe().ExpectColumnValuesToNotBeNull(column=column)


def between(column: str, low=None, high=None):
    return _gxe().ExpectColumnValuesToBeBetween(column=column, min_value=low, max_value=high)


def in_set(column: str, values):
    return _gxe().ExpectColumnValuesToBeInSet(column=column, value_set=list(values))


def rows(count: int):
    return _gxe().ExpectTableRowCountToEqual(value=int(count))


def min_rows(count: int):
    return _gxe().ExpectTableRowCountToBeBetween(min_value=int(count))


def compound_unique(columns: list[str]):
    return _gxe().ExpectCompoundColumnsToBeUnique(column_list=list(columns))


def columns_exist(columns: list[str]):
    return [_gxe().ExpectColumnToExist(column=c) for c in columns]


def _describe(config) -> str:
    kw = {k: v for k, v in config.kwargs.items() if k not in ("column", "batch_id", "column_list")}
    return f"{kw}" if kw else "to hold"


def context_root(lake: Path) -> Path:
    return Path(lake) / "_quality"


def docs_dir(lake: Path) -> Path:
    return context_root(lake) / "gx" / "uncommitted" / "data_docs" / "local_site"


# One GE file context per lake per process: opening one reads and writes its YAML config and sets up its
# stores (about 0.2 s a gate on the 2-core VM), and an ETL command gates several tables in a row.
_CONTEXTS: dict[Path, object] = {}


def _context(lake: Path):
    """The lake's GE file context, opened once per process (again if its folder was removed since)."""
    root = context_root(lake).resolve()
    context = _CONTEXTS.get(root)
    if context is None or not (root / "gx" / "great_expectations.yml").exists():
        context = _gx().get_context(mode="file", project_root_dir=str(root))
        bars = context.variables.progress_bars
        if bars is None or (bars.get("globally") if isinstance(bars, dict) else bars.globally):
            # gr2 shows its own per-step progress; GE's per-metric bars would flood the console.
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
            context.variables.save()
        _CONTEXTS[root] = context
    return context


# The Data Docs pages still to render, while a `docs_once` block is open: GE compiles its page templates
# afresh for every update (about 0.4 s a gate), so a command that gates several tables renders them at once.
_PENDING_DOCS: contextvars.ContextVar[list | None] = contextvars.ContextVar("gr2_pending_docs", default=None)


@contextmanager
def docs_once(lake: Path):
    """Gates run inside render their Data Docs pages (and the index) in one update when the block ends,
    whether it ends well or with a refused gate (its page is what the error points to)."""
    pending: list = []
    token = _PENDING_DOCS.set(pending)
    try:
        yield
    finally:
        _PENDING_DOCS.reset(token)
        if pending:
            _context(lake).build_data_docs(resource_identifiers=pending, dry_run=False, build_index=True)


def _update_docs(result) -> None:
    """Render a checkpoint's results into the Data Docs now, or at the end of the open `docs_once` block."""
    pending = _PENDING_DOCS.get()
    if pending is None:
        _gx().checkpoint.UpdateDataDocsAction(name="data_docs").run(result)
        return
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

    for identifier, run in result.run_results.items():  # what UpdateDataDocsAction renders for each
        pending += [identifier, ExpectationSuiteIdentifier(name=run.suite_name)]


# A gate first asks for counts only (BASIC with no example values: GE then runs no query to collect
# unexpected values, a scan per expectation of a table that passes); a gate that fails is validated again
# with SUMMARY, so its error and its Data Docs page show example values. benchmarks/publish_overhead.py.
COUNTS_ONLY = {"result_format": "BASIC", "partial_unexpected_count": 0}
WITH_EXAMPLES = {"result_format": "SUMMARY"}
_UNIQUE = ("ExpectColumnValuesToBeUnique", "ExpectCompoundColumnsToBeUnique")


def as_distinct_counts(expectations: list, df):
    """The first pass's form of a suite: each uniqueness check as "the key's distinct values are all its
    non-null values" (GE's unique proportion = 1, whose count is a countDistinct that GE computes in the one
    aggregation it runs for the gate's other column checks), a compound key as one struct column added to
    the frame. GE checks uniqueness itself with a window over every row, a job of its own a check (2.9 of
    the 6.3 s of bronze.events' gate at 1M rows). -> (expectations, frame). A suite that fails in this form
    is validated again as it was written, so a refusal still counts the duplicate rows and shows them (and a
    compound key whose duplicates are all-null rows, which GE's own check skips, is not refused)."""
    from pyspark.sql import functions as F

    out, keys = [], {}
    for e in expectations:
        if type(e).__name__ not in _UNIQUE:
            out.append(e)
            continue
        cols = [e.column] if type(e).__name__ == _UNIQUE[0] else list(e.column_list)
        name = cols[0] if len(cols) == 1 else "gr2_key__" + "__".join(cols)
        if len(cols) > 1:
            keys[name] = F.struct(*[F.col(c) for c in cols])
        out.append(_gxe().ExpectColumnProportionOfUniqueValuesToBeBetween(column=name, min_value=1.0, max_value=1.0))
    return out, (df.withColumns(keys) if keys else df)


def gate(df, table: str, expectations: list, lake: Path, raise_on_failure: bool = True,
         update_docs: bool = True, counts_first: bool = True) -> list[Failure]:
    """Validate `df` as `table` with a GE checkpoint; raise QualityGateError when any expectation fails.
    `update_docs`: the result is rendered into the lake's Data Docs (its page and the index), at once or, inside
    a `docs_once` block, when the block ends.
    `counts_first`: validate with counts only and uniqueness as distinct counts (`as_distinct_counts`), and
    again as written, with example values, only where that fails (False: as written with example values at
    once, the way gr2 did until 2026-12-07)."""
    context = _context(lake)
    # persist=False: by default GE caches every DataFrame it validates and never un-caches it, so each
    # gate left its staged rows in the session's memory (about 90 MB per gate of a 1M-row table, for the
    # rest of the job), and building that cache cost more than letting each metric read only its columns.
    source = context.data_sources.add_or_update_spark(name="gr2_lake", persist=False)
    asset_name = table.replace(".", "_")
    try:
        asset = source.get_asset(asset_name)
    except LookupError:
        asset = source.add_dataframe_asset(name=asset_name)
    try:
        batch_def = asset.get_batch_definition("staged")
    except (KeyError, LookupError):
        batch_def = asset.add_batch_definition_whole_dataframe("staged")

    def validate(checks: list, frame, result_format: dict):
        suite = context.suites.add_or_update(
            _gx().ExpectationSuite(name=f"{asset_name}_gate", expectations=[copy.copy(e) for e in checks]))
        validation = context.validation_definitions.add_or_update(
            _gx().ValidationDefinition(name=f"{asset_name}_gate", data=batch_def, suite=suite))
        checkpoint = context.checkpoints.add_or_update(
            _gx().Checkpoint(name=f"{asset_name}_publish", validation_definitions=[validation], actions=[],
                             result_format=result_format)
        )
        return checkpoint.run(batch_parameters={"dataframe": frame})

    if counts_first:
        result = validate(*as_distinct_counts(expectations, df), COUNTS_ONLY)
        if not result.success:
            for key in result.run_results:  # one stored result per gate: the one as written replaces it
                context.validation_results_store.remove_key(key)
            result = validate(expectations, df, WITH_EXAMPLES)
    else:
        result = validate(expectations, df, WITH_EXAMPLES)
    if update_docs:  # render the stored result into the Data Docs (its page and the index)
        _update_docs(result)
    failures: list[Failure] = []
    for run in result.run_results.values():
        for r in run.results:
            if r.success:
                continue
            cfg = r.expectation_config
            res = r.result or {}
            failures.append(
                Failure(
                    check=cfg.type,
                    column=cfg.kwargs.get("column") or (",".join(cfg.kwargs.get("column_list", [])) or None),
                    unexpected=res.get("unexpected_count"),
                    observed=res.get("observed_value"),
                    expected=_describe(cfg),
                )
            )
    if failures and raise_on_failure:
        raise QualityGateError(table, failures, docs_dir(lake) / "index.html")
    return failures


def build_docs(lake: Path) -> Path:
    """Rebuild the Data Docs of every gate run so far and copy the site to `<lake>/reports/quality`, with
    its CDN scripts and styles pointed at the locally cached web assets (see gr2.platform.web_assets)."""
    import shutil

    root = context_root(lake)
    if not (root / "gx").exists():
        raise FileNotFoundError(f"no quality gate has run under {lake} yet; run an ETL or tokenizer command first")
    context = _context(lake)
    context.build_data_docs()
    target = Path(lake) / "reports" / "quality"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(docs_dir(lake), target)
    # GE's pages load jQuery, Bootstrap, bootstrap-table ... from public CDNs; point them at the local copies
    # that `python -m gr2.platform.web_assets fetch` (scripts/bootstrap.sh) cached, so the docs work offline.
    # Nothing is downloaded here: without the cache the site is left as GE wrote it.
    from gr2.platform.web_assets import localize

    result = localize(target)
    if result.get("warning"):
        logging.getLogger(__name__).warning("Data Docs: %s", result["warning"])
    elif result["unresolved"]:
        logging.getLogger(__name__).warning(
            "Data Docs: no local copy of %s; these still load from the network", ", ".join(result["unresolved"])
        )
    return target / "index.html"
