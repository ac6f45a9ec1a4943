"""stream.log_repeats: repeated library warnings are held back per template and counted."""

import logging

from stream.log_repeats import Repeats, limit_repeats


def _record(msg: str, *args, level: int = logging.ERROR, name: str = "aiokafka.conn") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_each_template_level_and_logger_is_limited_apart_and_debug_passes():
    t = [0.0]
    f = Repeats(10.0, clock=lambda: t[0])
    assert f.filter(_record("a %s", 1)) and not f.filter(_record("a %s", 2))  # same template, other args
    assert f.filter(_record("b %s", 1))  # another template
    assert f.filter(_record("a %s", 1, level=logging.WARNING))  # another level
    assert f.filter(_record("a %s", 1, name="aiokafka.client"))  # another logger
    assert all(f.filter(_record("a %s", n, level=logging.DEBUG)) for n in range(5))
    t[0] = 9.9
    assert not f.filter(_record("a %s", 3))
    t[0] = 10.0
    late = _record("a %s", 4)
    assert f.filter(late) and late.getMessage() == "a 4 (2 more like this in the last 10 s were not logged)"
    t[0] = 25.0
    quiet = _record("a %s", 5)
    assert f.filter(quiet) and quiet.getMessage() == "a 5"  # nothing held back since: no count


def test_a_record_with_mapping_args_passes_unannotated():
    t = [0.0]
    f = Repeats(10.0, clock=lambda: t[0])
    assert f.filter(_record("%(x)s", {"x": 1}))
    assert not f.filter(_record("%(x)s", {"x": 2}))
    t[0] = 11.0
    r = _record("%(x)s", {"x": 3})
    assert f.filter(r) and r.getMessage() == "3"


def test_limit_repeats_covers_the_library_modules_already_loaded(caplog):
    import aiokafka.conn  # noqa: F401 - its logger must exist

    repeats = limit_repeats("aiokafka", interval_s=60.0)
    try:
        logger = logging.getLogger("aiokafka.conn")
        with caplog.at_level(logging.WARNING, logger="aiokafka.conn"):
            for n in range(50):
                logger.error("Unable connect to node with id %s: %s", 1, n)
        assert len([r for r in caplog.records if r.name == "aiokafka.conn"]) == 1
    finally:
        for name in logging.root.manager.loggerDict:
            if name.startswith("aiokafka"):
                logging.getLogger(name).removeFilter(repeats)
        logging.getLogger("aiokafka").removeFilter(repeats)
