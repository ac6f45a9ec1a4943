"""The Faust application: topics, the users table, the events agent, the item replica.

Reading order: build_app() declares everything; the ``learn`` agent runs one actor per
assigned ``events`` partition (isolated partitions), waits for the item replica to catch up,
then feeds micro-batches (``take_events``) to :class:`stream.pipeline.EventPipeline`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import weakref
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import faust
import faust.streams as faust_streams
import redis.asyncio as aioredis
from faust.exceptions import ConsumerNotStarted
from faust.types import TP

from encoders.artifacts import require_onnxruntime, resolve_onnx_path
from polyrec import __version__
from polyrec.cooccurrence import CooccurrenceConfig
from polyrec.mf import MFConfig
from stream import commits, metrics
from stream.faust_process import drop_monitor
from stream.fetch_wait import install_fetch_max_wait
from stream.items import ItemPipeline
from stream.offsets import install_recovery_fix
from stream.pipeline import EventPipeline, process_or_dead_letter
from stream.records import REASONS
from stream.recs import RecsPublisher
from stream.replica import OUTCOMES as REPLICA_OUTCOMES
from stream.replica import EventReplica, HandOverBarrier, ItemReplica
from stream.settings import Settings
from stream.state import UserState, WorkerModel
from stream.topics import USERS_TABLE, item_factors_topic

if TYPE_CHECKING:  # onnxruntime comes with an extra: a worker without the items agent runs without it
    from encoders.onnx_encoder import OnnxEncoder

log = logging.getLogger(__name__)


def model_version(config: MFConfig, cooccurrence: CooccurrenceConfig) -> str:
    digest = hashlib.sha1(json.dumps([asdict(config), asdict(cooccurrence)], sort_keys=True).encode()).hexdigest()
    return f"polyrec-{__version__}-{config.loss}-d{config.dim}-{digest[:8]}"


def encoder_file(settings: Settings) -> Path:
    """The item-text encoder's file, or a clear error if it or onnxruntime is missing."""
    require_onnxruntime("the items agent (POLYREC_ITEMS_AGENT=0 turns it off)")
    return resolve_onnx_path(settings.encoder_path)


def open_encoder(settings: Settings) -> OnnxEncoder:
    """The item-text encoder (:func:`encoder_file`)."""
    path = encoder_file(settings)
    from encoders.onnx_encoder import OnnxEncoder

    return OnnxEncoder(path, provider=settings.encoder_provider, intra_op_threads=settings.encoder_threads)


def build_app(settings: Settings) -> faust.App:
    """A Faust app for one worker process, configured from ``settings``."""
    install_recovery_fix()
    install_fetch_max_wait(settings.fetch_max_wait_ms)
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{h}" for h in settings.broker_list],
        store=settings.store,
        datadir=settings.data_dir,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        producer_acks=-1,
        broker_commit_interval=settings.commit_interval_s,
        web_enabled=settings.web_port != 0,
        web_port=settings.web_port or 6066,
        web_bind="0.0.0.0",
        key_serializer="raw",
        value_serializer="raw",
    )
    config, cooccurrence = settings.mf_config(), settings.cooccurrence_config()
    version = model_version(config, cooccurrence)
    metrics.MODEL.info({"version": version, **{k: str(v) for k, v in asdict(config).items()},
                        **{f"cooccurrence_{k}": str(v) for k, v in asdict(cooccurrence).items()}})
    model = WorkerModel(config, cooccurrence, history_max=settings.history_max, k=settings.top_k)

    # export zeros, not "no data": an alert on increase() misses a counter's first value
    for topic in (settings.events_topic, settings.items_topic):
        metrics.BATCH_FAILURES.labels(topic)
        for reason in REASONS:
            metrics.DLQ.labels(topic, reason)
    for outcome in REPLICA_OUTCOMES:
        metrics.ITEM_RECORDS.labels(outcome)
    events = app.topic(settings.events_topic, partitions=settings.partitions)
    users = app.Table(USERS_TABLE, default=None, partitions=settings.partitions,
                      schema=faust.Schema(key_serializer="json", value_serializer="json"))

    def users_store(event: faust.EventT, key: str, value: dict) -> None:
        # the RocksDB store picks its per-partition database from the current event; inside a
        # take_events body Faust leaves that context empty, so name the batch's event explicitly
        faust_streams._current_event.set(weakref.ref(event))
        users.data[key] = value

    def users_persisted(partition: int, offset: int) -> None:
        # Faust records this itself only for changelog records it sends; the pipeline sends its own
        users.data.set_persisted_offset(TP(users.changelog_topic.get_topic_name(), partition), offset)

    async def produce(topic: str, key: bytes | None, value: bytes | None, partition: int | None,
                      headers: list | None):
        return await app.producer.send(topic, key, value, partition, None, headers)

    events_dlq, items_dlq = f"{settings.events_topic}.dlq", f"{settings.items_topic}.dlq"
    replica = ItemReplica(settings.broker_list, item_factors_topic(settings), model.apply_item_record,
                          model.knows, lambda outcome: metrics.ITEM_RECORDS.labels(outcome).inc(),
                          fetch_max_wait_ms=settings.fetch_max_wait_ms)
    barrier = HandOverBarrier(replica.wait_caught_up)
    event_replica = EventReplica(settings.broker_list, settings.events_topic, model.learn_memory,
                                 metrics.MEMORY_EVENTS.inc, fetch_max_wait_ms=settings.fetch_max_wait_ms)
    redis = aioredis.from_url(settings.redis_url)
    pipeline = EventPipeline(
        model, settings.weights, produce, users.data.get, users_store, users_persisted,
        {"items": item_factors_topic(settings), "users": users.changelog_topic.get_topic_name(),
         "dlq": events_dlq},
        RecsPublisher(redis, settings.redis_prefix, settings.recs_ttl_s, settings.stream_maxlen), version,
        barrier=barrier.before_batch, memory_ready=event_replica.wait_for,
    )

    @app.agent(events, isolated_partitions=True)
    async def learn(stream: faust.StreamT) -> None:
        await replica.wait_caught_up()  # the catch-ups from the topics' start, holding no events
        await event_replica.wait_caught_up(timeout=None)  # as long as the events topic takes to read
        async for batch in stream.take_events(settings.batch_max, within=settings.batch_window_s):
            await process_or_dead_letter(pipeline, batch)

    if settings.items_agent:
        item_pipeline = ItemPipeline(
            model, open_encoder(settings), produce,
            {"items": item_factors_topic(settings), "dlq": items_dlq},
            settings.projection_alpha, settings.projection_min_count, settings.projection_refit_s)
        items = app.topic(settings.items_topic, partitions=settings.partitions)

        @app.agent(items)
        async def encode_items(stream: faust.StreamT) -> None:
            await replica.wait_caught_up()
            async for batch in stream.take_events(settings.items_batch_max, within=settings.batch_window_s):
                await process_or_dead_letter(item_pipeline, batch)

        @app.on_before_shutdown.connect
        async def close_encoder(app: faust.App, **kwargs: object) -> None:
            item_pipeline.encoder.close()

    commits.install(app, settings.events_topic, pipeline.flush_items)

    def events_partitions(tps: Iterable[TP]) -> set[int]:
        """The ``events`` partitions among ``tps`` (an assignment also holds changelogs and items)."""
        return {tp.partition for tp in tps if tp.topic == settings.events_topic}

    @app.on_partitions_revoked.connect
    async def hand_over(app: faust.App, revoked: set, **kwargs: object) -> None:
        """Before a partition's next owner starts: its contributions written, users reloaded later."""
        barrier.rebalancing()
        partitions = events_partitions(revoked)
        await pipeline.flush_items(partitions)
        model.forget_users()
        for p in partitions:  # a stale position must not count if the partition comes back
            pipeline.positions.pop(p, None)

    drop_monitor(app)

    @app.task
    async def item_replica() -> None:
        await replica.run()

    @app.task
    async def memory_replica() -> None:
        await event_replica.run()

    lag_series: set[int] = set()  # the events partitions this worker exports a lag series for

    @app.timer(5.0)
    async def consumer_lag() -> None:
        """A metric only: never let it crash the worker (timers that raise stop the app). Nothing
        is exported from a tick that a rebalance overlapped: it may hold partitions given away."""
        rebalance = app.rebalancing_count
        if app.rebalancing:
            return
        lags = {}
        for tp in app.consumer.assignment():
            if tp.topic != settings.events_topic:
                continue
            try:
                highwater = app.consumer.highwater(tp)  # None until the partition's first fetch
                position = pipeline.positions.get(tp.partition)
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
            metrics.LAG.labels(settings.events_topic, str(p)).set(lag)
        lag_series.update(lags)

    @app.page("/polyrec/health")
    async def health(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return web.json({"status": "ok", "model_version": version})

    assigned_once = threading.Event()  # the consumer has started (the web server answers before)

    @app.on_partitions_assigned.connect
    async def on_assigned(app: faust.App, assigned: set, **kwargs: object) -> None:
        """The consumer has started; partitions given away stop exporting their lag (their next owner
        reports it once recovered; a stale value here would add to theirs). Kept ones stay continuous."""
        assigned_once.set()
        kept = events_partitions(assigned)
        for p in lag_series - kept:
            with contextlib.suppress(KeyError):  # a metric must never crash the worker
                metrics.LAG.remove(settings.events_topic, str(p))
        lag_series.intersection_update(kept)

    def is_ready() -> bool:
        """Read by /polyrec/ready and by the gauge (in the metrics server's thread: flags only).
        A worker that is stopping (SIGTERM, a crash) is not ready, for the whole graceful shutdown."""
        return (assigned_once.is_set() and replica.caught_up_once and event_replica.caught_up_once
                and not app.rebalancing
                and not app.should_stop)

    metrics.READY.set_function(lambda: float(is_ready()))
    metrics.USERS.set_function(lambda: float(len(model.mf.users)))
    metrics.ITEMS.set_function(lambda: float(len(model.mf.items)))  # the replica's items too, from start-up

    @app.page("/polyrec/ready")
    async def ready(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        ok = is_ready()
        try:
            assigned = sorted(events_partitions(app.consumer.assignment()))
        except ConsumerNotStarted:  # not ready either: nothing was assigned yet
            ok, assigned = False, []
        return web.json({"ready": ok, "assigned": assigned}, status=200 if ok else 503)

    @app.page("/polyrec/users/{user_id}")
    async def user_state(web: faust.web.View, request: faust.web.Request, user_id: str) -> faust.web.Response:
        """This worker's durable state of one user (404 if the user is not on this worker)."""
        raw = users.data.get(user_id)
        if raw is None:
            return web.json({"error": f"user {user_id!r} has no state on this worker"}, status=404)
        st = UserState.from_json(raw)
        return web.json({"user_id": user_id, "factors": st.factors.tolist(), "accum": st.accum,
                         "history": st.history, "offset": st.offset})

    @app.on_before_shutdown.connect
    async def close_redis(app: faust.App, **kwargs: object) -> None:
        await redis.aclose()

    app.polyrec = {"model": model, "pipeline": pipeline, "replica": replica, "users": users}
    return app
