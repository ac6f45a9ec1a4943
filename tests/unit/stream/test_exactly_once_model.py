"""A model-based property test of the user side of exactly-once (hypothesis): random batches, crashes
at random points of a batch, partitions moving between workers, and late writes of an evicted owner.

The system under test is the worker's own state code: ``WorkerModel.process`` learns each batch from
the states its local store holds, the changed states go to a changelog (a list per partition), and a
worker that starts or is handed a partition recovers its users by replaying that changelog through
``stream.fencing.newest_states``, as recovery does. The orchestration around them (what Faust and
the pipeline do: commit only after the changelog write, start from the committed offset) is written
out here. The oracle is the log: at the end, every user's state, recovered from the changelog alone,
has applied exactly the events the log holds for them (``UserState.applied``), with the last of them
as its offset.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from polyrec.mf import MFConfig
from stream.fencing import newest_states
from stream.state import WorkerModel
from stream.wire import UserState

PARTITIONS, WORKERS = 2, 3


@dataclass
class Cluster:
    log: dict[int, list[tuple[str, str]]]  # partition -> events (user, item), offset = index
    changelog: dict[int, list[tuple[str, str]]] = field(default_factory=lambda: {p: [] for p in range(PARTITIONS)})
    committed: dict[int, int] = field(default_factory=lambda: {p: 0 for p in range(PARTITIONS)})
    owner: dict[int, int] = field(default_factory=dict)  # partition -> worker
    workers: dict[int, Worker] = field(default_factory=dict)

    def recover(self, partition: int) -> dict[str, dict]:
        """A partition's users as a recovery replays its changelog (fenced), into an empty store."""
        store: dict[str, dict] = {}
        records = [(k, json.loads(v)) for k, v in self.changelog[partition]]
        kept = newest_states(records, lambda r: r[0], lambda r: r[1], store.get).kept
        for key, value in kept:
            store[key] = value
        return store


@dataclass
class Worker:
    model: WorkerModel = field(default_factory=lambda: WorkerModel(MFConfig(dim=4, seed=3), history_max=50, k=3))
    store: dict[str, dict] = field(default_factory=dict)  # the local table store (user -> state JSON)
    position: dict[int, int] = field(default_factory=dict)  # partition -> next offset to read
    written: list[tuple[int, str, str]] = field(default_factory=list)  # what it sent, for a late rewrite

    def assign(self, cluster: Cluster, partition: int) -> None:
        self.store.update(cluster.recover(partition))
        self.position[partition] = cluster.committed[partition]
        self.model.forget_users()  # partitions moved: rows reload from the store

    def batch(self, cluster: Cluster, partition: int, size: int, crash_at: str | None) -> None:
        """Read up to ``size`` events, learn them, write the changed states, commit; ``crash_at``
        stops it after "learn" (nothing written) or after "write" (not committed)."""
        start = self.position[partition]
        events = cluster.log[partition][start:start + size]
        if not events:
            return
        users, items = [u for u, _ in events], [i for _, i in events]
        states = {u: (UserState.from_json(self.store[u]) if u in self.store else None) for u in set(users)}
        offsets = np.arange(start, start + len(events))
        result = self.model.process(partition, users, items, np.ones(len(events), np.float32), offsets,
                                    offsets.astype(float), states)
        if crash_at == "learn":
            raise Crash
        for user, state in result.users.items():
            value = json.dumps(state.to_json())
            cluster.changelog[partition].append((user, value))
            self.written.append((partition, user, value))
            self.store[user] = json.loads(value)
        if crash_at == "write":
            raise Crash
        self.position[partition] = start + len(events)
        cluster.committed[partition] = start + len(events)


class Crash(Exception):
    """The worker process died at this point."""


def _restart(cluster: Cluster, w: int) -> None:
    """A crashed worker comes back empty and recovers the partitions it owns."""
    cluster.workers[w] = Worker()
    for p, owner in cluster.owner.items():
        if owner == w:
            cluster.workers[w].assign(cluster, p)


@settings(max_examples=150, deadline=None, database=None)
@given(st.data())
def test_every_event_is_applied_exactly_once_through_crashes_moves_and_late_writes(data):
    n_users = data.draw(st.integers(1, 6), label="users")
    log = {p: [(f"u{p}-{data.draw(st.integers(0, n_users - 1))}", f"i{data.draw(st.integers(0, 5))}")
               for _ in range(data.draw(st.integers(0, 25)))] for p in range(PARTITIONS)}
    cluster = Cluster(log)
    for p in range(PARTITIONS):
        cluster.owner[p] = p % WORKERS
    for w in range(WORKERS):
        cluster.workers[w] = Worker()
        for p in range(PARTITIONS):
            if cluster.owner[p] == w:
                cluster.workers[w].assign(cluster, p)
    for _ in range(data.draw(st.integers(0, 30), label="steps")):
        step = data.draw(st.sampled_from(["batch", "batch", "batch", "move", "late"]))
        p = data.draw(st.integers(0, PARTITIONS - 1))
        owner = cluster.owner[p]
        if step == "batch":
            crash_at = data.draw(st.sampled_from([None, None, None, "learn", "write"]))
            try:
                cluster.workers[owner].batch(cluster, p, data.draw(st.integers(1, 6)), crash_at)
            except Crash:
                _restart(cluster, owner)
        elif step == "move":
            to = data.draw(st.integers(0, WORKERS - 1))
            if to != owner:
                cluster.workers[owner].model.forget_users()  # hand_over: the old owner drops its rows
                cluster.owner[p] = to
                cluster.workers[to].assign(cluster, p)
        else:  # an evicted owner's late write: a state some worker wrote earlier lands again now
            pool = [rec for w in cluster.workers.values() for rec in w.written if rec[0] == p]
            if pool:
                part, user, value = data.draw(st.sampled_from(pool))
                cluster.changelog[part].append((user, value))
    for p in range(PARTITIONS):  # the owners drain what is left, without faults
        while cluster.committed[p] < len(log[p]):
            cluster.workers[cluster.owner[p]].batch(cluster, p, 6, None)
    for p in range(PARTITIONS):
        recovered = cluster.recover(p)
        expected = Counter(u for u, _ in log[p])
        assert {u: s["n"] for u, s in recovered.items()} == dict(expected)
        for user in expected:
            assert recovered[user]["o"] == max(o for o, (u, _) in enumerate(log[p]) if u == user)
