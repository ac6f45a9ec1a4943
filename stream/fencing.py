"""Late writes of an evicted owner lose to newer states, and to erasures, wherever the users
changelog is read back, and the partition's owner makes its newest record the last one again.

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
erasures it replayed (the tombstone deletes the user from the store, so the store cannot).

A record older than the state the store already holds is mostly a replay over a store that kept
its users (a partition coming back to a memory store, a standby catching up); one older than a
record *before it in the same replay batch*, or than an erasure, can only be a late write. Both are
left out; only the second kind is counted and logged.

Leaving a late record out of a replay is not enough: compaction keeps the *last* record of a key,
so a worker recovering after compaction ran would read the late record alone. So the partition's
owner makes its own newest record the last one again, wherever a late one landed after it
(``EventPipeline.write_again``): a user whose last replayed record was left out
(:meth:`UserStatesFence.take_late`), and a user whose record from another writer lands while this
worker owns the partition (:class:`LateStateWatch`, which tails the owned partitions from where the
worker took them over and tells a writer by the ``w`` header of every state and tombstone).

>>> held = {"u": {"p": 0, "o": 9}}
>>> records = [("u", {"p": 0, "o": 7}), ("u", {"p": 0, "o": 12}), ("u", {"p": 0, "o": 11}), ("v", {"p": 0, "o": 1})]
>>> behind = {}
>>> fenced = newest_states(records, lambda r: r[0], lambda r: r[1], held.get, behind=behind)
>>> [r[1]["o"] for r in fenced.kept], fenced.late, behind  # u's last record (o=11) is not its newest
([12, 1], 1, {'u': (0, 11)})
>>> erasures = {}
>>> records = [("v", None, (0, 20)), ("v", {"p": 0, "o": 15}, None)]  # o=15: learned before the erasure
>>> fenced = newest_states(records, lambda r: r[0], lambda r: r[1], {}.get, lambda r: r[2], erasures, behind)
>>> [r[1] for r in fenced.kept], fenced.late, erasures, behind["v"]
([None], 1, {'v': (0, 20)}, (0, 15))
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, NamedTuple, TypeVar

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream import metrics
from stream.offsets import probe_consumer

log = logging.getLogger(__name__)
R = TypeVar("R")


ERASED_HEADER = "polyrec-erased"  # on an erasure's tombstone: "partition:offset" of its request
WRITER_HEADER = "w"  # on every user state and tombstone a worker writes: its id (WorkerModel.writer)

Position = tuple[Any, int]


class Fenced(NamedTuple):
    """What a replay batch applies (``kept``, in order), and how many late writes it left out."""

    kept: list
    late: int


def writer_header(writer: str) -> tuple[str, bytes]:
    """The header of every user state and tombstone a worker writes: who wrote it."""
    return WRITER_HEADER, writer.encode()


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
                  erasures: dict[Any, Position] | None = None, behind: dict[Any, Position | None] | None = None
                  ) -> Fenced:
    """The records to apply, in order, leaving out those older than what is held (``held(key)``:
    the decoded state already stored, or None; else the key's position in ``erasures``) or than an
    earlier record of theirs. ``erased_at(record)``: a tombstone's erasure position (None: none).
    ``erasures`` (key -> position of the erasure that deleted it) is updated with the batch, and
    ``behind`` (key -> the position of its last record, where that record was left out: the topic's
    last record of the key is not its newest) likewise."""
    erasures = {} if erasures is None else erasures
    behind = {} if behind is None else behind
    newest: dict[Any, tuple[Position | None, bool, bool]] = {}  # key -> (position, from this batch, an erasure)
    kept: list[R] = []
    late = 0
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
            behind[key] = position
            continue
        if value is None and position:
            erasures[key] = position
        else:
            erasures.pop(key, None)
        newest[key] = (position, True, value is None and position is not None)
        behind.pop(key, None)  # its last record applied: it is the newest
        kept.append(record)
    return Fenced(kept, late)


def _decoded(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:  # not a state: the reader refuses it later (UserState.from_json)
        return {}


class UserStatesFence:
    """Makes ``table``'s changelog replays (recovery, standby) keep each user's newest state, and
    collects the users whose last record on a partition is a late one (:func:`newest_states`). Its
    keys are ``(changelog partition, user)``, in ``erasures`` too, which the pipeline shares to add
    the erasures it makes."""

    def __init__(self, table: faust.Table) -> None:
        self.erasures: dict[tuple[int, Any], Position] = {}
        self._behind: dict[tuple[int, Any], Position | None] = {}
        self._apply = table.apply_changelog_batch
        table.apply_changelog_batch = self._apply_newest  # type: ignore[method-assign]
        self._table = table

    def _apply_newest(self, batch: Iterable[faust.EventT]) -> None:
        data = self._table.data
        fenced = newest_states(batch, lambda e: (e.message.partition, _decoded(e.message.key)),
                               lambda e: _decoded(e.message.value), lambda key: data.get(key[1]),
                               lambda e: erasure_position(e.message.headers), self.erasures, self._behind)
        if fenced.late:
            metrics.LATE_USER_STATES.inc(fenced.late)
            log.warning("users changelog: %d states written after newer ones of their users (or after their "
                        "erasure) were not applied (late writes of an owner dropped from the group)", fenced.late)
        self._apply(fenced.kept)

    def take_late(self, partition: int) -> dict[Any, Position | None]:
        """The users of ``partition`` whose last record in a replay was left out (a late write), with
        its position; each is handed out once (to the partition's owner: ``EventPipeline.write_again``)."""
        if not self._behind:
            return {}
        keys = [key for key in self._behind if key[0] == partition]
        return {key[1]: self._behind.pop(key) for key in keys}


class LateStateWatch:
    """Tails the users changelog partitions this worker owns from where it took each over: a record
    another writer put there since (told by the ``w`` header, so this worker's own are skipped
    undecoded) is a late write, handed with its position (a state's, a tombstone's erasure's, None if
    neither) to ``on_late(partition, {user: position})``."""

    def __init__(self, bootstrap: list[str], topic: str, writer: str,
                 on_late: Callable[[int, dict[Any, Position | None]], Awaitable[None]],
                 options: Mapping[str, Any] | None = None, fetch_max_wait_ms: int = 500) -> None:
        """``options``: the connection's security (``Settings.kafka_options``); ``fetch_max_wait_ms``:
        how long the broker holds an empty fetch (not ``POLYREC_FETCH_MAX_WAIT_MS``: a late write
        waits that long at most, and a short wait costs the worker CPU on every idle fetch)."""
        self.bootstrap, self.topic, self.on_late = bootstrap, topic, on_late
        self.writer = writer.encode()
        self.options, self.fetch_max_wait_ms = dict(options or {}), fetch_max_wait_ms
        self._consumer: AIOKafkaConsumer | None = None
        self._started = asyncio.Event()
        self._owned: dict[int, int] = {}  # partition -> the next offset to read
        self._given_up: dict[int, int] = {}  # revoked since the last assignment -> where it was
        self._moved = False  # ``_owned`` changed since the consumer was last assigned
        self._noted: dict[int, dict[Any, Position | None]] = {}  # partition -> users to write again
        self._failing = False  # the last ``on_late`` failed (logged once until one succeeds)

    async def run(self) -> None:
        """Tail the owned partitions until cancelled, writing again after each fetch what is noted."""
        options = {**self.options, "fetch_max_wait_ms": self.fetch_max_wait_ms}
        async with probe_consumer(self.bootstrap, options) as consumer:
            self._consumer = consumer
            self._started.set()
            while True:
                if self._moved:  # between fetches: the consumer is only ever used from this task
                    self._moved = False
                    consumer.assign([TopicPartition(self.topic, p) for p in self._owned])
                    for p, offset in self._owned.items():
                        consumer.seek(TopicPartition(self.topic, p), offset)
                if not self._owned:
                    await asyncio.sleep(0.2)
                    continue
                batches = await consumer.getmany(timeout_ms=200, max_records=5000)
                for tp, records in batches.items():
                    if tp.partition not in self._owned or self._moved:  # given away (or moved) meanwhile
                        continue
                    self._owned[tp.partition] = records[-1].offset + 1
                    if late := self.late(records):
                        metrics.LATE_USER_STATES.inc(len(late))
                        self.note(tp.partition, late)
                await self._write_noted()

    def note(self, partition: int, late: dict[Any, Position | None]) -> None:
        """Users of ``partition`` with a late record (user -> its position) for ``on_late``, after the
        next fetch (also those a replay found: ``UserStatesFence.take_late``)."""
        self._noted.setdefault(partition, {}).update(late)

    async def _write_noted(self) -> None:
        """``on_late`` for the noted users of each partition still owned; kept for the next try if it
        fails (the broker is down: the states it holds again are also written at the next commit)."""
        for p in list(self._noted):
            if p not in self._owned:  # kept for a partition given up until the next assignment
                if p not in self._given_up:
                    del self._noted[p]
                continue
            late = self._noted.pop(p)
            try:
                await self.on_late(p, late)
                self._failing = False
            except Exception as exc:  # noqa: BLE001 - retried after the next fetch
                self._noted[p] = {**late, **self._noted.get(p, {})}
                if not self._failing:
                    log.warning("users changelog: cannot write again what late writes followed yet (%r); retrying",
                                exc)
                self._failing = True

    def late(self, records: Iterable[Any]) -> dict[Any, Position | None]:
        """Each user with a record from another writer among ``records``, and its last one's position."""
        late: dict[Any, Position | None] = {}
        for r in records:
            if (WRITER_HEADER, self.writer) in r.headers:
                continue
            user = _decoded(r.key)
            if not isinstance(user, str):  # not a user's record: nothing of this worker's to write again
                continue
            late[user] = erasure_position(r.headers) if r.value is None else _position(_decoded(r.value))
        return late

    async def take_over(self, partitions: Iterable[int], timeout: float = 10.0) -> None:
        """Own exactly ``partitions``: one this worker owned before the rebalance is read on from where
        it was (the evicted owner's late records land during the very rebalance its return causes, and
        Faust does not recover a partition a worker keeps), a new one from its end now (the recovery
        reads what came before)."""
        await asyncio.wait_for(self._started.wait(), timeout)
        assert self._consumer is not None
        partitions = list(partitions)
        kept = {p: self._given_up[p] for p in partitions if p in self._given_up}
        new = [TopicPartition(self.topic, p) for p in partitions if p not in kept]
        ends = await self._consumer.end_offsets(new) if new else {}  # a lower bound on Tansu: read more, miss none
        self._owned = kept | {tp.partition: ends[tp] or 0 for tp in new}
        self._given_up = {}
        self._moved = True

    def give_up(self, partitions: Iterable[int]) -> None:
        """Stop watching ``partitions`` (revoked), remembering where, until the next :meth:`take_over`."""
        for p in partitions:
            if p in self._owned:
                self._given_up[p] = self._owned.pop(p)
        self._moved = True
