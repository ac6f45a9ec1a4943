"""Cold start in the stream: a new item's text puts it next to its neighbours, whatever the language."""

import json
import random
import time

import numpy as np
import pytest

from polyrec_cli.harness import event_record, get_json, send_records
from polyrec_cli.topic_catalogue import CATALOGUE
from stream.recs import recs_key
from tests import support
from tests.support import item, metric_value, run, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SPACE, COOKING = CATALOGUE["space"], CATALOGUE["cooking"]
# new items described in German only, each the twin of an English one; nobody has touched them yet
GERMAN = {"space": ("weltraum-de", "Raketenstart zum Mars: eine Dokumentation über die erste bemannte Mission"),
          "cook": ("kochen-de", "Hausgemachter Pizzateig und Tomatensoße")}


def _recs(redis_client, env, user):
    raw = redis_client.get(recs_key(env["POLYREC_REDIS_PREFIX"], user))
    return None if raw is None else json.loads(raw)


def _item_vectors(broker: str, env: dict) -> dict[str, np.ndarray]:
    """Every item's vector (factors + bias) as the workers see it: text base + partition contributions."""
    vectors: dict[str, np.ndarray] = {}
    for rec in support.latest_item_records(broker, env):
        vectors[rec.item_id] = vectors.get(rec.item_id, 0) + rec.vector
    return vectors


@pytest.mark.faults
def test_a_german_item_is_recommended_at_once_to_fans_of_its_english_neighbours(broker, tmp_path, workers,
                                                                                 redis_client):
    """Behind ``make faults`` for now: it fails about one run in two (2026-12-04: both clean-clone
    runs of the whole suite, 2 of 4 runs alone at a086581, before that day's changes, 1 of 3 alone at
    47029f5): the German item, with no event yet, loses its top-10 place to cooking items that the
    fan's memory context does not score either, on the factor part alone; which one wins moves with
    the batches' negative samples. The margin needs a real fix (issue 21), not a looser test."""
    # every list explores: the one refresh checked below must give the fresh item its place if the fan
    # is in its audience, here half of each worker's users (the fans of one topic of two)
    env = support.worker_env(broker, tmp_path, POLYREC_PROJECTION_MIN_COUNT="3", POLYREC_PROJECTION_REFIT_S="0",
                             POLYREC_EXPLORE_SHARE="1", POLYREC_EXPLORE_FIT="0.5")
    pool, owners = support.two_workers(workers, env)

    def total(name: str, **labels: str) -> float:
        return sum(metric_value(w.metrics(), name, **labels) for w in pool)

    topics = {"space": [f"space{n:02d}" for n in range(len(SPACE))],
              "cook": [f"cook{n:02d}" for n in range(len(COOKING))]}
    run(send_records(broker, env["POLYREC_ITEMS_TOPIC"], [item(i, t, lang="en") for i, t in
                                                    zip(topics["space"] + topics["cook"], SPACE + COOKING)]))
    wait_for(lambda: total("polyrec_encoder_items_total") == 40, 60, what="40 items encoded")

    # fans of each topic interact with most of its items, three times over: collaborative factors for
    # every item (one pass of 12 fans left the factors so noisy that the gap ratio below ranged 0.2-1.1;
    # two passes 0.41-0.87 over 5 runs on a Zen 5 VM, and one CI failure there at 0.397)
    rng = random.Random(7)
    fans = {kind: [f"{kind}-fan{n}" for n in range(20)] for kind in topics}
    history = [event_record(u, i, "purchase") for kind, items in topics.items() for u in fans[kind]
               for i in rng.sample(items, 12)] * 3
    rng.shuffle(history)
    run(send_records(broker, env["POLYREC_EVENTS_TOPIC"], history))
    wait_for(lambda: total("polyrec_events_total", outcome="applied") == len(history), 60,
             what="the history applied")
    # item contributions are shared at each offset commit (POLYREC_COMMIT_INTERVAL_S, 3 s): wait until
    # the whole history is in the item-factor topic and both replicas have read every record written,
    # so the projection is fitted on every partition's factors (a German item arriving sooner would be
    # projected from what its worker had seen so far; a fixed 0.5 s for the replicas was once too
    # short in CI, and the German item then fell out of the top-10)
    wait_for(lambda: sum(support.durable_item_counts(broker, env).values()) == len(history), 15,
             what="the history's item contributions written")
    written = total("polyrec_item_records_written_total")  # contributions and the English items' text records
    wait_for(lambda: all(metric_value(w.metrics(), "polyrec_item_records_total") >= written for w in pool), 15,
             what="both replicas caught up")

    published = time.time()
    run(send_records(broker, env["POLYREC_ITEMS_TOPIC"], [item(i, t, lang="de") for i, t in GERMAN.values()]))
    wait_for(lambda: total("polyrec_encoder_items_total") == 42, 30, what="the German items")
    # the other worker knows a new item once its replica has read the text record (tens of ms when
    # idle; CI twice saw the German item missing from a fan's top-10 while an evaluation loaded both
    # cores, the batch scored before the record arrived): wait for it, and keep timing from `published`
    written = total("polyrec_item_records_written_total")
    wait_for(lambda: all(metric_value(w.metrics(), "polyrec_item_records_total") >= written for w in pool), 15,
             what="both replicas have the German items")

    # 1. the projection places each German item with its English neighbours: over every fan, it
    # separates the two new items about as the learned factors separate the two topics. Measured with
    # three passes (a print of the ratio added to this test for the purpose, 2026-11-24, Zen 5 VM):
    # new_gap / topic_gap 0.47-0.96 over 6 runs with the projection, 0.06-0.12 over 5 with a random
    # start (what an item gets without its text: POLYREC_PROJECTION_MIN_COUNT=1000); 0.3 splits them.
    # (Earlier, with two passes: 0.63-1.13 on other VMs, one CI failure at 0.36 before the replicas'
    # wait above existed, -0.02-0.20 with a random start.)
    vectors = _item_vectors(broker, env)
    for own, other in (("space", "cook"), ("cook", "space")):
        users = np.array([_user_state(pool, u)["factors"] for u in fans[own]])

        def score(item_ids: list[str]) -> np.ndarray:
            v = np.array([vectors[i] for i in item_ids])
            return users @ v[:, :-1].T + v[:, -1]

        topic_gap = score(topics[own]).mean() - score(topics[other]).mean()
        new_gap = (score([GERMAN[own][0]]) - score([GERMAN[other][0]])).mean()
        assert new_gap > 0.3 * topic_gap > 0, (own, new_gap, topic_gap)

    # 2. end to end, across workers: the next event of a space fan whose partition the *other*
    # worker owns (not the one that encoded the item) refreshes their recommendations with it
    encoder_worker = owners[support.partition_of(GERMAN["space"][0], 4)]  # items and events are co-partitioned
    user = next(u for u in fans["space"] if owners[support.partition_of(u, 4)] is not encoder_worker)
    run(send_records(broker, env["POLYREC_EVENTS_TOPIC"], [event_record(user, topics["space"][0], "view")]))
    recs = wait_for(lambda: (r := _recs(redis_client, env, user)) and r["updated_at"] / 1000 > published and r,
                    30, what=f"{user}'s fresh recs")
    elapsed = time.time() - published
    ranked = [x["item_id"] for x in recs["items"]]
    assert GERMAN["space"][0] in ranked, f"the German space item is not in {user}'s top-10: {ranked}"
    assert elapsed < 15, f"{elapsed:.1f} s from publishing the items to recommending them"


def _user_state(pool: list, user: str) -> dict:
    """A user's state from whichever worker holds it."""
    for w in pool:
        code, body = get_json(w.url(f"/polyrec/users/{user}"))
        if code == 200:
            return body
    raise AssertionError(f"no worker holds {user!r}")


def test_bad_items_go_to_the_dlq(broker, tmp_path, workers, redis_client):
    env = support.worker_env(broker, tmp_path)
    w = workers.new(env)
    w.wait_ready(90)
    topic = env["POLYREC_ITEMS_TOPIC"]
    bad = [item("blank", " <p>&nbsp;</p> "), (b"broken", b"{oops"), (b"notitle", b'{"item_id": "notitle", "ts": 1}'),
           item("markup", "<b></b>", description="<i>\u200b</i>"),  # no text in either field
           (b"surrogate", b'{"item_id": "surrogate", "title": "Am\\ud800lie", "ts": 1}')]  # cannot be tokenised
    # in one micro-batch with the good item: a bad record must not take the batch down with it
    run(send_records(broker, topic, bad + [item("fine", "A perfectly good item")]))
    wait_for(lambda: metric_value(w.metrics(), "polyrec_encoder_items_total") == 1, 30, what="the good item")
    dlq = wait_for(lambda: len(r := run(support.read_topic(broker, f"{topic}.dlq"))) == 5 and r, 15,
                   what="5 dead letters")
    reasons = sorted(dict(r.headers)["polyrec-reason"].decode() for r in dlq)
    assert reasons == ["empty_text", "empty_text", "malformed_json", "malformed_json", "missing_field"]
    assert metric_value(w.metrics(), "polyrec_dlq_records_total", topic=topic) == 5
    w.check()


def test_a_worker_with_use_m3_gives_a_new_item_its_text_start(broker, tmp_path, workers):
    """``POLYREC_ENCODER=use-m3`` end to end: the item is encoded in numpy and its text record,
    with a 512-dimensional embedding, reaches the item-factor topic."""
    env = support.worker_env(broker, tmp_path, POLYREC_ENCODER="use-m3")
    w = workers.new(env)
    w.wait_ready(90)
    assert metric_value(w.metrics(), "polyrec_encoder_provider_info", provider="numpy") == 1
    run(send_records(broker, env["POLYREC_ITEMS_TOPIC"], [item(*GERMAN["space"], lang="de")]))
    wait_for(lambda: metric_value(w.metrics(), "polyrec_encoder_items_total") == 1, 30, what="the item encoded")
    texts = wait_for(lambda: [r for r in support.latest_item_records(broker, env) if r.source == "text"], 15,
                     what="its text record")
    assert [(r.item_id, r.lang, r.embedding.shape) for r in texts] == [(GERMAN["space"][0], "de", (512,))]
    w.check()
