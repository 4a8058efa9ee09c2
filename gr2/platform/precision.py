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


# What an inference-only model may run with on PyTorch (`serve.compute_type` with engine hf).
INFERENCE_TYPES = ("float32", "bfloat16", "int8")


# How `for_inference` makes a model int8: which weights' scales (one per tensor, one per output channel)
# and whether the output layer stays float. benchmarks/first_slot_ranking.py measures each on test slates.
INT8_SCHEMES = ("per_channel_head_float", "per_channel", "per_tensor")


def for_inference(model, compute_type: str, int8_scheme: str = "per_channel_head_float"):
    """`model` (eval mode, never trained again) in `compute_type`: float32 leaves it as trained (bf16
    autocast may still run its matmuls); bfloat16 casts the weights once (autocast would re-cast every
    weight at every call); int8 swaps Linears for PyTorch's dynamically quantized ones (int8 weights,
    each call's activations quantized on the fly: int8 VNNI matmuls on x86). Returns (model, whether bf16
    autocast may run around it): the int8 layers take float32 inputs only.

    int8_scheme: ``per_channel_head_float`` (the default) scales the weights per output channel and leaves
    the output layer (``lm_head``) in float32, where the ranking's close calls between candidates are
    read off the logits (it runs on the scored positions only, a small share of the FLOPs);
    ``per_channel`` quantizes the output layer too; ``per_tensor`` is PyTorch's default (one scale per
    weight matrix, every Linear), the scheme gr2 used until 2026-12-07."""
    if compute_type not in INFERENCE_TYPES:
        raise ValueError(f"compute_type {compute_type!r} is not one PyTorch runs here: one of {list(INFERENCE_TYPES)}")
    if compute_type == "bfloat16":
        return model.to(torch.bfloat16), True
    if compute_type == "int8":
        import warnings

        from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

        if int8_scheme not in INT8_SCHEMES:
            raise ValueError(f"int8_scheme {int8_scheme!r} is not one of {list(INT8_SCHEMES)}")
        qconfig = default_dynamic_qconfig if int8_scheme == "per_tensor" else per_channel_dynamic_qconfig
        keep = ("lm_head",) if int8_scheme == "per_channel_head_float" else ()
        spec = {name: qconfig for name, m in model.named_modules()
                if isinstance(m, torch.nn.Linear) and name.split(".")[-1] not in keep}
        with warnings.catch_warnings():  # torch.ao.quantization's deprecation notice (torchao is not installed)
            warnings.simplefilter("ignore")
            return quantize_dynamic(model, spec), False
    return model, True
