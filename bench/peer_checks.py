"""Independent checks of the evaluation's peers: the same algorithms written again from their
descriptions, replayed under the same protocol on the same events, and compared.

* item-kNN and item-kNN-recent: the eval's peer updates a dense co-occurrence matrix event by
  event; the check rebuilds the user x item weight matrix ``R`` as a scipy sparse matrix and
  computes ``R^T R`` and the cosine for each scored user from scratch.
* ALS with fold-in: the eval's peer is implicit's ALS (retrained every 5,000 events, users folded
  in with ``recalculate_user``); the check is a numpy ALS written from Hu, Koren and Volinsky
  (ICDM 2008) as implicit states its loss (confidence ``alpha * r``, preference 1), trained from
  its own random start on the same schedule, with the fold-in solved by ``numpy.linalg.solve``.

The hyper-parameters are the ones ``polyrec eval`` chose (read from its JSON). Scoring is on a
fixed 1-in-N sample of the scorable events (``--sample-every``), the same for both sides.

    python bench/peer_checks.py --from results/prequential.json --sample-every 10

Writes ``results/peer_checks.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from scipy.sparse import csr_matrix

from polyrec.datasets.movielens import DATASETS, movielens_replay
from polyrec.evaluation.baselines import ImplicitALS, ItemKNN, Popularity
from polyrec.evaluation.protocol import run_prequential
from polyrec.ids import IdIndex


class _Ratings:
    """Users' summed event weights per item, and their items in order of last interaction."""

    def __init__(self) -> None:
        self.users, self.items = IdIndex(), IdIndex()
        self.weights: dict[tuple[int, int], float] = {}
        self.order: list[dict[int, None]] = []

    def learn(self, users: Sequence[str], items: Sequence[str], weights: np.ndarray) -> None:
        for u, i, w in zip(self.users.add_many(users).tolist(), self.items.add_many(items).tolist(),
                           np.asarray(weights).tolist()):
            self.weights[u, i] = self.weights.get((u, i), 0.0) + w
            self.order.extend({} for _ in range(u + 1 - len(self.order)))
            self.order[u].pop(i, None)
            self.order[u][i] = None

    def matrix(self) -> csr_matrix:
        keys = np.array(list(self.weights), dtype=np.int64).reshape(-1, 2)
        values = np.array(list(self.weights.values()), dtype=np.float64)
        return csr_matrix((values, (keys[:, 0], keys[:, 1])), shape=(len(self.users), len(self.items)))


class SparseItemKNN(_Ratings):
    """Item-kNN from scratch: cosine of the columns of the sparse ``R``, scored by ``R[u] S``."""

    def __init__(self, recent: int | None, neighbours: int | None, shrink: float, name: str) -> None:
        super().__init__()
        self.recent, self.neighbours, self.shrink, self.name = recent, neighbours, shrink, name

    def scores(self, users: Sequence[str], catalog: Sequence[str]) -> np.ndarray:
        r = self.matrix()
        norms = np.sqrt(np.asarray(r.multiply(r).sum(axis=0)).ravel())
        cols = self.items.rows(catalog)
        out = np.zeros((len(users), len(catalog)))
        for n, u in enumerate(self.users.rows(users).tolist()):
            if u < 0 or not self.order[u]:
                continue
            mine = np.array(list(self.order[u]))[-self.recent if self.recent else 0:]
            co = (r[:, mine].T @ r).toarray()  # (mine, items): sum over users of products
            sim = co / (np.outer(norms[mine], norms) + self.shrink + 1e-12)
            if self.neighbours and self.neighbours < sim.shape[1]:
                sim[np.arange(len(mine)), mine] = 0.0
                kth = np.sort(sim, axis=1)[:, -self.neighbours, None]
                sim = np.where(sim >= kth, sim, 0.0)
            score = np.asarray(r[u, mine].todense()).ravel() @ sim
            out[n] = np.where(cols >= 0, score[np.maximum(cols, 0)], 0.0)
        return out


class NumpyALS(_Ratings):
    """ALS from the paper, retrained every ``retrain_every`` events; every user with history is
    folded in at request time; the others, and everyone before the first retrain, get popularity."""

    def __init__(self, factors: int, regularization: float, alpha: float, iterations: int = 15,
                 retrain_every: int = 5000, name: str = "numpy-als") -> None:
        super().__init__()
        self.k, self.reg, self.alpha, self.iterations = factors, regularization, alpha, iterations
        self.retrain_every, self.name = retrain_every, name
        self.popularity = Popularity()
        self.item_factors: np.ndarray | None = None
        self._since = 0
        self._rng = np.random.default_rng(1)

    def learn(self, users: Sequence[str], items: Sequence[str], weights: np.ndarray) -> None:
        super().learn(users, items, weights)
        self.popularity.learn(users, items, weights)
        self._since += len(users)
        if self._since >= self.retrain_every:
            self._retrain()
            self._since = 0

    def _solve(self, other: np.ndarray, conf: csr_matrix) -> np.ndarray:
        """For each row of ``conf``: argmin sum_i c_i (1 - x.y_i)^2 + (x.y_j)^2 elsewhere + reg |x|^2."""
        gram = other.T @ other + self.reg * np.eye(self.k)
        out = np.zeros((conf.shape[0], self.k))
        for row in range(conf.shape[0]):
            lo, hi = conf.indptr[row], conf.indptr[row + 1]
            if lo == hi:
                continue
            y, c = other[conf.indices[lo:hi]], conf.data[lo:hi]
            out[row] = np.linalg.solve(gram + (y.T * (c - 1)) @ y, y.T @ c)
        return out

    def _retrain(self) -> None:
        conf = (self.matrix() * self.alpha).tocsr()
        users = self._rng.normal(0, 0.01, (conf.shape[0], self.k))
        items = self._rng.normal(0, 0.01, (conf.shape[1], self.k))
        for _ in range(self.iterations):
            users = self._solve(items, conf)
            items = self._solve(users, conf.T.tocsr())
        self.item_factors = items

    def scores(self, users: Sequence[str], catalog: Sequence[str]) -> np.ndarray:
        out = np.array(self.popularity.scores(users, catalog), dtype=np.float64)
        if self.item_factors is None:
            return out
        trained = len(self.item_factors)
        cols = self.items.rows(catalog)
        known = (cols >= 0) & (cols < trained)
        conf = (self.matrix()[:, :trained] * self.alpha).tocsr()
        for n, u in enumerate(self.users.rows(users).tolist()):
            if u < 0 or conf[u].nnz == 0:
                continue
            x = self._solve(self.item_factors, conf[u])[0]
            out[n] = np.where(known, self.item_factors[np.where(known, cols, 0)] @ x, -1e9)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="source", default="results/prequential.json",
                        help="a polyrec eval JSON: the data set and the peers' chosen hyper-parameters")
    parser.add_argument("--sample-every", type=int, default=10, help="score 1 in N scorable events")
    parser.add_argument("--limit", type=int, default=None, help="replay only the first N events")
    parser.add_argument("--out", default="results/peer_checks.json")
    args = parser.parse_args()
    evaluated = json.loads(Path(args.source).read_text())
    chosen = {fam: t["chosen"] for fam, t in evaluated["tuning"].items()}
    replay = movielens_replay(args.limit, source=DATASETS[evaluated["dataset"].get("key", "ml-100k")])
    warmup = evaluated["protocol"]["warmup_events"] if args.limit is None else len(replay) // 10
    als = chosen["als-foldin"]
    pairs = [
        (ItemKNN(**chosen["item-knn"]), SparseItemKNN(None, chosen["item-knn"]["neighbours"],
                                                       chosen["item-knn"]["shrink"], "item-knn (scipy check)")),
        (ItemKNN(name="item-knn-recent", **chosen["item-knn-recent"]),
         SparseItemKNN(name="item-knn-recent (scipy check)", **chosen["item-knn-recent"])),
        (ImplicitALS(fold_in="all", **als), NumpyALS(als["factors"], als["regularization"], als["alpha"],
                                                     name="als-foldin (numpy check)")),
    ]
    started = time.perf_counter()
    with Progress() as bar:
        task = bar.add_task("replaying the peers and their checks", total=len(replay))
        results = run_prequential(replay, [m for pair in pairs for m in pair], batch_size=1, warmup=warmup,
                                  sample_every=args.sample_every, progress=lambda n: bar.advance(task, n))
    summary = {r.name: r.summary() for r in results}
    rows = []
    for peer, check in pairs:
        a, b = summary[peer.name], summary[check.name]
        rows.append({"peer": peer.name, "check": check.name,
                     **{f"{m} peer": a[m] for m in ("recall@10", "ndcg@10")},
                     **{f"{m} check": b[m] for m in ("recall@10", "ndcg@10")},
                     **{f"{m} ratio": a[m] / max(b[m], 1e-12) for m in ("recall@10", "ndcg@10")}})
    out = {"source": args.source, "dataset": evaluated["dataset"]["name"], "sample_every": args.sample_every,
           "scored_events": results[0].summary()["scored_events"], "checks": rows,
           "within_5_percent": all(abs(r[f"{m} ratio"] - 1) <= 0.05 for r in rows for m in ("recall@10", "ndcg@10")),
           "elapsed_s": round(time.perf_counter() - started, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    table = Table(title=f"Peers against independent implementations ({out['scored_events']} scored events)")
    for col in ("peer", "recall@10", "check", "ratio", "ndcg@10", "check", "ratio"):
        table.add_column(col, justify="left" if col == "peer" else "right")
    for r in rows:
        table.add_row(r["peer"], f"{r['recall@10 peer']:.4f}", f"{r['recall@10 check']:.4f}",
                      f"{r['recall@10 ratio']:.3f}", f"{r['ndcg@10 peer']:.4f}", f"{r['ndcg@10 check']:.4f}",
                      f"{r['ndcg@10 ratio']:.3f}")
    Console().print(table)
    print(f"all within 5%: {out['within_5_percent']}; wrote {args.out}")


if __name__ == "__main__":
    main()
