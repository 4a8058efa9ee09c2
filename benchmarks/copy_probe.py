"""How fast does a model learn to copy a slate's candidate list? (the skill a valid free answer needs)

    .venv/bin/python benchmarks/copy_probe.py --model /work/lakes/beauty3/models/sft/<run>/model \
        --lake /work/lakes/beauty3 --steps 300 --batch 16 --lr 0.001

Trains a copy of the model, in one process with plain torch, on the `candidate_listing` mid-training
task (examples.py: the prompt's JSON list of candidate SIDs -> the same list as an answer's ranking)
from training slates, and every `--eval-every` steps greedily answers held-out lists: the share that
lists exactly the K candidates (a valid permutation) and the share that copies them in order. Nothing
is saved; the model folder is only read. Prints a Markdown table.
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

from gr2.training import data, examples  # noqa: E402
from gr2.training import model as lm  # noqa: E402

SID = re.compile(r"(?:<[a-z]_\d+>)+")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a local HF model folder with the SID vocabulary")
    ap.add_argument("--lake", required=True)
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
    catalog, _ = data.load_catalog(lake)
    slates = DeltaTable(str(data.table_path(lake, "gold.slates"))).to_pandas(columns=["candidates", "split"])
    lists = [[catalog[i] for i in c] for c, s in zip(slates["candidates"], slates["split"])
             if s == "train" and all(i in catalog for i in c)]
    rng.shuffle(lists)
    test, train = lists[: args.held_out], lists[args.held_out:]
    model, tok = lm.load(args.model)

    def encode(items):
        e = examples.candidate_listing(items)
        return examples.tokenize_example(tok, e)

    def batch(rows):
        enc = [encode(r) for r in rows]
        width = max(len(ids) for ids, _ in enc)
        x = torch.full((len(enc), width), tok.pad_token_id)
        y = torch.full((len(enc), width), -100)
        m = torch.zeros((len(enc), width), dtype=torch.long)
        for i, (ids, w) in enumerate(enc):
            x[i, : len(ids)] = torch.tensor(ids)
            m[i, : len(ids)] = 1
            y[i, : len(ids)] = torch.tensor([t if wt > 0 else -100 for t, wt in zip(ids, w)])
        return x, y, m

    def evaluate() -> tuple[float, float]:
        model.eval()
        valid = exact = 0
        with torch.no_grad():
            for items in test:
                e = examples.candidate_listing(items)
                ids = ([tok.bos_token_id] if tok.bos_token_id is not None else []) + tok(e.prompt, add_special_tokens=False)["input_ids"]
                out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                     max_new_tokens=16 + 8 * len(items), do_sample=False, pad_token_id=tok.pad_token_id)
                got = SID.findall(tok.decode(out[0, len(ids):]))[: len(items)]
                want = [SID.search(c.sid).group(0) for c in items]
                valid += sorted(got) == sorted(want)
                exact += got == want
        model.train()
        return valid / len(test), exact / len(test)

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    rows = [(0, float("nan"), 0.0, *evaluate())]
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
            rows.append((step, loss, time.perf_counter() - t0, *evaluate()))
            print(f"step {step}: loss {loss:.3f}, valid {rows[-1][3]:.0%}, exact {rows[-1][4]:.0%}", flush=True)
    print(f"\n### Copying the candidate list ({platform.node()}, batch {args.batch}, lr {args.lr:g}, "
          f"{len(test)} held-out lists)\n")
    print("| step | train loss | train s | valid permutation | exact copy |")
    print("|---:|---:|---:|---:|---:|")
    for step, loss, secs, valid, exact in rows:
        print(f"| {step} | {loss:.3f} | {secs:.0f} | {valid:.0%} | {exact:.0%} |")


if __name__ == "__main__":
    main()
