"""`serve.engine_process`: the re-ranker in a child process answers as the same engine in process, reports
its prefix cache, says why it cannot start, and comes back after its process is killed."""

from __future__ import annotations

import os
import signal

import pytest
from training_lake import answers_of, serving_engine, tiny_llama_serving_lake

from gr2.serve.isolated import EngineDied, EngineProcess

K = 4


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    return tiny_llama_serving_lake(tmp_path_factory.mktemp("isolated") / "lake", K)


def _isolated(lake, **kw) -> EngineProcess:
    model_dir, _, fmt, _ = lake
    return EngineProcess(model_dir.parents[3], model_dir=model_dir, fmt=fmt, max_new_tokens=24, autocast=False,
                         batch_size=4, **{"ranking_decoder": "first", "threads": 1, **kw})


@pytest.fixture(scope="module")
def isolated(lake):
    eng = _isolated(lake, prefix_cache=8, ranking_decoder="slots")
    yield eng
    eng.close()


def test_answers_are_the_in_process_engines(lake, isolated):
    reqs = lake[3]
    want = answers_of(serving_engine(lake, ranking_decoder="slots", threads=1), reqs)
    got = answers_of(isolated, reqs)
    assert isolated.pid is not None and isolated.pid != os.getpid()
    assert [(g.order, g.fallback_reason, g.text) for g in got] == [(w.order, w.fallback_reason, w.text) for w in want]
    assert {r.mode for r in reqs} == {"reasoning", "ranking"} and len({tuple(g.order) for g in got}) > 1


def test_the_prefix_cache_is_read_from_the_child(lake, isolated):
    assert isolated.prefix_cache is not None and isolated.prefix_cache.entries == 8
    ranking = [r for r in lake[3] if r.mode == "ranking"][0]
    isolated.answer([ranking])
    isolated.answer([ranking])  # the same user again: its prompt head is a hit
    text = isolated.prefix_cache.metrics_text()
    hit = next(x for x in text.splitlines() if x.startswith('gr2_prefix_cache_lookups_total{result="hit"}'))
    assert int(hit.split()[-1]) >= 1


class _DiesWhenRead:
    """Unpickled by the child, it ends the child's process: a death in the middle of a call (a crash, the OOM killer)."""

    def __reduce__(self):
        return (os._exit, (3,))


def test_a_dead_engine_fails_that_call_and_the_next_one_starts_a_new_process(lake):
    eng = _isolated(lake)
    try:
        ranking = [r for r in lake[3] if r.mode == "ranking"][:1]
        first = eng.answer(ranking)[0].order
        with pytest.raises(EngineDied, match=r"ended during answer \(exit code 3\)"):
            eng.answer([_DiesWhenRead()])
        assert eng.answer(ranking)[0].order == first and eng.restarts == 1
        old = eng.pid
        os.kill(old, signal.SIGKILL)  # killed between calls: the next call starts a new process and answers
        eng._proc.join(10)
        assert eng.answer(ranking)[0].order == first and eng.pid != old and eng.restarts == 2
    finally:
        eng.close()


def test_a_model_that_cannot_load_is_named(lake, tmp_path):
    _, _, fmt, _ = lake
    with pytest.raises(RuntimeError, match=f"could not load the model from {tmp_path}"):
        EngineProcess(lake[0].parents[3], model_dir=tmp_path, fmt=fmt, max_new_tokens=24, autocast=False, threads=1)


def test_llamacpp_in_the_child_answers_as_in_process(lake):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'gr2[llamacpp]')")
    reqs = lake[3]
    want = answers_of(serving_engine(lake, engine="llamacpp", compute_type="float32", threads=1), reqs)
    eng = _isolated(lake, engine="llamacpp", compute_type="float32")
    try:
        got = answers_of(eng, reqs)
    finally:
        eng.close()
    assert [(g.order, g.text) for g in got] == [(w.order, w.text) for w in want]
    assert any(w.text for w in want)  # the reasoning answers were compared, not only rankings
