"""Teachers that write reasoning traces for re-rank slates (the GR2 rejection-sampling stage).

A teacher answers prompts from :mod:`gr2.rerank.prompt` in its answer format. The interface is a
batch (``generate(requests) -> results``) so a remote teacher can run requests concurrently, and a
failed request is a result (an Exception), not a crash of the whole batch.

* :class:`OpenAITeacher` - any OpenAI-compatible chat endpoint (OpenAI, vLLM, SGLang, Ollama, ...).
* :class:`StatisticalTeacher` - an offline stand-in built from training data only (co-occurrence,
  category transitions, brand affinity, popularity). It is not an LLM and is named so; it lets the
  pipeline run and be tested end to end without an endpoint, and its traces cite real figures.

Where each part lives:

    base.py         the interface: TeacherRequest (with its SlateContext), Teacher, TeacherError
    statistical.py  StatisticalTeacher: its statistics, scores, sampling and names (weights, styles)
    reasoning.py    the statistical teacher's reasoning text in its four styles (full, brief, shown, partition)
    remote.py       OpenAITeacher: the HTTP client, its retries and key handling

The names below are the package's API; import them from here.
"""

from gr2.training.teachers.base import SlateContext, Teacher, TeacherError, TeacherRequest
from gr2.training.teachers.reasoning import CandidateEvidence, partition_order, shown_order
from gr2.training.teachers.remote import PLACEHOLDER_KEY, OpenAITeacher
from gr2.training.teachers.statistical import (
    DEFAULT_WEIGHTS,
    REASONING_STYLES,
    SHOWN_SIGNALS,
    ItemMeta,
    SequentialScorer,
    StatisticalTeacher,
    weights_tag,
)

__all__ = [
    "DEFAULT_WEIGHTS", "PLACEHOLDER_KEY", "REASONING_STYLES", "SHOWN_SIGNALS", "CandidateEvidence", "ItemMeta",
    "OpenAITeacher", "SequentialScorer", "SlateContext", "StatisticalTeacher", "Teacher", "TeacherError",
    "TeacherRequest", "partition_order", "shown_order", "weights_tag",
]
