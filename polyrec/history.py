"""Bounded per-user interaction history, used to exclude seen items from recommendations."""

from __future__ import annotations

from array import array

import numpy as np

from polyrec.runs import run_starts


class History:
    """The last ``max_len`` distinct item rows each user row interacted with (oldest first).

    Each user's rows are an ``array('i')``: 4 bytes an item instead of a list's pointer and int
    object, and the batch's mask (:meth:`pairs`) is one join of their buffers.
    """

    def __init__(self, max_len: int = 500) -> None:
        self.max_len = max_len
        self._rows: list[array] = []

    def get(self, user_row: int) -> list[int]:
        return self._rows[user_row].tolist() if user_row < len(self._rows) else []

    def set(self, user_row: int, items: list[int]) -> None:
        """Replace a user's history (used when state is restored)."""
        self._grow(user_row + 1)
        self._rows[user_row] = array("i", items[-self.max_len:])

    def add(self, user_rows: np.ndarray, item_rows: np.ndarray) -> None:
        """Append events in order; loops over the batch's distinct users, not its events."""
        if len(user_rows) == 0:
            return
        self._grow(int(user_rows.max()) + 1)
        order = np.argsort(user_rows, kind="stable")
        by_user, items = user_rows[order], item_rows[order].tolist()
        starts = run_starts(by_user)
        bounds = [*starts.tolist(), len(items)]
        for user, a, b in zip(by_user[starts].tolist(), bounds, bounds[1:]):
            h = self._rows[user]
            new = items[a:b]
            fresh = set(new)
            if len(fresh) == len(new) and fresh.isdisjoint(h):  # the common case: only new items
                h.extend(new)
            else:
                h = self._rows[user] = array("i", [i for i in h if i not in fresh]
                                             + list(dict.fromkeys(reversed(new)))[::-1])
            del h[: max(0, len(h) - self.max_len)]

    def pairs(self, user_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(n, item_row)`` pairs for every seen item of ``user_rows[n]`` (a mask for top-K)."""
        arrays = [self._rows[u] if u < len(self._rows) else _NONE for u in user_rows.tolist()]
        rows = np.repeat(np.arange(len(arrays)), np.fromiter(map(len, arrays), np.int64, len(arrays)))
        return rows, np.frombuffer(b"".join(arrays), np.int32).astype(np.int64)

    def _grow(self, n: int) -> None:
        self._rows.extend(array("i") for _ in range(n - len(self._rows)))


_NONE = array("i")  # the history of a user row not seen yet
