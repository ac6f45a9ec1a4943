"""Item contributions are durable before Faust commits the offsets they cover.

Faust commits a partition's acknowledged offsets every ``POLYREC_COMMIT_INTERVAL_S`` (and every
``broker_commit_every`` records, on stop, and when a task fails), always through one path: it
first publishes the messages "attached" to those offsets (``Attachments.publish_for_tp_offset``),
then commits. :class:`FlushOnCommit` first writes the partition's pending item contributions
(``EventPipeline.flush_items``) and waits for the broker's acknowledgements itself (Faust's own
wait does not raise when a send fails); if that raises, the commit does not happen. Every
acknowledged event has been learned, so every contribution an offset covers is in the flush.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import faust
from faust.app._attached import Attachments
from faust.types import TP

Flush = Callable[[Iterable[int]], Awaitable[None]]  # write these partitions' contributions, acknowledged


class FlushOnCommit(Attachments):
    """Faust's attachments, plus ``flush`` of the ``topic`` partition about to be committed."""

    def __init__(self, app: faust.App, topic: str, flush: Flush) -> None:
        super().__init__(app)
        self.topic, self.flush = topic, flush

    async def publish_for_tp_offset(self, tp: TP, offset: int) -> list[Awaitable[Any]]:
        if tp.topic == self.topic:
            await self.flush([tp.partition])
        return await super().publish_for_tp_offset(tp, offset)


def install(app: faust.App, topic: str, flush: Flush) -> None:
    """Route every offset commit of ``topic`` through ``flush`` first."""
    app._attachments = FlushOnCommit(app, topic, flush)
