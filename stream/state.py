"""The worker's model state, and the bookkeeping that makes replays harmless. No I/O here (the
records' wire form is stream/wire.py).

Ownership (docs/architecture.md has the full argument):

* **Users** are sharded with the ``events`` partitions. A user's state (factors, AdaGrad
  accumulator, bounded history, and the offset of the last event applied to it) lives in a
  changelogged table, co-partitioned with ``events``.
* **Items** are shared. An item's vector is ``base + sum over partitions p of C[p][item]``:
  ``base`` is its deterministic random start (or, once its text arrives, the projection of its
  text embedding), and ``C[p][item]`` is everything partition p's events ever added to it. Each
  ``C[p][item]`` has exactly one writer (the owner of partition p), is written whole (so a
  compacted topic keeps only the latest), and carries the offset of p through which it is
  complete. Every worker reads all of them and so scores against the same item vectors. While an
  item is young, ``C[p][item]`` also carries the weighted sum of the vectors of partition p's users
  of it (``polyrec/consumers.py``), so every worker scores a young item from all its users.

Exactly-once effect: an event at offset ``o`` of partition ``p`` is applied to its user only
if ``o > user.offset``, and to its item only if ``o > C[p][item].offset``. User records are
written every batch; item contributions are coalesced (``take_item_records``: one record per item
touched since the last write) and written before Faust commits the offsets they cover
(stream/faust_patches.py: FlushOnCommit). Both are durable before their offsets are committed; if a crash keeps one
side and loses the other, the replay re-applies only the lost side. (The negatives an interrupted
batch pushed are re-drawn on replay: sampling is random either way.)
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from polyrec.consumers import Consumers, ConsumersConfig
from polyrec.cooccurrence import Cooccurrence, CooccurrenceConfig
from polyrec.explore import NO_FRESH, ExploreConfig, FitBars, Fresh
from polyrec.history import History
from polyrec.ids import IdIndex
from polyrec.mf import MFConfig, OnlineMF
from polyrec.recommend import Young, fresh_items, recommend
from stream.wire import (
    MAX_ABS_VALUE,
    NO_LANGUAGE,
    OTHER_LANGUAGE,
    TEXT_SOURCE,
    ItemRecord,
    UserState,
    sane,
)

FLOAT32_MAX = float(np.finfo(np.float32).max)  # an accumulator beyond it would be stored as inf
MAX_ITEMS = 200_000  # items a worker knows by default (POLYREC_MAX_ITEMS): fits the 2 GiB pod (operations.md)
MAX_LANGUAGES = 64  # language labels a worker keeps apart in its exposure metrics; later ones count as "other"


@dataclass(frozen=True)
class RecsJob:
    """A batch's top-K, captured from the model when the batch is learned. ``run`` touches no model
    state that can change shape, so it may run off the event loop while other batches are learned:
    the users' vectors and seen items are copies; the item arrays are the model's at capture (a
    catalogue that grows later gets new arrays). Rows written meanwhile (learning, replicated
    records) may be read torn, part old and part new: one batch's scores for those items are off,
    the next batch's are not. Copying the arrays would cost as much as the scoring."""

    users: list[str]
    user_factors: np.ndarray
    seen: tuple[np.ndarray, np.ndarray]  # (n, item row) of users[n]
    item_factors: np.ndarray
    item_bias: np.ndarray
    item_ids: IdIndex  # append-only: the rows above keep their ids
    latest_ts: list[float]  # of each user's latest event in the batch
    k: int
    memory: Cooccurrence  # read live (rows learned meanwhile may be read torn, as above)
    context: np.ndarray  # each user's last events' item rows, at capture
    young: Young  # young item rows and the factors they score with, at capture (copies)
    fresh: Fresh  # items with no events yet, as judged at capture; the fit bars it records are the top-K thread's
    explore: ExploreConfig | None  # None: fresh items are not explored

    def run(self) -> list[tuple[str, list[str], list[float], float]]:
        """(user, items, scores, latest event ts) per user, best first, seen items excluded."""
        top, scores = recommend(self.user_factors, self.item_factors, self.item_bias, self.seen, self.k,
                                self.memory, self.context, self.young, self.fresh, self.explore)
        keep = top >= 0
        return [(user, self.item_ids.id_at(idx[m]), sc[m].tolist(), ts)
                for user, idx, sc, m, ts in zip(self.users, top, scores, keep, self.latest_ts)]


@dataclass
class BatchResult:
    users: dict[str, UserState]  # states to persist (users whose state changed)
    recs: RecsJob  # their top-K, to run (off the event loop)
    applied_user: int
    applied_item: int
    duplicate: np.ndarray  # bool per event: already fully applied before (a replay)
    user_new: np.ndarray  # bool per event: new to its user's state (a replay after a crash may be new to items only)
    loss: float
    moved: list[str]  # users whose state came from another partition
    resized: list[str]  # users whose state had another dimension
    invalid: list[str]  # users whose state held a non-finite or out-of-range number

    @property
    def duplicates(self) -> int:
        return int(self.duplicate.sum())


class CatalogueFull(ValueError):
    """An item record of a new item, while the worker already knows ``max_items`` items."""


class _Contributions:
    """``C[p][item]`` of one partition for every item row, with the offset each is complete to.

    Dense (rows x (2 dim + 1) float32 with ``consumers``): memory is partitions x items x (2 dim + 1)
    x 4 bytes per worker. ``unsent`` marks the rows learned since their record was last handed out
    for writing.
    """

    def __init__(self, dim: int) -> None:
        self.vectors = np.zeros((64, dim + 1), np.float32)
        self.consumers = np.zeros((64, dim), np.float32)
        self.offsets = np.full(64, -1, np.int64)
        self.counts = np.zeros(64, np.int64)
        self.unsent = np.zeros(64, bool)

    def _fit(self, n: int) -> None:
        if n > len(self.offsets):
            size = max(n, 2 * len(self.offsets))
            self.vectors = np.pad(self.vectors, ((0, size - len(self.vectors)), (0, 0)))
            self.consumers = np.pad(self.consumers, ((0, size - len(self.consumers)), (0, 0)))
            self.offsets = np.pad(self.offsets, (0, size - len(self.offsets)), constant_values=-1)
            self.counts = np.pad(self.counts, (0, size - len(self.counts)))
            self.unsent = np.pad(self.unsent, (0, size - len(self.unsent)))

    def offset_of(self, rows: np.ndarray) -> np.ndarray:
        if len(rows):
            self._fit(int(rows.max()) + 1)
        return self.offsets[rows]


@dataclass
class WorkerModel:
    """A worker's view of the model: local users of its partitions, every item."""

    config: MFConfig
    cooccurrence: CooccurrenceConfig = field(default_factory=CooccurrenceConfig)
    young: ConsumersConfig = field(default_factory=ConsumersConfig)
    explore: ExploreConfig | None = None
    history_max: int = 500
    k: int = 10
    max_items: int = MAX_ITEMS  # past it new items are refused (:meth:`admit`): memory is bounded
    mf: OnlineMF = field(init=False)
    history: History = field(init=False)
    memory: Cooccurrence = field(init=False)
    consumers: Consumers = field(init=False)

    def __post_init__(self) -> None:
        self.mf = OnlineMF(self.config)
        self.history = History(self.history_max)
        self.memory = Cooccurrence(self.cooccurrence)
        self.consumers = Consumers(self.young, self.config.dim)
        self.fit_bars = FitBars()  # the users' fit bars (polyrec/explore.py), recorded by the top-K thread
        self._contrib: dict[int, _Contributions] = {}
        self._text_base: dict[int, np.ndarray] = {}
        self._text_offset: dict[int, int] = {}  # item row -> ``items`` offset of the text its base is from
        self.embeddings: dict[str, np.ndarray] = {}  # item id -> text embedding (text records)
        self.languages = [NO_LANGUAGE]  # language labels met in text records, by code (at most MAX_LANGUAGES)
        self._language = np.zeros(64, np.int16)  # item row -> code in ``languages`` (0: none)
        # user id -> (partition, offset) of the table state its local row holds
        self._loaded: dict[str, tuple[int | None, int]] = {}
        self._applied: dict[str, int] = {}  # user id -> events applied to them (``UserState.applied``)
        self.writer = uuid.uuid4().hex[:12]  # this worker's id on the item records it writes

    # -- items ---------------------------------------------------------------------------
    def item_vector(self, item_id: str) -> np.ndarray:
        """Factors followed by bias, as this worker currently sees them."""
        row = self.mf.add_items([item_id])[0]
        return np.r_[self.mf.item_factors[row], self.mf.item_bias[row]].astype(np.float32)

    def admit(self, item_ids: list[str]) -> np.ndarray:
        """Which events of ``item_ids`` (in order) may be learned: those of known items, and those of
        new ones while the worker knows fewer than ``max_items`` (the first new ids, each counted
        once). A flood of new item ids then costs a bounded amount of memory on every worker."""
        known = self.mf.items.rows(item_ids) >= 0
        if known.all():
            return known
        new = [item_ids[n] for n in np.flatnonzero(~known).tolist()]
        room = set(list(dict.fromkeys(new))[: max(self.max_items - len(self.mf.items), 0)])
        known[~known] = [x in room for x in new]
        return known

    def apply_item_record(self, rec: ItemRecord) -> bool:
        """Fold a replicated record into the local item vectors; False if it was stale. Raises
        :class:`CatalogueFull` for a new item past ``max_items``."""
        dim = self.config.dim
        if len(rec.vector) != dim + 1:
            raise ValueError(f"item record {rec.key!r} has dimension {len(rec.vector) - 1}, the model {dim}")
        if not sane(rec.vector):
            raise ValueError(f"item record {rec.key!r} holds a non-finite number or one beyond ±{MAX_ABS_VALUE:g}")
        if rec.embedding is not None and not np.isfinite(rec.embedding).all():
            raise ValueError(f"item record {rec.key!r} has a non-finite text embedding")
        # only the sum's direction is used, so any finite size will do (weights up to 1000 make it large)
        if rec.consumers is not None and not (rec.consumers.shape == (dim,) and np.isfinite(rec.consumers).all()):
            raise ValueError(f"item record {rec.key!r} has consumers of another dimension or a non-finite number")
        partition = None if rec.source == TEXT_SOURCE else _partition(rec.source)  # every check before the row
        if not self.admit([rec.item_id])[0]:
            raise CatalogueFull(f"item {rec.item_id!r} is new and this worker knows {len(self.mf.items):,} items "
                                f"(POLYREC_MAX_ITEMS={self.max_items:,})")
        row = int(self.mf.add_items([rec.item_id])[0])
        if partition is None:  # an item re-published twice: the later text wins, whatever lands last
            if rec.offset <= self._text_offset.get(row, -1):
                return False
            self._text_offset[row] = rec.offset
            old = self._text_base.get(row)
            if old is None:
                old = np.r_[self.mf.initial_factors([rec.item_id], salt=1)[0], 0.0]
            self._shift(row, rec.vector - old)
            self._text_base[row] = rec.vector.copy()
            self._set_language(row, rec.lang or NO_LANGUAGE)
            if rec.embedding is not None:
                self.embeddings[rec.item_id] = rec.embedding
            return True
        part = self._partition(partition)
        if rec.offset <= part.offset_of(np.array([row]))[0]:
            return False
        self._shift(row, rec.vector - part.vectors[row])
        added = np.zeros(dim, np.float32) if rec.consumers is None else rec.consumers - part.consumers[row]
        self.consumers.shift(row, added, rec.count - part.counts[row])
        part.vectors[row], part.offsets[row], part.counts[row] = rec.vector, rec.offset, rec.count
        if rec.consumers is not None:  # a record without them is of an item already established
            part.consumers[row] = rec.consumers
        return True

    def _set_language(self, row: int, label: str) -> None:
        if label not in self.languages:
            if len(self.languages) >= MAX_LANGUAGES:
                label = OTHER_LANGUAGE
            if label not in self.languages:
                self.languages.append(label)
        self._language_codes(row + 1)[row] = self.languages.index(label)

    def _language_codes(self, n: int) -> np.ndarray:
        """The language code of item rows below ``n`` (0: none), growing the array as items arrive."""
        if n > len(self._language):
            self._language = np.pad(self._language, (0, max(n, 2 * len(self._language)) - len(self._language)))
        return self._language[:n]

    def exposure(self, item_ids: list[str]) -> dict[tuple[str, str], int]:
        """Recommendation slots of ``item_ids`` by (language label, age): ``new`` for an item with fewer
        than ``young`` events (all partitions), ``established`` otherwise."""
        rows = self.mf.items.rows(item_ids)
        rows = rows[rows >= 0]
        if not len(rows):
            return {}
        n_items = len(self.mf.items)
        new = self.consumers.event_counts(n_items)[rows] < self.young.young
        codes, n = np.unique(self._language_codes(n_items)[rows].astype(np.int64) * 2 + new, return_counts=True)
        return {(self.languages[c // 2], "new" if c % 2 else "established"): int(k)
                for c, k in zip(codes.tolist(), n.tolist())}

    def new_items_by_language(self) -> dict[str, int]:
        """Items with fewer than ``young`` events, by language label (every label met, 0 included)."""
        n = len(self.mf.items)
        codes = self._language_codes(n)[self.consumers.event_counts(n) < self.young.young]
        counts = np.bincount(codes.astype(np.int64), minlength=len(self.languages))
        return dict(zip(self.languages, counts.tolist()))

    def text_vector(self, item_id: str, offset: int) -> np.ndarray | None:
        """The vector that the text record at ``items`` ``offset`` gave ``item_id``, if applied here."""
        row = self.mf.items.row(item_id)
        return self._text_base[row] if row >= 0 and self._text_offset.get(row) == offset else None

    def take_item_records(self, partitions: Iterable[int] | None = None) -> list[ItemRecord]:
        """The contributions of ``partitions`` (default: all) learned since they were last taken,
        one record per item with its whole ``C[p][item]``; they count as sent from now on."""
        records = []
        for p in self._contrib if partitions is None else partitions:
            part = self._contrib.get(p)
            if part is None:
                continue
            rows = np.flatnonzero(part.unsent)
            part.unsent[rows] = False
            source = f"p{p}"
            # from the young-th event of the partition on, the total is past it too: no reader uses the sum
            young = part.counts[rows] < self.young.young
            records += [ItemRecord(item, source, vec, int(o), count=int(n), writer=self.writer,
                                   consumers=c if y else None)
                        for item, vec, o, n, c, y in zip(
                self.mf.items.id_at(rows), part.vectors[rows], part.offsets[rows].tolist(), part.counts[rows],
                part.consumers[rows], young.tolist())]
        return records

    def keep_unsent(self, records: Iterable[ItemRecord]) -> None:
        """Put taken records back to pending (their write failed)."""
        for rec in records:
            self._partition(_partition(rec.source)).unsent[self.mf.items.row(rec.item_id)] = True

    def item_counts(self) -> np.ndarray:
        """Events seen per item row, summed over every partition's contribution."""
        total = np.zeros(len(self.mf.items), np.int64)
        for part in self._contrib.values():
            n = min(len(total), len(part.counts))
            total[:n] += part.counts[:n]
        return total

    def _partition(self, partition: int) -> _Contributions:
        part = self._contrib.get(partition)
        if part is None:
            part = self._contrib[partition] = _Contributions(self.config.dim)
        return part

    def knows(self, source: str, offset: int, item_id: str, writer: str = "") -> bool:
        """True if a record (source, offset) for ``item_id`` is already applied (an echo), or older.

        An older record from *another* writer landing after a newer one is a partition's evicted
        previous owner flushing late: compaction would keep it over the newer contribution, so the
        row is marked to be written again at this worker's next flush of that partition (only the
        partition's owner flushes it; whoever holds the newest offset ends up written last).
        """
        row = self.mf.items.row(item_id)  # called once per replicated record: scalar lookups only
        if source == TEXT_SOURCE:
            return offset <= self._text_offset.get(row, -1)
        part = self._contrib.get(_partition(source))
        if not 0 <= row < (0 if part is None else len(part.offsets)):
            return False
        mine = int(part.offsets[row])
        if offset < mine and writer and writer != self.writer:
            part.unsent[row] = True
        return offset <= mine

    def _shift(self, row: int, delta: np.ndarray) -> None:
        self.mf.shift_items(row, delta[:-1], delta[-1])

    # -- the co-occurrence memory ---------------------------------------------------------
    def learn_memory(self, users: list[str], items: list[str]) -> None:
        """Feed valid events of any partition, each exactly once and in offset order per partition,
        to the co-occurrence memory (stream/replica.py: ``EventReplica``); events of new items past
        ``max_items`` are left out, as the events agent dead-letters them."""
        admitted = self.admit(items)
        if not admitted.all():
            users = [u for u, ok in zip(users, admitted.tolist()) if ok]
            items = [i for i, ok in zip(items, admitted.tolist()) if ok]
        self.memory.learn(users, self.mf.add_items(items))

    def forget_memory(self, user_id: str) -> None:
        """Erase a user's last events from the co-occurrence memory (every worker, by the replica)."""
        self.memory.forget([user_id])

    # -- users ---------------------------------------------------------------------------
    def _load_users(self, partition: int, user_ids: list[str],
                    states: dict[str, UserState | None]) -> tuple[dict[str, int], list[str], list[str], list[str]]:
        """Put the table's states into the local rows; return each user's applied offset in
        ``partition``, the users whose state came from another partition, those whose state had
        another dimension and those whose state held an unusable number. A state from another
        partition (producers that partition one user's events differently) has no offset comparable
        with this one's: all its events here count as new. A state of another dimension
        (``POLYREC_DIM`` changed), or with a non-finite or out-of-range factor or accumulator (a
        corrupt record), keeps its history and offset, and its factors restart."""
        rows = self.mf.add_users(user_ids)
        offsets: dict[str, int] = {}
        moved: list[str] = []
        resized: list[str] = []
        invalid: list[str] = []
        for user, row in zip(user_ids, rows.tolist()):
            st = states.get(user)
            if st is None:
                self.mf.restart_users(np.array([row]))
                self.history.set(row, [])
                self._applied[user] = 0
                offsets[user] = -1
                continue
            elsewhere = st.partition is not None and st.partition != partition
            if elsewhere:
                moved.append(user)
            if self._loaded.get(user) != (st.partition, st.offset):  # the row does not hold this state yet
                if st.factors.shape != (self.config.dim,):
                    resized.append(user)
                    self.mf.restart_users(np.array([row]))
                elif not (sane(st.factors) and 0 <= st.accum <= FLOAT32_MAX):  # NaN fails both
                    invalid.append(user)
                    self.mf.restart_users(np.array([row]))
                else:
                    self.mf.set_users(row, st.factors, st.accum)
                self.history.set(row, self.mf.add_items(st.history).tolist())
                self._applied[user] = st.applied
                self._loaded[user] = (st.partition, st.offset)
            offsets[user] = -1 if elsewhere else st.offset
        return offsets, moved, resized, invalid

    def forget_users(self) -> None:
        """Drop every local user row; each user is reloaded from the table at its next event.

        Call when partitions move: while a worker owns a partition only it writes those users'
        states, so an unchanged offset means an unchanged state; after a hand-over another worker
        may have replayed the same offsets. Dropping the rows (not only the offsets) also frees the
        model's rows of users of partitions that moved away, which a long-lived worker would
        otherwise accumulate.
        """
        self._loaded.clear()
        self._applied.clear()
        self.mf.clear_users()
        self.history = History(self.history_max)
        self.fit_bars = FitBars()

    def forget_user(self, user_id: str) -> bool:
        """Erase a user of this worker's partitions from its memory: factors, accumulator, history,
        fit bar, the id itself. True if it held a row of theirs."""
        self._loaded.pop(user_id, None)
        self._applied.pop(user_id, None)
        row = int(self.mf.forget_users([user_id])[0])
        if row >= 0:
            self.history.set(row, [])
            self.fit_bars.forget(row)
        return row >= 0

    def user_state(self, user_id: str, offset: int, partition: int) -> UserState:
        row = self.mf.users.rows([user_id])[0]
        return UserState(self.mf.user_factors[row].copy(), float(self.mf.user_accum[row]),
                         self.mf.items.id_at(self.history.get(row)), offset, partition, self._applied.get(user_id, 0))

    # -- the batch step ------------------------------------------------------------------
    def process(self, partition: int, users: list[str], items: list[str], weights: np.ndarray,
                offsets: np.ndarray, ts_ms: np.ndarray, states: dict[str, UserState | None]) -> BatchResult:
        """Learn one micro-batch of one partition (events in offset order); its users' top-K is
        the result's ``recs`` job."""
        distinct = list(dict.fromkeys(users))
        applied_offset, moved, resized, invalid = self._load_users(partition, distinct, states)
        u = self.mf.add_users(users)
        i = self.mf.add_items(items)
        part = self._partition(partition)
        distinct_rows, inverse = np.unique(u, return_inverse=True)
        applied = np.array([applied_offset[x] for x in self.mf.users.id_at(distinct_rows)], np.int64)
        user_mask = offsets > applied[inverse]
        item_mask = offsets > part.offset_of(i)
        loss = 0.0
        if user_mask.any() or item_mask.any():
            upd = self.mf.learn_rows(u, i, np.asarray(weights, np.float32), user_mask, item_mask,
                                     self.consumers.with_events(len(self.mf.items)))
            loss = upd.loss
            last = int(offsets.max())
            rows = upd.item_rows
            part.offset_of(rows)
            part.vectors[rows] += np.column_stack([upd.item_delta, upd.bias_delta])
            part.offsets[rows] = last
            np.add.at(part.counts, i[item_mask], 1)
            w = np.asarray(weights, np.float32)[item_mask]
            young_rows, added = self.consumers.learn_rows(i[item_mask], self.mf.user_factors[u[item_mask]], w)
            part.consumers[young_rows] += added
            part.unsent[rows] = True
            self.history.add(u[user_mask], i[user_mask])
        # events of one user are in offset order: the last one is new iff any of them is
        last_offset = dict(zip(users, offsets.tolist()))
        new_users = Counter(x for x, m in zip(users, user_mask.tolist()) if m)
        for x, n in new_users.items():
            self._applied[x] = self._applied.get(x, 0) + n
        changed = {x: self.user_state(x, last_offset[x], partition) for x in new_users}
        self._loaded.update((x, (partition, st.offset)) for x, st in changed.items())
        rows = self.mf.users.rows(distinct)
        latest = {x: t for x, t in zip(users, ts_ms.tolist())}
        recs = RecsJob(distinct, self.mf.user_factors[rows], self.history.pairs(rows), self.mf.item_factors,
                       self.mf.item_bias, self.mf.items, [latest[x] for x in distinct], self.k, self.memory,
                       self.memory.recent(distinct), self.consumers.young_factors(self.mf.item_factors),
                       NO_FRESH if self.explore is None
                       else fresh_items(self.mf, self.consumers, self.fit_bars, rows),
                       self.explore)
        return BatchResult(changed, recs, int(user_mask.sum()), int(item_mask.sum()),
                           ~user_mask & ~item_mask, user_mask, loss, moved, resized, invalid)


def _partition(source: str) -> int:
    if not source.startswith("p") or not source[1:].isdigit():
        raise ValueError(f"unknown item-record source {source!r}")
    return int(source[1:])
