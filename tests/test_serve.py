"""`gr2 serve` on a real local Ray Serve: real HTTP requests, good and bad, against a real (tiny) HF model
saved into a lake the way training saves it."""

from __future__ import annotations

import json
import socket
import threading

import pytest
from training_lake import make_training_lake

from gr2.config import load_config
from gr2.rerank.formats import RerankFormat
from gr2.serve import engine, launch
from gr2.serve.client import RerankClient, ServiceError
from gr2.training import model as lm

K = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = make_training_lake(tmp_path_factory.mktemp("serve") / "lake", k=K)
    run_dir = root / "models" / "sft" / "sft-test"
    texts = [f"Skin Hair Nails Tools product i{n:02d} a{n} b{n} c{n} ranking reasoning [1] [2] [3] [4]" for n in range(48)]
    model_dir = lm.build_small_model(run_dir / "model", texts * 4, vocab_size=400, hidden=32, layers=1, heads=2)
    RerankFormat(sid="text", cite="slate", style="compact", history=3, title_words=4, chat_template=False).save(model_dir)
    (root / "models" / "sft" / "LATEST").write_text("sft-test")
    cfg = load_config(overrides=[f"etl.k={K}", "serve.stage=sft", f"serve.port={_free_port()}", "serve.max_new_tokens=24",
                                 "serve.max_batch=4", "serve.max_body_bytes=2048", "serve.deadline_ms=60000"], lake=str(root))
    url = launch.start(cfg, timeout_s=240)
    try:
        yield cfg, url, launch.token(cfg)
    finally:
        launch.stop()


def _slate(cfg):
    from gr2.serve.check import _slates

    return _slates(cfg, 8)


def test_ranking_mode_answers_a_permutation_with_model_and_timing(served):
    cfg, url, token = served
    client = RerankClient(url, token)
    assert client.ready()["model"] == {"stage": "sft", "run": "sft-test", "format": "compact", "ranking_decoder": "slots",
                                       "engine": "hf", "compute_type": "float32",
                                       "prefix_cache": 32}
    for hist, cands, _ in _slate(cfg):
        a = client.rerank(cands, hist, mode="ranking", request_id="r1")
        assert sorted(a["ranking"]) == sorted(cands) and a["fallback"] is False and a["fallback_reason"] is None
        assert a["model"]["run"] == "sft-test" and a["timing_ms"]["total"] >= a["timing_ms"]["model"] > 0
        assert a["request_id"] == "r1" and a["reasoning"] is None


def test_a_user_ranked_again_reuses_the_prompt_head_and_metrics_count_it(served):
    cfg, url, token = served
    client = RerankClient(url, token)

    def hits() -> int:
        line = next(x for x in client.metrics().splitlines() if x.startswith('gr2_prefix_cache_lookups_total{result="hit"}'))
        return int(line.split()[-1])

    hist, cands, _ = _slate(cfg)[0]
    client.rerank(cands, hist, mode="ranking")
    before = hits()
    again = client.rerank(cands[::-1], hist, mode="ranking")  # the same user, the next slate
    assert sorted(again["ranking"]) == sorted(cands) and not again["fallback"]
    assert hits() == before + 1


def test_reasoning_mode_falls_back_to_the_incoming_order_when_the_answer_is_invalid(served):
    cfg, url, token = served
    hist, cands, _ = _slate(cfg)[0]
    a = RerankClient(url, token).rerank(cands, hist, mode="reasoning", explain=True)
    # an untrained model writes no valid answer: the caller still gets its slate, flagged
    assert sorted(a["ranking"]) == sorted(cands)
    if a["fallback"]:
        assert a["fallback_reason"] == "invalid" and a["ranking"] == cands
    assert isinstance(a["reasoning"], str)


def test_a_missed_deadline_answers_the_incoming_order_in_time(served):
    cfg, url, token = served
    hist, cands, _ = _slate(cfg)[0]
    a = RerankClient(url, token).rerank(cands, hist, mode="reasoning", deadline_ms=1)
    assert a["fallback_reason"] == "timeout" and a["ranking"] == cands
    assert a["timing_ms"]["total"] < 1000


def test_concurrent_requests_are_all_answered(served):
    cfg, url, token = served
    cases = _slate(cfg)
    answers, errors = [], []

    def call(hist, cands):
        try:
            answers.append((cands, RerankClient(url, token).rerank(cands, hist, mode="ranking")))
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=call, args=(h, c)) for h, c, _ in cases]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(answers) == len(cases)
    assert all(sorted(a["ranking"]) == sorted(c) for c, a in answers)


@pytest.mark.parametrize(
    "body, status, words",
    [
        (b'{"candidates": [', 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (json.dumps({"candidates": ["i00", "i01", "i02"]}).encode(), 422, "expected 4 candidates"),
        (json.dumps({"candidates": ["i00", "i01", "i02", "i00"]}).encode(), 422, "duplicate candidate(s): ['i00']"),
        (json.dumps({"candidates": ["i00", "i01", "i02", "nope"], "history": ["gone"]}).encode(), 422, "candidates ['nope']; history ['gone']"),
        (json.dumps({"candidates": ["i00", "i01", "i02", True]}).encode(), 422, "candidates[3]"),
        (json.dumps({"candidates": ["i00", "i01", "i02", "i03"], "mode": "fast"}).encode(), 422, "mode must be one of"),
        (json.dumps({"candidates": ["i00", "i01", "i02", "i03"], "deadline_ms": 0}).encode(), 422, "deadline_ms"),
        (json.dumps({"candidates": ["i00", "i01", "i02", "i03"], "user": "x"}).encode(), 422, "unknown field(s) ['user']"),
        (json.dumps({"candidates": ["i00", "i01", "i02", "i03"], "history": ["i04"] * 400}).encode(), 413, "bytes"),
    ],
)
def test_bad_requests_get_a_4xx_that_names_the_problem(served, body, status, words):
    _, url, token = served
    with pytest.raises(ServiceError) as err:
        RerankClient(url, token).post_raw(body)
    assert err.value.status == status and words in err.value.message


def test_requests_need_the_token_and_metrics_count_what_happened(served):
    cfg, url, token = served
    hist, cands, _ = _slate(cfg)[0]
    for bad in (None, "wrong"):
        with pytest.raises(ServiceError) as err:
            RerankClient(url, bad).rerank(cands, hist)
        assert err.value.status == 401
    assert RerankClient(url, None).ready()["status"] == "ready"  # probes stay open for load balancers
    text = RerankClient(url, token).metrics()
    assert 'gr2_requests_total{mode="ranking",outcome="ok"}' in text
    assert 'gr2_fallbacks_total{reason="timeout"}' in text and 'gr2_rejected_total{status="401"}' in text
    assert "gr2_request_seconds_bucket" in text and "gr2_request_seconds_count" in text


def test_a_sid_names_its_item_and_the_answer_gives_item_ids(served):
    cfg, url, token = served
    from gr2.rerank.catalog import load_catalog

    catalog, _ = load_catalog(cfg.lake_path)
    hist, cands, _ = _slate(cfg)[0]
    a = RerankClient(url, token).rerank([catalog[c].sid for c in cands], hist, mode="ranking")
    assert sorted(a["ranking"]) == sorted(cands)


@pytest.mark.parametrize("body, status", [({"candidates": "i00"}, 422), ({"history": []}, 422), ({"candidates": [[1]] * 4}, 422)])
def test_parse_request_table(body, status):
    known = lambda ids: (ids, [])  # noqa: E731
    with pytest.raises(engine.RequestError) as err:
        engine.parse_request(body, known, 4, "ranking", 1000, 5000)
    assert err.value.status == status


def test_the_one_pass_ranking_decoder_answers_permutations_that_agree_on_the_top(served):
    """`serve.ranking_decoder=first` (one pass) against the slot-by-slot decoder, in the engine itself."""
    from gr2.rerank.catalog import load_catalog

    cfg, _, _ = served
    items, _ = load_catalog(cfg.lake_path)
    model_dir = cfg.lake_path / "models" / "sft" / "sft-test" / "model"
    fmt = RerankFormat.of_model(model_dir, RerankFormat())
    engines = {d: engine.Reranker(model_dir, engine.Catalog(items), fmt, 24, False, 4, ranking_decoder=d) for d in ("slots", "first")}
    reqs = [engine.RerankRequest(h, c, "ranking", False, 60000) for h, c, _ in _slate(cfg)]
    answers = {d: e.answer(reqs) for d, e in engines.items()}
    for slots, first in zip(answers["slots"], answers["first"]):
        assert sorted(first.order) == list(range(K)) and not first.fallback
        assert first.order[0] == slots.order[0]
    with pytest.raises(ValueError, match="'slots' or 'first'"):
        engine.Reranker(model_dir, engine.Catalog(items), fmt, 24, False, 4, ranking_decoder="beam")


def test_a_model_trained_with_evidence_is_asked_with_the_lakes_sequence_model(served):
    """A format with `evidence: sequential`: the engine loads the lake's all-users sequence model and each
    candidate line carries its rank of the request's whole history; no lake, no engine."""
    from deltalake import DeltaTable

    from gr2.models import evidence as ev
    from gr2.rerank.catalog import load_catalog

    cfg, _, _ = served
    items, _ = load_catalog(cfg.lake_path)
    seqs = DeltaTable(str(cfg.lake_path / "gold/sequences")).to_pandas()
    models = ev.fit(zip(seqs["user_id"], seqs["items"], seqs["split"]), epochs=2, seconds=30, seed=0)
    ev.save(models, cfg.lake_path)
    model_dir = cfg.lake_path / "models" / "sft" / "sft-test" / "model"
    fmt = RerankFormat.of_model(model_dir, RerankFormat()).with_(evidence="sequential")
    rr = engine.Reranker(model_dir, engine.Catalog(items), fmt, 24, False, 4, ranking_decoder="first", lake=cfg.lake_path)
    hist, cands, _ = _slate(cfg)[0]
    prompt, _ = rr._prompt(engine.RerankRequest(hist, cands, "ranking", False, 60000))
    ranks = models.ranks(None, "serve", hist, cands)
    for n, r in enumerate(ranks, 1):
        assert f"[{n}] " in prompt and f"| {ev.note(r)}" in prompt.split(f"[{n}] ")[1].split("\n")[0]
    (answer,) = rr.answer([engine.RerankRequest(hist, cands, "ranking", False, 60000)])
    assert sorted(answer.order) == list(range(K))
    with pytest.raises(ValueError, match="needs the lake"):
        engine.Reranker(model_dir, engine.Catalog(items), fmt, 24, False, 4)
