"""What did a student's answers do with their slates? Reads the answers `gr2 eval` logged and prints a table.

    .venv/bin/python benchmarks/answer_probe.py -c configs/beauty.yaml --lake /work/lakes/beauty \
        --answers /work/lakes/beauty/reports/eval/answers/sft-<run>-<hash>.jsonl

Ranking metrics say how good the orders are; these numbers say whether the orders depend on the slate:
- how many distinct orders the valid answers hold, and how often the first candidate stays first;
- agreement with the rule the traces taught (`--rule`): "shown" (pre-rank x the seq rank the prompt shows,
  lowest first, ties by slate order) or "partition" (seq #1..#N first, then the rest, each in slate order;
  `--partition-top N`): the whole order, its first item, and its top 3 as a set;
- for reasonings that write the products ("2. Pre-rank x seq: 1x4=4, 2x1=2, ..."): the share of products
  whose factors are the right pre-rank and seq rank, and whose arithmetic is right;
- for reasonings that flag the candidates ("2. Seq #1-#4 in, the rest out: [1] 3 in, [2] 7 out, ..."): the
  share of flags with the prompt's seq rank, the share whose in/out agrees with the rank written, and how
  often the order is the one the answer's own flags give (its "in" candidates, then its "out" ones).
Deltalake reads, the lake's all-users sequence model for the ranks; no Spark, no LM. A few seconds.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gr2.config import load_config  # noqa: E402
from gr2.models import evidence as ev  # noqa: E402
from gr2.platform.lake import Lake  # noqa: E402
from gr2.rerank.catalog import load_catalog  # noqa: E402
from gr2.rerank.metrics import slate_metrics  # noqa: E402
from gr2.rerank.slate import sequence_rank, slate_of_row  # noqa: E402
from gr2.training.teachers import partition_order, shown_order  # noqa: E402

PRODUCT = re.compile(r"\b(\d+)x(\d+)=(\d+)")
FLAG = re.compile(r"\[(\d+)\] (\d+|-) (in|out)\b")


def step2(reasoning: str) -> str:
    """The text of a reasoning's step 2 (between "2." and "3."), where the per-candidate figures are."""
    return reasoning.split("2.", 1)[1].split("3.", 1)[0] if "2." in reasoning else ""


def flags_checked(reasoning: str, seq_ranks: list[int], top: int) -> tuple[int, int, int, list[int] | None]:
    """(flags written, with the prompt's seq rank, whose in/out fits the rank written, the order the flags give:
    0-based "in" positions then "out" ones, each as written; None when the flags do not cover the slate once)."""
    found = FLAG.findall(step2(reasoning))
    right_rank = right_flag = 0
    for j, r, f in found:
        j = int(j)
        rank = int(r) if r != "-" else -1
        right_rank += 1 <= j <= len(seq_ranks) and (seq_ranks[j - 1] + 1 if seq_ranks[j - 1] >= 0 else -1) == rank
        right_flag += (f == "in") == (1 <= rank <= top)
    picks = [int(j) - 1 for j, _, _ in found]
    if sorted(picks) != list(range(len(seq_ranks))):
        return len(found), right_rank, right_flag, None
    order = [int(j) - 1 for j, _, f in found if f == "in"] + [int(j) - 1 for j, _, f in found if f == "out"]
    return len(found), right_rank, right_flag, order


def products_checked(reasoning: str, seq_ranks: list[int]) -> tuple[int, int, int]:
    """(products written, with the right factors, with the right result) in the reasoning's step 2."""
    found = PRODUCT.findall(step2(reasoning))
    right_factors = right_sums = 0
    for a, b, c in found:
        a, b, c = int(a), int(b), int(c)
        right_sums += a * b == c
        right_factors += 1 <= a <= len(seq_ranks) and seq_ranks[a - 1] + 1 == b
    return len(found), right_factors, right_sums


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-c", "--config", default=None)
    ap.add_argument("--lake", required=True)
    ap.add_argument("--answers", required=True, help="an answers log of `gr2 eval` (<lake>/reports/eval/answers/*.jsonl)")
    ap.add_argument("--rule", choices=("shown", "partition"), default="shown", help="the rule the traces taught")
    ap.add_argument("--partition-top", type=int, default=3, help="N of the partition rule (traces.partition_top)")
    args = ap.parse_args()
    cfg = load_config(args.config, [], args.lake)
    rule_of = shown_order if args.rule == "shown" else (lambda r: partition_order(r, args.partition_top))
    rule_name = f"the {args.rule} rule"
    lines = [json.loads(x) for x in Path(args.answers).read_text().splitlines() if x.strip()]
    answers = {x["slate_id"]: x["record"] for x in lines}
    catalog, _ = load_catalog(cfg.lake_path)
    slates = Lake(cfg.lake_path).read_pandas("gold.slates", columns=["slate_id", "user_id", "history", "candidates",
                                                                      "target", "split"])
    rows = slates[slates["slate_id"].isin(set(answers))].to_dict("records")
    built = [(r, s) for r in rows if (s := slate_of_row(r, catalog, cfg.train.prompt.history)) is not None]
    shown = ev.annotate_rows(ev.load(cfg.lake_path), built, "test")
    orders: Counter = Counter()
    target_at: dict[str, list[int]] = {"incoming order": [], rule_name: [], "the answers (incoming where invalid)": []}
    by_id = {r["slate_id"]: r for r, _ in built}
    n = valid = first_kept = same = same_first = same_top3 = 0
    written = factors = sums = with_products = 0
    flags = flag_ranks = flag_fits = with_flags = follows_flags = 0
    for s in shown:
        rec = answers[s.slate_id]
        ranks = [sequence_rank(c.note) for c in s.candidates]
        rule = rule_of(ranks)
        n += 1
        order = rec.get("free")
        t = [c.item_id for c in s.candidates].index(by_id[s.slate_id]["target"])
        target_at["incoming order"].append(t)
        target_at[rule_name].append(rule.index(t))
        target_at["the answers (incoming where invalid)"].append(list(order).index(t) if order is not None else t)
        if order is not None:
            valid += 1
            orders[tuple(order)] += 1
            first_kept += order[0] == 0
            same += list(order) == rule
            same_first += order[0] == rule[0]
            same_top3 += set(order[:3]) == set(rule[:3])
        try:
            reasoning = json.loads(rec["text"]).get("reasoning", "")
        except (json.JSONDecodeError, AttributeError):
            reasoning = ""
        w, f, m = products_checked(str(reasoning), ranks)
        written, factors, sums, with_products = written + w, factors + f, sums + m, with_products + (w > 0)
        fw, fr, ff, own = flags_checked(str(reasoning), ranks, args.partition_top)
        flags, flag_ranks, flag_fits = flags + fw, flag_ranks + fr, flag_fits + ff
        if own is not None:
            with_flags += 1
            follows_flags += order is not None and list(order) == own
    pct = lambda a, b: f"{100 * a / b:.1f}%" if b else "n/a"  # noqa: E731
    print(f"### Student answers against {rule_name} ({Path(args.answers).name}; {platform.node()})\n")
    print("| measure | value |\n|---|---:|")
    print(f"| slates | {n} |\n| valid free answers | {valid} ({pct(valid, n)}) |")
    print(f"| distinct orders among them | {len(orders)} |")
    top = orders.most_common(1)[0] if orders else ((), 0)
    print(f"| the commonest order | {[i + 1 for i in top[0]]} x{top[1]} |")
    print(f"| first candidate kept first | {pct(first_kept, valid)} |")
    print(f"| order = {rule_name}'s | {pct(same, valid)} |")
    print(f"| first = the rule's first | {pct(same_first, valid)} |")
    print(f"| top 3 = the rule's top 3 (as a set) | {pct(same_top3, valid)} |")
    print(f"| answers that write products | {pct(with_products, n)} |")
    print(f"| products with the prompt's factors | {pct(factors, written)} of {written} |")
    print(f"| products with the right result | {pct(sums, written)} of {written} |")
    if flags:
        print(f"| flags with the prompt's seq rank | {pct(flag_ranks, flags)} of {flags} |")
        print(f"| flags whose in/out fits the rank written | {pct(flag_fits, flags)} |")
        print(f"| answers whose flags cover the slate once | {pct(with_flags, n)} |")
        print(f"| order = the answer's own flags' order | {pct(follows_flags, with_flags)} |")
    print("\n| order | R@1 | R@5 | NDCG@5 |\n|---|---:|---:|---:|")
    for name, pos in target_at.items():
        m = slate_metrics(pos)
        print(f"| {name} | {m['R@1']:.3f} | {m['R@5']:.3f} | {m['NDCG@5']:.3f} |")


if __name__ == "__main__":
    main()
