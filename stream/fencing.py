"""Late writes of an evicted owner lose to newer states, and to erasures, wherever the users
changelog is read back.

A worker whose revocation outlasts the rebalance timeout is dropped from the group while a batch
of its may still be writing: its user states can reach the changelog *after* the states the
partition's next owner wrote for the same users. Compaction and recovery keep the last record of a
key, so at the next recovery a user would silently lose what the new owner applied.

Every state carries the partition and the offset of the last event applied to it (``"p"``, ``"o"``:
stream/wire.py), and offsets only grow within a partition, so the newer state is the one with the
larger offset, whatever order the records landed in. Recovery (and a standby's replay) applies a
record only if its offset is not below the one already held for its user in the same partition.
States from different partitions (producers that partition a user's events differently) are not
comparable: the later record wins, as before.

An erasure's tombstone carries the position of its request in a header (``polyrec-erased``:
"partition:offset"), and counts as a record at that position: a state from before the erasure that
lands after its tombstone (the late write of an evicted owner) is left out, so the erased user does
not come back at the next recovery; their events after the request apply. The fence remembers the
erasures it replayed (the tombstone deletes the user from the store, so the store cannot), and
reports the users whose late state followed their erasure (``take_erased_again``): the partition's
owner then writes their tombstone again, so that the topic's last record of them is a tombstone
again before compaction keeps only the late state. A tombstone without the header (written before
it existed) always applies.

A record older than the state the store already holds is mostly a replay over a store that kept
its users (a partition coming back to a memory store, a standby catching up); one older than a
record *before it in the same replay batch*, or than an erasure, can only be a late write. Both are
left out; only the second kind is counted and logged.

>>> held = {"u": {"p": 0, "o": 9}}
>>> records = [("u", {"p": 0, "o": 7}), ("u", {"p": 0, "o": 12}), ("u", {"p": 0, "o": 11}), ("v", {"p": 0, "o": 1})]
>>> fenced = newest_states(records, lambda r: r[0], lambda r: r[1], held.get)
>>> [r[1]["o"] for r in fenced.kept], fenced.late
([12, 1], 1)
>>> erasures = {}
>>> records = [("v", None, (0, 20)), ("v", {"p": 0, "o": 15}, None)]  # o=15: learned before the erasure
>>> fenced = newest_states(records, lambda r: r[0], lambda r: r[1], {}.get, lambda r: r[2], erasures)
>>> [r[1] for r in fenced.kept], fenced.late, fenced.erased_again, erasures
([None], 1, {'v'}, {'v': (0, 20)})
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, TypeVar

import faust

from stream import metrics

log = logging.getLogger(__name__)
R = TypeVar("R")


ERASED_HEADER = "polyrec-erased"  # on an erasure's tombstone: "partition:offset" of its request

Position = tuple[Any, int]


class Fenced(NamedTuple):
    """What a replay batch applies (``kept``, in order), how many late writes it left out, and the
    users whose late state came after their erasure (their tombstone is to be written again)."""

    kept: list
    late: int
    erased_again: set


def erasure_header(partition: int, offset: int) -> tuple[str, bytes]:
    """The header of an erasure's tombstone: where its request is on the events topic."""
    return ERASED_HEADER, f"{partition}:{offset}".encode()


def erasure_position(headers: Any) -> Position | None:
    """``(partition, offset)`` from a record's headers (a list of pairs or a mapping); None if absent
    or not in the header's form (bytes or text ``"p:o"``)."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    for name, value in pairs:
        if name == ERASED_HEADER:
            try:
                partition, offset = (value if isinstance(value, str) else bytes(value).decode()).split(":")
                return int(partition), int(offset)
            except (TypeError, ValueError):  # None, a number, bad UTF-8, not "p:o"
                return None
    return None


def _position(value: Any) -> Position | None:
    """``(partition, offset)`` of a decoded state; None for a tombstone or a value without them."""
    if not isinstance(value, dict):
        return None
    offset = value.get("o")
    return (value.get("p"), offset) if isinstance(offset, int) and not isinstance(offset, bool) else None


def newest_states(records: Iterable[R], key_of: Callable[[R], Any], value_of: Callable[[R], Any],
                  held: Callable[[Any], Any], erased_at: Callable[[R], Position | None] = lambda r: None,
                  erasures: dict[Any, Position] | None = None) -> Fenced:
    """The records to apply, in order, leaving out those older than what is held (``held(key)``:
    the decoded state already stored, or None; else the key's position in ``erasures``) or than an
    earlier record of theirs. ``erased_at(record)``: a tombstone's erasure position (None: none).
    ``erasures`` (key -> position of the erasure that deleted it) is updated with the batch."""
    erasures = {} if erasures is None else erasures
    newest: dict[Any, tuple[Position | None, bool, bool]] = {}  # key -> (position, from this batch, an erasure)
    kept: list[R] = []
    late = 0
    again: set = set()
    for record in records:
        key, value = key_of(record), value_of(record)
        if key not in newest:
            stored = _position(held(key))
            newest[key] = (stored, False, False) if stored else (erasures.get(key), False, key in erasures)
        before, in_batch, erased = newest[key]
        position = _position(value) if value is not None else erased_at(record)
        if position and before and position[0] == before[0] and position[1] < before[1]:
            if value is not None and (in_batch or erased):
                late += 1
                if erased:
                    again.add(key)
            continue
        if value is None and position:
            erasures[key] = position
        else:
            erasures.pop(key, None)
        newest[key] = (position, True, value is None and position is not None)
        again.discard(key)  # its last record applied: nothing to write again
        kept.append(record)
    return Fenced(kept, late, again)


def _decoded(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:  # not a state: the reader refuses it later (UserState.from_json)
        return {}


class UserStatesFence:
    """Makes ``table``'s changelog replays (recovery, standby) keep each user's newest state, and
    collects, per partition, the erased users a late state followed (:func:`newest_states`)."""

    def __init__(self, table: faust.Table) -> None:
        self.erasures: dict[Any, Position] = {}
        self._again: dict[int, set] = {}
        self._apply = table.apply_changelog_batch
        table.apply_changelog_batch = self._apply_newest  # type: ignore[method-assign]
        self._table = table

    def _apply_newest(self, batch: Iterable[faust.EventT]) -> None:
        batch = list(batch)
        fenced = newest_states(batch, lambda e: _decoded(e.message.key), lambda e: _decoded(e.message.value),
                               self._table.data.get, lambda e: erasure_position(e.message.headers), self.erasures)
        if fenced.late:
            metrics.LATE_USER_STATES.inc(fenced.late)
            log.warning("users changelog: %d states written after newer ones of their users (or after their "
                        "erasure) were not applied (late writes of an owner dropped from the group)", fenced.late)
        for e in batch if fenced.erased_again else ():  # rare: only then decode the keys again
            user = _decoded(e.message.key)
            if user in fenced.erased_again:
                self._again.setdefault(e.message.partition, set()).add(user)
        self._apply(fenced.kept)

    def take_erased_again(self, partition: int) -> dict[Any, Position]:
        """The users of ``partition`` whose late state followed their erasure in a replay, with their
        erasure's position; each is handed out once."""
        users = self._again.pop(partition, set())
        return {u: self.erasures[u] for u in users if u in self.erasures}
