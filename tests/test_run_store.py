"""The run store every model kind shares: LATEST published atomically and only for complete runs,
IN_PROGRESS resumed only with the same settings, several unfinished runs side by side."""

import pytest

from gr2.platform.run_store import RunStore


def test_latest_is_none_until_a_run_is_published_and_then_names_it(tmp_path):
    store = RunStore(tmp_path / "lake", "sft")
    assert store.latest() is None and store.runs() == []
    with pytest.raises(FileNotFoundError, match=r"no sft run under .*models/sft; run `gr2 train sft` first"):
        store.require_latest("run `gr2 train sft` first")
    run, resumed = store.begin("abc")
    assert run.startswith("sft-") and not resumed
    with pytest.raises(FileNotFoundError, match="does not exist"):
        store.publish(run)  # nothing was written for it: a reader must never be sent to an empty name
    store.path(run).mkdir()
    store.publish(run)
    assert store.latest() == store.require_latest("-") == run and store.runs() == [run]
    assert not (store.root / "IN_PROGRESS").exists(), "a published run is not resumed"


@pytest.mark.parametrize("fingerprint, folder_kept, resumed", [
    ("abc", True, True),  # the same command again continues the run
    ("xyz", True, False),  # other settings start a new run
    ("abc", False, False),  # the unfinished run's folder was removed: start over
])
def test_an_unfinished_run_resumes_only_with_the_same_settings(tmp_path, fingerprint, folder_kept, resumed):
    store = RunStore(tmp_path, "dapo")
    first, _ = store.begin("abc")
    if folder_kept:
        store.path(first).mkdir(parents=True)
    (store.root / "IN_PROGRESS").write_text((store.root / "IN_PROGRESS").read_text())  # as a stopped sitting left it
    again, was_resumed = store.begin(fingerprint)
    assert was_resumed == resumed and (again == first) == resumed


def test_publishing_an_older_run_leaves_a_newer_unfinished_one_resumable(tmp_path):
    store = RunStore(tmp_path, "tokenizer")
    store.path("v1").mkdir(parents=True)
    current, _ = store.begin("abc")
    store.publish("v1")
    assert store.latest() == "v1" and (store.root / "IN_PROGRESS").read_text().startswith(current)


def test_unfinished_runs_with_other_settings_are_resumable_side_by_side(tmp_path):
    """Two variants trained in turns (an ablation across sittings): each command finds its own run, and
    publishing one leaves the other resumable."""
    store = RunStore(tmp_path, "dapo")
    naive, _ = store.begin("naive")
    store.path(naive).mkdir(parents=True)
    conditional, resumed = store.begin("conditional")
    assert not resumed and conditional != naive, "a run begun in the same second gets its own id"
    store.path(conditional).mkdir(parents=True)
    assert store.begin("naive") == (naive, True) and store.begin("conditional") == (conditional, True)
    assert store.unfinished() == {"naive": naive, "conditional": conditional}
    store.publish(naive)
    assert store.begin("conditional") == (conditional, True) and store.unfinished() == {"conditional": conditional}
    assert store.begin("naive")[1] is False, "a published run is not resumed"
    store.path(conditional).rename(tmp_path / "removed")
    assert "conditional" not in store.unfinished(), "a run whose folder was removed is forgotten"


def test_a_closed_run_is_complete_but_leaves_latest_as_it_was(tmp_path):
    """A benchmark's variant finishes without becoming what eval and serving load."""
    store = RunStore(tmp_path, "dapo")
    store.path("served").mkdir(parents=True)
    store.publish("served")
    variant, _ = store.begin("naive")
    store.path(variant).mkdir()
    store.close(variant)
    assert store.latest() == "served" and store.begin("naive")[1] is False, "closed: not resumed, not LATEST"
