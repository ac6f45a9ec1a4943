"""stream.pauses: after a pause of the event loop longer than the group session, no batch starts
until the group could answer; a real pause of a running loop is noticed."""

import asyncio
import time

from stream.pauses import Pauses


def test_a_pause_within_the_limit_costs_nothing_and_a_longer_one_the_settling_time():
    now = [100.0]
    pauses = Pauses(limit_s=5.0, settle_s=3.0, clock=lambda: now[0])
    now[0] += 60.0
    assert pauses.wait_s() == 0.0  # the first tick: the time before the loop ran is no pause
    now[0] += 4.9
    assert pauses.wait_s() == 0.0
    now[0] += 5.5
    assert pauses.wait_s() == 3.0
    now[0] += 3.0
    assert pauses.wait_s() == 0.0


def test_the_ticker_notices_a_pause_before_the_batch_asks():
    """After a pause, the ticker's timer may run first: the batch must still wait."""
    now = [0.0]
    pauses = Pauses(limit_s=5.0, settle_s=3.0, clock=lambda: now[0])
    pauses.tick()
    now[0] = 8.0
    pauses.tick()  # the ticker, first after the pause
    now[0] = 8.1
    assert abs(pauses.wait_s() - 2.9) < 1e-9


def test_a_blocked_loop_makes_the_next_batch_wait():
    async def main() -> float:
        pauses = Pauses(limit_s=0.3, settle_s=0.5)
        ticker = asyncio.ensure_future(pauses.run())
        await asyncio.sleep(0.1)
        time.sleep(0.6)  # the loop blocked (as a frozen process's would be)
        await asyncio.sleep(0)
        started = time.monotonic()
        await pauses.settle()
        ticker.cancel()
        return time.monotonic() - started

    waited = asyncio.run(main())
    assert 0.4 < waited < 0.7
