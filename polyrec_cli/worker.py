"""``polyrec worker``: one streaming worker process (its Faust app is :class:`stream.app.Worker`)."""

from __future__ import annotations

import asyncio
import logging

from stream import metrics
from stream.app import Worker, check_encoder
from stream.faust_process import quiet_worker, use_event_loop
from stream.log_repeats import limit_repeats
from stream.settings import Settings
from stream.topics import ensure_topics

log = logging.getLogger(__name__)


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Create topics if needed, serve metrics, and run one worker until SIGTERM/SIGINT."""
    if settings.items_agent:
        check_encoder(settings)  # a missing encoder fails before anything connects
    loop = use_event_loop(settings.event_loop)
    asyncio.run(ensure_topics(settings, replication=settings.replication))
    app = Worker(settings).app
    limit_repeats("aiokafka")  # a broker outage would log every reconnect attempt of every client

    @app.task
    async def log_start() -> None:
        log.info("event loop: %s; settings (passwords masked): %s", loop, " ".join(settings.describe()))

    metrics.serve(settings.metrics_port)
    quiet_worker(app, loglevel).execute_from_commandline()
