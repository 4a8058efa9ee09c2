"""Write MovieLens-100k in the Amazon P5 layout, to run the Amazon recipe unchanged on a second data set.

    .venv/bin/python scripts/movielens_as_p5.py ../shared/datasets/movielens_100k /tmp/movielens_p5
    .venv/bin/gr2 demo -c configs/beauty.yaml --data /tmp/movielens_p5 --lake /tmp/lake-movielens

No second Amazon data set is reachable from this machine (only package registries are), so this is the
check that `configs/beauty.yaml` holds nothing specific to Beauty: a different domain, catalog and
history length, in the files the `amazon-p5` source reads.
- `sequential_data.txt`: one line per user, "user_id item_id item_id ...", items by rating time (ties
  by item id), as P5's chronological order.
- `items.jsonl`: item_id (MovieLens' movie id - 1, so ids start at 0 like Beauty's), title, categories
  (one path ["Movies", genre] per genre flag).
The output is derived from a research-only data set: keep it outside the repository.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def convert(src: Path, out: Path) -> dict:
    genres = [ln.split("|")[0] for ln in (src / "u.genre").read_text(encoding="latin-1").splitlines() if ln.strip()]
    items = []
    for ln in (src / "u.item").read_text(encoding="latin-1").splitlines():
        f = ln.split("|")
        if len(f) < 5 + len(genres):
            raise ValueError(f"{src / 'u.item'}: a line with {len(f)} fields, expected {5 + len(genres)}: {ln[:80]!r}")
        cats = [["Movies", g] for g, flag in zip(genres, f[5:]) if flag == "1" and g != "unknown"]
        items.append({"item_id": int(f[0]) - 1, "title": f[1], "categories": cats or [["Movies"]]})
    events = defaultdict(list)
    for ln in (src / "u.data").read_text().splitlines():
        user, item, _rating, ts = ln.split("\t")
        events[int(user)].append((int(ts), int(item) - 1))
    out.mkdir(parents=True, exist_ok=True)
    with (out / "sequential_data.txt").open("w") as f:
        for user in sorted(events):
            f.write(" ".join([str(user)] + [str(i) for _, i in sorted(events[user])]) + "\n")
    with (out / "items.jsonl").open("w") as f:
        for it in items:
            f.write(json.dumps(it) + "\n")
    (out / "README.txt").write_text(
        f"MovieLens-100k ({src}) in the Amazon P5 layout, written by scripts/movielens_as_p5.py: "
        "sequential_data.txt (user, then items by rating time) and items.jsonl (item_id = movie id - 1, title, "
        "categories [['Movies', genre]]). Research use only, under MovieLens' terms; not to be published.\n")
    return {"users": len(events), "items": len(items), "interactions": sum(map(len, events.values()))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path, help="the MovieLens-100k folder (u.data, u.item, u.genre)")
    ap.add_argument("out", type=Path, help="folder to write, outside the repository")
    args = ap.parse_args()
    stats = convert(args.src, args.out)
    print(f"{args.out}: {stats['users']:,} users, {stats['items']:,} items, {stats['interactions']:,} interactions")


if __name__ == "__main__":
    main()
