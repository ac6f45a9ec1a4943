"""What one item costs a worker's memory, and where: the split behind docs/operations.md's sizing.

Builds the worker's model (``stream.state.WorkerModel``, the worker's defaults, dimension 32) and
folds in the records its item replica would read for ``--items`` new items: one contribution per
``--partitions`` partition (``p<k>``, with the young-item consumer sum) and, with ``--text``, one
text record each (a 384-dimensional embedding, as multilingual-e5-small's). ``tracemalloc`` follows
every allocation (numpy's buffers included) to the line of polyrec's code that made it, so the
bytes per item are split by the structure that holds them; RSS is read too (it adds the
allocator's slack; only the first measure of a process is meaningful: a later one reuses the memory the
earlier model freed). Arrays grow by doubling, so the bytes per item depend on where ``--items``
falls between two sizes: the table says how much of each is capacity not yet used.

    python bench/item_memory.py [--items 20000] [--partitions 4 12] [--text]

Writes ``results/item_memory[-text].json`` and prints a table per partition count.
"""

from __future__ import annotations

import argparse
import gc
import json
import linecache
import os
import sys
import tracemalloc
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from polyrec.mf import MFConfig  # noqa: E402
from stream.state import WorkerModel  # noqa: E402
from stream.wire import TEXT_SOURCE, ItemRecord  # noqa: E402

EMBEDDING_DIM = 384  # multilingual-e5-small's


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _owner(traceback: tracemalloc.Traceback) -> str:
    """The line of this repository's code that made an allocation (its innermost such frame)."""
    for frame in reversed(list(traceback)):  # a traceback lists the oldest frame first
        path = Path(frame.filename)
        if ROOT in path.parents and path.parent.name in ("polyrec", "stream"):
            line = linecache.getline(frame.filename, frame.lineno).strip()
            return f"{path.parent.name}/{path.name}:{frame.lineno}  {line[:70]}"
    return "(made outside polyrec's code and kept: with --text, the decoded embeddings)"


def measure(items: int, partitions: int, text: bool, dim: int = 32) -> dict:
    """Bytes per item, total and by the line that allocated them, for ``items`` items."""
    rng = np.random.default_rng(0)
    ids = [f"item-{n:07d}" for n in range(items)]

    def records():  # made one at a time, as the replica decodes them: what the model keeps counts
        for k in range(partitions):
            for n, i in enumerate(ids):
                yield ItemRecord(i, f"p{k}", rng.normal(0, 0.1, dim + 1).astype(np.float32), offset=n, count=3,
                                 writer="bench", consumers=rng.normal(0, 1, dim).astype(np.float32))
        for n, i in enumerate(ids if text else ()):
            yield ItemRecord(i, TEXT_SOURCE, rng.normal(0, 0.1, dim + 1).astype(np.float32), offset=n,
                             embedding=rng.normal(0, 1, EMBEDDING_DIM).astype(np.float32), lang="en")

    model = WorkerModel(MFConfig(dim=dim), max_items=max(items, 1))
    gc.collect()
    rss0 = _rss_bytes()
    tracemalloc.start(8)
    before = tracemalloc.take_snapshot()
    for rec in records():
        model.apply_item_record(rec)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    rss = _rss_bytes() - rss0
    by_owner: dict[str, int] = defaultdict(int)
    for stat in after.compare_to(before, "traceback"):
        by_owner[_owner(stat.traceback)] += stat.size_diff
    traced = sum(by_owner.values())
    return {
        "items": items, "partitions": partitions, "text": text, "dim": dim,
        "traced_bytes_per_item": traced / items, "rss_bytes_per_item": rss / items,
        "by_line_bytes_per_item": {k: v / items for k, v in sorted(by_owner.items(), key=lambda kv: -kv[1])
                                   if abs(v) / items >= 1.0},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--partitions", type=int, nargs="+", default=[4, 12])
    ap.add_argument("--text", action="store_true", help="also a text record with an embedding per item")
    ap.add_argument("--out", default="results")
    args = ap.parse_args()
    runs = [measure(args.items, p, args.text) for p in args.partitions]
    for r in runs:
        print(f"\n{r['items']:,} items, {r['partitions']} partitions{', text records' if r['text'] else ''}: "
              f"{r['traced_bytes_per_item']:,.0f} B per item traced, {r['rss_bytes_per_item']:,.0f} B of RSS")
        for line, b in r["by_line_bytes_per_item"].items():
            print(f"  {b:8,.0f}  {line}")
    out = Path(args.out) / f"item_memory{'-text' if args.text else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(runs, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
