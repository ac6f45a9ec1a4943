"""The item replica skips records it cannot use instead of crashing, and applies a large fetch
in chunks that let the event loop run; the hand-over barrier waits for it once per partition
after every rebalance (pure: no broker; tests/integration/test_replica.py runs it on one)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import numpy as np

from polyrec.mf import MFConfig
from stream.replica import APPLY_CHUNK, HandOverBarrier, ItemReplica
from stream.state import WorkerModel
from stream.wire import ItemRecord

CFG = MFConfig(dim=4, seed=0)


def record(value: bytes | None, offset: int = 0) -> SimpleNamespace:
    """The fields of an aiokafka ConsumerRecord that the replica reads."""
    return SimpleNamespace(topic="polyrec-item-factors", partition=0, offset=offset, headers=[], value=value)


def encoded(dim: int, fill: float = 0.5, item: str = "m1") -> bytes:
    rec = ItemRecord(item, "p0", np.full(dim + 1, fill, np.float32), offset=7, count=1)
    return json.dumps(rec.to_json()).encode()


def test_unusable_records_are_counted_invalid_and_the_rest_applied():
    model = WorkerModel(CFG, history_max=10, k=3)
    outcomes = []
    replica = ItemReplica(["unused:9092"], "polyrec-item-factors", model.apply_item_record, model.knows)
    for r in (record(None), record(b"{not json"), record(encoded(8)), record(encoded(4, float("nan"))),
              record(encoded(4)), record(encoded(4))):
        outcomes.append(replica._apply(r))
    assert outcomes == ["invalid"] * 4 + ["applied", "stale"]
    assert replica.invalid == 4
    assert model.knows("p0", 7, "m1")


def test_a_large_fetch_is_applied_in_chunks_between_which_other_tasks_run():
    model = WorkerModel(CFG, history_max=10, k=3)
    ticks = 0
    seen: list[int] = []  # the ticker's count when each record was applied
    replica = ItemReplica(["unused:9092"], "polyrec-item-factors", model.apply_item_record, model.knows,
                          on_applied=lambda outcome: seen.append(ticks))
    records = [record(encoded(4, item=f"m{i}"), offset=i) for i in range(3 * APPLY_CHUNK)]

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async def main() -> None:
        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        await replica.apply_all(records)
        task.cancel()

    asyncio.run(main())
    assert len(seen) == len(records) and all(model.knows("p0", 7, f"m{i}") for i in range(len(records)))
    assert len(set(seen)) == 3  # the ticker ran after each chunk, never inside one


def test_the_first_batch_of_each_partition_after_a_rebalance_waits_for_the_replica():
    waits: list[str] = []

    async def wait_caught_up() -> None:
        waits.append("wait")

    barrier = HandOverBarrier(wait_caught_up)

    def batches(*partitions: int) -> int:
        before = len(waits)
        for p in partitions:
            asyncio.run(barrier.before_batch(p))
        return len(waits) - before

    assert batches(0, 0, 1, 0, 1) == 2  # a worker's first batches: one wait per partition
    barrier.rebalancing()
    assert batches(1, 1, 2) == 2  # after a rebalance, each partition waits again, once
    assert batches(0) == 1  # a partition not seen since: it may have had another owner meanwhile
    assert batches(0, 1, 2) == 0


def test_wait_for_returns_once_the_replica_has_applied_the_offset():
    from aiokafka import TopicPartition

    from stream.replica import EventReplica

    replica = EventReplica(["127.0.0.1:1"], "events", learn=lambda users, items: None, forget=lambda user: None)
    tp = TopicPartition("events", 0)
    replica._positions = {tp: 10}  # offsets 0..9 applied

    async def scenario() -> list[bool]:
        now = await replica.wait_for(0, 9, timeout=0.05)  # held already
        behind = await replica.wait_for(0, 10, timeout=0.05)  # not yet: times out
        waiting = asyncio.create_task(replica.wait_for(0, 12, timeout=5))
        await asyncio.sleep(0)
        replica._positions[tp] = 13  # what run() does after applying a fetch, then it notifies
        async with replica._progress:
            replica._progress.notify_all()
        return [now, behind, await waiting]

    assert asyncio.run(scenario()) == [True, False, True]


def test_the_event_replica_forgets_a_user_in_the_place_of_the_request():
    from stream.replica import EventReplica

    calls: list = []
    replica = EventReplica(["127.0.0.1:1"], "events", learn=lambda users, items: calls.append(("learn", users)),
                           forget=lambda user: calls.append(("forget", user)))

    def event(user: str, **fields) -> SimpleNamespace:
        body = {"user_id": user, "item_id": "i1", "event": "view", "ts": 1} | fields
        return SimpleNamespace(key=user.encode(), value=json.dumps(body).encode())

    asyncio.run(replica.apply_all([event("a"), event("b"), event("a", event="forget", item_id=None), event("a")]))
    assert calls == [("learn", ["a", "b"]), ("forget", "a"), ("learn", ["a"])]


def test_a_new_items_record_past_the_item_cap_is_refused_and_a_known_items_still_applies():
    model = WorkerModel(CFG, history_max=10, k=3, max_items=2)
    replica = ItemReplica(["unused:9092"], "polyrec-item-factors", model.apply_item_record, model.knows)
    outcomes = [replica._apply(record(encoded(4, item=item), offset)) for offset, item in enumerate(["a", "b", "c"])]
    assert outcomes == ["applied", "applied", "refused"]
    assert len(model.mf.items) == 2 and model.mf.items.row("c") < 0
    again = ItemRecord("a", "p1", np.full(5, 0.25, np.float32), offset=9, count=1)
    assert replica._apply(record(json.dumps(again.to_json()).encode())) == "applied"
    assert replica.invalid == 0  # refused records are not errors: counted, not logged
