"""The fault tests' failpoints (stream/failpoints.py): parsing, pass counting, and each action."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import pytest

from stream.failpoints import STEPS, FailpointError, Failpoints, parse
from stream.settings import Settings


def test_an_empty_setting_arms_nothing_and_every_step_passes():
    points = Failpoints("")
    for step in STEPS:
        asyncio.run(points.hit(step))
    assert points.points == {} and not points.passes


def test_several_failpoints_each_fire_at_their_own_pass_only():
    points = Failpoints("batch.in_topk:3:raise, timer.tick:1:sleep=0.2")
    asyncio.run(points.hit("batch.in_topk"))
    asyncio.run(points.hit("batch.in_topk"))
    with pytest.raises(FailpointError, match="batch.in_topk"):
        asyncio.run(points.hit("batch.in_topk"))
    asyncio.run(points.hit("batch.in_topk"))  # past its pass: nothing again
    t0 = time.perf_counter()
    asyncio.run(points.hit("timer.tick"))
    assert time.perf_counter() - t0 >= 0.2
    asyncio.run(points.hit("flush.after_send"))  # not armed


@pytest.mark.parametrize("spec, wrong", [
    ("batch.in_topc:1:raise", "unknown step"),
    ("batch.in_topk:0:raise", "number from 1"),
    ("batch.in_topk:x:raise", "number from 1"),
    ("batch.in_topk:1:explode", "the action"),
    ("batch.in_topk:1:sleep", "the action"),
    ("batch.in_topk:1:kill=3", "the action"),
    ("batch.in_topk", "number from 1"),
])
def test_a_wrong_failpoint_is_refused_with_what_is_wrong(spec, wrong):
    with pytest.raises(ValueError, match=wrong):
        parse(spec)
    with pytest.raises(ValueError, match=wrong):  # at start-up, not in the middle of a fault test
        Settings.from_env({"POLYREC_FAILPOINT": spec})


def test_kill_sigkills_the_process_at_its_pass():
    code = ("import asyncio\nfrom stream.failpoints import Failpoints\n"
            "p = Failpoints('commit.after_flush:2:kill')\n"
            "asyncio.run(p.hit('commit.after_flush'))\nprint('first pass', flush=True)\n"
            "asyncio.run(p.hit('commit.after_flush'))\nprint('survived', flush=True)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.splitlines() == ["first pass"]
