"""stream.offsets.InOrder: a partition's events are learned in order from its committed offset, with
no event learned past one that was not delivered (the reliability issue's hole 1)."""

from stream.offsets import InOrder

TP = ("events", 0)


def test_batches_in_order_from_the_committed_offset_are_learned():
    order = InOrder()
    order.expect({TP: 100})
    assert order.check(TP, [100, 101, 102]) == ([0, 1, 2], None)
    order.learned(TP, 102)
    assert order.check(TP, [103, 104]) == ([0, 1], None)


def test_a_batch_after_a_hole_is_read_again_from_the_first_missing_offset():
    """After a rebalance Faust handed over offsets 3198.. first, and 3186..3197 never came."""
    order = InOrder()
    order.expect({TP: 3186})
    assert order.check(TP, [3198, 3199]) == ([], 3186)
    assert order.check(TP, [3186, 3187]) == ([0, 1], None)  # what the rewind brings


def test_a_jump_inside_a_batch_reads_the_whole_batch_again():
    order = InOrder()
    order.expect({TP: 10})
    assert order.check(TP, [10, 11, 15, 16]) == ([], 10)


def test_records_from_before_the_seek_are_rewound_until_the_partition_is_read_again():
    """Faust keeps delivering records fetched before the seek, each batch further on: each is
    rewound, until the partition comes again from the first missing offset."""
    order = InOrder()
    order.expect({TP: 4365})
    for start in (4368, 4457, 4523, 4732):
        assert order.check(TP, [start, start + 1]) == ([], 4365)
    assert order.check(TP, [4365, 4366]) == ([0, 1], None)


def test_a_hole_met_again_where_its_rewound_batch_started_is_the_logs_own():
    """A transaction marker or records past retention: the batch after the rewind starts where the
    rewound one did, so the hole is in the log; it is learned past. A new hole is rewound again."""
    order = InOrder()
    order.expect({TP: 10})
    assert order.check(TP, [10, 11, 13]) == ([], 10)
    assert order.take_holes(TP) == []  # not yet known to be the log's: no commit may pass over it
    assert order.check(TP, [10, 11, 13]) == ([0, 1, 2], None)
    assert order.take_holes(TP) == [(12, 12)] and order.take_holes(TP) == []
    order.learned(TP, 13)
    assert order.check(TP, [15]) == ([], 14)
    assert order.check(TP, [15, 16]) == ([0, 1], None)
    assert order.take_holes(TP) == [(14, 14)]


def test_a_hole_of_records_fetched_before_a_seek_is_never_handed_out_as_the_logs():
    """The false holes of a rebalance are rewound and then filled: none may reach Faust's commits."""
    order = InOrder()
    order.expect({TP: 4365})
    for start in (4368, 4457):
        assert order.check(TP, [start, start + 1]) == ([], 4365)
    assert order.check(TP, [4365, 4366]) == ([0, 1], None)
    assert order.take_holes(TP) == []


def test_rewinds_stop_at_the_limit():
    order = InOrder(max_rewinds=2)
    order.expect({TP: 0})
    assert order.check(TP, [5]) == ([], 0)
    assert order.check(TP, [6]) == ([], 0)
    assert order.check(TP, [7]) == ([0], None)


def test_a_record_delivered_twice_in_a_batch_is_learned_once():
    """After a rewind, a batch can hold a copy from before the seek and one from after."""
    order = InOrder()
    order.expect({TP: 20})
    assert order.check(TP, [20, 21, 22, 21, 22, 23]) == ([0, 1, 2, 5], None)


def test_replays_below_the_expected_offset_are_learned():
    """Events before the next expected one are replays (the offsets in each state skip them)."""
    order = InOrder()
    order.expect({TP: 50})
    order.learned(TP, 80)
    assert order.check(TP, [50, 51]) == ([0, 1], None)


def test_a_partition_without_a_committed_offset_starts_where_its_first_batch_does():
    order = InOrder()
    assert order.check(TP, [0, 1]) == ([0, 1], None)
    order.learned(TP, 1)
    assert order.check(TP, [5]) == ([], 2)


def test_a_rebalance_forgets_partitions_given_away():
    order = InOrder()
    order.expect({TP: 5, ("events", 1): 7})
    order.learned(TP, 9)
    order.expect({("events", 1): 7})
    assert TP not in order.next and order.check(TP, [40]) == ([0], None)
