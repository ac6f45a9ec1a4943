"""True end offsets of partitions, read from a Fetch response.

Tansu 0.6.0 answers ListOffsets(latest) with "first offset of the last batch + 1" instead of the
log end, so ``end_offsets()`` can be short by a whole batch; Fetch responses carry the right
high watermark. Faust's table recovery reads the changelog up to ``end_offsets()`` and would stop
early, silently losing the newest state (the probe in docs/architecture.md shows it). The Fetch
answer is also right on Apache Kafka, so the recovery reads its end offsets from here,
unconditionally (``stream/faust_patches.py: install_recovery_fix``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition


async def fetch_end_offsets(bootstrap: list[str] | str, tps: Iterable[TopicPartition], timeout: float = 10.0,
                            options: Mapping[str, Any] | None = None) -> dict[TopicPartition, int]:
    """The high watermark of each partition, from a Fetch (one record read per partition);
    ``options``: the connection's security (``Settings.kafka_options``)."""
    tps = list(tps)
    if not tps:
        return {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                **(options or {}))
    await consumer.start()
    try:
        listed = await consumer.end_offsets(tps)  # a lower bound on Tansu, exact on Kafka
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, max((listed[tp] or 0) - 1, 0))
        result: dict[TopicPartition, int] = {}
        deadline = time.monotonic() + timeout
        while len(result) < len(tps):
            if time.monotonic() > deadline:
                missing = [f"{tp.topic}[{tp.partition}]" for tp in tps if tp not in result]
                raise TimeoutError(f"no fetch response for {', '.join(missing)} within {timeout:.0f} s")
            await consumer.getmany(*[tp for tp in tps if tp not in result], timeout_ms=200, max_records=1)
            for tp in tps:
                hw = consumer.highwater(tp)
                if hw is not None and tp not in result:
                    result[tp] = max(hw, listed[tp] or 0)
        return result
    finally:
        await consumer.stop()
