"""One run store for every kind of model the lake keeps: `<lake>/models/<kind>/<run>/`.

Mid-training, SFT, DAPO, the tokenizer's versions and the sequence models behind the prompt's evidence
all keep their runs the same way, so every reader and writer goes through here:

* `LATEST` names the newest complete run. It is written atomically (a reader never sees half a name)
  and only once the run's files are all in place, so a reader never loads a half-written model.
* `IN_PROGRESS` names the unfinished runs, one line each with a fingerprint of its settings: the same
  command with the same settings continues its run (training resumes from its last checkpoint), other
  settings start a new one. Runs with different settings stay resumable side by side, so two variants
  (an ablation's, say) can be trained in turns across sittings.
* Run ids are `<kind>-<UTC time>`, so they sort by start time.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from gr2.platform.files import write_text_atomic

if TYPE_CHECKING:
    from gr2.config import Config


class RunStore:
    """The runs of one `kind`; `what` names them in messages ("sft model", "tokenizer")."""

    def __init__(self, lake: str | Path, kind: str, what: str | None = None):
        self.kind, self.what = kind, what or f"{kind} run"
        self.root = Path(lake) / "models" / kind

    def path(self, run: str) -> Path:
        return self.root / run

    def runs(self) -> list[str]:
        """The run folders there, complete or not, oldest first."""
        return sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []

    def latest(self) -> str | None:
        """The newest complete run, or None when none was published."""
        pointer = self.root / "LATEST"
        if not pointer.exists():
            return None
        return pointer.read_text().strip() or None

    def require_latest(self, how: str) -> str:
        """The newest complete run; FileNotFoundError naming the folder and `how` to make one when none is."""
        run = self.latest()
        if run is None:
            raise FileNotFoundError(f"no {self.what} under {self.root}; {how}")
        return run

    def new_id(self, taken: tuple[str, ...] = ()) -> str:
        """`<kind>-<UTC time>`, with a counter when that id is taken (two runs started in one second)."""
        base = f"{self.kind}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
        run, n = base, 1
        while run in taken or self.path(run).exists():
            n += 1
            run = f"{base}-{n}"
        return run

    def _marked(self) -> list[tuple[str, str]]:
        """(run, fingerprint) for each line of IN_PROGRESS, folder or not."""
        marker = self.root / "IN_PROGRESS"
        lines = marker.read_text().splitlines() if marker.exists() else []
        return [(run, fingerprint) for run, _, fingerprint in (line.strip().partition(" ") for line in lines) if run]

    def unfinished(self) -> dict[str, str]:
        """{fingerprint: run} of the unfinished runs whose folders are still there."""
        return {fingerprint: run for run, fingerprint in self._marked() if self.path(run).exists()}

    def begin(self, fingerprint: str) -> tuple[str, bool]:
        """(run id, resumed): the unfinished run started with the same `fingerprint` when its folder is
        still there, else a new run, marked IN_PROGRESS until `publish`."""
        open_runs = self.unfinished()
        if fingerprint in open_runs:
            return open_runs[fingerprint], True
        # a run begun this second may not have its folder yet: its id is still taken
        run = self.new_id(taken=tuple(r for r, _ in self._marked()))
        self.root.mkdir(parents=True, exist_ok=True)
        open_runs[fingerprint] = run  # a run with these settings whose folder was removed is forgotten
        self._mark(open_runs)
        return run, False

    def _mark(self, open_runs: dict[str, str]) -> None:
        """Rewrite IN_PROGRESS as `open_runs` ({fingerprint: run}); remove it when there are none."""
        marker = self.root / "IN_PROGRESS"
        if open_runs:
            write_text_atomic(marker, "".join(f"{run} {fp}\n" for fp, run in open_runs.items()))
        else:
            marker.unlink(missing_ok=True)

    def publish(self, run: str) -> None:
        """`run` is complete: it becomes LATEST, and no later `begin` resumes it."""
        if not self.path(run).is_dir():
            raise FileNotFoundError(f"cannot publish {self.what} {run!r}: {self.path(run)} does not exist")
        write_text_atomic(self.root / "LATEST", run)
        self.close(run)

    def close(self, run: str) -> None:
        """`run` is complete but not LATEST (an experiment's variant: what eval, serving and the next
        stage load stays as it was); no later `begin` resumes it."""
        open_runs = self.unfinished()
        if run in open_runs.values():
            self._mark({fp: r for fp, r in open_runs.items() if r != run})


def model_runs(cfg: Config, stage: str) -> RunStore:
    """The runs of an LM stage (midtrain, sft, dapo) under <lake>/models/<stage>/."""
    return RunStore(cfg.lake_path, stage, what=f"{stage} model")


def latest_model(cfg: Config, stage: str) -> Path:
    """The save_pretrained folder of the stage's LATEST run: what eval, serving and the next stage load."""
    store = model_runs(cfg, stage)
    return store.path(store.require_latest(f"run `gr2 train {stage}` first")) / "model"
