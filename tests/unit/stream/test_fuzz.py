"""Fuzzing of what the worker reads from outside (hypothesis, thousands of cases): the ``events`` and
``items`` decoders, and the durable states it loads (users table values, item-factor records).

The oracle is the contract, not a copy of the code: a decoder either returns a record whose fields
hold the documented limits or raises ``Rejected`` with a documented reason, never anything else;
loading a state never raises out of the batch and never leaves a non-finite number or a non-string
id in the model.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from polyrec.mf import MFConfig
from stream.records import (
    REASONS,
    TS_RANGE_MS,
    Event,
    Forget,
    Item,
    Rejected,
    parse_event,
    parse_item,
)
from stream.state import WorkerModel
from stream.wire import MAX_ABS_VALUE, ItemRecord, UserState, encode_vector
from tests.support import valid_id

# no example database in the checkout, no wall-clock deadline on a shared 2-core machine
FUZZ = settings(max_examples=2000, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ids as producers send them, and as they should not: every Unicode category, the controls and bidi marks
ids = st.one_of(
    st.text(min_size=1, max_size=12),
    st.text(st.characters(codec="utf-8"), max_size=300),
    st.sampled_from(["\u202egnp.exe", "a\x00b", "e\u0301", "\u00e9", " ", "ü" * 129, "x" * 256, "x" * 257,
                     "\ud800", "🙂", "\u2066x"]),
    st.integers(), st.floats(), st.none(), st.booleans(), st.lists(st.integers(), max_size=2),
)
timestamps = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["2026-12-05T06:00:00Z", "2026-12-05", "0001-01-01T00:00:00", "9999-12-31", "yesterday", "",
                     "2026-13-01", 10**400]),
    st.text(max_size=30), st.none(), st.booleans(),
)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                         max_size=4),
                           max_leaves=12)


def _encode(obj: object) -> bytes:
    """``obj`` as a producer's JSON bytes (NaN and Infinity as the literals Python writes; a lone
    surrogate as the \\u escape it would be on the wire)."""
    return json.dumps(obj, ensure_ascii=True).encode()


def _decoded(parse, raw: bytes | None, key: bytes | None):
    """``parse(raw, key)``, or the reason it rejected the record; any other exception fails the test."""
    try:
        return parse(raw, key)
    except Rejected as exc:
        assert exc.reason in REASONS
        return exc.reason


def _check_ts(ts_ms: float) -> None:
    assert math.isfinite(ts_ms) and TS_RANGE_MS[0] <= ts_ms <= TS_RANGE_MS[1]


@FUZZ
@given(st.one_of(st.binary(max_size=300), st.none()), st.one_of(st.binary(max_size=20), st.none()))
def test_any_bytes_are_an_event_or_a_documented_rejection(raw, key):
    out = _decoded(parse_event, raw, key)
    if not isinstance(out, str):
        assert valid_id(out.user_id) and key == out.user_id.encode()


@FUZZ
@given(ids, ids, st.one_of(st.sampled_from(["view", "click", "purchase", "forget", "VIEW", ""]), json_values),
       timestamps, st.dictionaries(st.text(max_size=8), json_values, max_size=3), st.integers(0, 3))
def test_event_objects_are_accepted_only_within_the_documented_limits(user, item, kind, ts, extra, keyed):
    obj = {**extra, "user_id": user, "item_id": item, "event": kind, "ts": ts}
    key = {0: None, 1: b"other"}.get(keyed, user.encode("utf-8", "surrogatepass") if isinstance(user, str) else b"u")
    out = _decoded(parse_event, _encode(obj), key)
    if isinstance(out, str):
        return
    assert valid_id(out.user_id) and out.user_id == user and key == user.encode()
    _check_ts(out.ts_ms)
    if isinstance(out, Forget):
        assert kind == "forget"
    else:
        assert isinstance(out, Event) and valid_id(out.item_id) and out.event in ("view", "click", "purchase")
        assert set(out.extra) == set(obj) - {"user_id", "item_id", "event", "ts"}


@FUZZ
@given(ids, st.one_of(st.text(max_size=60), json_values), st.one_of(st.text(max_size=60), json_values),
       st.one_of(st.sampled_from(["en", "de", "zh-Hant", "xx", ""]), json_values), timestamps, st.booleans())
def test_item_objects_are_accepted_only_within_the_documented_limits(item, title, description, lang, ts, keyed):
    obj = {"item_id": item, "title": title, "description": description, "lang": lang, "ts": ts}
    key = item.encode("utf-8", "surrogatepass") if keyed and isinstance(item, str) else None
    out = _decoded(parse_item, _encode(obj), key)
    if isinstance(out, str):
        return
    assert isinstance(out, Item) and valid_id(out.item_id) and key == out.item_id.encode()
    assert isinstance(out.title, str) and isinstance(out.description, str)
    assert out.lang is None or isinstance(out.lang, str)
    _check_ts(out.ts_ms)


DIM = 4
numbers = st.one_of(st.floats(), st.integers(), st.text(max_size=5), st.none(), st.booleans(),
                    st.lists(st.integers(), max_size=2))
vectors = st.one_of(
    st.lists(st.floats(width=32), min_size=DIM, max_size=DIM).map(lambda v: encode_vector(np.array(v, np.float32))),
    st.lists(st.floats(-1, 1, width=32), min_size=0, max_size=DIM + 2).map(
        lambda v: encode_vector(np.array(v, np.float32))),
    st.text(max_size=12), numbers,
)
user_states = st.one_of(
    st.fixed_dictionaries({"f": vectors, "g": numbers, "h": st.one_of(st.lists(ids, max_size=3), json_values),
                           "o": numbers, "n": numbers}, optional={"p": numbers}),
    json_values,
)


def _model() -> WorkerModel:
    return WorkerModel(MFConfig(dim=DIM, seed=1), history_max=10, k=3)


def _assert_model_sane(model: WorkerModel) -> None:
    assert all(isinstance(i, str) for i in model.mf.items.ids), "a non-string item id entered the model"
    assert np.isfinite(model.mf.user_factors).all() and np.isfinite(model.mf.item_factors).all()
    assert np.abs(model.mf.user_factors).max(initial=0) <= MAX_ABS_VALUE


@FUZZ
@given(user_states)
@example({"f": "", "g": 0.0, "h": [], "o": 1 << 63, "n": 0})  # past int64: found by this test (seed 5)
@example({"f": "", "g": 0.0, "h": [], "o": 0, "p": -(1 << 63) - 1, "n": 1 << 64})
def test_a_stored_user_state_of_any_shape_loads_or_is_refused_and_the_batch_goes_on(raw):
    """A users-table value as the store hands it back (JSON-decoded): ``UserState.from_json``
    accepts it only with the documented types, or raises ValueError (the pipeline then treats the
    user as new, and counts it unreadable); the batch learns and scores either way."""
    try:
        state = UserState.from_json(raw)
    except ValueError:
        state = None
    else:
        assert isinstance(state.history, list) and all(isinstance(i, str) for i in state.history)
        assert isinstance(state.offset, int) and isinstance(state.applied, int)
        assert state.partition is None or isinstance(state.partition, int)
    model = _model()
    result = model.process(0, ["u"], ["i"], np.ones(1, np.float32), np.array([7]), np.array([1.0]), {"u": state})
    result.recs.run()
    _assert_model_sane(model)


item_records = st.one_of(
    st.fixed_dictionaries({"item_id": ids, "source": st.one_of(st.sampled_from(["p0", "p3", "text", "p", "q1", "p-1"]),
                                                               json_values),
                           "v": vectors, "o": numbers},
                          optional={"n": numbers, "c": vectors, "e": vectors, "l": json_values}),
    json_values,
)


@FUZZ
@given(item_records)
@example({"item_id": "i", "source": "p0", "v": encode_vector(np.zeros(DIM + 1, np.float32)), "o": 1 << 63})
@example({"item_id": "i", "source": "p0", "v": encode_vector(np.zeros(DIM + 1, np.float32)), "o": 0, "n": 1 << 63})
def test_an_item_factor_record_of_any_shape_is_applied_or_refused_whole(raw):
    """What the replica does with one record of the item-factor topic: decode it, fold it in. Either
    step may refuse it (the replica logs and skips it); the model keeps only string ids and finite,
    bounded factors."""
    model = _model()
    before = len(model.mf.items)
    try:
        model.apply_item_record(ItemRecord.from_json(raw))
    except (ValueError, TypeError, KeyError, AttributeError):
        assert len(model.mf.items) == before, "a refused record left an item row behind"
    _assert_model_sane(model)
    result = model.process(0, ["u"], ["i"], np.ones(1, np.float32), np.array([7]), np.array([1.0]), {"u": None})
    result.recs.run()


@pytest.mark.parametrize("raw", [b'{"user_id":"u","item_id":"i","event":"view","ts":1e400}',
                                 b'{"user_id":"u","item_id":"i","event":"view","ts":' + b"9" * 5000 + b"}",
                                 b'[' * 100_000, b'{"user_id":"\\ud800","item_id":"i","event":"view","ts":1}'])
def test_hostile_payloads_are_rejected_not_crashed_on(raw):
    assert isinstance(_decoded(parse_event, raw, b"u"), str)
