"""How fast does a model learn to copy a slate's candidate SIDs? (the skill a valid free answer needs)

    .venv/bin/python benchmarks/copy_probe.py --model /work/lakes/beauty3/models/sft/<run>/model \
        --lake /work/lakes/beauty3 --steps 300 --batch 16 --lr 0.001
    .venv/bin/python benchmarks/copy_probe.py --task lookup --model ... --lake ... --steps 300 --batch 4

`--task listing` (short range):
Trains a copy of the model, in one process with plain torch, on the `candidate_listing` mid-training
task (examples.py: the prompt's JSON list of candidate SIDs -> the same list as an answer's ranking)
from training slates, and every `--eval-every` steps greedily answers held-out lists: the share that
lists exactly the K candidates (a valid permutation) and the share that copies them in order. Nothing
is saved; the model folder is only read. Prints a Markdown table.

`--task lookup` (long range, keyed): the full re-rank prompt of a training slate (history and
candidates, as SFT sees it), answered by "Decision: [k] <sid>, [j] <sid>, ..." over the candidates in
a random order, the way the statistical teacher's decision line cites them. Each SID must be looked up
by its slate number [k], 500-1,500 tokens back. Held-out prompts are answered greedily and every
"[k] <sid>" pair read back: the share whose SID is candidate k's, and the share of slates with every
pair right. This is what the SFT model's free answers fail at (docs/training.md).
"""

from __future__ import annotations

import argparse
import platform
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gr2.models.lm import load_model  # noqa: E402
from gr2.models.text import Example, tokenize_example  # noqa: E402
from gr2.platform.sids import wrap  # noqa: E402
from gr2.rerank.catalog import load_catalog  # noqa: E402
from gr2.rerank.slate import slate_of_row  # noqa: E402
from gr2.training import data, examples  # noqa: E402
from gr2.training import model as lm  # noqa: E402
from gr2.training import traces as tr  # noqa: E402

SID = re.compile(r"(?:<[a-z]_\d+>)+")
PAIR = re.compile(r"\[(\d+)\] (?:<\|sid_begin\|>)?((?:<[a-z]_\d+>)+)")


def lookup_example(slate, rng: random.Random, context: str = "full", wrapped: bool = False) -> Example:
    """A slate's prompt -> its candidates cited as "[k] <sid>" in a random order. `context` "full" is the
    whole re-rank prompt; "candidates" keeps only its candidate lines (the same lookup at short range).
    `wrapped` cites "[k] <|sid_begin|><sid><|sid_end|>", token for token as the prompt's item lines."""
    order = list(range(len(slate.candidates)))
    rng.shuffle(order)
    cite = wrap if wrapped else str
    cited = ", ".join(f"[{k + 1}] {cite(SID.search(slate.candidates[k].sid).group(0))}" for k in order)
    prompt = tr.prompt_of(slate)
    if context == "candidates":
        prompt = "Candidates" + prompt.split("\n\nCandidates", 1)[1].split("\nCandidate SIDs in this order")[0] + "\n"
    return Example("lookup", prompt + "Decision:", f" {cited}.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a local HF model folder with the SID vocabulary")
    ap.add_argument("--lake", required=True)
    ap.add_argument("--task", choices=["listing", "lookup"], default="listing")
    ap.add_argument("--context", choices=["full", "candidates"], default="full",
                    help="lookup: the whole re-rank prompt, or only its candidate lines (short range)")
    ap.add_argument("--wrapped", action="store_true",
                    help="lookup: cite SIDs with their markers, token for token as the prompt's item lines")
    ap.add_argument("--fresh", metavar="HIDDEN,LAYERS,HEADS",
                    help="train a randomly initialised qwen3 model of this size (with --model's tokenizer) instead "
                    "of --model itself: does size change how fast the skill is learned?")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-every", type=int, default=150)
    ap.add_argument("--held-out", type=int, default=40, help="lists answered at each evaluation")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import torch
    from deltalake import DeltaTable

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    lake = Path(args.lake)
    catalog, _ = load_catalog(lake)
    cols = ["slate_id", "history", "candidates", "target", "split"]
    slates = DeltaTable(str(data.table_path(lake, "gold.slates"))).to_pandas(columns=cols)
    slates = [slate_of_row(r, catalog, 10) for r in slates[slates["split"] == "train"].to_dict("records")]
    slates = [s for s in slates if s is not None]
    rng.shuffle(slates)
    test, train = slates[: args.held_out], slates[args.held_out:]
    model, tok = load_model(args.model)
    if args.fresh:
        from transformers import AutoModelForCausalLM

        hidden, layers, heads = (int(x) for x in args.fresh.split(","))
        config = lm.small_config("qwen3", len(tok), hidden, layers, heads, model.config.max_position_embeddings, tok)
        model = AutoModelForCausalLM.from_config(config)
    params = sum(p.numel() for p in model.parameters())

    def make(slate) -> Example:
        if args.task == "lookup":
            return lookup_example(slate, rng, args.context, args.wrapped)
        return examples.candidate_listing([catalog[c.item_id] for c in slate.candidates])

    def batch(rows):
        enc = [tokenize_example(tok, make(r)) for r in rows]
        width = max(len(ids) for ids, _ in enc)
        x = torch.full((len(enc), width), tok.pad_token_id)
        y = torch.full((len(enc), width), -100)
        m = torch.zeros((len(enc), width), dtype=torch.long)
        for i, (ids, w) in enumerate(enc):
            x[i, : len(ids)] = torch.tensor(ids)
            m[i, : len(ids)] = 1
            y[i, : len(ids)] = torch.tensor([t if wt > 0 else -100 for t, wt in zip(ids, w)])
        return x, y, m

    def score(slate, text: str) -> tuple[float, float]:
        """(share of the slate's SIDs right, 1.0 if all are) for one greedy answer."""
        want = [SID.search(c.sid).group(0) for c in slate.candidates]
        if args.task == "listing":
            got = SID.findall(text)[: len(want)]
            return float(sorted(got) == sorted(want)), float(got == want)
        pairs = PAIR.findall(text)[: len(want)]
        right = [0 < int(k) <= len(want) and want[int(k) - 1] == sid for k, sid in pairs]
        share = sum(right) / len(want)
        return share, float(len(pairs) == len(want) and all(right))

    def evaluate() -> tuple[float, float]:
        model.eval()
        a = b = 0.0
        with torch.no_grad():
            for slate in test:
                e = make(slate)
                ids = ([tok.bos_token_id] if tok.bos_token_id is not None else []) + tok(e.prompt, add_special_tokens=False)["input_ids"]
                out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                     max_new_tokens=16 + 10 * len(slate.candidates), do_sample=False,
                                     pad_token_id=tok.pad_token_id)
                x, y = score(slate, tok.decode(out[0, len(ids):]))
                a, b = a + x, b + y
        model.train()
        return a / len(test), b / len(test)

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    rows = [(0, float("nan"), 0.0, *evaluate())]
    print(f"step 0: {rows[-1][3]:.0%} / {rows[-1][4]:.0%}", flush=True)
    model.train()
    t0 = time.perf_counter()
    loss = float("nan")
    for step in range(1, args.steps + 1):
        x, y, m = batch(rng.sample(train, args.batch))
        out = model(input_ids=x, attention_mask=m, labels=y)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        loss = float(out.loss)
        if step % args.eval_every == 0 or step == args.steps:
            secs = time.perf_counter() - t0
            rows.append((step, loss, secs, *evaluate()))
            print(f"step {step}: loss {loss:.3f}, {rows[-1][3]:.0%} / {rows[-1][4]:.0%}, {secs:.0f} s", flush=True)
    listing = args.task == "listing"
    title = "Copying the candidate list" if listing else (
        f"Looking up SIDs by slate number ({args.context} prompt{', wrapped citations' if args.wrapped else ''})")
    which = f"fresh {args.fresh}" if args.fresh else Path(args.model).parent.name
    print(f"\n### {title} ({platform.node()}, {which}, {params / 1e6:.1f}M parameters, batch {args.batch}, "
          f"lr {args.lr:g}, {len(test)} held-out slates)\n")
    cols = ("valid permutation", "exact copy") if listing else ("SIDs right", "slates all right")
    print(f"| step | train loss | train s | {cols[0]} | {cols[1]} |")
    print("|---:|---:|---:|---:|---:|")
    for step, loss, secs, a, b in rows:
        print(f"| {step} | {loss:.3f} | {secs:.0f} | {a:.0%} | {b:.0%} |")


if __name__ == "__main__":
    main()
