"""One micro-batch of the ``items`` topic: validate, encode the text, project, share.

A new item's starting vector is the projection of its text embedding into the MF item space
(:mod:`polyrec.projection`), fitted on the items this worker already knows both the text and
the learned factors of. The result is a ``text`` record on the shared item-factor topic: every
worker's replica replaces the item's random start with it (and keeps the embedding, so every
worker can refit the projection), so the item is recommendable everywhere at once. The
interactions that follow add to it as for any item (see stream/state.py).

Encoding runs in the encoder's own thread pool and the refit in the default executor: the event
loop never blocks on either.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from encoders.encoder import TextEncoder
from encoders.text import EmptyTextError, item_text
from polyrec.projection import Projection, refit_projection
from stream import metrics
from stream.dead_letters import DeadLetters
from stream.records import Item, Rejected, parse_item, refuse_new_items, validate_all
from stream.sends import Produce, delivered, send_item_record
from stream.state import WorkerModel
from stream.wire import TEXT_SOURCE, ItemRecord, language_label

log = logging.getLogger(__name__)


def projection_data(model: WorkerModel,
                    dim: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray] | None:
    """The projection's candidates, for ``refit_projection``: the items with a ``dim``-wide text
    embedding (records of another encoder are left out), as (embeddings, event counts, factors,
    bias); None if fewer than 2. Copies, or the model's never-mutated arrays: safe off the event loop."""
    ids = [item for item, emb in model.embeddings.items() if emb.shape == (dim,)]
    if len(ids) < 2:
        return None
    rows = model.mf.items.rows(ids)
    return ([model.embeddings[i] for i in ids], model.item_counts()[rows], model.mf.item_factors[rows],
            model.mf.item_bias[rows])


def item_with_text(raw: bytes | None, key: bytes | None) -> tuple[Item, str]:
    """A valid ``items`` record and the text to encode: "title. description", each normalised."""
    item = parse_item(raw, key)
    try:
        return item, item_text(item.title, item.description)
    except EmptyTextError as exc:
        raise Rejected(exc.reason, str(exc)) from None


def parse_items(events: Sequence[Any]) -> tuple[list[tuple[Any, tuple[Item, str]]], list[tuple[Any, Rejected]]]:
    """Split Faust events into (event, (item, normalised text)) and (event, rejection)."""
    return validate_all(events, lambda ev: item_with_text(ev.value, ev.message.key))


class ItemPipeline:
    def __init__(self, model: WorkerModel, encoder: TextEncoder, produce: Produce, topics: dict[str, str],
                 alpha: float = 1.0, min_count: int = 5, refit_s: float = 60.0) -> None:
        """``topics`` names the ``items`` (item-factor) and ``dlq`` topics to write."""
        self.model, self.encoder, self.produce, self.topics = model, encoder, produce, topics
        self.alpha, self.min_count, self.refit_s = alpha, min_count, refit_s
        self.dead_letters = DeadLetters(produce, topics["dlq"])
        self.projection: Projection | None = None
        self._fitted_at = -float("inf")
        metrics.ENCODER_PROVIDER.labels(encoder.provider).set(1)

    def validate(self, events: Sequence[Any]) -> tuple[list[tuple[Any, tuple[Item, str]]], list[tuple[Any, Rejected]]]:
        """:func:`parse_items`; new items past ``POLYREC_MAX_ITEMS`` are rejected (``item_capacity``)."""
        valid, rejected = parse_items(events)
        return refuse_new_items(valid, rejected, lambda pair: pair[0].item_id, self.model.admit, self.model.max_items)

    async def dead_letter(self, rejected: Sequence[tuple[Any, Rejected]]) -> None:
        """Dead-letter items, once each (:class:`stream.dead_letters.DeadLetters`)."""
        await self.dead_letters.send(self.dead_letters.not_sent(rejected))

    async def learn(self, events: Sequence[Any], good: list[tuple[Any, tuple[Item, str]]]) -> None:
        """Encode a batch's valid items (``validate``), start their factors and share them."""
        if not good:
            return
        started = time.perf_counter()
        embeddings = await self.encoder.encode_async([text for _, (_, text) in good])
        metrics.ENCODER_SECONDS.observe(time.perf_counter() - started)
        metrics.ENCODER_ITEMS.inc(len(good))
        projection = await self._current_projection()
        ids = [item.item_id for _, (item, _) in good]
        if projection is None:  # nothing learned yet: keep the random start, share the embedding
            start = self.model.mf.initial_factors(ids, salt=1)
            vectors = np.column_stack([start, np.zeros(len(ids), np.float32)])
        else:
            vectors = projection.project(embeddings)
        # a retried batch: an item applied here the first time goes out as applied (a refit since
        # would give the other workers another vector than this one keeps)
        held = [self.model.text_vector(item_id, ev.message.offset) for item_id, (ev, _) in zip(ids, good)]
        records = [ItemRecord(item_id, TEXT_SOURCE, vec if old is None else old, ev.message.offset, embedding=emb,
                              lang=language_label(item.lang))
                   for item_id, vec, old, emb, (ev, (item, _)) in zip(ids, vectors, held, embeddings, good)]
        for rec in records:
            self.model.apply_item_record(rec)
        await delivered([send_item_record(self.produce, self.topics["items"], rec) for rec in records])
        metrics.ITEM_RECORDS_WRITTEN.inc(len(records))
        log.info("encoded %d new items (%s)", len(records),
                 "random start: no projection yet" if projection is None
                 else f"projected; fitted on {projection.n_items} items")

    async def _current_projection(self) -> Projection | None:
        """The projection, refitted first if it is older than ``refit_s`` (or missing)."""
        if time.monotonic() - self._fitted_at < self.refit_s and self.projection is not None:
            return self.projection
        data = projection_data(self.model, self.encoder.dim)  # copies: safe off the loop
        if data is not None:
            loop = asyncio.get_running_loop()
            try:
                fitted = await loop.run_in_executor(
                    None, lambda: refit_projection(*data, alpha=self.alpha, min_count=self.min_count))
            except ValueError as exc:  # e.g. every candidate holds a non-finite number
                log.warning("projection not refitted, keeping the previous one: %s", exc)
            else:
                self.projection = fitted or self.projection
            self._fitted_at = time.monotonic()
        return self.projection
