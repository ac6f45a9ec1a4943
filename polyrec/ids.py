"""String ids to dense row numbers, growable, plus deterministic per-id random vectors."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Sequence
from itertools import repeat

import numpy as np


class IdIndex:
    """A bidirectional map between arbitrary string ids and dense rows 0..n-1.

    Rows are handed out in order of first appearance and never reused: a discarded id's row stays,
    anonymous (its id reads ``""``, which no valid id is), and the id gets a new row if it comes back.
    """

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._rows: dict[str, int] = {}
        self._ids: list[str] = []
        self.add_many(ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, id_: object) -> bool:
        return id_ in self._rows

    @property
    def ids(self) -> list[str]:
        """All ids, in row order (do not mutate; a discarded row's is ``""``)."""
        return self._ids

    def discard(self, ids: Iterable[str]) -> np.ndarray:
        """Forget ``ids`` (erasure): the rows they had (-1: unknown), which are never handed out again."""
        rows = self.rows(ids)
        for row in np.unique(rows[rows >= 0]).tolist():  # an id given twice is discarded once
            del self._rows[self._ids[row]]
            self._ids[row] = ""
        return rows

    def add_many(self, ids: Iterable[str]) -> np.ndarray:
        """Rows for ``ids``, adding the unseen ones. Returns an int64 array."""
        ids = ids.tolist() if isinstance(ids, np.ndarray) else list(ids)
        rows = self._rows
        out = np.fromiter(map(rows.get, ids, repeat(-1)), np.int64, len(ids))  # C-level passes only
        missing = np.flatnonzero(out < 0)
        if len(missing):  # new ids (a new user's many events in one batch are many misses)
            new = [ids[n] for n in missing.tolist()]
            for id_ in dict.fromkeys(new):  # the distinct ones, in order of first appearance
                rows[id_] = len(self._ids)
                self._ids.append(id_)
            out[missing] = np.fromiter(map(rows.__getitem__, new), np.int64, len(new))
        return out

    def row(self, id_: str) -> int:
        """The row of one id; -1 if unknown."""
        return self._rows.get(id_, -1)

    def rows(self, ids: Iterable[str]) -> np.ndarray:
        """Rows for known ids; -1 for unknown ones."""
        ids = ids.tolist() if isinstance(ids, np.ndarray) else list(ids)
        return np.fromiter(map(self._rows.get, ids, repeat(-1)), np.int64, len(ids))

    def id_at(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        """Ids for rows."""
        ids = self._ids
        return [ids[r] for r in rows]


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Vectorised splitmix64 finaliser over uint64 arrays (uint64 arithmetic wraps modulo 2**64)."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def id_hash(ids: Sequence[str], seed: int) -> np.ndarray:
    """A stable 64-bit hash of each id (same on every machine and process)."""
    salt = int(seed).to_bytes(8, "little", signed=False)
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8, key=salt).digest(), "little")
         for i in ids),
        dtype=np.uint64, count=len(ids),
    )


@functools.cache
def _counter_streams(dim: int) -> np.ndarray:
    """The mixed counters 0..2*dim-1 that every id's hash is combined with (read-only, one per dim)."""
    streams = _splitmix64(np.arange(2 * dim, dtype=np.uint64))[None, :]
    streams.flags.writeable = False
    return streams


def id_normals(ids: Sequence[str], dim: int, seed: int, std: float) -> np.ndarray:
    """Deterministic N(0, std^2) vectors, one row per id, a pure function of (id, seed).

    Every worker that first meets an id draws the same starting vector for it, without
    coordination: counter-based splitmix64 streams feed a Box-Muller transform.
    """
    bits = _splitmix64(id_hash(ids, seed)[:, None] ^ _counter_streams(dim))
    uniform = ((bits >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / (1 << 53))
    u1, u2 = uniform[:, :dim], uniform[:, dim:]
    normals = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    return (std * normals).astype(np.float32)
