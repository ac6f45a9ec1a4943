"""Validation of ``events`` and ``items`` records (pure logic; the worker test covers the DLQ path)."""

import json

import pytest

from stream.records import MAX_PAYLOAD_BYTES, Forget, Rejected, compact_json, parse_event, parse_item, validate_all


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
    (b'{"user_id": "\\ud800", "item_id": "x", "event": "click", "ts": 1}', "malformed_json"),  # lone surrogate
    (b'{"user_id": "u", "item_id": "x\\uDC00", "event": "click", "ts": 1}', "malformed_json"),
    (b'{"user_id": "u", "item_id": "x", "event": "click", "ts": 1, "a": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
     "malformed_json"),  # deeper than the decoder's recursion limit, well under 64 KiB
    (b'{"user_id": "u", "item_id": "x", "event": "click", "ts": 1, "n": 1' + b"0" * 5000 + b"}",
     "malformed_json"),  # an integer beyond Python's 4300-digit conversion limit
    (None, "malformed_json"),
    (raw(item_id="x", event="click", ts=1), "missing_field"),
    (raw(user_id="u", item_id="x", event="click"), "missing_field"),
    (raw(user_id=5, item_id="x", event="click", ts=1), "invalid_type"),
    (raw(user_id="u", item_id="x", event=True, ts=1), "invalid_type"),
    (raw(user_id="u", item_id=" ", event="click", ts=1), "invalid_id"),
    (raw(user_id="u", item_id="é" * 129, event="click", ts=1), "invalid_id"),  # 258 bytes
    (raw(user_id="u", item_id="x\u0000y", event="click", ts=1), "invalid_id"),  # NUL
    (raw(user_id="u", item_id="line\nbreak", event="click", ts=1), "invalid_id"),
    (raw(user_id="u", item_id="x\u0085", event="click", ts=1), "invalid_id"),  # a C1 control (NEL)
    (raw(user_id="u", item_id="abc\u202etxt.exe", event="click", ts=1), "invalid_id"),  # right-to-left override
    (raw(user_id="u", item_id="\u2067x", event="click", ts=1), "invalid_id"),  # a bidi isolate
    (raw(user_id="u", item_id="cafe\u0301", event="click", ts=1), "invalid_id"),  # NFD: "café" decomposed
    (raw(user_id="u", item_id="x", event="like", ts=1), "unknown_event_type"),
    (raw(user_id="u", item_id="x", event="click", ts=-1), "invalid_timestamp"),
    (raw(user_id="u", item_id="x", event="click", ts=1e308), "invalid_timestamp"),
    (raw(user_id="u", item_id="x", event="click", ts="0001-01-01T00:00:00Z"), "invalid_timestamp"),
    (raw(user_id="u", item_id="x", event="click", ts="2100-01-01T00:00:01Z"), "invalid_timestamp"),
    (raw(user_id="u", item_id="x", event="click", ts="yesterday"), "invalid_timestamp"),
    (raw(user_id="u", item_id="x", event="click", ts=True), "invalid_timestamp"),
    (raw(user_id="u", item_id="x", event="click", ts=1, pad="y" * MAX_PAYLOAD_BYTES), "payload_too_large"),
])
def test_bad_events_are_rejected_with_their_reason(value, reason):
    with pytest.raises(Rejected) as exc:
        parse_event(value, b"u")
    assert exc.value.reason == reason


def test_ids_in_any_script_and_timestamps_at_the_range_ends_are_accepted():
    for item_id in ("café", "東京タワー", "שלום", "مرحبا", "x y-z_1.2:3/4", "\U0001f37f"):  # NFC, RTL letters
        assert parse_event(raw(user_id="u", item_id=item_id, event="view", ts=1), b"u").item_id == item_id
    assert parse_event(raw(user_id="u", item_id="x", event="view", ts=0), b"u").ts_ms == 0
    assert parse_event(raw(user_id="u", item_id="x", event="view", ts="2100-01-01T00:00:00Z"), b"u").ts_ms \
        == 4_102_444_800_000


def test_a_surrogate_pair_is_one_character_not_a_rejection():
    ev = parse_event(b'{"user_id": "u", "item_id": "\\ud83c\\udf7f", "event": "view", "ts": 1}', b"u")
    assert ev.item_id == "\U0001f37f"


def test_the_key_must_be_the_user_id():
    for key in (b"someone-else", None, b"\xfe"):
        with pytest.raises(Rejected) as exc:
            parse_event(raw(user_id="u", item_id="x", event="view", ts=1), key)
        assert exc.value.reason == "key_mismatch"


def test_items_are_checked_for_non_finite_numbers_too():
    item = parse_item(raw(item_id="m1", title="Toy Story", lang="en", ts=1, rating=4.5), b"m1")
    assert (item.title, item.lang, item.extra) == ("Toy Story", "en", {"rating": 4.5})
    with pytest.raises(Rejected) as exc:
        parse_item(b'{"item_id": "m1", "title": "t", "ts": 1, "rating": 1e999}', b"m1")
    assert exc.value.reason == "non_finite_number"


@pytest.mark.parametrize("value, reason", [
    (b'{"item_id": "m1", "title": "Am\\ud800lie", "ts": 1}', "malformed_json"),  # cannot be tokenised
    (b'{"item_id": "m1", "title": "t", "description": false, "ts": 1}', "invalid_type"),
    (b'{"item_id": "m1", "title": "t", "description": 0, "ts": 1}', "invalid_type"),
])
def test_bad_items_are_rejected_with_their_reason(value, reason):
    with pytest.raises(Rejected) as exc:
        parse_item(value, b"m1")
    assert exc.value.reason == reason


def test_validate_all_turns_an_unexpected_error_into_a_rejection():
    def check(n: int) -> int:
        if n == 2:
            raise Rejected("invalid_id", "two")
        return 10 // n  # n == 0: ZeroDivisionError, a bug in the check, not in the record

    good, rejected = validate_all([1, 2, 0, 5], check)
    assert good == [(1, 10), (5, 2)]
    assert [(n, exc.reason) for n, exc in rejected] == [(2, "invalid_id"), (0, "unexpected_error")]
    assert "ZeroDivisionError" in rejected[1][1].detail


def test_compact_json_has_no_spaces_and_round_trips():
    obj = {"a": [1, 2.5, "ü"], "b": None}
    assert compact_json(obj) == json.dumps(obj, separators=(",", ":"))
    assert json.loads(compact_json(obj)) == obj


def test_a_dead_letter_copy_keeps_the_originals_unless_they_exceed_the_producer_limit():
    from stream.dead_letters import DLQ_MAX_BYTES, DLQ_MAX_KEY_BYTES, dlq_copy

    assert dlq_copy(b"k", b"v" * 1000) == (b"k", b"v" * 1000, [])
    assert dlq_copy(None, None) == (None, None, [])
    key, value, headers = dlq_copy(b"k" * 100_000, b"v" * 2_000_000)
    assert key == b"k" * DLQ_MAX_KEY_BYTES and len(key) + len(value) == DLQ_MAX_BYTES and set(value) == {ord("v")}
    assert headers == [("polyrec-truncated", b"key 100000 bytes, value 2000000 bytes")]


def test_an_erasure_request_needs_a_user_id_and_a_ts_but_no_item():
    request = parse_event(raw(user_id="u1", event="forget", ts=5), b"u1")
    assert isinstance(request, Forget) and (request.user_id, request.ts_ms, request.event) == ("u1", 5.0, "forget")
    for fields, reason in (({"event": "forget", "ts": 5}, "missing_field"),
                           ({"user_id": "u1", "event": "forget"}, "missing_field"),
                           ({"user_id": "u\u202e1", "event": "forget", "ts": 5}, "invalid_id")):
        with pytest.raises(Rejected) as info:
            parse_event(raw(**fields), b"u1")
        assert info.value.reason == reason
    with pytest.raises(Rejected, match="key_mismatch"):
        parse_event(raw(user_id="u1", event="forget", ts=5), b"u2")
