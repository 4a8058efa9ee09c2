"""Teachers: the offline statistical teacher and the OpenAI-compatible client against a local server."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gr2.rerank.prompt import build_rerank_messages, parse_response
from gr2.rerank.slate import ItemText
from gr2.training.teachers import (
    ItemMeta,
    OpenAITeacher,
    SlateContext,
    StatisticalTeacher,
    Teacher,
    TeacherError,
    TeacherRequest,
)

# --------------------------------------------------------------------------- statistical teacher

ITEMS = {
    "h1": {"title": "Rose cleanser", "categories": ["Beauty", "Skin Care"], "brand": "Acme"},
    "h2": {"title": "Rose toner", "categories": ["Beauty", "Skin Care"], "brand": "Acme"},
    "h3": ItemMeta(title="Shampoo", categories=("Beauty", "Hair Care"), brand="Hairy"),
    "co": {"title": "Rose serum", "categories": ["Beauty", "Tools"], "brand": "Zed"},
    "p1": {"title": "Brush", "categories": ["Beauty", "Tools"], "brand": "Zed"},
    "p2": {"title": "Comb", "categories": ["Beauty", "Tools"], "brand": "Zed"},
    "p3": {"title": "Mirror", "categories": ["Beauty", "Tools"], "brand": "Zed"},
}
SID = {k: f"<a_{i}><b_{i % 3}><c_1><d_2>" for i, k in enumerate(ITEMS)}
SID["p3"] = "<a_6><b_0><c_1><d_2><e_4>"  # a five-level SID from an over-full group
# "co" follows the history in 5 sessions; p1..p3 are more popular but never follow it
TRAIN = [["h1", "h2", "co"]] * 5 + [["h3", "p1", "p2", "p3"]] * 8


def it(k: str) -> ItemText:
    return ItemText(k, SID[k], ITEMS[k]["title"] if isinstance(ITEMS[k], dict) else ITEMS[k].title, "")


def request(cands=("p1", "co", "p2", "p3"), temperature=0.0, seed=0, history=("h3", "h1", "h2")):
    slate = SlateContext(history=[it(k) for k in history], candidates=[it(k) for k in cands])
    return TeacherRequest("s1", 0, build_rerank_messages(slate.history, slate.candidates), temperature, seed, slate)


@pytest.fixture(scope="module")
def stat():
    return StatisticalTeacher(TRAIN, ITEMS, window=3)


def test_statistical_teacher_answers_valid_permutations(stat):
    assert isinstance(stat, Teacher) and stat.name == "statistical-cooccurrence"
    cands = ("p1", "co", "p2", "p3")
    for seed in range(10):
        (text,) = stat.generate([request(temperature=1.0, seed=seed)])
        parsed = parse_response(text, [SID[k] for k in cands])
        assert parsed.ok, parsed.error
        assert sorted(parsed.ranking) == sorted(SID[k] for k in cands)


def test_statistical_teacher_prefers_cooccurring_candidate():
    no_order = StatisticalTeacher(TRAIN, ITEMS, window=3, weights={"incoming": 0.0})
    parsed = parse_response(no_order.generate([request()])[0], [SID[k] for k in ("p1", "co", "p2", "p3")])
    assert parsed.ranking[0] == SID["co"]


@pytest.mark.parametrize("cands, first", [
    (("p2", "p3", "p1", "co"), "p2"),  # p2 and p3 have the same statistics: the incoming order decides
    (("p3", "p2", "p1", "co"), "p3"),
])
def test_statistical_teacher_reads_the_incoming_order(stat, cands, first):
    text = stat.generate([request(cands=cands)])[0]
    ranking = parse_response(text, [SID[k] for k in cands]).ranking
    assert ranking.index(SID[first]) < ranking.index(SID["p3" if first == "p2" else "p2"])
    assert "pre-ranked #1" in json.loads(text)["reasoning"]


def test_statistical_teacher_is_seeded(stat):
    def ranking(seed, temperature):
        return json.loads(stat.generate([request(temperature=temperature, seed=seed)])[0])["ranking"]

    assert ranking(3, 2.0) == ranking(3, 2.0)
    assert len({tuple(ranking(s, 5.0)) for s in range(20)}) > 1
    assert len({tuple(ranking(s, 0.0)) for s in range(5)}) == 1


def test_statistical_reasoning_cites_sids_and_figures(stat):
    reasoning = json.loads(stat.generate([request()])[0])["reasoning"]
    assert reasoning.startswith("1. User interests:") and "\n2. Candidates:" in reasoning
    assert "\n3. Decision:" in reasoning
    assert f"follows {SID['h2']} (the latest item) in 5 training sessions" in reasoning
    assert f"follows {SID['h3']} (2 items before the latest) in 8 training sessions" in reasoning
    assert "67% of this user's history is in Skin Care" in reasoning
    assert "Most frequent brand: Acme (2 of 3 items)" in reasoning
    assert "8 training interactions" in reasoning  # p1's popularity
    for k in ("p1", "co", "p2", "p3"):
        assert SID[k] in reasoning


def test_statistical_teacher_needs_the_slate(stat):
    req = request()
    bad = TeacherRequest("s2", 0, req.messages, 0.0, 0, slate=None)
    ok, err = stat.generate([req, bad])
    assert isinstance(ok, str) and isinstance(err, ValueError) and "slate=None" in str(err)


def test_statistical_teacher_handles_cold_start_and_unknown_items(stat):
    cold = SlateContext(history=[], candidates=[ItemText("new", "<a_99><b_1><c_1><d_1>", "New thing", "Misc"),
                                                it("p1")])
    text = stat.generate([TeacherRequest("s3", 0, [], 0.0, 0, cold)])[0]
    assert parse_response(text, [c.sid for c in cold.candidates]).ok


# --------------------------------------------------------------------------- OpenAI-compatible teacher

KEY = "sk-test-SECRET-4242"


class FakeEndpoint:
    """A test double of an OpenAI-compatible server: scripted failures, then echo answers."""

    def __init__(self):
        self.script: list[tuple[int, dict, dict]] = []
        self.calls: list[dict] = []
        self.lock = threading.Lock()
        self.inflight = 0
        self.max_inflight = 0
        self.delay = 0.0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with endpoint.lock:
                    endpoint.calls.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
                    step = endpoint.script.pop(0) if endpoint.script else None
                    endpoint.inflight += 1
                    endpoint.max_inflight = max(endpoint.max_inflight, endpoint.inflight)
                time.sleep(endpoint.delay)
                if step is None:
                    step = (200, {}, {
                        "id": "cmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant",
                                                 "content": "echo:" + body["messages"][-1]["content"]}}],
                    })
                status, headers, payload = step
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
                with endpoint.lock:
                    endpoint.inflight -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _error(status, message):
    return {"error": {"message": message, "type": "error", "code": status}}


@pytest.fixture()
def endpoint(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("GR2_TEST_KEY", KEY)
    ep = FakeEndpoint()
    yield ep
    ep.stop()


def make_teacher(url, sleeps, **kw):
    args = dict(base_url=url, model="teacher-7b", api_key_env="GR2_TEST_KEY", concurrency=1, timeout_s=5,
                max_retries=3, backoff_s=0.001, backoff_max_s=0.01, max_tokens=64, sleep=sleeps.append)
    return OpenAITeacher(**(args | kw))


def msgs(text):
    return [{"role": "system", "content": "sys"}, {"role": "user", "content": text}]


def reqs(*texts):
    return [TeacherRequest(f"s{i}", 0, msgs(t), 0.7, 11 + i) for i, t in enumerate(texts)]


def test_openai_teacher_normal_answer(endpoint):
    sleeps: list[float] = []
    teacher = make_teacher(endpoint.url, sleeps)
    assert isinstance(teacher, Teacher) and teacher.name == "openai:teacher-7b"
    assert teacher.generate(reqs("hello")) == ["echo:hello"]
    (call,) = endpoint.calls
    assert call["path"] == "/v1/chat/completions" and call["auth"] == f"Bearer {KEY}"
    assert call["model"] == "teacher-7b" and call["temperature"] == 0.7 and call["seed"] == 11
    assert call["max_tokens"] == 64 and call["messages"] == msgs("hello")
    assert sleeps == []
    teacher.close()


def test_openai_teacher_honours_retry_after_on_429(endpoint):
    endpoint.script = [(429, {"Retry-After": "1"}, _error(429, "slow down"))]
    sleeps: list[float] = []
    assert make_teacher(endpoint.url, sleeps).generate(reqs("a")) == ["echo:a"]
    assert len(endpoint.calls) == 2 and sleeps == [1.0]


def test_openai_teacher_retries_5xx_with_backoff(endpoint):
    endpoint.script = [(500, {}, _error(500, "boom")), (503, {}, _error(503, "busy"))]
    sleeps: list[float] = []
    assert make_teacher(endpoint.url, sleeps).generate(reqs("b")) == ["echo:b"]
    assert len(endpoint.calls) == 3 and len(sleeps) == 2
    assert 0.0005 <= sleeps[0] <= 0.0015 and 0.001 <= sleeps[1] <= 0.003  # exponential, jittered


def test_openai_teacher_gives_up_after_max_retries(endpoint):
    endpoint.script = [(502, {}, _error(502, "bad gateway"))] * 5
    sleeps: list[float] = []
    (res,) = make_teacher(endpoint.url, sleeps, max_retries=2).generate(reqs("c"))
    assert isinstance(res, TeacherError) and res.status == 502 and res.tries == 3
    assert "gave up after 3 tries" in str(res) and len(endpoint.calls) == 3


@pytest.mark.parametrize("status", [401, 400, 404])
def test_openai_teacher_does_not_retry_client_errors_and_hides_key(endpoint, status):
    # a server that echoes the key back must not get it into our error
    endpoint.script = [(status, {}, _error(status, f"Incorrect API key provided: {KEY}"))]
    sleeps: list[float] = []
    teacher = make_teacher(endpoint.url, sleeps)
    (res,) = teacher.generate(reqs("d"))
    assert isinstance(res, TeacherError) and res.status == status and not res.retryable
    assert len(endpoint.calls) == 1 and sleeps == []
    assert f"HTTP {status}" in str(res) and "slate 's0'" in str(res)
    assert KEY not in str(res) and KEY not in repr(res) and KEY not in repr(teacher)
    assert "SECRET" not in str(res) and res.__cause__ is None and res.__context__ is None
    if status == 401:
        assert "$GR2_TEST_KEY" in str(res)


def test_openai_teacher_without_key_sends_placeholder(endpoint, monkeypatch):
    monkeypatch.delenv("GR2_TEST_KEY")
    assert make_teacher(endpoint.url, []).generate(reqs("e")) == ["echo:e"]
    assert endpoint.calls[0]["auth"] == "Bearer EMPTY"


def test_openai_teacher_runs_requests_concurrently_in_order(endpoint):
    endpoint.delay = 0.05
    texts = [f"q{i}" for i in range(8)]
    out = make_teacher(endpoint.url, [], concurrency=4).generate(reqs(*texts))
    assert out == [f"echo:{t}" for t in texts]
    assert endpoint.max_inflight > 1


def test_openai_teacher_connection_error_is_retried_then_reported(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: list[float] = []
    (res,) = make_teacher(f"http://127.0.0.1:{port}/v1", sleeps, max_retries=1).generate(reqs("f"))
    assert isinstance(res, TeacherError) and res.retryable and res.tries == 2 and len(sleeps) == 1
    assert "connection error" in str(res)


def test_statistical_teacher_detail_explains_only_the_top_of_its_ranking():
    brief = StatisticalTeacher(TRAIN, ITEMS, window=3, detail=2)
    (text,) = brief.generate([request()])
    parsed = parse_response(text, [SID[k] for k in ("p1", "co", "p2", "p3")])
    assert parsed.ok, parsed.error
    step2 = parsed.reasoning.split("2. Candidates:")[1].split("3. Decision")[0]
    assert step2.count("\n- ") == 3 and "the other 2 candidates show weaker evidence" in step2
    assert all(s in parsed.reasoning.split("3. Decision")[1] for s in parsed.ranking), "the decision still orders all K"
    cands = [SID[k] for k in ("p1", "co", "p2", "p3")]
    decision = parsed.reasoning.split("3. Decision")[1]
    # each candidate is cited with its slate number, the prompt's "[k]": a unique anchor to copy its SID from
    assert all(f"[{cands.index(s) + 1}] {s}" in decision for s in parsed.ranking), decision
    (full,) = StatisticalTeacher(TRAIN, ITEMS, window=3).generate([request()])
    assert len(text) < len(full)
    with pytest.raises(ValueError, match="detail"):
        StatisticalTeacher(TRAIN, ITEMS, detail=0)


def test_brief_statistical_teacher_writes_three_one_line_steps_under_its_own_name():
    cands = [SID[k] for k in ("p1", "co", "p2", "p3")]
    teacher = StatisticalTeacher(TRAIN, ITEMS, window=3, detail=1, reasoning="brief")
    assert teacher.name == "statistical-cooccurrence-brief" and StatisticalTeacher.name == "statistical-cooccurrence"
    (text,) = teacher.generate([request()])
    parsed = parse_response(text, cands)
    assert parsed.ok, parsed.error
    lines = parsed.reasoning.split("\n")
    assert [ln[:3] for ln in lines] == ["1. ", "2. ", "3. "], lines
    first = parsed.ranking[0]
    assert f"[{cands.index(first) + 1}] {first}" in lines[1] and f"[{cands.index(first) + 1}] {first} first" in lines[2]
    (full,) = StatisticalTeacher(TRAIN, ITEMS, window=3, detail=1).generate([request()])
    assert len(text) < len(full) / 2
    # the same ranking: brevity changes the words, not the decision
    assert parsed.ranking == parse_response(full, cands).ranking


# --------------------------------------------------------------------------- sequential signal


def _prefers(item):
    """A sequential scorer that likes `item` best and otherwise keeps the incoming order; it records its calls."""
    calls = []

    def score(history, candidates):
        calls.append((tuple(history), tuple(candidates)))
        return [10.0 if c == item else -float(i) for i, c in enumerate(candidates)]

    score.calls = calls
    return score


@pytest.mark.parametrize("weight", [0.0, 1.0, 8.0])
def test_statistical_teacher_reads_the_sequential_model(weight):
    scorer = _prefers("p3")
    cands = ("p1", "co", "p2", "p3")
    plain = StatisticalTeacher(TRAIN, ITEMS, window=3)
    teacher = StatisticalTeacher(TRAIN, ITEMS, window=3, weights={"sequential": weight}, sequential=scorer)
    text = teacher.generate([request(cands=cands)])[0]
    ranking = parse_response(text, [SID[k] for k in cands]).ranking
    reasoning = json.loads(text)["reasoning"]
    if weight == 0:  # no weight: the scorer is not consulted and nothing changes
        assert not scorer.calls and text == plain.generate([request(cands=cands)])[0]
        return
    # the scorer sees the prompt's history and the slate, never a label
    assert scorer.calls[0] == (("h3", "h1", "h2"), cands)
    assert "sequence model #1" in reasoning  # among the facts of each explained candidate
    if weight == 8.0:  # heavy: the model's favourite goes first and the decision names the signal
        assert ranking[0] == SID["p3"] and "sequence model #1)" in reasoning.split("3. Decision:")[1]


def test_statistical_teacher_sequential_weight_needs_a_scorer():
    with pytest.raises(ValueError, match="needs a sequential scorer"):
        StatisticalTeacher(TRAIN, ITEMS, weights={"sequential": 1.0})


def test_sequential_ranks_are_stable_and_empty_without_history():
    teacher = StatisticalTeacher(TRAIN, ITEMS, weights={"sequential": 1.0}, sequential=lambda h, c: [1.0, float("nan"), 1.0, 2.0])
    assert teacher._sequential_ranks([it("h1")], [it(k) for k in ("p1", "co", "p2", "p3")]) == [1, 3, 2, 0]
    assert teacher._sequential_ranks([], [it("p1")]) == [-1]


def test_make_teachers_fits_a_sequential_model_per_fold_when_weighted():
    """`traces.weights.sequential` > 0: each fold's teacher gets a real SASRec-style model fitted on the
    other fold's training sequences; at 0 no model is fitted."""
    from gr2.config import load_config
    from gr2.rerank.catalog import CatalogItem
    from gr2.training.traces import make_teachers

    catalog = {k: CatalogItem(k, SID[k], it(k).title, ("Beauty",), "") for k in ITEMS}
    seqs = [(f"u{n}", s, ["train"] * len(s)) for n, s in enumerate(TRAIN * 3)]
    on = load_config(overrides=["traces.weights.sequential=1", "traces.sequential_seconds=3"])
    teachers = make_teachers(on, seqs, catalog)
    assert all(t.sequential is not None for t in teachers.values()) and teachers[0].sequential is not teachers[1].sequential
    ranks = teachers[0]._sequential_ranks([it("h1"), it("h2")], [it(k) for k in ("p1", "co", "p2")])
    assert sorted(ranks) == [0, 1, 2]
    off = make_teachers(load_config(), seqs, catalog)
    assert all(t.sequential is None for t in off.values())
