"""Validation of ``events`` and ``items`` records (pure logic; the worker test covers the DLQ path)."""

import json

import pytest

from stream.records import MAX_PAYLOAD_BYTES, Rejected, compact_json, parse_event, parse_item


def raw(**fields) -> bytes:
    return json.dumps(fields).encode()


def test_a_valid_event_keeps_its_extra_fields_and_reads_iso_timestamps():
    ev = parse_event(raw(user_id="u1", item_id="i1", event="click", ts="2024-01-02T03:04:05Z", page="home",
                         price=9.5), b"u1")
    assert (ev.user_id, ev.item_id, ev.event) == ("u1", "i1", "click")
    assert ev.ts_ms == 1704164645000.0
    assert ev.extra == {"page": "home", "price": 9.5}


@pytest.mark.parametrize("value, reason", [
    (b'{"user_id": "u", "item_id": "x", "event": "click", "ts": NaN}', "non_finite_number"),
    (b'{"user_id": "u", "item_id": "x", "event": "click", "ts": -Infinity}', "non_finite_number"),
    (b'{"user_id": "u", "item_id": "x", "event": "click", "ts": 1, "a": {"b": [1, Infinity]}}', "non_finite_number"),
    (b'{"user_id": "u", "item_id": "x", "event": "click", "ts": 1e999}', "non_finite_number"),
    (b'{"user_id": "u", "item_id": "x", "event": "click", "ts": 1, "a": [-1e400]}', "non_finite_number"),
    (b'{"user_id": "u", "item_id": "x", "event": "click", "ts": 1' + b"0" * 400 + b"}", "non_finite_number"),
    (b"{not json", "malformed_json"),
    (b"[1, 2]", "malformed_json"),
    (b"\xff\xfe", "malformed_json"),
    (None, "malformed_json"),
    (raw(item_id="x", event="click", ts=1), "missing_field"),
    (raw(user_id="u", item_id="x", event="click"), "missing_field"),
    (raw(user_id=5, item_id="x", event="click", ts=1), "invalid_type"),
    (raw(user_id="u", item_id="x", event=True, ts=1), "invalid_type"),
    (raw(user_id="u", item_id=" ", event="click", ts=1), "invalid_id"),
    (raw(user_id="u", item_id="é" * 129, event="click", ts=1), "invalid_id"),  # 258 bytes
    (raw(user_id="u", item_id="x", event="like", ts=1), "unknown_event_type"),
    (raw(user_id="u", item_id="x", event="click", ts="yesterday"), "invalid_timestamp"),
    (raw(user_id="u", item_id="x", event="click", ts=True), "invalid_timestamp"),
    (raw(user_id="u", item_id="x", event="click", ts=1, pad="y" * MAX_PAYLOAD_BYTES), "payload_too_large"),
])
def test_bad_events_are_rejected_with_their_reason(value, reason):
    with pytest.raises(Rejected) as exc:
        parse_event(value, b"u")
    assert exc.value.reason == reason


def test_the_key_must_be_the_user_id():
    for key in (b"someone-else", None):
        with pytest.raises(Rejected) as exc:
            parse_event(raw(user_id="u", item_id="x", event="view", ts=1), key)
        assert exc.value.reason == "key_mismatch"


def test_items_are_checked_for_non_finite_numbers_too():
    item = parse_item(raw(item_id="m1", title="Toy Story", lang="en", ts=1, rating=4.5), b"m1")
    assert (item.title, item.lang, item.extra) == ("Toy Story", "en", {"rating": 4.5})
    with pytest.raises(Rejected) as exc:
        parse_item(b'{"item_id": "m1", "title": "t", "ts": 1, "rating": 1e999}', b"m1")
    assert exc.value.reason == "non_finite_number"


def test_compact_json_has_no_spaces_and_round_trips():
    obj = {"a": [1, 2.5, "ü"], "b": None}
    assert compact_json(obj) == json.dumps(obj, separators=(",", ":"))
    assert json.loads(compact_json(obj)) == obj
