"""Where generation time goes on this machine, and what the cache choice changes.

For the pretrained base (SmolLM2-135M by default), greedy HF `generate` on random prompts of
--prompt-len tokens, --new-tokens new ones, at each --batches size: the prefill time (one new token),
the time per decoding step after it, and the generated tokens/s, with Hugging Face's default dynamic
KV cache (grown with torch.cat at every step: the whole cache is copied once per new token) and with a
static cache (allocated once for prompt + answer). Then one DAPO rollout group (G answers to one prompt):
the prompt repeated G times against the prompt run once and its cache shared by the G answers
(`generation.sample_group`).

    .venv/bin/python benchmarks/generation_speed.py --batches 8,32 --prompt-len 600 --new-tokens 64
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="smollm2-135m")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-len", type=int, default=600)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--batches", default="8,32")
    ap.add_argument("--group", type=int, default=8, help="answers per rollout group (0 = skip that table)")
    ap.add_argument("--precisions", default="fp32,bf16-autocast",
                    help="comma-separated: fp32, bf16-autocast (fp32 weights, bf16 matmuls), bf16 (bf16 weights)")
    args = ap.parse_args()

    import torch

    from gr2.models import generation
    from gr2.models.lm import load_model
    from gr2.platform.precision import cpu_autocast, cpu_has_bf16
    from gr2.training import bases

    torch.set_num_threads(args.threads)
    model, tok = load_model(bases.pull(args.base))
    model.eval()
    vocab = model.config.vocab_size
    n = args.new_tokens

    def timed(ids, new, cache, precision="fp32"):
        model.to(torch.bfloat16 if precision == "bf16" else torch.float32)
        with torch.no_grad(), cpu_autocast(precision == "bf16-autocast"):
            t0 = time.perf_counter()
            model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new,
                           do_sample=False, pad_token_id=tok.pad_token_id, **generation.cache_kwargs(cache))
            return time.perf_counter() - t0

    timed(torch.randint(100, vocab, (1, 16)), 2, "dynamic")  # warm-up
    print(f"{args.base}, {args.threads} threads, prompts of {args.prompt_len} tokens, {n} new tokens, greedy; "
          f"bf16 units: {'yes' if cpu_has_bf16() else 'no'}\n")
    print("| batch | precision | KV cache | prefill s | prefill tokens/s | decode ms/step | total s | generated tokens/s |")
    print("|---:|---|---|---:|---:|---:|---:|---:|")
    for b in [int(x) for x in args.batches.split(",")]:
        ids = torch.randint(100, vocab, (b, args.prompt_len))
        for precision in args.precisions.split(","):
            for cache in ("dynamic", "static"):
                pre = timed(ids, 1, cache, precision)
                total = timed(ids, n, cache, precision)
                print(f"| {b} | {precision} | {cache} | {pre:.1f} | {b * args.prompt_len / pre:.0f} | "
                      f"{(total - pre) / (n - 1) * 1000:.0f} | {total:.1f} | {b * n / total:.1f} |", flush=True)
    model.to(torch.float32)
    if not args.group:
        return
    G = args.group
    prompt = torch.randint(100, vocab, (1, args.prompt_len))
    print(f"\nOne rollout group: {G} sampled answers of {n} tokens to one prompt of {args.prompt_len} tokens\n")
    print("| prompt | s | generated tokens/s |")
    print("|---|---:|---:|")
    with torch.no_grad():
        t0 = time.perf_counter()
        model.generate(prompt.repeat(G, 1), attention_mask=torch.ones(G, args.prompt_len, dtype=torch.long),
                       max_new_tokens=n, min_new_tokens=n, do_sample=True, top_k=0, top_p=1.0, pad_token_id=tok.pad_token_id)
        rep = time.perf_counter() - t0
        t0 = time.perf_counter()
        generation.sample_group(model, prompt[0].tolist(), G, n, temperature=1.0, pad_id=tok.pad_token_id,
                                eos_id=None, min_new_tokens=n)
        shared = time.perf_counter() - t0
    print(f"| repeated {G} times (HF generate) | {rep:.1f} | {G * n / rep:.1f} |")
    print(f"| run once, cache shared (generation.sample_group) | {shared:.1f} | {G * n / shared:.1f} |")


if __name__ == "__main__":
    main()
