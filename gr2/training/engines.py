"""What the training loop runs on: the engine (DeepSpeed ZeRO, or plain torch DDP as the benchmark's
baseline) with its optimizer and schedule, and the CPU precision (bf16 autocast only where the CPU has
bf16 units, gr2/platform/precision.py). The one worker loop (loop.py) builds every stage's engine
here."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from gr2.config import TrainConfig

if TYPE_CHECKING:
    from gr2.training.loop import LoopSettings


def cosine_with_warmup(total_steps: int, warmup_steps: int):
    """lr multiplier: linear warm-up to 1, then cosine decay to 0 at total_steps."""
    def f(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f


def deepspeed_config(zero_stage: int, precision: str, micro_batch: int, grad_accum: int, grad_clip: float,
                     use_gpu: bool) -> dict:
    bf16 = precision == "bf16" or (precision == "auto" and use_gpu)
    cfg = {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": grad_accum,
        "zero_optimization": {"stage": zero_stage},
        "bf16": {"enabled": bf16},
        "steps_per_print": 10**9,  # progress is ours; DeepSpeed's own prints would interleave
        "wall_clock_breakdown": False,
    }
    if grad_clip > 0:
        cfg["gradient_clipping"] = grad_clip
    if zero_stage == 3:
        cfg["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] = True
    return cfg


def engine_name(t: TrainConfig) -> str:
    """How the console names the training engine a config asks for."""
    return "torch DDP" if t.engine == "ddp" else f"DeepSpeed ZeRO-{t.deepspeed.zero_stage}"


def build_engine(model, s: "LoopSettings", use_gpu: bool):
    """AdamW + cosine-with-warm-up schedule, wrapped by DeepSpeed (or torch DDP); (engine, scheduler)."""
    import deepspeed

    from gr2.platform.torch_ext import clear_stale_build_locks
    from gr2.training.model import freeze_lower_layers

    # deepspeed.initialize may JIT-build its CPU op; a lock left by a killed build would block it forever
    clear_stale_build_locks()

    freeze_lower_layers(model, s.freeze_layers)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=s.lr, weight_decay=s.weight_decay)
    total = s.total_steps * s.optimizer_steps_per_step
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_with_warmup(total, int(total * s.warmup_ratio)))
    if s.engine == "ddp":  # plain torch DDP, the baseline of the throughput benchmark
        return DDPEngine(model, opt, sched, s.grad_accum, s.grad_clip, use_gpu), sched
    ds_cfg = deepspeed_config(s.zero_stage, s.precision, s.batch_size, s.grad_accum, s.grad_clip, use_gpu)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, lr_scheduler=sched, config=ds_cfg)
    return engine, sched


class DDPEngine:
    """The slice of DeepSpeed's engine interface the loop uses, over torch DDP (Ray's prepare_model)."""

    def __init__(self, model, optimizer, scheduler, grad_accum: int, grad_clip: float, use_gpu: bool):
        import ray.train.torch

        self.model = ray.train.torch.prepare_model(model)
        self.module = model
        self.optimizer, self.scheduler = optimizer, scheduler
        self.grad_accum, self.grad_clip = grad_accum, grad_clip
        self.device = next(model.parameters()).device
        self.global_steps, self._micro = 0, 0

    def __call__(self, **kwargs):
        return self.model(**kwargs)

    def backward(self, loss) -> None:
        (loss / self.grad_accum).backward()

    def step(self) -> None:
        self._micro += 1
        if self._micro % self.grad_accum:
            return
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.global_steps += 1

    def save_checkpoint(self, folder: str, tag: str) -> None:
        import ray.train

        if ray.train.get_context().get_world_rank() == 0:
            Path(folder, tag).mkdir(parents=True, exist_ok=True)
            torch.save({"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                        "scheduler": self.scheduler.state_dict(), "global_steps": self.global_steps},
                       Path(folder, tag, "ddp.pt"))

    def load_checkpoint(self, folder: str, tag: str) -> None:
        state = torch.load(Path(folder, tag, "ddp.pt"), map_location=self.device, weights_only=True)
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.global_steps = state["global_steps"]
        self._micro = self.global_steps * self.grad_accum


def peak_mem_mb(use_gpu: bool) -> float:
    if use_gpu:
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
