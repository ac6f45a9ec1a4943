"""The per-partition buffers between Faust's fetch loop and the worker's learning tasks."""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass

import pytest
from faust.types import TP
from mode.utils.queues import FlowControlEvent

from stream.batches import Delivered, PartitionBuffers

A, B = TP("events", 0), TP("events", 1)


@dataclass
class Msg:
    tp: TP
    offset: int
    value: bytes = b"{}"


def fill(buffers: PartitionBuffers, tp: TP, offsets: range) -> list:
    return [buffers.put(Msg(tp, o)) for o in offsets]


def test_take_returns_a_partitions_oldest_records_up_to_n_and_leaves_the_rest():
    buffers = PartitionBuffers(limit=100)
    fill(buffers, A, range(5))
    fill(buffers, B, range(10, 12))
    assert [m.offset for m in buffers.take(A, 3)] == [0, 1, 2]
    assert [m.offset for m in buffers.take(A, 3)] == [3, 4]
    assert buffers.take(A, 3) == []
    assert [m.offset for m in buffers.take(B, 5)] == [10, 11]


def test_a_full_partition_makes_the_fetch_loop_wait_until_a_batch_is_taken():
    async def scenario() -> None:
        buffers = PartitionBuffers(limit=3)
        waits = fill(buffers, A, range(3))
        assert waits[:2] == [None, None] and waits[2] is not None  # the third filled it
        assert buffers.put(Msg(B, 0)) is None  # another partition has its own room
        full = asyncio.ensure_future(waits[2])
        await asyncio.sleep(0.01)
        assert not full.done()
        buffers.take(A, 1)
        await asyncio.wait_for(full, 1)

    asyncio.run(scenario())


def test_wait_returns_once_the_partition_holds_a_record():
    async def scenario() -> None:
        buffers = PartitionBuffers(limit=10)
        waiting = asyncio.ensure_future(buffers.wait(A))
        buffers.put(Msg(B, 0))
        await asyncio.sleep(0.01)
        assert not waiting.done()  # B's record is not A's
        buffers.put(Msg(A, 7))
        await asyncio.wait_for(waiting, 1)
        buffers.take(A, 10)
        again = asyncio.ensure_future(buffers.wait(A))
        await asyncio.sleep(0.01)
        assert not again.done()  # emptied: waits for the next one
        again.cancel()

    asyncio.run(scenario())


def test_drop_forgets_a_partition_and_frees_a_waiting_fetch_loop():
    async def scenario() -> None:
        buffers = PartitionBuffers(limit=2)
        full = fill(buffers, A, range(2))[1]
        fill(buffers, B, range(1))
        buffers.drop(A)
        await asyncio.wait_for(full, 1)
        assert buffers.take(A, 10) == [] and len(buffers.take(B, 10)) == 1

    asyncio.run(scenario())


def test_faust_flow_control_clear_empties_every_partition():
    """What a rebalance or a stop does (``app.flow_control.clear()``, with the buffers managed)."""
    async def scenario() -> None:
        flow_control = FlowControlEvent()
        buffers = PartitionBuffers(limit=10)
        flow_control.manage_queue(buffers)
        fill(buffers, A, range(3))
        fill(buffers, B, range(3))
        flow_control.clear()
        assert buffers.take(A, 10) == [] and buffers.take(B, 10) == []
        fill(buffers, A, range(3, 4))
        flow_control.resume()  # resuming clears managed queues too
        assert buffers.take(A, 10) == []

    asyncio.run(scenario())


def test_a_clear_wakes_each_partition_s_learning_task_with_the_first_offset_it_dropped():
    """The consumer does not always fetch dropped records again (after a recovery it seeks only
    committed partitions, and may have read on already): each partition's learning task is woken
    to read it again, even when nothing new arrives."""
    async def scenario() -> None:
        flow_control = FlowControlEvent()
        buffers = PartitionBuffers(limit=10)
        flow_control.manage_queue(buffers)
        fill(buffers, A, range(5, 8))
        fill(buffers, B, range(0, 2))
        buffers.take(B, 10)  # B: nothing buffered, nothing to read again
        flow_control.clear()
        fill(buffers, A, range(8, 9))
        flow_control.resume()  # a second clear: A's first dropped offset stays the oldest
        await asyncio.wait_for(buffers.wait(A), 1)
        assert buffers.reread(A) == 5 and buffers.reread(A) is None
        assert buffers.reread(B) is None
        waiting = asyncio.ensure_future(buffers.wait(A))
        await asyncio.sleep(0.01)
        assert not waiting.done()  # read again: it waits for records as before
        buffers.put(Msg(A, 5))
        await asyncio.wait_for(waiting, 1)

    asyncio.run(scenario())


@pytest.mark.parametrize("value", [b'{"user_id": "u"}', None])
def test_delivered_is_what_the_pipeline_reads_of_an_event(value):
    message = Msg(A, 3, value)
    event = Delivered(message)
    assert event.message is message and event.value == value
    assert weakref.ref(event)() is event  # Faust's current event is a weak reference
