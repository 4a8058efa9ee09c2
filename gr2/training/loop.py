"""The one training loop of every LM stage: Ray Train TorchTrainer workers running DeepSpeed.

The driver hands over a Ray Dataset (packed rows for the supervised stages, slates for RL), one typed
`LoopSettings` resolved from the config on the driver, and the stage's hook (`StageHook`). Each worker
(`worker`) loads the model from a local folder, wraps it with `deepspeed.initialize` (ZeRO 0-3, bf16 on
GPUs and fp32 on CPUs, gradient accumulation, clipping, a cosine schedule with warm-up), then spends the
step budget calling the hook for one step at a time: `supervised.LmLoss` (the weighted LM loss over
`grad_accum` micro-batches: mid-training, SFT) or `rl.DapoStep` (rollouts, then `minibatches` DAPO
updates). The loop alone writes metrics.csv and TensorBoard, reports a Ray Train checkpoint every N
steps (DeepSpeed state of every rank + `save_pretrained` safetensors from rank 0) and injects faults.
A worker that dies is replaced by Ray (FailureConfig) and the new group resumes from the latest
checkpoint (the supervised hook skips the micro-batches it already consumed), so the metrics continue
where they stopped.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import torch

from gr2.config import DapoConfig, StageTrainConfig, TrainConfig
from gr2.platform.precision import use_autocast
from gr2.rerank.formats import RerankFormat
from gr2.training.engines import build_engine


def append_metrics(run_dir: Path, row: dict, resumed_from: int | None, fields: list[str]) -> None:
    """Append one row to metrics.csv; on the first write after a restart, first drop the rows logged
    after the checkpoint the run resumed from (every stage's loss curve continues where it stopped)."""
    path = run_dir / "metrics.csv"
    if resumed_from is not None and path.exists():  # drop rows logged after the checkpoint we resume from
        with path.open() as f:
            kept = [r for r in csv.DictReader(f) if int(r["step"]) <= resumed_from]
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fields)
            w.writeheader()
            w.writerows(kept)
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fields)
        if new:
            w.writeheader()
        w.writerow({k: row.get(k) for k in fields})


@dataclass(frozen=True)
class LoopSettings:
    """All a training worker reads, resolved on the driver: the stage's schedule and the shared engine
    settings from the config, plus what only the driver knows (the step budget from the data size,
    whether this CPU has bf16 units, the fault injection asked by the environment). Ray pickles it to
    every worker, so workers never read the config schema or the driver's environment."""

    model_path: str
    run_dir: str
    seed: int
    use_gpu: bool
    engine: str  # deepspeed | ddp
    zero_stage: int
    precision: str
    lr: float
    weight_decay: float
    warmup_ratio: float
    batch_size: int  # rows (SFT) or slates (RL) per micro-batch per worker
    total_steps: int
    grad_accum: int
    grad_clip: float
    checkpoint_every: int
    pause_after: int  # end this command at this step (0 = at total_steps), the run left unfinished
    log_every: int
    micro_batches_per_epoch: int
    document_masking: bool
    freeze_layers: int
    autocast: bool
    kill_worker_at_step: int = 0  # GR2_KILL_WORKER_AT_STEP: the last worker SIGKILLs itself once there
    optimizer_steps_per_step: int = 1  # RL: `minibatches` optimizer steps per RL step
    dapo: DapoConfig | None = None  # the RL stage's own settings, read by its worker
    rerank_format: RerankFormat | None = None  # the policy's answer format (RL scores answers in it)

    @classmethod
    def resolve(cls, stage_cfg: StageTrainConfig, train_cfg: TrainConfig, *, model_path: str, run_dir: Path,
                total_rows: int, rl: bool = False) -> "LoopSettings":
        """The settings of one stage's run over `total_rows` packed rows (or RL slates)."""
        world = train_cfg.num_workers
        micro_per_epoch = max(1, math.ceil(total_rows / world / stage_cfg.batch_size))
        steps_per_epoch = max(1, micro_per_epoch // train_cfg.deepspeed.grad_accum)
        total = max(1, int(steps_per_epoch * stage_cfg.epochs))
        if stage_cfg.max_steps:  # RL counts steps, not passes: its budget is max_steps
            total = stage_cfg.max_steps if rl else min(total, stage_cfg.max_steps)
        return cls(
            model_path=model_path, run_dir=str(run_dir), seed=train_cfg.seed, use_gpu=train_cfg.use_gpu,
            engine=train_cfg.engine, zero_stage=train_cfg.deepspeed.zero_stage, precision=train_cfg.deepspeed.precision,
            lr=stage_cfg.lr, weight_decay=stage_cfg.weight_decay, warmup_ratio=stage_cfg.warmup_ratio,
            batch_size=stage_cfg.batch_size, total_steps=total,
            # RL: every engine.step is an optimizer step, `minibatches` of them per RL step
            grad_accum=1 if rl else train_cfg.deepspeed.grad_accum, grad_clip=train_cfg.deepspeed.grad_clip,
            checkpoint_every=stage_cfg.checkpoint_every or train_cfg.checkpoint_every,
            pause_after=min(stage_cfg.pause_after, total) if stage_cfg.pause_after else 0,
            log_every=1 if rl else max(1, min(10, total // 20 or 1)),  # an RL step takes minutes: a row each
            micro_batches_per_epoch=micro_per_epoch, document_masking=train_cfg.document_masking,
            freeze_layers=train_cfg.freeze_layers,
            autocast=use_autocast(train_cfg.autocast),  # resolved here: the workers run on this kind of CPU
            kill_worker_at_step=int(os.environ.get("GR2_KILL_WORKER_AT_STEP", "0")),
            optimizer_steps_per_step=stage_cfg.minibatches if rl else 1,
            dapo=stage_cfg if rl else None,
        )


class StageHook(Protocol):
    """What one LM stage adds to the shared worker loop (`worker`). The loop builds the engine, restores
    the checkpoint, counts the step budget, writes metrics.csv / TensorBoard, reports checkpoints and
    injects faults; the hook takes one step of the budget and says what to log about it. Hooks:
    `supervised.LmLoss` (mid-training, SFT) and `rl.DapoStep` (DAPO), passed to `run` by the stage."""

    rl: bool  # the budget counts RL steps (`max_steps`), each `minibatches` optimizer steps
    fields: list[str]  # metrics.csv columns
    tag: str  # key of the JSON line printed per metrics row
    tensorboard: tuple[str, ...]  # row fields also written as TensorBoard scalars

    def seed(self, s: LoopSettings, rank: int) -> int: ...

    def prepare_model(self, model) -> None: ...

    def start(self, w: WorkerRun, shard, state: dict) -> None: ...

    def step(self, w: WorkerRun) -> None: ...

    def row(self, w: WorkerRun, seconds: float) -> dict: ...

    def progress(self) -> dict: ...


@dataclass
class WorkerRun:
    """One worker's view of the run, handed to its stage's hook."""

    settings: LoopSettings
    rank: int
    world: int
    use_gpu: bool
    engine: object
    sched: object


def worker(config: dict) -> None:
    """Runs on every Ray Train worker: `config["settings"]` is the run's LoopSettings, `config["hook"]`
    the stage's StageHook. Logs a metrics row every `log_every` steps and the last, reports a checkpoint
    every `checkpoint_every` and the last."""
    import ray.train
    from transformers import AutoModelForCausalLM

    s: LoopSettings = config["settings"]
    hook: StageHook = config["hook"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    run_dir = Path(s.run_dir)
    torch.manual_seed(hook.seed(s, rank))
    use_gpu = s.use_gpu and torch.cuda.is_available()
    model = AutoModelForCausalLM.from_pretrained(s.model_path, dtype=torch.float32)
    hook.prepare_model(model)
    engine, sched = build_engine(model, s, use_gpu)
    w = WorkerRun(s, rank, world, use_gpu, engine, sched)
    # A restart without a registered checkpoint starts over: its metrics rows replace the earlier ones.
    state = restore_checkpoint(engine, run_dir, rank)
    step, resumed_from, last_loss = state["step"], state["step"], None
    tb = None
    if rank == 0 and hook.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        tb = SummaryWriter(str(run_dir / "tensorboard"))
    hook.start(w, ray.train.get_dataset_shard("train"), state)
    t0 = t_window = time.perf_counter()
    end, started_at = s.pause_after or s.total_steps, step
    while step < end:
        hook.step(w)
        step += 1
        if step % s.log_every == 0 or step == end:
            row = {"step": step, **hook.row(w, time.perf_counter() - t_window), "lr": sched.get_last_lr()[0],
                   "wall_s": time.perf_counter() - t0}
            row = {k: row.get(k) for k in hook.fields}  # the columns' order, in the printed line too
            if rank == 0:
                for k in hook.tensorboard:
                    tb.add_scalar(f"train/{k}", row[k], step)
                append_metrics(run_dir, row, resumed_from, hook.fields)
                resumed_from = None
                print(json.dumps({hook.tag: row}), flush=True)
            last_loss, t_window = row.get("loss"), time.perf_counter()
        if step % s.checkpoint_every == 0 or step == end:
            report_checkpoint(engine, s, rank, {"step": step, **hook.progress()}, {"step": step, "loss": last_loss})
        die_if_told(s, step, rank == world - 1)
    if step == started_at:  # resumed at or past the pause: nothing to train; the driver still learns the step
        ray.train.report({"step": step})  # the restored checkpoint stays the run's latest
    if tb:
        tb.close()


def die_if_told(s: LoopSettings, step: int, last_rank: bool) -> None:
    """Fault injection for the resilience tests (GR2_KILL_WORKER_AT_STEP): the last worker kills itself
    once, after optimizer step `s.kill_worker_at_step`, as a real worker death would."""
    run_dir = Path(s.run_dir)
    if not (s.kill_worker_at_step and step == s.kill_worker_at_step and last_rank) or (run_dir / ".killed").exists():
        return
    # Ray registers a reported checkpoint at its next health check (every 2 s): die a little later, as a
    # real failure would, so the test shows resumption from that checkpoint.
    time.sleep(5)
    (run_dir / ".killed").write_text(str(os.getpid()))
    os.kill(os.getpid(), signal.SIGKILL)  # a real worker death; Ray must replace it


def restore_checkpoint(engine, run_dir: Path, rank: int) -> dict:
    """The state saved with Ray Train's latest checkpoint of this run ({"step", "micro_batches", "tokens"}),
    after loading the engine's weights and optimizer from it; all zeros on a fresh start. Rank 0 records
    each restart in the run's resumes.jsonl."""
    import ray.train

    ckpt = ray.train.get_checkpoint()
    if not ckpt:
        return {"step": 0, "micro_batches": 0, "tokens": 0}
    with ckpt.as_directory() as folder:
        engine.load_checkpoint(str(Path(folder) / "deepspeed"), tag="ckpt")
        state = json.loads((Path(folder) / "state.json").read_text())
    if rank == 0:
        print(json.dumps({"resumed_from_step": state["step"]}), flush=True)
        with (Path(run_dir) / "resumes.jsonl").open("a") as f:  # the run's own record of each restart
            f.write(json.dumps({"resumed_from_step": state["step"], "at": time.time()}) + "\n")
    return state


def report_checkpoint(engine, s: LoopSettings, rank: int, state: dict, metrics: dict) -> None:
    import ray.train

    with tempfile.TemporaryDirectory() as d:
        engine.save_checkpoint(str(Path(d) / "deepspeed"), tag="ckpt")
        # ZeRO-3 shards the weights: gathering them is a collective every rank must join.
        sd = engine._zero3_consolidated_16bit_state_dict() if s.zero_stage == 3 and s.engine == "deepspeed" else None
        if rank == 0:
            (Path(d) / "state.json").write_text(json.dumps(state))
            engine.module.save_pretrained(Path(d) / "model", state_dict=sd, safe_serialization=True)
        ray.train.report({k: v for k, v in metrics.items() if v is not None}, checkpoint=ray.train.Checkpoint.from_directory(d))


class _follow_metrics:
    """While the trainer runs, report (step, total, loss, tokens/s) from rank 0's metrics.csv: the
    workers' own logs stay in Ray's session folder, the console gets one live line."""

    def __init__(self, path: Path, total: int, on_progress, fields=("step", "loss", "tokens_per_s")):
        import threading

        self.path, self.total, self.on_progress, self.fields = path, total, on_progress, fields
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(2.0):
            try:
                rows = list(csv.DictReader(self.path.open()))
            except (FileNotFoundError, csv.Error):
                continue
            if rows:
                r = rows[-1]
                step, a, b = self.fields
                self.on_progress(int(r[step]), self.total, float(r[a] or 0), float(r[b] or 0))

    def __enter__(self):
        if self.on_progress:
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()


def run(dataset, *, hook: StageHook, model_path: str, tokenizer_path: str, run_dir: Path, name: str,
        stage_cfg: StageTrainConfig, train_cfg: TrainConfig, total_rows: int, on_progress=None,
        rerank_format: RerankFormat | None = None,
        progress_fields: tuple[str, str, str] = ("step", "loss", "tokens_per_s")) -> dict:
    """Launch the TorchTrainer running `worker` with the stage's `hook`; return where the trained model
    (save_pretrained folder) is and the steps done: fewer than `total_steps` when `pause_after` ended the
    command early (`paused`; the model is the one at that step, and the run is not finished). An RL hook
    counts steps of rollouts then `minibatches` optimizer steps, and needs the RL stage's settings (DapoConfig)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    rl = hook.rl
    if rl != isinstance(stage_cfg, DapoConfig):
        raise TypeError(f"{type(hook).__name__} does not run a stage configured by {type(stage_cfg).__name__}")
    run_dir.mkdir(parents=True, exist_ok=True)
    settings = LoopSettings.resolve(stage_cfg, train_cfg, model_path=model_path, run_dir=run_dir, total_rows=total_rows, rl=rl)
    if rerank_format is not None:
        settings = replace(settings, rerank_format=rerank_format)
    total, world = settings.total_steps, train_cfg.num_workers
    resources = {"CPU": train_cfg.cpus_per_worker}
    trainer = TorchTrainer(
        worker,
        train_loop_config={"settings": settings, "hook": hook},
        scaling_config=ScalingConfig(num_workers=world, use_gpu=train_cfg.use_gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=name, storage_path=str(run_dir / "ray"),
            failure_config=FailureConfig(max_failures=train_cfg.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
        datasets={"train": dataset},
    )
    with _follow_metrics(run_dir / "metrics.csv", total, on_progress, progress_fields):
        result = trainer.fit()
    if result.error:
        raise RuntimeError(f"{name} failed: {result.error}")
    final = run_dir / "model"
    if final.exists():
        shutil.rmtree(final)
    with result.checkpoint.as_directory() as d:
        shutil.copytree(Path(d) / "model", final)
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(tokenizer_path).save_pretrained(final)
    done = int(result.metrics["step"])  # every fit reports its last step (worker)
    return {"model_dir": str(final), "total_steps": total, "steps_done": done, "paused": done < total,
            "run_dir": str(run_dir), "metrics_csv": str(run_dir / "metrics.csv")}
