"""Stage 3: DAPO on the re-ranking task with the paper's conditional verifiable rewards.

Each worker (Ray Train + DeepSpeed) repeats, once per step: take a batch of training slates from its Ray Data shard;
sample G answers per slate from the current policy (through the `Generator` interface, so a vLLM
engine can replace Hugging Face `generate`); score each answer with the reward train.dapo.reward names
(rewards.REWARDS) plus the soft overlong penalty; drop groups whose rewards all match and refill from
the shard (dynamic sampling, up to `refill_rounds`); compute group-normalised advantages; then take `minibatches`
optimizer steps on the clip-higher, token-level DAPO loss. Reward components, entropy, clip fraction,
kept-group ratio and response length go to metrics.csv. `DapoStep` is that step, the hook the shared
worker loop (loop.py) calls: the engine, checkpoints, resumption and metrics rows are the loop's, as for
the supervised stages.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import torch

from gr2.config import DapoConfig
from gr2.models.generation import sample_group, with_bos
from gr2.models.ranking import Prefix
from gr2.platform.precision import cpu_autocast
from gr2.rerank.formats import RerankFormat
from gr2.rerank.permutations import ranking_positions
from gr2.rerank.slate import slate_of_row
from gr2.training import dapo, engines, loop, rewards
from gr2.training.loop import LoopSettings, WorkerRun

RL_FIELDS = ["step", "reward", "promotion", "format", "format_counted", "valid_rate", "order_copy_rate",
             "kept_group_ratio", "entropy", "clip_fraction", "kl", "response_len", "truncated_rate", "loss", "lr",
             "wall_s"]


def score_group(texts: list[str], lengths: list[int], sids: list[str], labels: list[int], cfg: DapoConfig,
                fmt: RerankFormat | None = None):
    """Rewards [G] of one slate's answers (verifiable reward + soft overlong penalty) and their
    breakdowns (pure; used by tests and the worker). Answers are read in the policy's format `fmt`
    (the paper's when None)."""
    fmt = fmt or RerankFormat()
    out, parts = [], []
    for text in texts:
        parsed = fmt.parse(text, sids)
        order = ranking_positions(parsed.ranking, sids) if parsed.ok else None
        b = rewards.get_reward(cfg.reward)(order, labels, alpha=cfg.alpha, invalid_penalty=cfg.invalid_penalty)
        out.append(b.total)
        parts.append({"promotion": b.promotion, "format": b.format, "format_counted": float(b.format_counted),
                      "valid": float(order is not None), "copy": float(order == list(range(len(sids))))})
    r = torch.tensor(out, dtype=torch.float32)
    if cfg.overlong_cache > 0:
        r = r + dapo.overlong_penalty(torch.tensor(lengths), cfg.max_new_tokens, cfg.overlong_cache)
    return r, parts


def _token_logprobs(model, ids: torch.Tensor, attn: torch.Tensor, start: int, temperature: float = 1.0):
    """Log-probabilities of tokens ids[:, start:] under the policy that sampled them (logits / the rollout
    temperature, as verl and TRL do), and those logits. Only the response's logits are computed
    (`logits_to_keep`): the prompt's, most of the sequence, are never read.

    Why the temperature: answers sampled at T > 1 are full of tokens the T = 1 policy finds unlikely, and
    the gradient of log p is largest for exactly those; scored at T = 1, a group's better answers pulled
    those tokens up, and at T = 1.5 the Beauty policy's valid share fell from 75% to 44% in four steps at
    lr 1e-5 while its entropy rose sixfold (2026-12-07, docs/training.md; with the fix the slide is slower
    but still there under both rewards, docs/benchmarks.md)."""
    keep = torch.arange(start - 1, ids.shape[1] - 1, device=ids.device)
    logits = model(input_ids=ids, attention_mask=attn, logits_to_keep=keep).logits.float()
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    logp = torch.log_softmax(logits, -1).gather(-1, ids[:, start:].unsqueeze(-1)).squeeze(-1)
    return logp, logits


class DapoStep:
    """The StageHook of DAPO (loop.StageHook): one RL step is a batch of kept groups of G sampled answers
    (dynamic sampling refills dropped groups from the shard), then `minibatches` optimizer steps."""

    rl = True
    fields = RL_FIELDS
    tag = "dapo"
    tensorboard = ()  # metrics.csv only

    def seed(self, s: LoopSettings, rank: int) -> int:
        return s.seed + rank  # each rank samples different answers

    def prepare_model(self, model) -> None:
        pass  # rollouts generate with the KV cache the config enables

    def start(self, w: WorkerRun, shard, state: dict) -> None:
        from transformers import AutoModelForCausalLM

        from gr2.models.lm import load_tokenizer

        s = w.settings
        self.tok = load_tokenizer(s.model_path)
        self.ref = None  # the frozen start policy the KL term pulls towards, when there is one
        if s.dapo.kl_coef > 0:
            self.ref = AutoModelForCausalLM.from_pretrained(s.model_path, dtype=torch.float32).eval()
        # A resumed run goes on through the slates where it stopped, with the sampling seed of its step: a
        # restart that began the shard and the seed afresh trained every turn of a paused run on the same
        # slates with the same draws (2026-12-07: 60 steps of the reward ablation saw 8 slates).
        self.prompts, self.step_no = int(state.get("prompts", 0)), int(state["step"])
        self.rows = _cycle(shard, skip=self.prompts)
        self.groups, self.stats, self.rollouts = [], {}, []

    def step(self, w: WorkerRun) -> None:
        s, d, module = w.settings, w.settings.dapo, w.engine.module
        module.eval()
        torch.manual_seed(step_seed(self.seed(s, w.rank), self.step_no))
        groups, rollouts = [], []
        for _ in range(d.refill_rounds + 1):  # dynamic sampling: refill dropped groups
            for _ in range(d.batch_size - len(groups)):
                with cpu_autocast(s.autocast and not w.use_gpu):
                    g = _rollout(module, self.tok, next(self.rows), s, d.group_size)
                self.prompts += 1
                rollouts.append({k: g[k] for k in ("rewards", "parts", "lengths", "truncated")})
                if dapo.keep_group(g["rewards"]):
                    groups.append(g)
            if len(groups) >= d.batch_size:
                break
        module.train()
        self.stats = _update(w.engine, self.ref, groups, s, d.minibatches, w.engine.device)
        self.groups, self.rollouts = groups, rollouts
        self.step_no += 1

    def row(self, w: WorkerRun, seconds: float) -> dict:
        """The last step's rewards and answers, over every rollout it sampled (the groups dynamic sampling
        dropped too: they are what the policy writes), and the update's statistics (kept groups only)."""
        rollouts, stats = self.rollouts, self.stats
        parts = [p for g in rollouts for p in g["parts"]]
        return {
            "reward": float(np.mean([float(g["rewards"].mean()) for g in rollouts])) if rollouts else 0.0,
            "promotion": _mean(parts, "promotion"), "format": _mean(parts, "format"),
            "format_counted": _mean(parts, "format_counted"), "valid_rate": _mean(parts, "valid"),
            "order_copy_rate": _mean(parts, "copy"), "kept_group_ratio": len(self.groups) / max(1, len(rollouts)),
            "entropy": stats.get("entropy", 0.0), "clip_fraction": stats.get("clip_fraction", 0.0),
            "kl": stats.get("kl", 0.0),
            "response_len": float(np.mean([n for g in rollouts for n in g["lengths"]])) if rollouts else 0.0,
            "truncated_rate": float(np.mean([t for g in rollouts for t in g["truncated"]])) if rollouts else 0.0,
            "loss": stats.get("loss", 0.0),
        }

    def progress(self) -> dict:
        """What a checkpoint records: the slates taken so far (a resumed run skips them). Rollouts count no
        micro-batches."""
        return {"micro_batches": 0, "tokens": 0, "prompts": self.prompts}


def step_seed(base: int, step: int) -> int:
    """The sampling seed of RL step `step` (counted from 0): a run resumed at a step draws what the same run
    uninterrupted would have, and no two steps repeat each other's draws."""
    return base + 1_000_003 * step


def _cycle(shard, skip: int = 0):
    """Passes over the shard's rows without end, the first `skip` rows left out (taken before a restart)."""
    while True:
        n = 0
        for row in shard.iter_rows():
            n += 1
            if skip:
                skip -= 1
                continue
            yield row
        if n == 0:
            raise RuntimeError("empty data shard: no training slates for this worker")


def free_reasoning(text: str) -> str:
    """The reasoning string of a sampled answer cut before `"ranking"`: the JSON string when it decodes,
    else the raw text (a small model's stray quote or backslash must not void the whole answer)."""
    body = text.strip()
    if body.startswith('{"reasoning":'):
        body = body[len('{"reasoning":'):].lstrip()
    body = body.rstrip().removesuffix(",").rstrip()
    try:
        value = json.loads(body)
        if isinstance(value, str):
            return value
    except ValueError:
        pass
    return body.removeprefix('"').removesuffix('"')


def hit_cap(generated: list[int], eos_id: int, pad_id: int, max_new_tokens: int) -> bool:
    """True when a sampled reasoning ran into the token cap (overlong: left out of the loss). One that
    stopped earlier without writing `"ranking"` (an early end-of-text) is a complete, if short, answer:
    it gets its ranking and stays in the loss, or a policy that learns to stop early is never corrected."""
    return len(generated) >= max_new_tokens and eos_id not in generated and pad_id not in generated


def _constrained_rollout(model, tok, row: dict, s: LoopSettings, G: int) -> dict:
    """G answers whose reasoning is sampled freely up to `"ranking"` and whose ranking is sampled among
    the candidates not yet listed. The answer is then written in the canonical JSON form (the reasoning
    string re-escaped), so every answer is valid and the rewards compare rankings; the policy is trained
    on those canonical tokens."""
    from gr2.models.ranking import constrained_ranking

    d, fmt = s.dapo, s.rerank_format or RerankFormat()
    prompt = row["prompt"]
    prompt_ids = tok(with_bos(tok, prompt), add_special_tokens=False, return_tensors="pt")["input_ids"]
    out = sample_group(model, prompt_ids[0].tolist(), G, d.max_new_tokens, d.temperature,
                       tok.pad_token_id, tok.eos_token_id, tokenizer=tok, stop_strings=['"ranking"'])
    sids = list(row["sids"])
    with torch.no_grad():  # the prompt's KV cache, forked for each answer's ranking
        prompt_prefix = Prefix(model, prompt_ids[0].tolist())
    texts, truncated, resp_ids, reasoning_lens = [], [], [], []
    for r in out[:, prompt_ids.shape[1]:].tolist():
        text = tok.decode(r, skip_special_tokens=False).split(tok.eos_token)[0].replace(tok.pad_token, "")
        cut = text.find('"ranking"')
        truncated.append(cut < 0 and hit_cap(r, tok.eos_token_id, tok.pad_token_id, d.max_new_tokens))
        reasoning_lens.append(len(tok(text[:cut] if cut >= 0 else text, add_special_tokens=False)["input_ids"]))
        reasoning = free_reasoning(text[:cut] if cut >= 0 else text)
        head = fmt.answer(reasoning, [], sids)[: -len("]}")]  # the answer's JSON up to `"ranking":[`
        with torch.no_grad():
            ranking = constrained_ranking(model, tok, head, sids, temperature=d.temperature, fmt=fmt,
                                          prefix=prompt_prefix.fork())
        answer = fmt.answer(reasoning, ranking, sids)
        texts.append(answer)
        resp_ids.append(tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id])
    lengths = [len(r) for r in resp_ids]
    width = max(lengths)
    seqs = torch.full((G, prompt_ids.shape[1] + width), tok.pad_token_id, dtype=torch.long)
    seqs[:, : prompt_ids.shape[1]] = prompt_ids
    for i, r in enumerate(resp_ids):
        seqs[i, prompt_ids.shape[1] : prompt_ids.shape[1] + len(r)] = torch.tensor(r)
    # The overlong punishment looks at the free part only: the ranking's length is fixed by K.
    rewards_, parts = score_group(texts, reasoning_lens, sids, [int(x) for x in row["labels"]], d, fmt)
    return {"prompt_len": prompt_ids.shape[1], "seqs": seqs, "lengths": lengths, "truncated": truncated,
            "rewards": rewards_, "parts": parts}


def _rollout(model, tok, row: dict, s: LoopSettings, G: int) -> dict:
    d = s.dapo
    if d.constrained_rollouts:
        return _constrained_rollout(model, tok, row, s, G)
    prompt_ids = tok(with_bos(tok, row["prompt"]), add_special_tokens=False, return_tensors="pt")["input_ids"]
    out = sample_group(model, prompt_ids[0].tolist(), G, d.max_new_tokens, d.temperature,
                       tok.pad_token_id, tok.eos_token_id)
    resp = out[:, prompt_ids.shape[1]:]
    lengths, truncated, texts = [], [], []
    for r in resp.tolist():
        n = r.index(tok.eos_token_id) + 1 if tok.eos_token_id in r else len(r)
        lengths.append(n)
        truncated.append(tok.eos_token_id not in r)
        texts.append(tok.decode(r[: n - (0 if truncated[-1] else 1)], skip_special_tokens=False))
    rewards_, parts = score_group(texts, lengths, list(row["sids"]), [int(x) for x in row["labels"]], d, s.rerank_format)
    return {"prompt_len": prompt_ids.shape[1], "seqs": out, "lengths": lengths, "truncated": truncated,
            "rewards": rewards_, "parts": parts}


def _update(engine, ref, groups: list[dict], s: LoopSettings, M: int, device) -> dict:
    """M optimizer steps over the kept groups' answers; a zero-loss step when nothing was kept, so every
    worker takes the same number of steps (DeepSpeed's collectives must match)."""
    if not groups:
        for _ in range(M):
            loss = sum(p.sum() for p in engine.module.parameters()) * 0.0
            engine.backward(loss)
            engine.step()
        return {}
    batches = []
    for g in groups:
        adv = dapo.group_advantages(g["rewards"])
        seqs = g["seqs"].to(device)
        start = g["prompt_len"]
        mask = torch.zeros(seqs.shape[0], seqs.shape[1] - start)
        for i, n in enumerate(g["lengths"]):
            mask[i, :n] = 1.0
        if s.dapo.overlong_filter:
            mask = mask * dapo.overlong_mask(torch.tensor(g["truncated"]))[:, None].float()
        attn = torch.ones_like(seqs)
        with torch.no_grad(), cpu_autocast(s.autocast and device.type == "cpu"):
            old, _ = _token_logprobs(engine.module, seqs, attn, start, s.dapo.temperature)
            refp = _token_logprobs(ref, seqs, attn, start, s.dapo.temperature)[0] if ref is not None else None
        batches.append((seqs, attn, start, adv.to(device), mask.to(device), old, refp))
    order = np.arange(len(batches))
    stats_all: list[dict] = []
    for mb in np.array_split(order, M):
        total_loss = None
        for i in mb:
            seqs, attn, start, adv, mask, old, refp = batches[i]
            with cpu_autocast(s.autocast and device.type == "cpu"):
                new, logits = _token_logprobs(engine, seqs, attn, start, s.dapo.temperature)
            loss, st = dapo.dapo_loss(new, old, adv, mask, s.dapo.eps_low, s.dapo.eps_high, refp, s.dapo.kl_coef)
            st["entropy"] = dapo.token_entropy(logits.detach(), mask)
            st["loss"] = float(loss.detach())
            stats_all.append(st)
            total_loss = loss / max(1, len(mb)) if total_loss is None else total_loss + loss / max(1, len(mb))
        if total_loss is None:  # more minibatches than groups: keep the step count equal
            total_loss = sum(p.sum() for p in engine.module.parameters()) * 0.0
        engine.backward(total_loss)
        engine.step()
    return dapo.combine_stats(stats_all)


def _mean(parts: list[dict], key: str) -> float:
    return float(np.mean([p[key] for p in parts])) if parts else 0.0


def run(cfg, steps=None, publish: bool = True) -> dict:
    """`gr2 train dapo`: DAPO from the latest SFT model on training slates. The finished run becomes
    the DAPO LATEST unless not `publish` (a benchmark's variant must not replace the served model)."""
    import ray.data

    from gr2.models import evidence
    from gr2.models.lm import load_tokenizer
    from gr2.platform.lake import Lake
    from gr2.platform.progress import Steps
    from gr2.platform.ray_cluster import ensure_ray
    from gr2.platform.run_store import latest_model
    from gr2.rerank.catalog import load_catalog
    from gr2.training import jobs
    from gr2.training import traces as tr

    steps = steps or Steps(quiet=True)
    t, d = cfg.train, cfg.train.dapo
    rewards.get_reward(d.reward)  # an unknown name fails now, not in the Ray workers (for callers past the CLI's check)
    lake = cfg.lake_path
    run_id, run_dir, resumed = jobs.start_run(cfg, "dapo")
    with steps.step(f"training slates as prompts{f' (resuming {run_id})' if resumed else ''}"):
        ensure_ray()
        base = latest_model(cfg, "sft")
        fmt = RerankFormat.of_model(base, RerankFormat.from_config(t.prompt))  # the policy's own format
        tok = load_tokenizer(base)
        catalog, _ = load_catalog(lake)
        df = Lake(lake).read_pandas(
            "gold.slates", columns=["slate_id", "user_id", "history", "candidates", "target", "labels", "split"])
        df = df[df["split"] == "train"].sample(frac=1.0, random_state=t.seed)
        if d.max_examples:
            df = df.head(d.max_examples)
        built = [(r, s) for r in df.to_dict("records")
                 if (s := slate_of_row(r, catalog, fmt.history)) is not None and sum(int(x) for x in r["labels"]) >= 1]
        shown = evidence.annotate_rows(evidence.for_format(fmt, lake), built, "train")
        items = [{"slate_id": s.slate_id, "prompt": tr.prompt_of(s, fmt, tok), "sids": [c.sid for c in s.candidates],
                  "labels": [int(x) for x in r["labels"]]} for (r, _), s in zip(built, shown)]
        if not items:
            raise ValueError("no training slates with SIDs for DAPO; run `gr2 etl build` and `gr2 tokenizer assign`")
        ds = ray.data.from_items(items)
    with steps.step(f"DAPO on Ray Train + {engines.engine_name(t)}: {d.max_steps} steps x {d.batch_size} slates x {d.group_size} answers") as live:
        out = loop.run(ds, model_path=str(base), tokenizer_path=str(base), run_dir=run_dir, name=run_id, stage_cfg=d,
                       train_cfg=t, total_rows=len(items), hook=DapoStep(), rerank_format=fmt,
                       on_progress=lambda step, total, reward, _: live.update(f"step {step}/{total}, reward {reward:.3f}"),
                       progress_fields=("step", "reward", "reward"))
    fmt.save(run_dir / "model")
    if not out["paused"]:
        jobs.finish_run(cfg, "dapo", run_id, publish)
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    summary = {"run": run_id, "base": str(base), "slates": len(items), **out, "first": rows[0] if rows else {},
               "last": rows[-1] if rows else {}}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
