"""Where a Spark job's time goes, per gr2 step, from the application's REST API (the driver UI).

gr2's `Steps` names the Spark jobs each step starts (the job description), so the completed stages can
be summed per step: tasks, task-seconds (the executors' run time, Python workers included), the JVM's
CPU seconds in them, GC, and shuffle bytes. Set beside the step's wall time on the driver, they tell
executor work from what the driver does alone (Great Expectations, Delta commits, planning, job starts):
on this machine's 2 cores a step can keep at most 2 task-seconds per second busy.

Used by `etl_throughput.py --stages` and `sid_assign_throughput.py --stages`; needs `spark.ui.enabled=true`.
"""

from __future__ import annotations

import json
import urllib.request


def _get(url: str):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


def _base(spark) -> str:
    sc = spark.sparkContext
    if not sc.uiWebUrl:
        raise RuntimeError("the Spark UI is off: run with spark.ui.enabled=true to read stage metrics")
    return f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}"


def last_job(spark) -> int:
    """The newest job's id so far (-1 before any): pass it to `stages_by_step` to count only later jobs."""
    return max((j["jobId"] for j in _get(f"{_base(spark)}/jobs")), default=-1)


OUTSIDE = "(outside the steps)"


def step_of(description: str | None, steps: list[str]) -> str:
    """The step a job belongs to. Delta names the jobs it starts itself (reading a table's log, finding
    the files a write replaces) "Delta: <the caller's description>: <what it does>", nested once per
    level; those belong to the step too."""
    desc = description or ""
    while desc.startswith("Delta: "):
        desc = desc[len("Delta: "):]
    found = [s for s in steps if desc == s or desc.startswith(s + ": ")]
    return max(found, key=len) if found else OUTSIDE


def stages_by_step(spark, steps: list[str], after_job: int = -1) -> dict[str, dict]:
    """{step: sums over the completed stages of its jobs} for the jobs after `after_job`; a stage two
    jobs list counts for the first."""
    base = _base(spark)
    jobs = sorted((j for j in _get(f"{base}/jobs") if j["jobId"] > after_job), key=lambda j: j["jobId"])
    owner: dict[int, str] = {}
    jobs_of: dict[str, set] = {}
    for job in jobs:
        step = step_of(job.get("description"), steps)
        jobs_of.setdefault(step, set()).add(job["jobId"])
        for sid in job.get("stageIds", []):
            owner.setdefault(sid, step)
    out: dict[str, dict] = {}
    for st in _get(f"{base}/stages?status=complete"):
        if st["stageId"] not in owner:  # an earlier job's
            continue
        row = out.setdefault(owner[st["stageId"]], {
            "stages": 0, "tasks": 0, "task_s": 0.0, "jvm_cpu_s": 0.0, "gc_s": 0.0,
            "shuffle_write_mb": 0.0, "shuffle_read_mb": 0.0})
        row["stages"] += 1
        row["tasks"] += st.get("numCompleteTasks", st.get("numTasks", 0))
        row["task_s"] += st.get("executorRunTime", 0) / 1e3
        row["jvm_cpu_s"] += st.get("executorCpuTime", 0) / 1e9
        row["gc_s"] += st.get("jvmGcTime", 0) / 1e3
        row["shuffle_write_mb"] += st.get("shuffleWriteBytes", 0) / 2**20
        row["shuffle_read_mb"] += st.get("shuffleReadBytes", 0) / 2**20
    return {k: {"jobs": len(jobs_of[k]), **v} for k, v in out.items()}


def print_steps(wall: dict[str, float], stages: dict[str, dict], cores: int) -> None:
    """One row per step: its wall seconds next to what its stages did on the executors."""
    print("| step | wall s | jobs | stages | tasks | task s | task s / (wall s x cores) | JVM CPU s | GC s "
          "| shuffle write MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in list(wall) + [k for k in stages if k not in wall]:
        w, s = wall.get(name), stages.get(name, {})
        busy = f"{s['task_s'] / (w * cores):.0%}" if s and w else "-"
        print(f"| {name} | {w:.1f} | " if w is not None else f"| {name} | - | ", end="")
        print(f"{s.get('jobs', 0)} | {s.get('stages', 0)} | {s.get('tasks', 0)} | {s.get('task_s', 0):.1f} | {busy} | "
              f"{s.get('jvm_cpu_s', 0):.1f} | {s.get('gc_s', 0):.1f} | {s.get('shuffle_write_mb', 0):.1f} |")
