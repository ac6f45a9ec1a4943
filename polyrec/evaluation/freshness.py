"""Per-event freshness: how long each event took to reach its user's recommendations in Redis.

A recommendation payload carries ``event_ts``, the ``ts`` of the newest event learned for that
user, and ``updated_at``, when it was written. A micro-batch with several events of one user
writes one payload, so measuring ``updated_at - event_ts`` per payload sees only the newest of
them, the one that waited least. Here every event is matched to the first write of its user
whose ``event_ts`` is at least the event's own ``ts``: the first recommendation that had learned it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


def event_freshness(users: Sequence[str], ts_ms: Sequence[float],
                    updates: Iterable[dict[str, Any]]) -> tuple[np.ndarray, int]:
    """Delays in ms, one per event that some update covers, and the number of events none covers.

    ``users``/``ts_ms``: the events as produced. ``updates``: payloads in the order they were
    written (e.g. the Redis stream ``{prefix}:recs``).
    """
    written: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for p in updates:
        written[p["user_id"]].append((p["event_ts"], p["updated_at"]))
    users_arr, ts = np.asarray(users), np.asarray(ts_ms, np.float64)
    names, inverse = np.unique(users_arr, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    groups = np.split(order, np.cumsum(np.bincount(inverse, minlength=len(names)))[:-1])
    delays = np.full(len(ts), np.nan)
    for name, idx in zip(names.tolist(), groups):
        rows = written.get(name)
        if not rows:
            continue
        event_ts, updated_at = np.asarray(rows, np.float64).T
        covered_until = np.maximum.accumulate(event_ts)  # first write at or after an event's ts
        first = np.searchsorted(covered_until, ts[idx], side="left")
        ok = first < len(rows)
        delays[idx[ok]] = updated_at[first[ok]] - ts[idx[ok]]
    missing = int(np.isnan(delays).sum())
    return delays[~np.isnan(delays)], missing
