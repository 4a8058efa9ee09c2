"""CPU precision, resolved the same way wherever a model runs (training, evaluation, serving, the
benchmarks): bf16 autocast only where the CPU has bf16 arithmetic units."""

from __future__ import annotations

from pathlib import Path

import torch


def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic units. Without them torch emulates bf16 matmuls (measured on an
    AVX2-only EPYC: 0.3 GFLOP/s against 107 in fp32), so autocast would make training 20x slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_autocast(setting: str) -> bool:
    """train.autocast (auto | on | off) resolved for this machine's CPU."""
    return setting == "on" or (setting == "auto" and cpu_has_bf16())


def cpu_autocast(enabled: bool):
    """bf16 autocast on CPU for the block (matmuls in bf16, weights and optimizer state stay fp32), or nothing."""
    import contextlib

    return torch.autocast("cpu", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()
