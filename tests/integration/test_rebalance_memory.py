"""A worker that gives partitions away keeps none of their users: not in its model rows (dropped at
every rebalance) and not in its memory table store, unless it holds them as a standby; and when
they come back it holds them again, complete.

The reliability issue's hole 4 (``make faults``). Before the fix the first check failed with no
standby: the store kept every user the worker ever wrote (Faust's memory store forgets at recovery
only the keys it recovered itself). Dropping them on every revocation failed the last check: the
users of a partition that stayed as a standby were gone, and Faust resumed its standby reading
past them. Now only partitions held neither as active nor as standby are dropped."""

import pytest

from polyrec_cli.harness import event_record, get_json, send_records
from tests.support import keys_in_partition, run, wait_for, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.faults]
PARTITIONS = 4


@pytest.mark.parametrize("standby", [0, 1])
def test_users_of_partitions_that_moved_away_leave_the_old_owners_store(broker, tmp_path, workers, redis_client,
                                                                        standby):
    env = worker_env(broker, tmp_path, POLYREC_PARTITIONS=str(PARTITIONS), POLYREC_STORE="memory://",
                     POLYREC_STANDBY_REPLICAS=str(standby))
    first = workers.new(env)
    first.wait_ready(90)
    wait_for(lambda: len(first.assigned()) == PARTITIONS, 30, what="one worker with every partition")
    users = {p: keys_in_partition("user", p, PARTITIONS, 3) for p in range(PARTITIONS)}
    run(send_records(broker, env["POLYREC_EVENTS_TOPIC"],
                     [event_record(u, f"item{n}") for us in users.values() for u in us for n in range(3)]))

    def held(worker, user) -> bool:
        return get_json(worker.url(f"/polyrec/users/{user}"))[0] == 200

    wait_for(lambda: all(held(first, u) for us in users.values() for u in us), 20, what="every user stored")
    second = workers.new(env)
    second.wait_ready(90)
    wait_for(lambda: len(first.assigned()) == len(second.assigned()) == PARTITIONS // 2, 30,
             what="an even assignment")
    kept, moved = first.assigned(), second.assigned()
    for p in moved:  # with two workers and a standby, the old owner is the moved partitions' standby
        for u in users[p]:
            assert held(first, u) == bool(standby), f"{u} (partition {p}, moved away): held {held(first, u)}"
    for p in kept:
        assert all(held(first, u) for u in users[p])
    # the new owner recovered them from the changelog
    wait_for(lambda: all(held(second, u) for p in moved for u in users[p]), 30, what="the moved users recovered")
    # and when they come back, the old owner recovers them from the changelog: nothing was lost
    assert second.stop() == 0
    wait_for(lambda: len(first.assigned()) == PARTITIONS, 60, what="the partitions back on the first worker")
    wait_for(lambda: all(held(first, u) for us in users.values() for u in us), 30, what="every user held again")
    assert get_json(first.url(f"/polyrec/users/{users[moved.pop()][0]}"))[1]["history"] == ["item0", "item1", "item2"]
