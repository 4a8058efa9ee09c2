"""The answers a trained stage has written during `gr2 eval`, kept as JSON lines so that an evaluation
that stops (a session's end, a killed process) resumes with the same command instead of starting over:
the full 1,748 Beauty test slates take hours of generation on 2 CPU cores.

One file per (model run, evaluation settings): a rerun with another answer budget, batch or format
starts a new file rather than mixing answers of different settings. A torn last line (the process was
killed mid-write) is skipped and that slate is asked again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path


class AnswerLog:
    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def for_model(cls, lake: Path, stage: str, model_dir: Path, settings: dict) -> AnswerLog:
        """The log of `model_dir`'s answers under `settings` (anything that changes an answer: split,
        answer budget, modes, batch, autocast, prompt format), beside the lake's eval reports."""
        blob = json.dumps({"model": str(Path(model_dir).resolve()), **settings}, sort_keys=True, default=str)
        key = hashlib.sha256(blob.encode()).hexdigest()[:12]
        return cls(Path(lake) / "reports" / "eval" / "answers" / f"{stage}-{Path(model_dir).parent.name}-{key}.jsonl")

    def load(self) -> dict[str, dict]:
        """{slate id: record} of every complete line."""
        done = {}
        if not self.path.exists():
            return done
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                done[entry["slate_id"]] = entry["record"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a torn or foreign line: that slate is simply asked again
        return done

    def append(self, slate_id: str, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # `at`: when the answer was written, so a long run's pace can be read back from its log
        line = json.dumps({"slate_id": slate_id, "at": round(time.time(), 1), "record": record}) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
