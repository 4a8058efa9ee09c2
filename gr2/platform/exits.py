"""The exit codes of every gr2 command, and the one map from an exception to its code.

A scheduler, a CI job or a person at a shell acts on the code, so each names what to do next:

    0  OK           done (for `gr2 nightly`: or already up to date)
    1  JOB_FAILED   what the command ran says it failed: a submitted Ray Job ended FAILED,
                    `gr2 serve --check` found a bad answer
    2  INPUT        bad input, configuration or usage: a missing file, model or table, a bad value, an
                    unknown option; the message says which. Retrying will not help: fix it, then rerun
    3  GATE         a quality gate refused a table; the previous version stays published. Read the
                    message (each failed check and how many rows broke it) and the Data Docs
    4  FAILED       anything else (executor lost, out of memory, a killed process, a bug): the
                    traceback is printed; rerun (`gr2 nightly` resumes at the failed step)
  130  STOPPED      interrupted: a submitted job was stopped, or Ctrl-C while following one

`code_of` maps an exception by its class and base classes through `EXCEPTIONS`, first match wins. The
table names classes by their dotted path instead of importing them, so this bottom layer does not
import the stages and pipelines whose errors it lists (tests/test_exits.py checks every name exists).
"""

from __future__ import annotations

OK, JOB_FAILED, INPUT, GATE, FAILED, STOPPED = 0, 1, 2, 3, 4, 130

# (exception class, code). A subclass takes its base's code: gr2.etl.io.InputError is a
# FileNotFoundError, gr2.config.ConfigError and pydantic's ValidationError are ValueErrors, and Ray
# re-raises a worker's error as a subclass of the original class, so a ValueError from a Ray task is
# still bad input.
EXCEPTIONS: tuple[tuple[str, int], ...] = (
    ("gr2.platform.quality.QualityGateError", GATE),
    ("gr2.config.ConfigError", INPUT),
    # a registry base that is unknown or cannot be fetched is a missing model: name another, or pull it
    ("gr2.training.bases.PullError", INPUT),
    # no token, a wrong token or an unreachable cluster: fix the address or the token
    ("gr2.pipelines.submit.SubmitError", INPUT),
    # a missing input file, model folder or trained stage (`no sft model under ...; run gr2 train sft`)
    ("builtins.FileNotFoundError", INPUT),
    # a bad value: a date that does not parse, an option out of range, data a stage cannot use
    ("builtins.ValueError", INPUT),
)

MEANING = {
    OK: "done",
    JOB_FAILED: "the job or check the command ran failed",
    INPUT: "bad input, configuration or usage; fix it, then rerun",
    GATE: "a quality gate refused a table; the previous version stays published",
    FAILED: "failed otherwise; rerun",
    STOPPED: "interrupted",
}


def _names(exc_type: type) -> set[str]:
    return {f"{c.__module__}.{c.__qualname__}" for c in exc_type.__mro__}


def code_of(exc: BaseException) -> int:
    """The exit code for a command that ended with `exc` (FAILED when the table does not name it)."""
    names = _names(type(exc))
    return next((code for name, code in EXCEPTIONS if name in names), FAILED)
