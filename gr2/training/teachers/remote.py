"""The teacher behind any OpenAI-compatible chat endpoint (OpenAI, vLLM, SGLang, Ollama, ...).

Requests of a batch run concurrently on threads; a request that fails for good is a TeacherError in its
result slot, so one bad slate never sinks the batch (gr2/training/rejection.py counts it as an error).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from typing import Any

from gr2.training.teachers.base import TeacherError, TeacherRequest

PLACEHOLDER_KEY = "EMPTY"  # what keyless local servers (vLLM, Ollama) accept
_RETRY_STATUS = {408, 409, 429}


def _retry_after(headers: Any, cap: float) -> float | None:
    """Seconds the server asked us to wait (retry-after-ms, Retry-After seconds or HTTP date)."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return min(cap, max(0.0, float(ms) / 1000))
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return min(cap, max(0.0, float(value)))
        except ValueError:
            when = parsedate_to_datetime(value)
            return min(cap, max(0.0, when.timestamp() - time.time()))
    except (TypeError, ValueError, OverflowError):
        return None


class OpenAITeacher:
    """A teacher behind any OpenAI-compatible ``/v1/chat/completions`` endpoint.

    The key is read from the environment variable named ``api_key_env`` and kept only inside the
    client: it is not an attribute, not in ``repr``, and scrubbed from error messages. When the
    variable is unset the placeholder "EMPTY" is sent (fine for keyless local servers; a server that
    needs a key answers 401, reported with the variable's name).

    The openai client's own retries are off (``max_retries=0``): this class retries 408/409/429/5xx,
    timeouts and connection errors up to ``max_retries`` times with exponential backoff and jitter,
    waiting what Retry-After says on 429 when given (at most ``max(backoff_max_s, 1)`` seconds); other statuses (400, 401, 403, 404, 422) fail
    at once. Requests of a batch run on ``concurrency`` threads.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout_s: float = 120.0,
        max_retries: int = 5,
        backoff_s: float = 1.0,
        backoff_max_s: float = 60.0,
        max_tokens: int = 2048,
        send_seed: bool = True,
        name: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        import openai

        if concurrency < 1 or max_retries < 0 or timeout_s <= 0 or backoff_s < 0:
            raise ValueError("need concurrency >= 1, max_retries >= 0, timeout_s > 0, backoff_s >= 0")
        self.base_url, self.model, self.api_key_env = base_url, model, api_key_env
        self.concurrency, self.timeout_s, self.max_retries = concurrency, timeout_s, max_retries
        self.backoff_s, self.backoff_max_s, self.max_tokens = backoff_s, backoff_max_s, max_tokens
        self.send_seed = send_seed
        self.name = name or f"openai:{model}"
        self._sleep = sleep
        self._rng = random.Random()
        key = os.environ.get(api_key_env) or ""
        self._key_set = bool(key)
        self._secrets = [key] if key else []
        self._client = openai.OpenAI(base_url=base_url, api_key=key or PLACEHOLDER_KEY,
                                     timeout=timeout_s, max_retries=0)

    def __repr__(self) -> str:
        return (f"OpenAITeacher(name={self.name!r}, base_url={self.base_url!r}, model={self.model!r}, "
                f"api_key_env={self.api_key_env!r}, concurrency={self.concurrency}, "
                f"max_retries={self.max_retries})")

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAITeacher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _scrub(self, text: str, limit: int = 500) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text if len(text) <= limit else text[:limit] + "..."

    def _delay(self, retry: int, server_wait: float | None) -> float:
        if server_wait is not None:
            return server_wait
        base = min(self.backoff_max_s, self.backoff_s * 2**retry)
        return base * self._rng.uniform(0.5, 1.5)

    def _call(self, req: TeacherRequest) -> str | Exception:
        import openai

        where = f"{self.name} at {self.base_url} (slate {req.slate_id!r}, attempt {req.attempt})"
        kwargs: dict[str, Any] = dict(model=self.model, messages=req.messages, temperature=req.temperature,
                                      max_tokens=self.max_tokens)
        if self.send_seed:
            kwargs["seed"] = req.seed
        tries = 0
        while True:
            tries += 1
            status: int | None = None
            wait: float | None = None
            try:
                resp = self._client.chat.completions.create(**kwargs)
            except openai.APIStatusError as exc:
                status = exc.status_code
                retryable = status in _RETRY_STATUS or status >= 500
                detail = f"HTTP {status}: {exc.message}"
                if status == 429:
                    wait = _retry_after(exc.response.headers, cap=max(self.backoff_max_s, 1.0))
                if status == 401:
                    detail += (f" - check the API key in ${self.api_key_env}" if self._key_set else
                               f" - ${self.api_key_env} is not set; this endpoint needs a key")
            except openai.APITimeoutError:
                retryable, detail = True, f"timed out after {self.timeout_s:g}s"
            except openai.APIConnectionError as exc:
                retryable, detail = True, f"connection error: {exc.message}"
            except Exception as exc:  # a malformed reply or a bug: report it, do not retry
                retryable, detail = False, f"{type(exc).__name__}: {exc}"
            else:
                choice = resp.choices[0] if resp.choices else None
                content = choice.message.content if choice is not None else None
                if content:
                    return content
                reason = choice.finish_reason if choice is not None else "no choices"
                return TeacherError(f"{where}: empty completion (finish_reason={reason})", tries=tries)
            if not retryable or tries > self.max_retries:
                gave_up = f" (gave up after {tries} tries)" if retryable else ""
                return TeacherError(self._scrub(f"{where}: {detail}{gave_up}"), status=status,
                                    retryable=retryable, tries=tries)
            self._sleep(self._delay(tries - 1, wait))

    def generate(self, requests: list[TeacherRequest]) -> list[str | Exception]:
        if not requests:
            return []
        if self.concurrency == 1 or len(requests) == 1:
            return [self._call(r) for r in requests]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests)),
                                thread_name_prefix="teacher") as pool:
            return list(pool.map(self._call, requests))
