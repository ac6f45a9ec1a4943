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

A record older than the state the store already holds is mostly a replay over a store that kept
its users (a partition coming back to a memory store, a standby catching up); one older than a
record *before it in the same replay batch* can only be a late write. Both are left out; only the
second kind is counted and logged (a late write whose newer state came in an earlier batch is
left out silently).

>>> held = {"u": {"p": 0, "o": 9}}
>>> records = [("u", {"p": 0, "o": 7}), ("u", {"p": 0, "o": 12}), ("u", {"p": 0, "o": 11}), ("v", {"p": 0, "o": 1})]
>>> kept, late = newest_states(records, lambda r: r[0], lambda r: r[1], held.get)
>>> [r[1]["o"] for r in kept], late
([12, 1], 1)
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
    """The records to apply, in order, leaving out those older than what is held (``held(key)``:
    the decoded state already stored, or None) or than an earlier record of theirs; and how many
    were left out for the second reason (late writes)."""
    newest: dict[Any, tuple[tuple[Any, int] | None, bool]] = {}  # key -> (position, from this batch)
    kept: list[R] = []
    late = 0
    for record in records:
        key, value = key_of(record), value_of(record)
        if key not in newest:
            newest[key] = (_position(held(key)), False)
        position, (before, in_batch) = _position(value), newest[key]
        if value is not None and position and before and position[0] == before[0] and position[1] < before[1]:
            late += in_batch
            continue
        newest[key] = (position, True)  # a tombstone forgets the user: whatever comes after applies
        kept.append(record)
    return kept, late


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
        kept, late = newest_states(batch, lambda e: _decoded(e.message.key), lambda e: _decoded(e.message.value),
                                   table.data.get)
        if late:
            metrics.LATE_USER_STATES.inc(late)
            log.warning("users changelog: %d states written after newer ones of their users were not applied "
                        "(late writes of an owner dropped from the group)", late)
        apply(kept)

    table.apply_changelog_batch = apply_newest  # type: ignore[method-assign]
