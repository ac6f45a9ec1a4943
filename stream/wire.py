"""The worker's durable records and their wire form: the users table's values (:class:`UserState`)
and the item-factor topic's records (:class:`ItemRecord`, with the Kafka headers that let a reader
skip one without decoding it). Vectors travel as base64 of little-endian float32.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

import numpy as np

TEXT_SOURCE = "text"
# Largest absolute factor or bias a record may carry. Learned values stay within a few units (after
# MovieLens-100K: |user factor| <= 2.7, |item factor| <= 1.0, |bias| <= 1.8); a record beyond it, or
# with a non-finite number, is refused where it is read: it would poison what it touches, or make one
# item every user's top-1.
MAX_ABS_VALUE = 1e3


def sane(vector: np.ndarray) -> bool:
    """Every number finite and within ``MAX_ABS_VALUE``."""
    v = np.asarray(vector)
    return bool(np.isfinite(v).all()) and (v.size == 0 or float(np.abs(v).max()) <= MAX_ABS_VALUE)


INT64 = (-(1 << 63), (1 << 63) - 1)  # offsets, partitions and counts are int64, as in Kafka and numpy


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and INT64[0] <= x <= INT64[1]


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def encode_vector(v: np.ndarray) -> str:
    return base64.b64encode(np.asarray(v, "<f4").tobytes()).decode("ascii")


def decode_vector(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype="<f4").astype(np.float32)


@dataclass
class UserState:
    """One user's durable state: the value of the users table."""

    factors: np.ndarray
    accum: float
    history: list[str]
    offset: int  # last applied offset in the user's partition of ``events``
    partition: int | None = None  # that partition (None: a state written before it was recorded)
    applied: int = 0  # events applied to this user so far: with the topic, what shows a loss or a duplicate

    def to_json(self) -> dict:
        d = {"f": encode_vector(self.factors), "g": float(self.accum), "h": self.history, "o": self.offset,
             "n": self.applied}
        return d if self.partition is None else {**d, "p": self.partition}

    @classmethod
    def from_json(cls, d: object) -> UserState:
        """The state a :meth:`to_json` value holds; ValueError for any other shape (a corrupt or
        foreign value in the table: the caller treats the user as new)."""
        if not isinstance(d, dict):
            raise ValueError(f"a user state is a JSON object, not {type(d).__name__}")
        f, g, h, o, p, n = (d.get(k) for k in ("f", "g", "h", "o", "p", "n"))
        if not (isinstance(f, str) and _is_number(g) and _is_int(o) and (p is None or _is_int(p))
                and (n is None or _is_int(n)) and isinstance(h, list) and all(isinstance(i, str) for i in h)):
            raise ValueError("a user state holds f (base64 float32), g (a number), h (a list of item ids), "
                             "o (an offset) and optionally p (a partition) and n (a count)")
        try:
            accum = float(g)
        except OverflowError:  # an integer beyond any double
            raise ValueError("the state's accumulator is not a usable number") from None
        return cls(decode_vector(f), accum, h, o, p, n or 0)


@dataclass(frozen=True)
class ItemRecord:
    """One record of the item-factor topic: a partition's contribution, or a text base.

    ``vector`` holds the factors followed by the bias (length dim + 1).
    """

    item_id: str
    source: str  # "p<partition>" or "text"
    vector: np.ndarray
    offset: int
    embedding: np.ndarray | None = None  # text records only: the item's text embedding
    count: int = 0  # partition records: how many of the partition's events had this item
    writer: str = ""  # partition records: the writing worker's id (a header only, not in the value)
    consumers: np.ndarray | None = None  # partition records of young items: their users' weighted vector sum
    lang: str | None = None  # text records: the text's language label (``language_label``)

    @property
    def key(self) -> str:
        return f"{self.source}/{self.item_id}"

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers that let a reader skip a record it already has without decoding it."""
        h = [("src", self.source.encode()), ("off", str(self.offset).encode()), ("item", self.item_id.encode())]
        return h + [("w", self.writer.encode())] if self.writer else h

    def to_json(self) -> dict:
        d = {"item_id": self.item_id, "source": self.source, "v": encode_vector(self.vector), "o": self.offset,
             "n": self.count}
        if self.embedding is not None:
            d["e"] = encode_vector(self.embedding)
        if self.consumers is not None:
            d["c"] = encode_vector(self.consumers)
        if self.lang is not None:
            d["l"] = self.lang
        return d

    @classmethod
    def from_json(cls, d: object) -> ItemRecord:
        """The record a :meth:`to_json` value holds; ValueError for any other shape."""
        if not isinstance(d, dict):
            raise ValueError(f"an item-factor record is a JSON object, not {type(d).__name__}")
        item_id, source, v, o, n, emb, consumers, lang = (d.get(k) for k in ("item_id", "source", "v", "o", "n", "e",
                                                                              "c", "l"))
        if not (isinstance(item_id, str) and item_id and isinstance(source, str) and isinstance(v, str)
                and _is_int(o) and (n is None or _is_int(n)) and all(x is None or isinstance(x, str)
                                                                     for x in (emb, consumers, lang))):
            raise ValueError("an item-factor record holds item_id, source, v (base64 float32) and o (an offset), "
                             "and optionally n (a count), e and c (base64 float32) and l (a language)")
        return cls(item_id, source, decode_vector(v), o, None if emb is None else decode_vector(emb), n or 0,
                   consumers=None if consumers is None else decode_vector(consumers),
                   lang=None if lang is None else language_label(lang))


NO_LANGUAGE = "none"  # an item without a text record, or whose record named no language
OTHER_LANGUAGE = "other"  # a ``lang`` that is not a language tag (or past the labels a worker keeps)
_LANGUAGE_TAG = re.compile(r"[a-z]{2,3}")


def language_label(lang: str | None) -> str:
    """The metric label of an item's ``lang``: its primary subtag in lower case (``de-AT`` -> ``de``),
    ``none`` if absent, ``other`` if it is not a language tag (a free-text field must not mint series)."""
    if not lang or not lang.strip():
        return NO_LANGUAGE
    primary = lang.strip().lower().replace("_", "-").split("-", 1)[0]
    return primary if _LANGUAGE_TAG.fullmatch(primary) else OTHER_LANGUAGE
