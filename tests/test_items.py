"""The items agent's pure steps: validation and text of a batch of ``items`` records."""

from __future__ import annotations

import json
from types import SimpleNamespace

from stream.items import parse_items


def event(value: bytes, key: bytes = b"m1") -> SimpleNamespace:
    """The two attributes of a Faust event that parse_items reads."""
    return SimpleNamespace(value=value, message=SimpleNamespace(key=key))


def item(**fields) -> bytes:
    return json.dumps({"item_id": "m1", "ts": 1, **fields}).encode()


def test_items_get_their_normalised_text_and_bad_ones_a_reason():
    batch = [
        event(item(title="<b>Toy Story</b>", description="Toys &amp; a boy.")),
        event(item(title="<b></b>", description="<i></i>")),  # no text at all: not "."
        event(item(title="  ", description="\u200b\u200e")),
        event(b'{"item_id": "m1", "title": "Am\\ud800lie", "ts": 1}'),  # would crash the tokenizer
        event(item(title="  ", description="Ein Junge und seine Spielzeuge.")),
        event(item(title="ok"), key=None),
    ]
    good, rejected = parse_items(batch)
    assert [text for _, (_, text) in good] == ["Toy Story. Toys & a boy.", "Ein Junge und seine Spielzeuge."]
    assert [exc.reason for _, exc in rejected] == ["empty_text", "empty_text", "malformed_json", "key_mismatch"]
    assert [ev for ev, _ in rejected] == [batch[1], batch[2], batch[3], batch[5]]
