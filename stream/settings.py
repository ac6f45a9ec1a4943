"""A worker's configuration (and the ``polyrec`` command's) from environment variables, with documented defaults.

Every setting is one field of :class:`Settings`; ``docs/configuration.md`` is generated from
this table (``polyrec config --markdown``) and a test keeps the two in step.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from encoders.providers import PROVIDERS as ENCODER_PROVIDERS
from polyrec.consumers import ConsumersConfig
from polyrec.cooccurrence import CooccurrenceConfig
from polyrec.events import DEFAULT_WEIGHTS
from polyrec.explore import ExploreConfig
from polyrec.mf import MFConfig
from stream.failpoints import parse as parse_failpoints
from stream.state import MAX_ITEMS

EVENT_LOOPS = ("uvloop", "asyncio")
KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
STORES = ("memory", "rocksdb")  # Faust table stores the worker supports (URL schemes)


def _env(name: str, default: Any, doc: str) -> Any:
    return field(default=default, metadata={"env": name, "doc": doc})


MAX_EVENT_WEIGHT = 1000.0  # an event weight above it only risks overflow in the AdaGrad accumulators

@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = _env("KAFKA_BOOTSTRAP", "127.0.0.1:9092",
                                "Kafka bootstrap servers, comma-separated host:port (a kafka:// prefix is allowed).")
    kafka_security_protocol: str = _env("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT",
                                        "How every Kafka client of the worker and the commands connects: "
                                        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.")
    kafka_sasl_mechanism: str = _env("KAFKA_SASL_MECHANISM", "PLAIN",
                                     "SASL mechanism (SASL_PLAINTEXT, SASL_SSL): PLAIN, SCRAM-SHA-256 or "
                                     "SCRAM-SHA-512.")
    kafka_sasl_username: str = _env("KAFKA_SASL_USERNAME", "", "SASL user name (required with SASL_*).")
    kafka_sasl_password: str = _env("KAFKA_SASL_PASSWORD", "",
                                    "SASL password (required with SASL_*; shown as *** by polyrec config, never "
                                    "logged).")
    kafka_ssl_cafile: str = _env("KAFKA_SSL_CAFILE", "",
                                 "PEM file of the CAs that verify the brokers' certificates (SSL, SASL_SSL); empty: "
                                 "the system's.")
    kafka_ssl_certfile: str = _env("KAFKA_SSL_CERTFILE", "",
                                   "PEM client certificate for mutual TLS (SSL, SASL_SSL; with KAFKA_SSL_KEYFILE).")
    kafka_ssl_keyfile: str = _env("KAFKA_SSL_KEYFILE", "", "PEM private key of KAFKA_SSL_CERTFILE.")
    redis_url: str = _env("REDIS_URL", "redis://127.0.0.1:6379/0",
                          "Redis URL; the DB number in the path is honoured (redis://host:port/DB).")
    redis_timeout_s: float = _env("POLYREC_REDIS_TIMEOUT_S", 0.5,
                                  "Longest a Redis connect or write may take before it counts as failed (each of a "
                                  "batch's 5 attempts); the client itself does not retry.")
    app_id: str = _env("POLYREC_APP_ID", "polyrec",
                       "Faust application id: the consumer group and the prefix of internal topics.")
    events_topic: str = _env("POLYREC_EVENTS_TOPIC", "events", "Topic of user events (key: user id).")
    items_topic: str = _env("POLYREC_ITEMS_TOPIC", "items", "Topic of new items with text (key: item id).")
    partitions: int = _env("POLYREC_PARTITIONS", 4,
                           "Partitions of the topics polyrec creates; the upper bound on useful workers.")
    replication: int = _env("POLYREC_REPLICATION", 1, "Replication factor of the topics polyrec creates.")
    session_timeout_s: float = _env("POLYREC_SESSION_TIMEOUT_S", 6.0,
                                    "Consumer-group session timeout, seconds (short: fast failover).")
    heartbeat_interval_s: float = _env("POLYREC_HEARTBEAT_INTERVAL_S", 1.0, "Consumer heartbeat interval, seconds.")
    rebalance_timeout_s: float = _env("POLYREC_REBALANCE_TIMEOUT_S", 4.0,
                                      "Consumer-group rebalance timeout, seconds.")
    top_k: int = _env("POLYREC_TOP_K", 10, "Recommendations written per user.")
    dim: int = _env("POLYREC_DIM", MFConfig.dim, "Factor dimension of the MF model.")
    user_lr: float = _env("POLYREC_USER_LR", MFConfig.user_lr, "AdaGrad learning rate of the user factors.")
    item_lr: float = _env("POLYREC_ITEM_LR", MFConfig.item_lr, "AdaGrad learning rate of the item factors and biases.")
    reg: float = _env("POLYREC_REG", MFConfig.reg, "L2 regularisation of the factors.")
    negatives: int = _env("POLYREC_NEGATIVES", MFConfig.n_negatives,
                          "Sampled negative items per event (BPR), drawn from one pool per micro-batch "
                          "among the items with events (an item known from its text only is never one).")
    cooccur_items: int = _env("POLYREC_COOCCUR_ITEMS", CooccurrenceConfig.max_items,
                              "Items with a row in the co-occurrence matrix, first come (memory: this squared x 4 "
                              "bytes at most); later items are scored by the factors alone.")
    cooccur_window: int = _env("POLYREC_COOCCUR_WINDOW", CooccurrenceConfig.window,
                               "Previous events of the same user that an event is paired with.")
    cooccur_decay: float = _env("POLYREC_COOCCUR_DECAY", CooccurrenceConfig.pair_decay,
                                "Weight of a co-occurring pair per step of distance, in (0, 1].")
    context: int = _env("POLYREC_CONTEXT", CooccurrenceConfig.context,
                        "A user's last events whose co-occurring items are scored.")
    context_decay: float = _env("POLYREC_CONTEXT_DECAY", CooccurrenceConfig.context_decay,
                                "Weight per step back in a user's context, in (0, 1].")
    cooccur_alpha: float = _env("POLYREC_COOCCUR_ALPHA", CooccurrenceConfig.alpha,
                                "Normalisation of co-occurrence by popularity (0.5: cosine).")
    mf_weight: float = _env("POLYREC_MF_WEIGHT", CooccurrenceConfig.mf_weight,
                            "Weight of the factor score against the log co-occurrence score.")
    cooccur_floor: float = _env("POLYREC_COOCCUR_FLOOR", CooccurrenceConfig.floor,
                                "Share of a user's best co-occurrence score that every item starts from (> 0).")
    young_events: int = _env("POLYREC_YOUNG_EVENTS", ConsumersConfig.young,
                             "Below this many events an item scores with the direction its users share "
                             "(new items reach the right users sooner); 0: off.")
    young_shrink: float = _env("POLYREC_YOUNG_SHRINK", ConsumersConfig.shrink,
                               "Events of doubt in a young item's users: their direction counts n / (n + this).")
    explore_fit: float = _env("POLYREC_EXPLORE_FIT", ExploreConfig.fit,
                              "An item with no events yet takes the last place of the top-K of its audience: "
                              "this share of the worker's users (0 to 1), those whose own best share of the "
                              "catalogue (the same share) its text's factors clear by most; as many users for "
                              "every item, whatever its language; 0: off.")
    explore_reach: int = _env("POLYREC_EXPLORE_REACH", ExploreConfig.reach,
                              "A young item (fewer than POLYREC_YOUNG_EVENTS events) takes the last place of a "
                              "user's top-K when it is among the user's best this many items; it trades the new "
                              "items' recall against everyone's (docs/coldstart.md); 0: off.")
    explore_share: float = _env("POLYREC_EXPLORE_SHARE", ExploreConfig.share,
                                "Share of the lists (a pseudo-random draw per list) that give the last place to an "
                                "item with no events yet (0 to 1); what exploring costs everyone scales with it "
                                "(docs/coldstart.md).")
    weight_view: float = _env("POLYREC_WEIGHT_VIEW", DEFAULT_WEIGHTS["view"],
                              "Implicit-feedback weight of a view (0 to 1000).")
    weight_click: float = _env("POLYREC_WEIGHT_CLICK", DEFAULT_WEIGHTS["click"],
                               "Implicit-feedback weight of a click (0 to 1000).")
    weight_purchase: float = _env("POLYREC_WEIGHT_PURCHASE", DEFAULT_WEIGHTS["purchase"],
                                  "Implicit-feedback weight of a purchase (0 to 1000).")
    max_items: int = _env("POLYREC_MAX_ITEMS", MAX_ITEMS,
                          "Most items a worker knows (all partitions): past it, events of new items are "
                          "dead-lettered (item_capacity) and their item records refused, so that a flood of new "
                          "item ids cannot exhaust every worker's memory. docs/operations.md sizes it.")
    history_max: int = _env("POLYREC_HISTORY_MAX", 500,
                            "Distinct recent items kept per user for seen-item exclusion.")
    batch_max: int = _env("POLYREC_BATCH_MAX", 1000, "Most events in one micro-batch.")
    redis_prefix: str = _env("POLYREC_REDIS_PREFIX", "polyrec",
                             "Prefix of every Redis key polyrec writes.")
    recs_ttl_s: int = _env("POLYREC_RECS_TTL_S", 7 * 24 * 3600, "TTL of a user's recommendation key, seconds.")
    stream_maxlen: int = _env("POLYREC_STREAM_MAXLEN", 100_000,
                              "Approximate length cap of the Redis stream of recommendation updates.")
    store: str = _env("POLYREC_STORE", "memory://",
                      "Faust table store: memory://, or rocksdb:// for production (the rocksdb extra).")
    standby_replicas: int = _env("POLYREC_STANDBY_REPLICAS", 1,
                                 "Other workers that keep a standby copy of each partition's user states, for a "
                                 "fast failover (Faust's table_standby_replicas). Memory: with the memory store "
                                 "each worker holds about (1 + this) / workers of all users; 0: a partition's new "
                                 "owner recovers it from the changelog.")
    fetch_max_wait_ms: int = _env("POLYREC_FETCH_MAX_WAIT_MS", 20,
                                  "Longest a consumer fetch may wait at the broker for new records, ms "
                                  "(part of every event's freshness).")
    commit_interval_s: float = _env("POLYREC_COMMIT_INTERVAL_S", 3.0,
                                    "How often consumed offsets are committed, seconds, whatever the event rate "
                                    "(replays after a crash are skipped, so this bounds re-reading, not "
                                    "correctness). Item contributions are written just before each commit, so it "
                                    "is also how far other workers lag behind a partition's item updates; longer "
                                    "intervals write fewer item records (docs/performance.md).")
    event_loop: str = _env("POLYREC_EVENT_LOOP", "uvloop",
                           "Worker event loop: uvloop (faster; falls back to asyncio where it is not installed) "
                           "or asyncio.")
    data_dir: str = _env("POLYREC_DATA_DIR", "/tmp/polyrec-worker",
                         "Worker data directory (table stores).")
    metrics_port: int = _env("POLYREC_METRICS_PORT", 9108, "Port of the Prometheus /metrics endpoint (0: off).")
    web_port: int = _env("POLYREC_WEB_PORT", 6066,
                         "Port of the worker's web server (/polyrec/health, /polyrec/ready); 0: off.")
    web_bind: str = _env("POLYREC_WEB_BIND", "0.0.0.0",
                         "Address the web server listens on (127.0.0.1: this host only; probes need the pod's).")
    web_user_state: bool = _env("POLYREC_WEB_USER_STATE", False,
                                "Serve /polyrec/users/{id} (a user's factors and last items, without auth): "
                                "for debugging only.")
    items_agent: bool = _env("POLYREC_ITEMS_AGENT", True,
                             "Run the items agent (encode new items' text for cold start); it needs the encoder.")
    encoder_path: str = _env("POLYREC_ENCODER", "",
                             "Item-text encoder: an exported ONNX file, or use-m3 (Universal Sentence Encoder "
                             "multilingual v3, the use-m3 extra); empty: the default model's int8 graph in the cache.")
    encoder_provider: str = _env("POLYREC_ENCODER_PROVIDER", "auto",
                                 "ONNX Runtime provider: auto (CUDA when available), cuda or cpu.")
    encoder_threads: int = _env("POLYREC_ENCODER_THREADS", 0,
                                "CPU threads of the encoder; 0: the CPUs this process may use (affinity and "
                                "cgroup quota, e.g. a Kubernetes CPU limit).")
    items_batch_max: int = _env("POLYREC_ITEMS_BATCH_MAX", 64, "Most items encoded in one micro-batch.")
    projection_alpha: float = _env("POLYREC_PROJECTION_ALPHA", 1.0,
                                   "Ridge penalty of the text-to-factors projection (relative to the data scale).")
    projection_min_count: int = _env("POLYREC_PROJECTION_MIN_COUNT", 5,
                                     "Events an item needs before its factors train the projection.")
    projection_refit_s: float = _env("POLYREC_PROJECTION_REFIT_S", 60.0,
                                     "Age after which the projection is refitted before projecting new items, seconds.")
    seed: int = _env("POLYREC_SEED", 42, "Seed of the model's random initialisation and sampling.")
    failpoint: str = _env("POLYREC_FAILPOINT", "",
                          "Fault tests only: STEP:N:ACTION[,...] kills (kill), stalls (sleep=S) or fails (raise) the "
                          "worker at the Nth pass through STEP (stream/failpoints.py lists the steps); empty: none.")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every field from its environment variable, falling back to the default."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f.metadata["env"])
            if raw is None or raw == "":
                continue
            kind = type(f.default)
            try:
                values[f.name] = _parse_bool(raw) if kind is bool else kind(raw)
            except ValueError as exc:
                raise ValueError(f"{f.metadata['env']}={raw!r} is not a valid {kind.__name__}") from exc
        values.update(overrides)
        return cls(**values)

    def __post_init__(self) -> None:
        for name in ("top_k", "dim", "partitions", "replication", "batch_max", "items_batch_max", "history_max",
                     "recs_ttl_s", "stream_maxlen", "projection_min_count", "negatives", "cooccur_items", "max_items",
                     "cooccur_window", "context"):
            if getattr(self, name) < 1:
                raise ValueError(f"{_env_name(name)} must be at least 1, got {getattr(self, name)}")
        for name in ("metrics_port", "web_port"):  # 0: off
            if not 0 <= getattr(self, name) <= 65535:
                raise ValueError(f"{_env_name(name)} must be a port from 0 (off) to 65535, got {getattr(self, name)}")
        for name in ("projection_alpha", "commit_interval_s", "session_timeout_s", "redis_timeout_s",
                     "heartbeat_interval_s", "rebalance_timeout_s", "cooccur_floor"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{_env_name(name)} must be positive, got {getattr(self, name)}")
        for f in fields(self):  # the other numbers (weights, the refit period, the seed, ...) may be 0
            value = getattr(self, f.name)
            if type(f.default) is float and not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{f.metadata['env']} must be a finite number >= 0, got {value}")
            if type(f.default) is int and value < 0:
                raise ValueError(f"{f.metadata['env']} must be >= 0, got {value}")
        for name, value, choices in (("POLYREC_ENCODER_PROVIDER", self.encoder_provider, ENCODER_PROVIDERS),
                                     ("POLYREC_EVENT_LOOP", self.event_loop, EVENT_LOOPS)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        for name in ("weight_view", "weight_click", "weight_purchase"):  # 1e30 made accumulators inf, 1e38 factors NaN
            if getattr(self, name) > MAX_EVENT_WEIGHT:
                raise ValueError(f"{_env_name(name)} must be at most {MAX_EVENT_WEIGHT:g}, got {getattr(self, name)}")
        for name in ("cooccur_decay", "context_decay"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{_env_name(name)} must be in (0, 1], got {getattr(self, name)}")
        for name in ("explore_fit", "explore_share"):
            if getattr(self, name) > 1:
                raise ValueError(f"{_env_name(name)} must be a share from 0 (off) to 1, got {getattr(self, name)}")
        for name, value, choices in (("KAFKA_SECURITY_PROTOCOL", self.kafka_security_protocol, KAFKA_PROTOCOLS),
                                     ("KAFKA_SASL_MECHANISM", self.kafka_sasl_mechanism, SASL_MECHANISMS)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        if self.kafka_security_protocol.startswith("SASL_") and not (self.kafka_sasl_username
                                                                      and self.kafka_sasl_password):
            raise ValueError(f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs KAFKA_SASL_USERNAME and "
                             "KAFKA_SASL_PASSWORD")
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            raise ValueError("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together (mutual TLS)")
        parse_failpoints(self.failpoint)  # a typo must not leave a fault test without its fault
        if "://" not in self.store or urlsplit(self.store).scheme not in STORES:
            raise ValueError(f"POLYREC_STORE must be one of {', '.join(s + '://' for s in STORES)}, got {self.store!r}")

    def describe(self) -> list[str]:
        """``VARIABLE=value`` lines of every setting, with passwords (also in URLs) masked."""
        return [f"{f.metadata['env']}={_masked(f.metadata['env'], str(getattr(self, f.name)))}" for f in fields(self)]

    def kafka_credentials(self) -> Any:
        """Faust's ``broker_credentials`` for the worker's app (None: PLAINTEXT)."""
        from faust.auth import SASLCredentials, SSLCredentials

        protocol = self.kafka_security_protocol
        context = self._ssl_context() if protocol in ("SSL", "SASL_SSL") else None
        if protocol.startswith("SASL_"):
            return SASLCredentials(username=self.kafka_sasl_username, password=self.kafka_sasl_password,
                                   ssl_context=context, mechanism=self.kafka_sasl_mechanism)
        return SSLCredentials(context) if context is not None else None

    def kafka_options(self) -> dict[str, Any]:
        """The same as keyword arguments of an aiokafka client (every client the worker and the
        commands make outside Faust: replicas, the offset probe, the admin client, ``polyrec forget``)."""
        from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

        return dict(credentials_to_aiokafka_auth(self.kafka_credentials()))

    def _ssl_context(self) -> Any:
        from aiokafka.helpers import create_ssl_context

        return create_ssl_context(cafile=self.kafka_ssl_cafile or None, certfile=self.kafka_ssl_certfile or None,
                                  keyfile=self.kafka_ssl_keyfile or None)

    def mf_config(self) -> MFConfig:
        return MFConfig(dim=self.dim, user_lr=self.user_lr, item_lr=self.item_lr, reg=self.reg,
                        n_negatives=self.negatives, seed=self.seed)

    def cooccurrence_config(self) -> CooccurrenceConfig:
        return CooccurrenceConfig(max_items=self.cooccur_items, window=self.cooccur_window,
                                  pair_decay=self.cooccur_decay, context=self.context,
                                  context_decay=self.context_decay, alpha=self.cooccur_alpha,
                                  mf_weight=self.mf_weight, floor=self.cooccur_floor)

    def consumers_config(self) -> ConsumersConfig:
        return ConsumersConfig(young=self.young_events, shrink=self.young_shrink)

    def explore_config(self) -> ExploreConfig | None:
        return (ExploreConfig(fit=self.explore_fit, place=self.top_k, reach=self.explore_reach,
                              share=self.explore_share) if self.explore_fit or self.explore_reach else None)

    @property
    def weights(self) -> dict[str, float]:
        return {"view": self.weight_view, "click": self.weight_click, "purchase": self.weight_purchase}

    @property
    def broker_list(self) -> list[str]:
        """Bootstrap servers as host:port strings."""
        return [s.strip().removeprefix("kafka://") for s in self.kafka_bootstrap.split(",") if s.strip()]


def _env_name(field_name: str) -> str:
    return next(f.metadata["env"] for f in fields(Settings) if f.name == field_name)


def _masked(env_name: str, value: str) -> str:
    return ("***" if value else "") if env_name.endswith("PASSWORD") else redact_url(value)


def redact_url(url: str) -> str:
    """``url`` with its password (``redis://:secret@host``) replaced by ``***``; other text as is."""
    parts = urlsplit(url) if "://" in url else None
    if parts is None or parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def markdown_table() -> str:
    """The configuration reference as a Markdown table."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for f in fields(Settings):
        lines.append(f"| `{f.metadata['env']}` | `{f.default}` | {f.metadata['doc']} |")
    return "\n".join(lines) + "\n"
