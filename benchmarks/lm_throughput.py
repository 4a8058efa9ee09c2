"""Training and generation speed of a pretrained base on this machine, with the share of its peak.

    .venv/bin/python benchmarks/lm_throughput.py --base smollm2-135m --threads 2

Training: one process, fwd + bwd + AdamW steps on random token rows (the cost does not depend on the
values), fp32 and with bf16 autocast (weights and optimizer stay fp32), at two row shapes. Achieved
FLOP/s counts 6 x parameters per token (the usual estimate; attention adds a few percent at these
lengths), set against the matmul peak the script measures first (2048^2 fp32, 512^2 bf16).
--freeze 0,20 adds rows with the embeddings and the lowest 20 layers frozen (train.freeze_layers): the
FLOP/s column still counts 6 x all parameters per token, so it reads as "full-training equivalent".
--sft ROWSxLEN:ANSWER times the SFT shape instead (4x864:150: 4 rows of 864 tokens, the loss on the last
150 of each, the Beauty recipe's rows) with the output layer over every position against only where a
loss is read (`supervised.loss_positions`, what the training loop does), at the --freeze values.
Generation: HF `generate` with the KV cache, greedy, a prompt of --prompt-len tokens and --new-tokens new
ones, at batch 1, 8 and 32; generated tokens per second (all sequences of the batch together).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def matmul_gflops(dtype, n: int, reps: int = 3) -> float:
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def seconds_per_step(step, steps: int) -> float:
    """Mean seconds of `steps` calls of `step` after one warm-up call."""
    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="smollm2-135m")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4, help="timed training steps per row shape (after one warm-up)")
    ap.add_argument("--prompt-len", type=int, default=500)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--freeze", default="0", help="comma-separated train.freeze_layers values to time (0 = train everything)")
    ap.add_argument("--bf16", choices=("auto", "on", "off"), default="auto",
                    help="measure bf16 autocast too (auto: only where the CPU has bf16 units; without them a step takes minutes)")
    ap.add_argument("--sft", default="", help="ROWSxLEN:ANSWER, e.g. 4x864:150: time the SFT shape (full vs kept logits) only")
    args = ap.parse_args()

    import torch

    from gr2.models.lm import load_model
    from gr2.platform.precision import cpu_autocast, cpu_has_bf16, use_autocast
    from gr2.training import bases
    from gr2.training import model as lm

    torch.set_num_threads(args.threads)
    peak = {False: matmul_gflops(torch.float32, 2048), True: matmul_gflops(torch.bfloat16, 512)}
    print(f"matmul peak here: fp32 {peak[False]:.0f} GFLOP/s, bf16 {peak[True]:.1f} GFLOP/s "
          f"(bf16 units: {'yes' if cpu_has_bf16() else 'no'})")
    precisions = (False, True) if use_autocast(args.bf16) else (False,)
    model, tok = load_model(bases.pull(args.base))
    params = sum(p.numel() for p in model.parameters())
    vocab = model.config.vocab_size
    print(f"{args.base}: {params / 1e6:.1f}M parameters; {platform.processor() or platform.machine()}, "
          f"{args.threads} threads, torch {torch.__version__}\n")
    if args.sft:
        return sft_shape(model, args, precisions)
    print("| training row shape | frozen layers | trainable params | precision | s/step | tokens/s | GFLOP/s (6PT) | share of peak |")
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    model.train()
    for seq, batch in ((1024, 1), (256, 4)):
        ids = torch.randint(0, vocab, (batch, seq))
        for frozen, auto in [(f, a) for f in (int(x) for x in args.freeze.split(",")) for a in precisions]:
            model.requires_grad_(True)
            trainable = lm.freeze_lower_layers(model, frozen)["trainable"]
            opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

            def step():
                with cpu_autocast(auto):
                    out = model(input_ids=ids, labels=ids, use_cache=False)
                out.loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            dt = seconds_per_step(step, args.steps)
            tps = batch * seq / dt
            gflops = 6 * params * tps / 1e9
            print(f"| {batch} x {seq} | {frozen} | {trainable / 1e6:.1f}M | {'bf16 autocast' if auto else 'fp32'} | {dt:.2f} | {tps:.0f} | {gflops:.0f} | "
                  f"{gflops / peak[auto]:.0%} of {peak[auto]:.0f} |")
    model.eval()
    print("\n| generation batch | precision | s | generated tokens/s |")
    print("|---:|---|---:|---:|")
    for b in [int(x) for x in args.batches.split(",")]:
        ids = torch.randint(100, vocab, (b, args.prompt_len))
        for auto in precisions:
            with torch.no_grad(), cpu_autocast(auto):
                t0 = time.perf_counter()
                model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.new_tokens,
                               min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
                dt = time.perf_counter() - t0
            print(f"| {b} | {'bf16 autocast' if auto else 'fp32'} | {dt:.1f} | {b * args.new_tokens / dt:.0f} |")


def sft_shape(model, args, precisions) -> None:
    """fwd + bwd + AdamW on SFT-shaped rows, the logits of every position against those a loss reads."""
    import torch

    from gr2.platform.precision import cpu_autocast
    from gr2.training import model as lm
    from gr2.training.supervised import loss_positions, weighted_lm_loss

    shape, answer = args.sft.split(":")
    rows, seq = (int(x) for x in shape.split("x"))
    ids = torch.randint(0, model.config.vocab_size, (rows, seq))
    labels = torch.full_like(ids, -100)
    labels[:, -int(answer):] = ids[:, -int(answer):]
    weights = (labels != -100).float()
    print("| SFT rows | frozen layers | precision | logits | s/step | tokens/s |")
    print("|---|---:|---|---|---:|---:|")
    model.train()
    for frozen, auto in [(int(f), a) for f in args.freeze.split(",") for a in precisions]:
        model.requires_grad_(True)
        lm.freeze_lower_layers(model, frozen)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        for narrow in (False, True):
            keep = loss_positions(labels) if narrow else None

            def step():
                with cpu_autocast(auto):
                    out = model(input_ids=ids, use_cache=False, **({"logits_to_keep": keep} if narrow else {}))
                weighted_lm_loss(out.logits, labels, weights, keep).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            dt = seconds_per_step(step, args.steps)
            print(f"| {rows} x {seq}, loss on the last {answer} | {frozen} | {'bf16 autocast' if auto else 'fp32'} | "
                  f"{'where a loss is read' if narrow else 'every position'} | {dt:.1f} | {rows * seq / dt:.0f} |")


if __name__ == "__main__":
    main()
