"""Prometheus metrics of a worker (names follow Prometheus conventions: base units, _total)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info, start_http_server

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_FRESHNESS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0)

EVENTS = Counter("polyrec_events_total", "Events consumed, by event type and outcome "
                 "(applied, duplicate: already applied before a replay, dead_lettered).", ["type", "outcome"])
DLQ = Counter("polyrec_dlq_records_total", "Records sent to a dead-letter topic, by source topic and reason.",
              ["topic", "reason"])
BATCH_SIZE = Histogram("polyrec_batch_size_events", "Events per micro-batch.",
                       buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500))
BATCH_SECONDS = Histogram("polyrec_batch_duration_seconds",
                          "Wall time of one micro-batch: validate, learn, persist state, write Redis.",
                          buckets=_LATENCY)
STALLED = Gauge("polyrec_batches_stalled", "Micro-batches waiting for the broker or Redis to come back "
                "(retried with backoff for as long as the outage lasts; the worker is not ready meanwhile).")
BATCH_FAILURES = Counter("polyrec_batch_failures_total", "Failed attempts at a micro-batch or a part of it, by "
                         "topic (an outage: retried until it passes; another error: 5 attempts, then bisected, "
                         "and only the records that fail alone are dead-lettered as processing_failed).", ["topic"])
FRESHNESS = Histogram("polyrec_freshness_seconds",
                      "From an event's produce time (Kafka timestamp) to its user's recommendations in Redis.",
                      buckets=_FRESHNESS)
REDIS_SECONDS = Histogram("polyrec_redis_write_duration_seconds", "One pipelined Redis write of a micro-batch.",
                          buckets=_LATENCY)
REDIS_ERRORS = Counter("polyrec_redis_write_errors_total",
                       "Failed Redis write attempts (a batch is tried 5 times, then its payloads are held for the "
                       "partition's next batch).")
RECS = Counter("polyrec_recommendations_published_total", "User recommendation payloads written to Redis.")
RECS_HELD = Gauge("polyrec_recommendations_held", "Payloads held for Redis after failed writes, written once it "
                  "is back (with their partitions' next batches, or by a retry every 2 s).")
RECS_STALE = Counter("polyrec_recommendations_stale_total", "Payloads Redis did not take because it held a newer "
                     "one of the user, or the user's erasure (a larger offset in the same partition): late writes "
                     "of an owner dropped from the group.")
LATE_USER_STATES = Counter("polyrec_late_user_states_total", "Late writes of an owner dropped from the group: user "
                           "states read back from the changelog (recovery, standby) and not applied because a newer "
                           "state of the user, or their erasure, came before them, and records another worker wrote "
                           "to a partition of the users changelog after this worker took it over.")
WRITTEN_AGAIN = Counter("polyrec_user_states_written_again_total", "User states (and erased users' tombstones) "
                        "written to the changelog again because a late write of another worker landed after them, "
                        "so that compaction keeps the newest.")
RECS_DROPPED = Counter("polyrec_recommendations_dropped_total", "Held payloads given up beyond the cap of 50,000 "
                       "(until the user's next event).")
LOSS = Gauge("polyrec_training_loss", "Exponential moving average of the micro-batch training loss.")
USERS = Gauge("polyrec_users_known", "Users this worker holds in memory: those with events since its partitions "
              "were last assigned (the rows are dropped at every rebalance and reloaded from the table).")
SLOTS = Counter("polyrec_recommendation_slots_total", "Recommendation slots written to Redis, by the item's language "
                "(the lang of its text record: none without one, other for a lang that is no language tag) and "
                "age (new: fewer than POLYREC_YOUNG_EVENTS events).", ["lang", "age"])
NEW_ITEMS = Gauge("polyrec_new_items", "Items with fewer than POLYREC_YOUNG_EVENTS events (all partitions), by the "
                  "language of their text.", ["lang"])
USERS_FORGOTTEN = Counter("polyrec_users_forgotten_total", "Erasure requests (`polyrec forget`) this worker applied "
                          "to users of its partitions.")
ITEMS = Gauge("polyrec_items_known", "Items known to this worker (all partitions).")
ITEMS_MAX = Gauge("polyrec_items_max", "POLYREC_MAX_ITEMS: past it this worker refuses new items (events dead-lettered "
                  "as item_capacity, item records counted as refused).")
YOUNG_ITEMS = Gauge("polyrec_young_items", "Items with 1 to POLYREC_YOUNG_EVENTS - 1 events (all partitions): "
                    "scored with the direction their users share.")
ITEM_RECORDS = Counter("polyrec_item_records_total", "Item-factor records read from the shared topic, "
                       "by outcome (applied, stale, refused: a new item past POLYREC_MAX_ITEMS, invalid: skipped, "
                       "see the log).",
                       ["outcome"])
ITEM_RECORDS_WRITTEN = Counter("polyrec_item_records_written_total", "Item-factor records this worker wrote: "
                               "one per item its partitions touched since the previous commit, and one per new "
                               "item it encoded.")
USER_STATES_WRITTEN = Counter("polyrec_user_states_written_total", "User states this worker wrote to the users "
                              "changelog (one per user a micro-batch changed), tombstones of erased users "
                              "included.")
USER_STATE_BYTES = Counter("polyrec_user_state_bytes_total", "Bytes of the user states (keys and values) this worker "
                           "wrote to the users changelog.")
MEMORY_EVENTS = Counter("polyrec_memory_events_total", "Valid events of every partition learned by this worker's "
                        "co-occurrence memory (the whole events topic, read from its start at every start).")
MEMORY_BEHIND = Counter("polyrec_memory_behind_total", "Micro-batches scored before the co-occurrence memory held "
                        "their own events (it was more than 5 s behind: their recommendations miss them).")
REWINDS = Counter("polyrec_rewinds_total", "Times a partition was read again from its next offset to learn: a "
                  "batch came after a hole (after a rebalance), or Faust dropped buffered records.", ["topic"])
LAG = Gauge("polyrec_consumer_lag_records", "Records between the consumer position and the end of a partition.",
            ["topic", "partition"])
ENCODER_SECONDS = Histogram("polyrec_encoder_batch_duration_seconds", "One encoder batch (tokenise + ONNX run).",
                            buckets=_LATENCY)
ENCODER_ITEMS = Counter("polyrec_encoder_items_total", "Item texts encoded.")
ENCODER_PROVIDER = Gauge("polyrec_encoder_provider_info",
                         "Where the item-text encoder runs: an ONNX Runtime execution provider, or numpy (value 1).",
                         ["provider"])
MODEL = Info("polyrec_model", "The model version and its hyper-parameters.")
READY = Gauge("polyrec_worker_ready", "1 while /polyrec/ready answers 200 (partitions assigned once, item replica "
              "caught up, no rebalance in progress, not stopping), else 0.")


class LossTracker:
    """Running loss as an exponential moving average, exported to :data:`LOSS`."""

    def __init__(self, alpha: float = 0.05) -> None:
        self.alpha, self.value = alpha, None

    def update(self, loss: float) -> None:
        self.value = loss if self.value is None else (1 - self.alpha) * self.value + self.alpha * loss
        LOSS.set(self.value)


def serve(port: int) -> None:
    """Expose /metrics on ``port`` (0 disables it)."""
    if port:
        start_http_server(port)


def scrape_totals(port: int, host: str = "127.0.0.1") -> dict[str, float]:
    """Read a process's /metrics: each sample name summed over its labels (empty if nothing answers)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals
