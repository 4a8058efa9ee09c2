"""The teacher interface: what a teacher is asked (a TeacherRequest), what it answers, how a request fails.

gr2/training/rejection.py drives any Teacher through this interface only; the two teachers
(statistical.py, remote.py) implement it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gr2.rerank.slate import ItemText


@dataclass(frozen=True)
class SlateContext:
    """The structured slate behind a prompt, for teachers that do not read text. Never the label."""

    history: Sequence[ItemText]
    candidates: Sequence[ItemText]


@dataclass(frozen=True)
class TeacherRequest:
    """One prompt to answer. ``seed`` makes sampling reproducible where the teacher supports it."""

    slate_id: str
    attempt: int
    messages: list[dict]
    temperature: float
    seed: int
    slate: SlateContext | None = None


@runtime_checkable
class Teacher(Protocol):
    """Answers a batch of requests; result i is the answer text of request i or the Exception it hit."""

    name: str

    def generate(self, requests: list[TeacherRequest]) -> list[str | Exception]: ...


class TeacherError(Exception):
    """A request that failed for good. ``status`` is the HTTP status when there was one; ``tries`` how
    many calls were made. The message never contains the API key."""

    def __init__(self, message: str, status: int | None = None, retryable: bool = False, tries: int = 1):
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.tries = tries
