"""The small version of benchmarks/sid_assign_throughput.py: `gr2 tokenizer assign` on Spark and the one-process
numpy path on the same items, both giving unique SIDs, with the seconds and the Spark stages of every step."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_assignment_benchmark_runs_small_and_says_where_the_time_goes(tmp_path):
    out = subprocess.run([sys.executable, "benchmarks/sid_assign_throughput.py", "--sizes", "3000", "--work", str(tmp_path),
                          "--stages"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    row = json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])
    assert row["items"] == 3000 and row["spark_unique"] == 1.0 and row["numpy_unique"] == 1.0
    assert {"encode items on executors (bench)", "gate and publish gold.sid_codebook"} <= set(row["timings"])
    # the step's Spark jobs are named after it: its row has tasks and task-seconds
    encode = re.search(r"\| encode items on executors \(bench\) \| [\d.]+ \| (\d+) \| (\d+) \| (\d+) \| ([\d.]+) \|", out.stdout)
    assert encode and int(encode[3]) > 0 and float(encode[4]) > 0, out.stdout[-3000:]
    assert "| 3,000 |" in out.stdout, "the throughput table"
