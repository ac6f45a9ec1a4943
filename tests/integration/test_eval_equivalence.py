"""One model, one code path: what a worker publishes is what ``polyrec eval`` measures.

Events go one at a time through the real broker to a worker (one partition, so one event per
micro-batch), and every payload it writes to Redis is compared with the recommendations of the
evaluation's own adapter (``polyrec.evaluation.baselines.Polyrec``) after the same events, in the
same order, with the worker's settings.
"""

import json

import numpy as np
import pytest

from polyrec.evaluation.baselines import Polyrec
from polyrec.history import History
from polyrec.recommend import recommend
from polyrec_cli.harness import event_record, send_records
from stream.recs import stream_key
from stream.settings import Settings
from tests.support import run, wait_for, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def expected_recommendations(settings: Settings, events: list[tuple[str, str, str]]) -> list[tuple[list, list]]:
    """(items, scores) of each event's user right after the evaluated model learned it."""
    explore = settings.explore_config()
    model = Polyrec(settings.mf_config(), settings.cooccurrence_config(), settings.consumers_config(), explore=explore)
    mf, memory, history = model.model, model.memory, History(settings.history_max)
    out = []
    for user, item, kind in events:
        model.learn([user], [item], np.array([settings.weights[kind]], np.float32))
        row = mf.users.rows([user])
        history.add(row, mf.items.rows([item]))
        top, scores = recommend(mf.user_factors[row], mf.item_factors, mf.item_bias, history.pairs(row),
                                settings.top_k, memory, memory.recent_rows(row),
                                model.consumers.young_factors(mf.item_factors), model.fresh(row), explore)
        keep = top[0] >= 0
        out.append((mf.items.id_at(top[0][keep]), scores[0][keep].tolist()))
    return out


def test_the_worker_publishes_what_the_evaluated_model_recommends(broker, tmp_path, workers, redis_client):
    # young below 4 events: with 70 events on 25 items, both young and established items are scored,
    # and young ones promoted (the worker's default reach)
    env = worker_env(broker, tmp_path, POLYREC_PARTITIONS="1", POLYREC_ITEMS_AGENT="0", POLYREC_YOUNG_EVENTS="4")
    w = workers.new(env)
    w.wait_ready()
    rng = np.random.default_rng(7)
    kinds = ("view", "click", "purchase")
    events = [(f"u{rng.integers(6)}", f"i{rng.integers(25)}", kinds[rng.integers(3)]) for _ in range(70)]
    stream = stream_key(env["POLYREC_REDIS_PREFIX"])
    for n, (user, item, kind) in enumerate(events):
        run(send_records(broker, env["POLYREC_EVENTS_TOPIC"], [event_record(user, item, kind, ts=n)]))
        wait_for(lambda n=n: redis_client.xlen(stream) > n, 15, what=f"the payload of event {n}")
    published = [json.loads(fields[b"payload"]) for _, fields in redis_client.xrange(stream)]
    assert len(published) == len(events)
    for n, ((user, _, _), got, (items, scores)) in enumerate(zip(events, published,
                                                                 expected_recommendations(Settings.from_env(env),
                                                                                          events))):
        assert got["user_id"] == user
        got_items = [x["item_id"] for x in got["items"]]
        got_scores = [x["score"] for x in got["items"]]
        assert got_scores == pytest.approx(scores, abs=1e-5), f"event {n}: scores differ"
        if got_items != items:  # only items whose scores tie may trade places
            assert sorted(got_items) == sorted(items), f"event {n}: {got_items} != {items}"
            for a, b, s in zip(got_items, items, scores):
                assert a == b or sum(abs(x - s) < 1e-5 for x in scores) > 1, f"event {n}: {got_items} != {items}"
