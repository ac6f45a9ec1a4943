"""Parsing and validating the JSON records on the ``events`` and ``items`` topics. Pure logic.

A record that fails raises :class:`Rejected` with one of :data:`REASONS`; the worker sends the
original bytes to the topic's dead-letter topic with that reason, and moves on.
"""

from __future__ import annotations

import json
import logging
import math
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from polyrec.events import EVENT_TYPES

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_ID_BYTES = 256
TS_RANGE_MS = (0.0, 4_102_444_800_000.0)  # 1970-01-01 to 2100-01-01 UTC: a ts outside is a producer's bug
# C0 and C1 controls (NUL, newlines, escapes) and the bidirectional controls (RLO, isolates, marks):
# in an id they forge log lines and Redis keys, or make one id display as another
_UNSAFE_ID_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")

FORGET = "forget"  # the ``event`` of an erasure request: a user id, no item
PROCESSING_FAILED = "processing_failed"  # its whole micro-batch failed every attempt (see the worker log)
ITEM_CAPACITY = "item_capacity"  # a valid record of a new item while the worker knows POLYREC_MAX_ITEMS items
REASONS = (
    "payload_too_large",  # over 64 KiB
    "malformed_json",  # not UTF-8 JSON, not a JSON object, nested too deeply, or lone surrogates
    "missing_field",  # a required field is absent or null
    "invalid_type",  # a field has the wrong JSON type
    "invalid_id",  # an id is empty, longer than 256 bytes, holds a control character or is not NFC
    "unknown_event_type",  # event is not view, click, purchase or forget
    "non_finite_number",  # NaN or +-Infinity anywhere in the record
    "invalid_timestamp",  # ts is neither epoch milliseconds nor ISO-8601, or outside 1970-2100
    "key_mismatch",  # the Kafka key is not the record's id (breaks per-key ordering)
    "empty_text",  # an item whose text is empty after normalisation
    "unexpected_error",  # validation itself failed on this record (a polyrec bug: please report it)
    ITEM_CAPACITY,
    PROCESSING_FAILED,
)


class Rejected(ValueError):
    """A record that cannot be processed; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Event:
    user_id: str
    item_id: str
    event: str
    ts_ms: float
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Forget:
    """An erasure request on the ``events`` topic (``polyrec forget``): the worker that owns the user
    erases what it keeps of them when it reaches this record, after the user's earlier events."""

    user_id: str
    ts_ms: float
    event: str = FORGET


@dataclass(frozen=True)
class Item:
    item_id: str
    title: str
    description: str
    lang: str | None
    ts_ms: float
    extra: dict[str, Any] = field(default_factory=dict)


def _reject_constant(name: str) -> float:
    raise Rejected("non_finite_number", f"{name} is not a finite number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # a literal too large for a double, e.g. 1e999
        raise Rejected("non_finite_number", f"{text[:40]} is not a finite number")
    return value


# One decoder, built once (json.loads with keyword arguments builds one per call). Every
# non-finite number is rejected while parsing: NaN/Infinity literals and overflowing floats.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
_ENCODER = json.JSONEncoder(separators=(",", ":"))
# A \uD800-\uDFFF escape that is not half of a pair decodes to a lone surrogate: a str that
# cannot be encoded as UTF-8 (ids, Redis payloads) nor tokenised. Rare, so only records that
# contain such an escape are re-encoded to look for one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_UTF8_CHECK = json.JSONEncoder(ensure_ascii=False)


def compact_json(obj: Any) -> str:
    """``obj`` as compact JSON (the encoder is built once, unlike ``json.dumps(obj, separators=...)``)."""
    return _ENCODER.encode(obj)


def _load_object(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        raise Rejected("malformed_json", "empty message value")
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise Rejected("payload_too_large", f"{len(raw)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        text = raw.decode("utf-8")
        obj = _DECODER.decode(text)
        if _SURROGATE_ESCAPE.search(text):
            _UTF8_CHECK.encode(obj).encode("utf-8")
    except Rejected:
        raise
    except UnicodeEncodeError:
        raise Rejected("malformed_json", "a \\u escape is a lone UTF-16 surrogate, not a character") from None
    except RecursionError:
        raise Rejected("malformed_json", "nested too deeply") from None
    except ValueError as exc:  # not UTF-8, not JSON, or an integer of more than 4300 digits
        raise Rejected("malformed_json", str(exc)[:200]) from None
    if not isinstance(obj, dict):
        raise Rejected("malformed_json", f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _require(obj: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = obj.get(name)
    if value is None:
        raise Rejected("missing_field", f"{name!r} is required")
    if not isinstance(value, kind) or isinstance(value, bool):
        expected = getattr(kind, "__name__", kind)
        raise Rejected("invalid_type", f"{name!r} must be {expected}, got {type(value).__name__}")
    return value


def _id(obj: dict[str, Any], name: str) -> str:
    value = _require(obj, name, str)
    size = len(value.encode("utf-8"))
    if size == 0 or not value.strip():
        raise Rejected("invalid_id", f"{name!r} is empty")
    if size > MAX_ID_BYTES:
        raise Rejected("invalid_id", f"{name!r} is {size} bytes > {MAX_ID_BYTES}")
    unsafe = _UNSAFE_ID_CHARS.search(value)
    if unsafe:
        raise Rejected("invalid_id", f"{name!r} holds the control character U+{ord(unsafe.group()):04X}")
    if not unicodedata.is_normalized("NFC", value):  # else one id could arrive under two byte strings
        raise Rejected("invalid_id", f"{name!r} is not in Unicode normal form NFC")
    return value


def parse_ts(value: Any) -> float:
    """Epoch milliseconds from epoch milliseconds (int/float) or an ISO-8601 string, within
    :data:`TS_RANGE_MS`."""
    ts = _ts(value)
    if not TS_RANGE_MS[0] <= ts <= TS_RANGE_MS[1]:
        raise Rejected("invalid_timestamp", f"ts {ts:.0f} ms is not between 1970 and 2100")
    return ts


def _ts(value: Any) -> float:
    if isinstance(value, bool):
        raise Rejected("invalid_timestamp", "ts must be epoch milliseconds or ISO-8601")
    if isinstance(value, (int, float)):
        try:
            ts = float(value)
        except OverflowError:  # an integer beyond any double (JSON integers have no size limit)
            raise Rejected("non_finite_number", "ts is too large to be a number") from None
        if not math.isfinite(ts):
            raise Rejected("non_finite_number", "ts is not finite")
        return ts
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise Rejected("invalid_timestamp", f"cannot parse {value[:40]!r} as ISO-8601") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp() * 1000.0
    raise Rejected("invalid_timestamp", "ts must be epoch milliseconds or ISO-8601")


def _ts_field(obj: dict[str, Any]) -> float:
    if obj.get("ts") is None:
        raise Rejected("missing_field", "'ts' is required")
    return parse_ts(obj["ts"])


def _check_key(key: bytes | None, value: str, name: str) -> None:
    if key is None:
        raise Rejected("key_mismatch", f"the Kafka key must be the {name}; it is missing")
    if key != value.encode("utf-8"):  # bytes, not decoded: two keys must never map to one id
        raise Rejected("key_mismatch", f"Kafka key {key[:64]!r} is not the record's {name}")


def parse_event(raw: bytes | None, key: bytes | None) -> Event | Forget:
    """Validate one ``events`` record: ``{user_id, item_id, event, ts}`` plus extra fields, or an
    erasure request ``{user_id, event: "forget", ts}`` (:class:`Forget`)."""
    obj = _load_object(raw)
    user_id = _id(obj, "user_id")
    kind = _require(obj, "event", str)
    if kind == FORGET:
        ts_ms = _ts_field(obj)
        _check_key(key, user_id, "user_id")
        return Forget(user_id, ts_ms)
    item_id = _id(obj, "item_id")
    if kind not in EVENT_TYPES:
        raise Rejected("unknown_event_type", f"{kind[:40]!r} is not one of {', '.join((*EVENT_TYPES, FORGET))}")
    ts_ms = _ts_field(obj)
    _check_key(key, user_id, "user_id")
    extra = {k: v for k, v in obj.items() if k not in ("user_id", "item_id", "event", "ts")}
    return Event(user_id, item_id, kind, ts_ms, extra)


def parse_item(raw: bytes | None, key: bytes | None) -> Item:
    """Validate one ``items`` record: ``{item_id, title, description?, lang?, ts}``."""
    obj = _load_object(raw)
    item_id = _id(obj, "item_id")
    title = _require(obj, "title", str)
    description = obj.get("description")
    if description is None:
        description = ""
    elif not isinstance(description, str):
        raise Rejected("invalid_type", f"'description' must be str, got {type(description).__name__}")
    lang = obj.get("lang")
    if lang is not None and not isinstance(lang, str):
        raise Rejected("invalid_type", "'lang' must be str")
    ts_ms = _ts_field(obj)
    _check_key(key, item_id, "item_id")
    extra = {k: v for k, v in obj.items() if k not in ("item_id", "title", "description", "lang", "ts")}
    return Item(item_id, title, description, lang, ts_ms, extra)


def validate_all(records: Iterable[T], check: Callable[[T], R]) -> tuple[list[tuple[T, R]], list[tuple[T, Rejected]]]:
    """Apply ``check`` to every record: ``(record, result)`` pairs and ``(record, Rejected)`` pairs.

    An exception other than :class:`Rejected` is a bug in validation, not in the record's
    producer; it is logged with its traceback and the record rejected as ``unexpected_error``, so
    that one record can never stop a batch.
    """
    good, rejected = [], []
    for record in records:
        try:
            good.append((record, check(record)))
        except Rejected as exc:
            rejected.append((record, exc))
        except Exception as exc:  # noqa: BLE001 - the catch-all that keeps the worker alive
            log.exception("validating a record failed unexpectedly")
            rejected.append((record, Rejected("unexpected_error", f"{type(exc).__name__}: {exc}")))
    return good, rejected


def refuse_new_items(valid: list[tuple[T, R]], rejected: list[tuple[T, Rejected]],
                     item_of: Callable[[R], str | None], admit: Callable[[list[str]], Any],
                     limit: int) -> tuple[list[tuple[T, R]], list[tuple[T, Rejected]]]:
    """Move from ``valid`` to ``rejected`` (reason ``item_capacity``) the records whose item
    (``item_of``; None: a record without one) ``admit`` refuses (``WorkerModel.admit``: a new item
    past ``limit`` known ones)."""
    at = [n for n, (_, r) in enumerate(valid) if item_of(r) is not None]
    admitted = admit([item_of(valid[n][1]) for n in at])  # type: ignore[misc]
    refused = {n for n, ok in zip(at, admitted) if not ok}
    if not refused:
        return valid, rejected
    detail = f"a new item, and this worker already knows POLYREC_MAX_ITEMS={limit:,} items"
    return ([pair for n, pair in enumerate(valid) if n not in refused],
            rejected + [(valid[n][0], Rejected(ITEM_CAPACITY, detail)) for n in sorted(refused)])
