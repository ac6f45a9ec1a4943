"""Late writes of an evicted owner lose to newer states, wherever the users changelog is read back.

A worker whose revocation outlasts the rebalance timeout is dropped from the group while a batch
of its may still be writing: its user states can reach the changelog *after* the states the
partition's next owner wrote for the same users. Compaction and recovery keep the last record of a
key, so at the next recovery a user would silently lose what the new owner applied.

Every state carries the partition and the offset of the last event applied to it (``"p"``, ``"o"``:
stream/wire.py), and offsets only grow within a partition, so the newer state is the one with the
larger offset, whatever order the records landed in. Recovery (and a standby's replay) applies a
record only if its offset is not below the one already held for its user in the same partition; a
tombstone (an erasure) always applies. States from different partitions (producers that partition
a user's events differently) are not comparable: the later record wins, as before.

>>> held = {"u": {"p": 0, "o": 9}}
>>> records = [("u", {"p": 0, "o": 7}), ("u", {"p": 0, "o": 12}), ("u", {"p": 0, "o": 11}), ("v", {"p": 0, "o": 1})]
>>> kept, stale = newest_states(records, lambda r: r[0], lambda r: r[1], held.get)
>>> [r[1]["o"] for r in kept], stale
([12, 1], 2)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import faust

from stream import metrics

log = logging.getLogger(__name__)
R = TypeVar("R")


def _position(value: Any) -> tuple[Any, int] | None:
    """``(partition, offset)`` of a decoded state; None for a tombstone or a value without them."""
    if not isinstance(value, dict):
        return None
    offset = value.get("o")
    return (value.get("p"), offset) if isinstance(offset, int) and not isinstance(offset, bool) else None


def newest_states(records: Iterable[R], key_of: Callable[[R], Any], value_of: Callable[[R], Any],
                  held: Callable[[Any], Any]) -> tuple[list[R], int]:
    """The records to apply, in order, and how many were left out as older than what is held
    (``held(key)``: the decoded state already stored, or None) or than an earlier record."""
    newest: dict[Any, tuple[Any, int] | None] = {}
    kept: list[R] = []
    stale = 0
    for record in records:
        key, value = key_of(record), value_of(record)
        if key not in newest:
            newest[key] = _position(held(key))
        position, before = _position(value), newest[key]
        if value is not None and position and before and position[0] == before[0] and position[1] < before[1]:
            stale += 1
            continue
        newest[key] = position  # a tombstone forgets the user: whatever comes after applies
        kept.append(record)
    return kept, stale


def _decoded(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:  # not a state: the reader refuses it later (UserState.from_json)
        return {}


def fence_user_states(table: faust.Table) -> None:
    """Make ``table``'s changelog replays (recovery, standby) keep each user's newest state."""
    apply = table.apply_changelog_batch

    def apply_newest(batch: Iterable[faust.EventT]) -> None:
        kept, stale = newest_states(batch, lambda e: _decoded(e.message.key), lambda e: _decoded(e.message.value),
                                    table.data.get)
        if stale:
            metrics.STALE_USER_STATES.inc(stale)
            log.warning("users changelog: %d states older than the ones held were not applied (late writes of "
                        "an owner dropped from the group)", stale)
        apply(kept)

    table.apply_changelog_batch = apply_newest  # type: ignore[method-assign]
