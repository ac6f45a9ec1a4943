"""Sending to Kafka through the worker's producer: the ``Produce`` callable, groups of sends
acknowledged together, and the item-factor topic's records."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from stream.records import compact_json
from stream.wire import ItemRecord

SEND_CHUNK = 100  # records encoded and queued between two yields to the event loop

# (topic, key, value, partition, headers) -> a future that resolves on the broker's ack.
# In the worker this is Faust's own producer (``app.producer.send``), lifecycle and all; the
# Topic/Channel layer above it costs ~4x more per record and buffers changelog writes.
Produce = Callable[[str, bytes | None, bytes | None, int | None, list | None], Awaitable[Awaitable[Any]]]


def encode_json(obj: Any) -> bytes:
    return compact_json(obj).encode()


async def delivered(sends: Sequence[Awaitable[Awaitable[Any]]], *, return_exceptions: bool = False) -> list[Any]:
    """Await a group of sends (queued in order), then all their broker acknowledgements (returned,
    in order). Yields to the event loop every ``SEND_CHUNK`` sends, so that a large group is no stall.
    With ``return_exceptions``, a send that could not be queued or was not acknowledged gives its
    exception in its place instead of raising."""
    futures = []
    for n, send in enumerate(sends, 1):
        try:
            futures.append(await send)
        except Exception as error:
            if not return_exceptions:
                raise
            futures.append(_failed(error))
        if n % SEND_CHUNK == 0:
            await asyncio.sleep(0)
    return await asyncio.gather(*futures, return_exceptions=return_exceptions)


def _failed(error: BaseException) -> asyncio.Future:
    future = asyncio.get_running_loop().create_future()
    future.set_exception(error)
    return future


async def send_item_record(produce: Produce, topic: str, rec: ItemRecord) -> Awaitable[Any]:
    """Queue one record of the item-factor topic (key, JSON value, skip-without-decoding headers);
    return its acknowledgement. Encoding happens when awaited, inside ``delivered``'s chunks."""
    return await produce(topic, rec.key.encode(), encode_json(rec.to_json()), None, rec.headers())
