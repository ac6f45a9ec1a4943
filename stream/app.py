"""The Faust application of one worker process: :class:`Worker`.

Reading order: ``Worker.__init__`` builds the parts (the model, the users table, the replicas, the
pipelines) and ``_register`` hands its methods to Faust. Faust's fetch loop appends the ``events``
and ``items`` records to per-partition buffers (:mod:`stream.batches`); one task per assigned
partition waits for the replicas to catch up, then feeds what its partition buffered, as
micro-batches, to :class:`stream.pipeline.EventPipeline` or :class:`stream.items.ItemPipeline`
(the "items agent": new items' texts encoded), each in offset order (``InOrder``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict

import faust
from aiokafka import TopicPartition
from faust.exceptions import ConsumerNotStarted
from faust.types import TP

from encoders import artifacts
from encoders.encoder import TextEncoder
from polyrec import __version__
from polyrec.consumers import ConsumersConfig
from polyrec.cooccurrence import CooccurrenceConfig
from polyrec.mf import MFConfig
from stream import metrics
from stream.batches import Delivered, PartitionBuffers
from stream.dead_letters import Stalls, dead_lettered_since, process_or_dead_letter
from stream.failpoints import Failpoints
from stream.faust_patches import (
    add_log_hole,
    current_partition,
    install_batch_delivery,
    install_fetch_max_wait,
    install_flush_on_commit,
    install_recovery_fix,
    seek,
)
from stream.faust_process import drop_monitor
from stream.fencing import LateStateWatch, UserStatesFence
from stream.items import ItemPipeline
from stream.offsets import InOrder, fetch_start_offsets
from stream.pauses import Pauses
from stream.pipeline import HELD_RETRY_S, EventPipeline
from stream.records import REASONS
from stream.recs import RecsPublisher, redis_client
from stream.replica import OUTCOMES as REPLICA_OUTCOMES
from stream.replica import EventReplica, HandOverBarrier, ItemReplica
from stream.settings import Settings
from stream.state import WorkerModel
from stream.topics import COMPACTED, USERS_TABLE, item_factors_topic
from stream.wire import UserState

log = logging.getLogger(__name__)

STUCK_S = 60.0  # an events partition with events read but none learned for this long is read again


NEVER_BY_COUNT = 2**62  # Faust's broker_commit_every: offsets are committed by time alone
BUFFERED_BATCHES = 4  # a partition's buffer holds this many POLYREC_BATCH_MAX batches at most


def worker_model(s: Settings) -> WorkerModel:
    """The worker's model as the settings describe it, empty."""
    return WorkerModel(s.mf_config(), s.cooccurrence_config(), s.consumers_config(), s.explore_config(),
                       history_max=s.history_max, k=s.top_k, max_items=s.max_items)


def replicas(s: Settings, model: WorkerModel) -> tuple[ItemReplica, EventReplica]:
    """The item replica (every item-factor record into ``model``) and the events replica (every event
    into its co-occurrence memory) a worker runs beside its agents."""
    options = s.kafka_options()
    return (ItemReplica(s.broker_list, item_factors_topic(s), model.apply_item_record, model.knows,
                        lambda outcome: metrics.ITEM_RECORDS.labels(outcome).inc(),
                        fetch_max_wait_ms=s.fetch_max_wait_ms, options=options),
            EventReplica(s.broker_list, s.events_topic, model.learn_memory, model.forget_memory,
                         metrics.MEMORY_EVENTS.inc, fetch_max_wait_ms=s.fetch_max_wait_ms, options=options))


def model_version(config: MFConfig, cooccurrence: CooccurrenceConfig, consumers: ConsumersConfig) -> str:
    parts = [asdict(config), asdict(cooccurrence), asdict(consumers)]
    digest = hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return f"polyrec-{__version__}-{config.loss}-d{config.dim}-{digest[:8]}"


ITEMS_AGENT = "the items agent (POLYREC_ITEMS_AGENT=0 turns it off)"


def check_encoder(settings: Settings) -> None:
    """Raise a clear error now if the item-text encoder, or what it needs, is missing."""
    artifacts.check_encoder(settings.encoder_path, ITEMS_AGENT)


def open_encoder(settings: Settings) -> TextEncoder:
    """The item-text encoder ``POLYREC_ENCODER`` names (:func:`encoders.artifacts.open_encoder`)."""
    return artifacts.open_encoder(settings.encoder_path, provider=settings.encoder_provider,
                                  threads=settings.encoder_threads, needed_by=ITEMS_AGENT)


class Worker:
    """One worker process: a Faust app configured from ``settings``, its model, pipelines and replicas.

    The methods below are what Faust runs (agents, tasks, the lag timer, rebalance signals) and what
    the web pages answer; ``_register`` hands them over, and nothing else touches Faust's decorators.
    """

    def __init__(self, settings: Settings) -> None:
        install_recovery_fix()
        install_fetch_max_wait(settings.fetch_max_wait_ms)
        self.settings = s = settings
        self.app = faust.App(
            s.app_id,
            # polyrec's settings are the worker's only configuration: Faust would also read variables
            # of its own (WEB_PORT, BROKER_COMMIT_INTERVAL, APP_WEB_TABLES_ENABLED, ...), which a
            # Kubernetes Service named "web" sets (WEB_PORT=tcp://...: the worker would not start)
            env={},
            broker=[f"kafka://{h}" for h in s.broker_list],
            store=s.store,
            datadir=s.data_dir,
            topic_partitions=s.partitions,
            topic_replication_factor=s.replication,
            broker_session_timeout=s.session_timeout_s,
            broker_heartbeat_interval=s.heartbeat_interval_s,
            broker_rebalance_timeout=s.rebalance_timeout_s,
            producer_acks=-1,
            consumer_auto_offset_reset="earliest",  # a partition never committed: from the log's start (on_assigned)
            broker_commit_interval=s.commit_interval_s,
            # and only then: Faust would also commit every 10,000 acknowledged events, which under load
            # is more often than the interval, and each commit writes the item contributions
            broker_commit_every=NEVER_BY_COUNT,
            table_standby_replicas=s.standby_replicas,
            web_enabled=s.web_port != 0,
            web_port=s.web_port or 6066,
            web_bind=s.web_bind,
            web_router_enabled=False,  # Faust's /router and /table/{table}/{key} views: user state without auth
            web_tables_enabled=False,
            key_serializer="raw",
            value_serializer="raw",
            broker_credentials=s.kafka_credentials(),
        )
        self.model = m = worker_model(s)
        self.version = model_version(m.config, m.cooccurrence, m.young)
        metrics.MODEL.info({"version": self.version, **{k: str(v) for k, v in asdict(m.config).items()},
                            **{f"cooccurrence_{k}": str(v) for k, v in asdict(m.cooccurrence).items()},
                            **{f"young_{k}": str(v) for k, v in asdict(m.young).items()},
                            "explore_fit": str(s.explore_fit), "explore_reach": str(s.explore_reach),
                            "explore_share": str(s.explore_share)})
        _export_zero_series(s)
        self.events = self.app.topic(s.events_topic, partitions=s.partitions)
        self.users = self.app.Table(USERS_TABLE, default=None, partitions=s.partitions,
                                    schema=faust.Schema(key_serializer="json", value_serializer="json"),
                                    extra_topic_configs={"min.compaction.lag.ms": COMPACTED["min.compaction.lag.ms"]})
        self.fence = UserStatesFence(self.users)
        self.replica, self.event_replica = replicas(s, self.model)
        self.barrier = HandOverBarrier(self.replica.wait_caught_up)
        self.redis = redis_client(s.redis_url, s.redis_timeout_s)
        self.failpoints = Failpoints(s.failpoint)
        self.pipeline = EventPipeline(
            self.model, s.weights, self.produce, self.users.data.get, self._store_user, self._user_persisted,
            {"items": item_factors_topic(s), "users": self.users.changelog_topic.get_topic_name(),
             "dlq": f"{s.events_topic}.dlq"},
            RecsPublisher(self.redis, s.redis_prefix, s.recs_ttl_s, s.stream_maxlen), self.version,
            barrier=self.barrier.before_batch, memory_ready=self.event_replica.wait_for,
            failpoints=self.failpoints, erasures=self.fence.erasures,
        )
        self.late_states = LateStateWatch(s.broker_list, self.users.changelog_topic.get_topic_name(),
                                          self.model.writer, self.pipeline.write_again, s.kafka_options())
        self.item_pipeline = None if not s.items_agent else ItemPipeline(
            self.model, open_encoder(s), self.produce, {"items": item_factors_topic(s), "dlq": f"{s.items_topic}.dlq"},
            s.projection_alpha, s.projection_min_count, s.projection_refit_s)
        # the topics learned in batches: each one's pipeline, and the most records of a batch
        self.batched: dict[str, tuple[EventPipeline | ItemPipeline, int]] = {
            s.events_topic: (self.pipeline, s.batch_max)}
        if self.item_pipeline is not None:
            self.batched[s.items_topic] = (self.item_pipeline, s.items_batch_max)
        self.stalls = Stalls()  # batches waiting for the broker or Redis to come back
        # a pause longer than the session (less a heartbeat) may have cost the group membership
        self.pauses = Pauses(max(s.session_timeout_s - s.heartbeat_interval_s, 1.0), 2 * s.heartbeat_interval_s + 1.0)
        self.in_order = InOrder()  # each assigned partition's next offset to learn
        self.buffers = PartitionBuffers(BUFFERED_BATCHES * s.batch_max)  # fetched records, not yet taken
        self._learning: dict[TP, asyncio.Task] = {}  # assigned partition (of a batched topic) -> its task
        self._progress: dict[TP, float] = {}  # assigned events partition -> when it last learned (or was assigned)
        self._resuming: asyncio.Task | None = None  # the dead letters read back at the last assignment
        self._assignments = 0  # assignments so far: a read-back of an older one is not used
        self._assigned_once = threading.Event()  # the consumer has started (the web server answers before)
        self._lag_series: set[int] = set()  # the events partitions this worker exports a lag series for
        self._register()

    def _register(self) -> None:
        """Hand the methods to Faust, and the gauges to Prometheus."""
        app, s = self.app, self.settings
        for topic in self.batched:  # subscribed, acknowledged and committed as an agent's topic is
            app.topics.add(self.events if topic == s.events_topic else app.topic(topic, partitions=s.partitions))
        install_batch_delivery(app, set(self.batched), self.buffers.put)
        app.flow_control.manage_queue(self.buffers)  # emptied when Faust clears its queues
        install_flush_on_commit(app, s.events_topic, self._flush_for_commit)
        app.on_partitions_revoked.connect(self.hand_over)
        app.on_partitions_assigned.connect(self.on_assigned)
        app.on_before_shutdown.connect(self.close)
        drop_monitor(app)
        app.task(self.replica.run)
        app.task(self.event_replica.run)
        app.task(self.late_states.run)
        app.task(self.pauses.run)
        app.timer(5.0, name="consumer_lag")(self.consumer_lag)
        app.timer(5.0, name="new_items")(self.new_items)
        app.timer(HELD_RETRY_S, name="held_payloads")(self.write_held)
        app.timer(STUCK_S / 4, name="stuck_partitions")(self.stuck_partitions)
        # Faust makes a page's handler a method of its view class: plain functions, not bound methods
        pages = [("/polyrec/health", self.health), ("/polyrec/ready", self.readiness)]
        if s.web_user_state:
            pages.append(("/polyrec/users/{user_id}", self.user_state))
        for path, handler in pages:
            app.page(path)(_json_view(handler))
        metrics.READY.set_function(lambda: float(self.is_ready()))
        metrics.STALLED.set_function(lambda: float(self.stalls.waiting))
        metrics.USERS.set_function(lambda: float(len(self.model.mf.users)))
        metrics.ITEMS.set_function(lambda: float(len(self.model.mf.items)))  # the replica's items too, from start-up
        metrics.ITEMS_MAX.set(s.max_items)
        metrics.YOUNG_ITEMS.set_function(lambda: float(len(self.model.consumers.young_rows(len(self.model.mf.items)))))

    # -- what the pipelines write through ---------------------------------------------------
    async def produce(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None,
                      headers: list | None):
        return await self.app.producer.send(topic, key, value, partition, None, headers)

    def _store_user(self, partition: int, key: str, value: dict | None) -> None:
        with current_partition(partition):  # the RocksDB store's partition (stream/faust_patches.py)
            if value is not None:
                self.users.data[key] = value
            elif key in self.users.data:  # an erased user (its tombstone is on the changelog)
                del self.users.data[key]

    def _user_persisted(self, partition: int, offset: int) -> None:
        # Faust records this itself only for changelog records it sends; the pipeline sends its own.
        # Not after a pause that may have cost the membership (stream/pauses.py): past the
        # successor's states, it would make a recovery of this partition skip them.
        if not self.pauses.suspect:
            self.users.data.set_persisted_offset(TP(self.users.changelog_topic.get_topic_name(), partition), offset)

    async def _flush_for_commit(self, partitions: list[int]) -> None:
        await self.pipeline.flush(partitions)
        await self.failpoints.hit("commit.after_flush")

    # -- learning: a task per assigned partition of the events and items topics ----------------
    def _start_learning(self, tps: Iterable[TP]) -> None:
        """A learning task for each of ``tps`` that has none."""
        for tp in tps:
            self._progress[tp] = time.monotonic()
            if tp not in self._learning or self._learning[tp].done():
                self._learning[tp] = asyncio.ensure_future(self._learn_partition(tp))

    async def _stop_learning(self, tps: Iterable[TP]) -> None:
        """Cancel the learning tasks of ``tps`` (revoked partitions, a stop) and wait for them. At a
        rebalance or stop Faust has already waited for their batches in flight (they are tracked)."""
        tps = list(tps)
        for tp in tps:
            self._progress.pop(tp, None)
        tasks = [self._learning.pop(tp) for tp in tps if tp in self._learning]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _learn_partition(self, tp: TP) -> None:
        """Learn one ``events`` or ``items`` partition's buffered records, a batch at a time, until
        cancelled; an error no batch step handles (a bug) stops the worker, committing nothing more."""
        steps, most = self.batched[tp.topic]
        try:
            await self.replica.wait_caught_up()  # the catch-ups from the topics' start, holding no events
            if steps is self.pipeline:
                await self.event_replica.wait_caught_up(timeout=None)  # as long as the events topic takes
            if self._resuming is not None:  # the dead letters read back (shared: shielded from our cancel)
                await asyncio.shield(self._resuming)
            while True:
                if steps is self.pipeline:  # after a recovery (flow control resumes when it ends)
                    await self.app.flow_control.acquire()
                    if late := self.fence.take_late(tp.partition):
                        self.late_states.note(tp.partition, late)
                await self.buffers.wait(tp)
                await self.pauses.settle()  # after a long pause, the group's answer first
                await self.app.flow_control.acquire()  # no batch starts during a rebalance or stop
                dropped = self.buffers.reread(tp)  # no await since acquire
                if dropped is not None:  # Faust dropped buffered records: read on from the next to learn
                    await self._read_from(tp, self.in_order.next.get(tp, dropped), "Faust cleared its buffers")
                    continue
                records = self.buffers.take(tp, most)
                if records:
                    await self._learn_batch(tp, records, steps)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("learning %s[%d] failed: stopping the worker", tp.topic, tp.partition)
            await self.app.crash(exc)

    async def _learn_batch(self, tp: TP, records: list, steps: EventPipeline | ItemPipeline) -> None:
        """One batch of ``tp``'s records, learned in offset order (:class:`stream.offsets.InOrder`: a
        batch that jumps over offsets is not learned, and the partition is read again from the first
        missing one). Its records are tracked by Faust's consumer while the batch is processed, and
        acknowledged (so that a commit may cover them) only once it is processed to the end; a batch
        cut short (a cancelled task, a crash) leaves them unacknowledged, and they are read again."""
        keep, offset = self.in_order.check(tp, [m.offset for m in records])
        if offset is not None:  # events before these were not delivered: read them first
            await self._read_from(tp, offset, f"a batch from offset {records[0].offset} came before it")
            return
        for first, last in self.in_order.take_holes(tp):  # the log's: a commit may pass over them
            await add_log_hole(self.app, tp, first, last)
        batch = [Delivered(records[k]) for k in keep]  # a record delivered twice is learned once
        consumer = self.app.consumer
        for event in batch:
            consumer.track_message(event.message)
        try:
            await process_or_dead_letter(steps, batch, stalls=self.stalls)
            await self.failpoints.hit("batch.before_ack")
        except BaseException as exc:
            # Faust waits (at the next rebalance, or stop) until tracked messages are acknowledged or
            # garbage: neither the traceback nor this frame may hold the batch
            traceback.clear_frames(exc.__traceback__)
            batch.clear()
            raise
        self.in_order.learned(tp, batch[-1].message.offset)
        self._progress[tp] = time.monotonic()
        for event in batch:
            consumer.ack(event.message)

    async def _read_from(self, tp: TP, offset: int, why: str) -> None:
        """Read ``tp`` again from ``offset``: what is buffered goes, and the consumer seeks there."""
        log.warning("%s[%d]: reading the partition again from offset %d (%s)", tp.topic, tp.partition, offset, why)
        metrics.REWINDS.labels(tp.topic).inc()
        self.buffers.drop(tp)  # before the seek: what comes after it is read from the offset
        await seek(self.app, tp, offset)  # in the consumer's thread (faust_patches 5)

    # -- rebalances and shutdown ---------------------------------------------------------------
    def _events_partitions(self, tps: Iterable[TP]) -> set[int]:
        """The ``events`` partitions among ``tps`` (an assignment also holds changelogs and items)."""
        return {tp.partition for tp in tps if tp.topic == self.settings.events_topic}

    async def hand_over(self, app: faust.App, revoked: set, **kwargs: object) -> None:
        """Before a partition's next owner starts: its contributions written, users reloaded later."""
        self.barrier.rebalancing()
        self.pauses.revoking()
        await self._stop_learning(tp for tp in revoked if tp.topic in self.batched)
        partitions = self._events_partitions(revoked)
        self.late_states.give_up(partitions)
        await self.pipeline.flush(partitions)
        self.model.forget_users()
        self.pipeline.revoked(partitions)  # a stale position must not count if the partition comes back

    async def on_assigned(self, app: faust.App, assigned: set, **kwargs: object) -> None:
        """The consumer has started; each partition is learned in order from its committed offset, or
        from the log's start if the group never committed one (``InOrder``); partitions given away
        stop exporting their lag (their next owner reports it once recovered; a stale value here
        would add to theirs). Kept ones stay continuous."""
        s = self.settings
        mine = [TopicPartition(tp.topic, tp.partition) for tp in assigned if tp.topic in self.batched]
        start = await fetch_start_offsets(s.broker_list, s.app_id, mine, s.kafka_options())
        self.in_order.expect({TP(tp.topic, tp.partition): offset for tp, offset in start.items()})
        starts = {topic: {tp.partition: offset for tp, offset in sorted(start.items()) if tp.topic == topic}
                  for topic in self.batched}
        for topic, offsets in starts.items():
            log.info("assigned %s: learning from offsets %s", topic, offsets)
        self.pauses.assigned()
        try:  # before any batch: this worker's own partitions of the users changelog, read from their end
            await self.late_states.take_over(self._events_partitions(assigned))
        except Exception as exc:  # noqa: BLE001 - degraded: recovery still leaves a late state out
            log.warning("cannot watch the users changelog for late writes (%r): a late state of an evicted "
                        "owner stays the last record of its user until the next recovery", exc)
        self._assignments += 1
        self._resuming = asyncio.ensure_future(self._resume_dead_letters(starts, self._assignments))  # off the
        # rebalance's path: the learning tasks wait for it
        self._start_learning(TP(tp.topic, tp.partition) for tp in mine)
        self._assigned_once.set()
        self._drop_users_elsewhere({tp.partition for tp in assigned
                                    if tp.topic == self.users.changelog_topic.get_topic_name()})
        kept = self._events_partitions(assigned)
        for p in self._lag_series - kept:
            with contextlib.suppress(KeyError):  # a metric must never crash the worker
                metrics.LAG.remove(self.settings.events_topic, str(p))
        self._lag_series.intersection_update(kept)

    async def _resume_dead_letters(self, starts: dict[str, dict[int, int]], assignment: int) -> None:
        """Each batched topic's dead letters past its assigned partitions' committed offsets (``starts``):
        what a killed predecessor sent, so that the replay does not send it again; unused if another
        assignment came meanwhile. Failing leaves the replay at least once: degraded, not down."""
        async def one(topic: str, steps: EventPipeline | ItemPipeline) -> None:
            s = self.settings
            try:
                found = await dead_lettered_since(s.broker_list, steps.dead_letters.topic, starts[topic],
                                                  s.kafka_options())
                if assignment == self._assignments:
                    steps.dead_letters.resume(*found)
            except Exception as exc:  # noqa: BLE001 - logged; at worst a replay dead-letters twice
                log.warning("could not read back the dead letters of %s: a replay may dead-letter some records "
                            "again: %r", topic, exc)
        await asyncio.gather(*(one(topic, steps) for topic, (steps, _) in self.batched.items()))

    def _drop_users_elsewhere(self, partitions: set[int]) -> None:
        """Drop from a memory store the users of partitions this worker now holds neither as active
        nor as standby (``partitions``: its changelog partitions): Faust's memory store forgets only
        the users it recovered itself, not those the worker wrote, so every user that ever moved away
        stayed in memory. Faust keeps no recovery offset for a partition it no longer holds, so if one
        comes back it is recovered from the changelog's start. A RocksDB store keeps a database per
        partition and needs none of this."""
        if not self.settings.store.startswith("memory"):
            return
        data = self.users.data
        gone = [key for key, value in data.items()
                if isinstance(value, dict) and value.get("p") is not None and value["p"] not in partitions]
        for key in gone:
            del data[key]
        if gone:
            log.info("dropped %d users of partitions this worker no longer holds (kept: %s)",
                     len(gone), sorted(partitions))

    async def close(self, app: faust.App, **kwargs: object) -> None:
        """Before Faust shuts down (it has waited for the batches in flight): the learning tasks, the
        encoder's threads, the Redis connections."""
        await self._stop_learning(list(self._learning))
        if self.item_pipeline is not None:
            self.item_pipeline.encoder.close()
        await self.redis.aclose()

    # -- metrics -------------------------------------------------------------------------------
    async def consumer_lag(self) -> None:
        """Every 5 s, each assigned ``events`` partition's lag. A metric only: never let it crash the
        worker (timers that raise stop the app). Nothing is exported from a tick that a rebalance
        overlapped: it may hold partitions given away."""
        await self.failpoints.hit("timer.tick")
        app, topic = self.app, self.settings.events_topic
        rebalance = app.rebalancing_count
        if app.rebalancing:
            return
        lags = {}
        for tp in app.consumer.assignment():
            if tp.topic != topic:
                continue
            try:
                highwater = app.consumer.highwater(tp)  # None until the partition's first fetch
                position = self.pipeline.positions.get(tp.partition)
                if position is None:
                    position = await app.consumer.position(tp) or 0
            except Exception as exc:  # noqa: BLE001 - e.g. revoked while awaiting position()
                log.debug("no lag for %s: %r", tp, exc)
                continue
            if highwater is not None:
                lags[tp.partition] = max(highwater - position, 0)
        if app.rebalancing or app.rebalancing_count != rebalance:
            return
        for p, lag in lags.items():
            metrics.LAG.labels(topic, str(p)).set(lag)
        self._lag_series.update(lags)

    async def stuck_partitions(self) -> None:
        """Every ``STUCK_S / 4``, each assigned ``events`` partition whose events the events replica has
        read but no batch has learned for ``STUCK_S``: logged with where its learning task waits,
        and read again from its next offset. (Seen once, 2026-12-07: a worker restarted after a kill
        learned nothing for 3 minutes, with no lag reported; the cause is not known.) Never raises."""
        try:
            if (self.app.rebalancing or self.stalls.waiting or not self.event_replica.caught_up_once
                    or not self.replica.caught_up_once):
                return
            now, topic = time.monotonic(), self.settings.events_topic
            for tp, task in list(self._learning.items()):
                expected = self.in_order.next.get(tp)
                if tp.topic != topic or task.done() or expected is None or now - self._progress.get(tp, now) < STUCK_S:
                    continue
                behind = self.event_replica.position(tp.partition) - expected
                if behind <= 0:
                    continue
                stack = io.StringIO()
                task.print_stack(file=stack)
                log.warning("%s[%d]: no batch learned for %.0f s with %d events behind; its learning task "
                            "waits at:\n%s", tp.topic, tp.partition, now - self._progress[tp], behind,
                            stack.getvalue().strip())
                self._progress[tp] = now
                await self._read_from(tp, expected, "no batch learned while events waited")
        except Exception:  # noqa: BLE001 - a watchdog must never stop the worker
            log.exception("checking for stuck partitions failed")

    async def write_held(self) -> None:
        """Every ``HELD_RETRY_S``, the recommendation payloads a Redis outage held, written once Redis
        answers again, whether or not their partitions have new events. Never raises (a timer that
        raises stops the app)."""
        try:
            await self.pipeline.write_held()
        except Exception:  # noqa: BLE001 - logged; the next tick tries again
            log.exception("writing held recommendation payloads failed")

    async def new_items(self) -> None:
        """Every 5 s, the new items by language (``polyrec_new_items``): with the slots they get, what
        the ``PolyrecNewItemsUnexposed`` alert compares."""
        for lang, n in self.model.new_items_by_language().items():
            metrics.NEW_ITEMS.labels(lang).set(n)

    def is_ready(self) -> bool:
        """Read by /polyrec/ready and by the gauge (in the metrics server's thread: flags only).
        A worker that is stopping (SIGTERM, a crash) is not ready, for the whole graceful shutdown; nor
        is one whose batches wait for the broker or Redis to come back."""
        return (self._assigned_once.is_set() and self.replica.caught_up_once and self.event_replica.caught_up_once
                and not self.app.rebalancing and not self.app.should_stop and not self.stalls.waiting)

    # -- web pages: (JSON body, HTTP status) ---------------------------------------------------
    async def health(self) -> tuple[dict, int]:
        return {"status": "ok", "model_version": self.version}, 200

    async def readiness(self) -> tuple[dict, int]:
        ok = self.is_ready()
        try:
            assigned = sorted(self._events_partitions(self.app.consumer.assignment()))
        except ConsumerNotStarted:  # not ready either: nothing was assigned yet
            ok, assigned = False, []
        return {"ready": ok, "assigned": assigned}, 200 if ok else 503

    async def user_state(self, user_id: str) -> tuple[dict, int]:
        """This worker's newest state of one user: learned since the last flush, else the table's
        (404 if the user is not on this worker)."""
        st = self.pipeline.held_state(user_id)
        if st is None:
            raw = self.users.data.get(user_id)
            if raw is None:
                return {"error": f"user {user_id!r} has no state on this worker"}, 404
            st = UserState.from_json(raw)
        return {"user_id": user_id, "factors": st.factors.tolist(), "accum": st.accum,
                "history": st.history, "offset": st.offset, "partition": st.partition, "applied": st.applied}, 200


def _json_view(handler: Callable[..., Awaitable[tuple[dict, int]]]) -> Callable[..., Awaitable[faust.web.Response]]:
    """A Faust page handler answering ``handler(**url_parameters)`` as JSON with its status."""

    async def view(web: faust.web.View, request: faust.web.Request, **params: str) -> faust.web.Response:
        body, status = await handler(**params)
        return web.json(body, status=status)

    view.__name__ = handler.__name__
    view.__doc__ = handler.__doc__
    return view


def _export_zero_series(settings: Settings) -> None:
    """Export zeros, not "no data": an alert on increase() misses a counter's first value."""
    for topic in (settings.events_topic, settings.items_topic):
        metrics.BATCH_FAILURES.labels(topic)
        for reason in REASONS:
            metrics.DLQ.labels(topic, reason)
    for outcome in REPLICA_OUTCOMES:
        metrics.ITEM_RECORDS.labels(outcome)
