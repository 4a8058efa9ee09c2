"""A small Python client for `gr2 serve` (standard library only).

    from gr2.serve.client import RerankClient
    client = RerankClient("http://127.0.0.1:8000", token=open("lake/_serve/token").read().strip())
    answer = client.rerank(history=["B0001", "B0002"], candidates=[...K item ids...], mode="ranking")
    answer["ranking"], answer["fallback"], answer["timing_ms"]
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request


class ServiceError(Exception):
    """The service refused a request: ``status`` is the HTTP status, the message the service's reason."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class RerankClient:
    def __init__(self, url: str, token: str | None = None, timeout_s: float = 60.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: bytes | None = None, content_type: str = "application/json"):
        headers = {"Content-Type": content_type} if body is not None else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                message = json.loads(raw).get("error", raw.decode(errors="replace"))
            except ValueError:
                message = raw.decode(errors="replace")
            raise ServiceError(e.code, message) from None

    def rerank(self, candidates: list, history: list | None = None, mode: str | None = None, explain: bool = False,
               deadline_ms: int | None = None, request_id: str | None = None) -> dict:
        """The re-ranked slate: ``ranking`` (item ids, best first), ``fallback`` and its reason, ``reasoning``
        (when ``explain``), ``model`` and ``timing_ms``. Raises :class:`ServiceError` on a 4xx/5xx."""
        body = {"history": list(history or []), "candidates": list(candidates), "explain": explain}
        for key, value in (("mode", mode), ("deadline_ms", deadline_ms), ("request_id", request_id)):
            if value is not None:
                body[key] = value
        return json.loads(self.post_raw(json.dumps(body).encode()))

    def post_raw(self, body: bytes) -> bytes:
        """POST a body as it is (for tests of malformed input); returns the response body."""
        return self._call("POST", "/v1/rerank", body)[1]

    def ready(self) -> dict:
        return json.loads(self._call("GET", "/readyz")[1])

    def metrics(self) -> str:
        return self._call("GET", "/metrics")[1].decode()
