"""The items agent's pure steps: validation and text of a batch of ``items`` records, and the
data and refit of the text projection, and a retried batch."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import numpy as np

from polyrec.mf import MFConfig
from polyrec.projection import refit_projection
from stream import items as items_module
from stream import metrics
from stream.dead_letters import process_or_dead_letter
from stream.items import ItemPipeline, parse_items, projection_data
from stream.state import WorkerModel
from stream.wire import decode_vector
from tests.support import acked


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


def _learned_model(dim: int = 4):
    """A worker model whose items i0..i4 have had 20, 16, 12, 8 and 4 events."""
    model = WorkerModel(MFConfig(dim=dim, seed=1), history_max=20, k=3)
    items = [f"i{n}" for n in range(5) for _ in range(20 - 4 * n)]
    users = [f"u{n % 7}" for n in range(len(items))]
    model.process(0, users, items, np.ones(len(items), np.float32), np.arange(len(items)),
                  np.zeros(len(items)), {})
    return model


def test_projection_data_takes_items_with_a_text_of_this_encoder_and_enough_events():
    model = _learned_model()
    model.embeddings.update({f"i{n}": np.full(6, n, np.float32) for n in range(5)})
    model.embeddings["i1"] = np.ones(9, np.float32)  # another encoder's width: left out
    data = projection_data(model, dim=6)
    embeddings, counts, factors, bias = data
    assert [e[0] for e in embeddings] == [0.0, 2.0, 3.0, 4.0] and factors.shape == (4, 4) and bias.shape == (4,)
    assert refit_projection(*data, min_count=10).n_items == 2  # i0 (20 events), i2 (12); i3, i4 have too few
    assert refit_projection(*data, min_count=13) is None  # only i0 left: no fit
    model.embeddings = {"i0": model.embeddings["i0"]}
    assert projection_data(model, dim=6) is None


def test_the_projection_is_refitted_when_stale_and_kept_when_a_refit_fails(monkeypatch, caplog):
    model = _learned_model()
    model.embeddings.update({f"i{n}": np.random.default_rng(n).normal(size=6).astype(np.float32) for n in range(5)})
    encoder = SimpleNamespace(provider="CPUExecutionProvider", dim=6)
    pipeline = ItemPipeline(model, encoder, produce=None, topics={"dlq": "items.dlq"}, min_count=3, refit_s=3600)
    first = asyncio.run(pipeline._current_projection())
    assert first is not None and first.n_items == 5
    model.embeddings["i4"] = np.zeros(6, np.float32)
    assert asyncio.run(pipeline._current_projection()) is first  # younger than refit_s: not refitted
    pipeline.refit_s = 0
    second = asyncio.run(pipeline._current_projection())
    assert second is not first and not np.allclose(second.x_mean, first.x_mean)  # stale: refitted

    def failing(*args, **kwargs):
        raise ValueError("bad rows")

    monkeypatch.setattr(items_module, "refit_projection", failing)
    with caplog.at_level("WARNING"):
        assert asyncio.run(pipeline._current_projection()) is second  # the refit failed: the old one stays
    assert "keeping the previous one: bad rows" in caplog.text


def test_a_retried_batch_sends_the_vectors_this_worker_applied_the_first_time():
    model = _learned_model()
    model.embeddings.update({f"i{n}": np.random.default_rng(n).normal(size=6).astype(np.float32) for n in range(5)})
    sent = []

    async def produce(topic, key, value, partition, headers):
        if not sent:  # the first send fails, after the local apply; the data of the next refit changes
            sent.append(None)
            model.embeddings["i4"] = np.zeros(6, np.float32)
            raise ConnectionError("broker away")
        sent.append(json.loads(value))
        return acked()

    async def encode_async(texts):
        return np.ones((len(texts), 6), np.float32) / np.sqrt(6)

    encoder = SimpleNamespace(provider="CPUExecutionProvider", dim=6, encode_async=encode_async)
    pipeline = ItemPipeline(model, encoder, produce, topics={"items": "items", "dlq": "dlq"}, min_count=3, refit_s=0)
    new = SimpleNamespace(value=item(item_id="new", title="Toy Story"),
                          message=SimpleNamespace(key=b"new", offset=7, topic="items", partition=0))
    first = asyncio.run(pipeline._current_projection()).project(np.ones((1, 6)) / np.sqrt(6))[0]
    written = metrics.ITEM_RECORDS_WRITTEN._value.get()
    asyncio.run(process_or_dead_letter(pipeline, [new], backoff_s=0))
    assert metrics.ITEM_RECORDS_WRITTEN._value.get() - written == 1  # the failed attempt wrote nothing
    assert not np.allclose(pipeline.projection.project(np.ones((1, 6)) / np.sqrt(6))[0], first)  # refitted
    assert len(sent) == 2 and sent[1]["item_id"] == "new"
    np.testing.assert_allclose(decode_vector(sent[1]["v"]), model.item_vector("new"), atol=1e-6)
    np.testing.assert_allclose(model.item_vector("new"), first, atol=1e-6)


def test_new_items_past_the_item_cap_are_rejected_and_known_ones_kept():
    model = WorkerModel(MFConfig(dim=4), max_items=2)
    model.mf.add_items(["m1"])
    pipeline = ItemPipeline(model, SimpleNamespace(provider="cpu", dim=4), produce=None, topics={"dlq": "items.dlq"})
    batch = [event(json.dumps({"item_id": i, "title": "t", "ts": 1}).encode(), i.encode()) for i in ("m1", "m2", "m3")]
    valid, rejected = pipeline.validate(batch)
    assert [v[1][0].item_id for v in valid] == ["m1", "m2"]  # m1 known, m2 takes the last place
    assert [(ev.message.key, exc.reason) for ev, exc in rejected] == [(b"m3", "item_capacity")]
