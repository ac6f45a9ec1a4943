"""Faults injected at named steps of the worker, for the fault tests (``POLYREC_FAILPOINT``).

``POLYREC_FAILPOINT="step:nth:action[,step:nth:action ...]"`` makes the ``nth`` pass (counted from
1 in this process) through ``step`` do ``action``; every other pass, and every step when the
setting is empty (the default), does nothing. Actions:

* ``kill``: SIGKILL this process there (a machine or OOM kill);
* ``sleep=S``: wait ``S`` seconds there (a stalled step: with S past the rebalance timeout, the
  worker is evicted from the group while it holds a batch);
* ``raise``: raise :class:`FailpointError` there (a bug in that step: the batch is retried, or, at
  ``timer.tick``, the worker crashes).

>>> points = Failpoints("batch.in_topk:2:raise")
>>> import asyncio
>>> asyncio.run(points.hit("batch.in_topk"))  # the first pass does nothing
>>> asyncio.run(points.hit("batch.in_topk"))
Traceback (most recent call last):
...
stream.failpoints.FailpointError: failpoint batch.in_topk (pass 2)
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections import Counter
from dataclasses import dataclass

log = logging.getLogger(__name__)

# Each step, where it is (in the order a batch of events passes them), and what a fault there leaves.
STEPS = {
    "batch.before_learn": "a batch validated, its invalid events dead-lettered, nothing learned",
    "dlq.after_send": "a group of dead letters acknowledged by the broker, the batch not acknowledged",
    "batch.in_topk": "the model has learned the batch; its user states are not held, nothing published",
    "batch.after_publish": "the batch's user states held and its recommendations in Redis, not acknowledged",
    "batch.before_ack": "the batch processed to the end, its records not acknowledged",
    "flush.after_send": "user states and item contributions acknowledged by the broker, not in the local store",
    "commit.after_flush": "a partition flushed for a commit, its offsets not committed",
    "timer.tick": "a worker timer (every 5 s; raise: an error no step handles, which crashes the worker)",
}
ACTIONS = ("kill", "sleep", "raise")


class FailpointError(RuntimeError):
    """The error a ``raise`` failpoint raises."""


@dataclass(frozen=True)
class Failpoint:
    step: str
    nth: int
    action: str
    seconds: float = 0.0


def parse(spec: str) -> dict[str, Failpoint]:
    """The failpoints of a ``POLYREC_FAILPOINT`` value, by step; ValueError says what is wrong."""
    points: dict[str, Failpoint] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        step, nth, action = (part.split(":") + ["", ""])[:3]
        name, _, value = action.partition("=")
        if step not in STEPS:
            raise ValueError(f"failpoint {part!r}: unknown step {step!r} (one of {', '.join(STEPS)})")
        if not nth.isdigit() or int(nth) < 1:
            raise ValueError(f"failpoint {part!r}: the pass must be a number from 1")
        if name not in ACTIONS or (name == "sleep") != bool(value):
            raise ValueError(f"failpoint {part!r}: the action must be kill, raise or sleep=SECONDS")
        points[step] = Failpoint(step, int(nth), name, float(value) if value else 0.0)
    return points


class Failpoints:
    """The failpoints a worker was started with; ``hit(step)`` at each step."""

    def __init__(self, spec: str = "") -> None:
        self.points = parse(spec)
        self.passes: Counter[str] = Counter()
        if self.points:
            log.warning("failpoints armed (fault tests only): %s", spec)

    async def hit(self, step: str) -> None:
        """Pass ``step``: do its failpoint's action if this is the pass it names."""
        point = self.points.get(step)
        if point is None:
            return
        self.passes[step] += 1
        if self.passes[step] != point.nth:
            return
        log.warning("failpoint %s (pass %d): %s", step, point.nth, point.action)
        if point.action == "kill":
            logging.shutdown()
            os.kill(os.getpid(), signal.SIGKILL)
        elif point.action == "sleep":
            await asyncio.sleep(point.seconds)
        else:
            raise FailpointError(f"failpoint {step} (pass {point.nth})")
