"""Live time to recommendable: new items in seven languages reach their topic's fans, under load.

A real Tansu broker, Redis and one ``polyrec worker`` (the default ONNX encoder). The catalogue is
``polyrec_cli/topic_catalogue.py``: six topics of twelve English texts, each text ``--parts`` items
("..., part 3"), so that a fan always has unseen items of their topic for the memory to bring; and
``--fans`` fans per topic, who buy eight items of their topic before the run. Then the background
load starts: ``--rate`` events/s, each a fan's click on an item of their topic. After ``--settle``
seconds the 42 new items (one per topic and language, none with an event, none ever clicked in the
run) are produced to ``items`` in a seeded random order, one every ``--every`` seconds, each with
its ``lang``; ``--rounds`` times, under new ids each round.

For every new item, the time from producing its record to the first recommendation payload in
Redis's change feed (``{prefix}:recs``, its ``updated_at``) in which it is in the top-10 of a fan
of its topic: p50, p99 and the maximum, per language too, and how many items reached a fan within
``--grace`` seconds. Also: the share of the new items' slots that went to users of another topic (a
wrong fit), and the produced rate.

Contenders, one after the other on the same broker and Redis, each with its own topics:
``explore`` (the worker's defaults) and ``no-explore`` (``POLYREC_EXPLORE_FIT=0`` and
``POLYREC_EXPLORE_REACH=0``: what a new item gets from its text alone, without the exploration place).

    python bench/time_to_recommendable.py [--rate 2000] [--fans 500] [--contenders explore no-explore]

Writes ``results/time_to_recommendable.json``, a plot of the times beside it (``.png``) and prints a
table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from polyrec_cli.devservers import ensure_redis, start_tansu  # noqa: E402
from polyrec_cli.harness import WorkerProcess, event_record, send_records  # noqa: E402
from polyrec_cli.topic_catalogue import CATALOGUE, LANGUAGES, NEW_ITEMS, TEXTS_PER_TOPIC  # noqa: E402
from stream.metrics import scrape_totals  # noqa: E402
from stream.recs import key_pattern, stream_key  # noqa: E402
from stream.settings import Settings  # noqa: E402
from stream.topics import ensure_topics  # noqa: E402

CONTENDERS = {"explore": {}, "no-explore": {"POLYREC_EXPLORE_FIT": "0", "POLYREC_EXPLORE_REACH": "0"}}
HISTORY = 8  # items of their topic each fan buys before the run


def item_record(item_id: str, text: str, lang: str) -> tuple[bytes, bytes]:
    body = {"item_id": item_id, "title": text, "lang": lang, "ts": int(time.time() * 1000)}
    return item_id.encode(), json.dumps(body, ensure_ascii=False).encode()


def catalogue(parts: int) -> dict[str, dict[str, str]]:
    """Topic -> item id -> English text: each text of the topic in ``parts`` parts."""
    return {topic: {f"{topic}-{n:02d}-{k}": f"{text}, part {k + 1}" for n, text in enumerate(texts[:TEXTS_PER_TOPIC])
                    for k in range(parts)} for topic, texts in CATALOGUE.items()}


def new_item_ids(rounds: int) -> dict[str, tuple[str, str, str]]:
    """New item id -> (topic, language, text): every new item once per round."""
    return {f"new{r}-{topic}-{lang}": (topic, lang, text) for r in range(rounds)
            for topic, by_lang in NEW_ITEMS.items() for lang, text in by_lang.items()}


class FeedWatcher(threading.Thread):
    """Reads the change feed from ``start`` on; records, per new item, the first ``updated_at`` of a
    payload that shows it to a fan of its topic, and counts payloads that show one to anyone else."""

    def __init__(self, redis_url: str, prefix: str, fans: dict[str, str], new: dict[str, tuple[str, str, str]]):
        super().__init__(daemon=True)
        import redis

        self.r, self.feed = redis.Redis.from_url(redis_url), stream_key(prefix)
        self.fans, self.new = fans, new
        self.start_id = self.r.xinfo_stream(self.feed)["last-generated-id"] if self.r.exists(self.feed) else b"0"
        self.first: dict[str, tuple[int, int]] = {}  # item -> (updated_at ms, place 1-based)
        self.payloads = self.matching = self.wrong = 0
        self.stop = threading.Event()

    def run(self) -> None:
        last = self.start_id
        while not self.stop.is_set():
            for _, entries in self.r.xread({self.feed: last}, count=5000, block=200) or []:
                for entry_id, fields in entries:
                    last = entry_id
                    self._see(json.loads(fields[b"payload"]))

    def _see(self, p: dict) -> None:
        self.payloads += 1
        topic = self.fans.get(p["user_id"])
        for place, x in enumerate(p["items"], 1):
            new = self.new.get(x["item_id"])
            if new is None:
                continue
            if new[0] == topic:
                self.matching += 1
                self.first.setdefault(x["item_id"], (p["updated_at"], place))
            else:
                self.wrong += 1


async def _drive(bootstrap: str, env: dict, fans: dict[str, str], order: list[str], args) -> dict[str, int]:
    """The background load, and the new items produced one every ``args.every`` s after
    ``args.settle`` s; returns each new item's produce time (ms)."""
    from aiokafka import AIOKafkaProducer

    ids, new = {t: list(items) for t, items in catalogue(args.parts).items()}, new_item_ids(args.rounds)
    rng, stop = random.Random(1), False
    users = list(fans)

    def load():
        while not stop:
            user = rng.choice(users)
            yield event_record(user, rng.choice(ids[fans[user]]), "click")

    loader = asyncio.create_task(send_records(bootstrap, env["POLYREC_EVENTS_TOPIC"], load(), rate=args.rate))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    published: dict[str, int] = {}
    try:
        await asyncio.sleep(args.settle)
        for item_id in order:
            topic, lang, text = new[item_id]
            key, value = item_record(item_id, text, lang)
            published[item_id] = int(time.time() * 1000)
            await producer.send_and_wait(env["POLYREC_ITEMS_TOPIC"], value, key=key)
            await asyncio.sleep(args.every)
        await asyncio.sleep(args.grace)
    finally:
        stop = True
        await producer.stop()
        sent = await loader
    published["_events_sent"] = sent
    return published


def _total(port: int, name: str) -> float:
    return scrape_totals(port).get(name, 0.0)


def _wait(what: str, ok, timeout: float, worker: WorkerProcess) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        worker.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.25)


def run_contender(name: str, bootstrap: str, redis_url: str, args) -> dict:
    app_id = f"ttr-{name}-{int(time.time())}"
    data = tempfile.mkdtemp(prefix="polyrec-bench-ttr-")
    env = dict(os.environ, KAFKA_BOOTSTRAP=bootstrap, REDIS_URL=redis_url, POLYREC_APP_ID=app_id,
               POLYREC_REDIS_PREFIX=app_id, POLYREC_DATA_DIR=data, POLYREC_EVENTS_TOPIC=f"{app_id}-events",
               POLYREC_ITEMS_TOPIC=f"{app_id}-items", **CONTENDERS[name])
    asyncio.run(ensure_topics(Settings(kafka_bootstrap=bootstrap, events_topic=env["POLYREC_EVENTS_TOPIC"],
                                       items_topic=env["POLYREC_ITEMS_TOPIC"])))
    worker = WorkerProcess(env, loglevel="warn", workdir=data).start()
    items, new = catalogue(args.parts), new_item_ids(args.rounds)
    ids = {t: list(x) for t, x in items.items()}
    fans = {f"{topic}-fan{n:03d}": topic for topic in CATALOGUE for n in range(args.fans)}
    try:
        worker.wait_ready(120)
        port = worker.metrics_port
        records = [item_record(i, t, "en") for by_id in items.values() for i, t in by_id.items()]
        asyncio.run(send_records(bootstrap, env["POLYREC_ITEMS_TOPIC"], records))
        _wait("the catalogue encoded", lambda: _total(port, "polyrec_encoder_items_total") >= len(records), 120, worker)
        rng = random.Random(0)
        history = [event_record(u, i, "purchase") for u, topic in fans.items() for i in rng.sample(ids[topic], HISTORY)]
        rng.shuffle(history)
        asyncio.run(send_records(bootstrap, env["POLYREC_EVENTS_TOPIC"], history))
        _wait("the history learned", lambda: _total(port, "polyrec_events_total") >= len(history), 120, worker)
        watcher = FeedWatcher(redis_url, app_id, fans, new)
        watcher.start()
        order = []
        for r in range(args.rounds):  # each round in its own seeded order
            ids_r = sorted(i for i in new if i.startswith(f"new{r}-"))
            random.Random(r).shuffle(ids_r)
            order += ids_r
        t0 = time.perf_counter()
        published = asyncio.run(_drive(bootstrap, env, fans, order, args))
        seconds = time.perf_counter() - t0
        time.sleep(1)
        watcher.stop.set()
        watcher.join()
        worker.check()
    finally:
        worker.stop()
        _clean_redis(redis_url, app_id)
    sent = published.pop("_events_sent")
    return _summary(name, watcher, published, new, sent / seconds, args)


def _summary(name: str, watcher: FeedWatcher, published: dict[str, int], new: dict, rate: float, args) -> dict:
    latency = {i: watcher.first[i][0] - published[i] for i in published if i in watcher.first}
    lat = np.array(list(latency.values()), float)
    by_lang = {lang: [latency[i] for i in latency if new[i][1] == lang] for lang in LANGUAGES}

    def pct(q: float, values) -> float | None:
        return float(np.percentile(values, q)) if len(values) else None

    return {
        "contender": name, "env": CONTENDERS[name], "new_items": len(published), "reached": len(latency),
        "p50_ms": pct(50, lat), "p99_ms": pct(99, lat), "max_ms": float(lat.max()) if len(lat) else None,
        "per_language": {lang: {"reached": len(v), "of": sum(1 for i in published if new[i][1] == lang),
                                "p50_ms": pct(50, v), "max_ms": max(v) if v else None} for lang, v in by_lang.items()},
        "first_place": dict(Counter(watcher.first[i][1] for i in latency)),
        "missed": sorted(set(published) - set(latency)),
        "latency_ms": latency,
        "payloads": watcher.payloads, "slots_to_fans": watcher.matching, "slots_to_other_topics": watcher.wrong,
        "produced_events_per_s": rate,
    }


def _clean_redis(url: str, prefix: str) -> None:
    import redis

    r = redis.Redis.from_url(url)
    keys = list(r.scan_iter(key_pattern(prefix), count=1000))
    if keys:
        r.delete(*keys)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=2000.0, help="background events/s")
    ap.add_argument("--fans", type=int, default=500, help="fans per topic")
    ap.add_argument("--parts", type=int, default=10, help="catalogue items per text")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds of load before the first new item")
    ap.add_argument("--every", type=float, default=1.0, help="seconds between new items")
    ap.add_argument("--grace", type=float, default=10.0, help="seconds of load after the last new item")
    ap.add_argument("--rounds", type=int, default=2, help="times the 42 new items are produced, under new ids")
    ap.add_argument("--contenders", nargs="+", choices=list(CONTENDERS), default=list(CONTENDERS))
    ap.add_argument("--out", default="results/time_to_recommendable.json")
    args = ap.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    tansu, redis_server = start_tansu(), ensure_redis(redis_url)
    try:
        results = [run_contender(name, tansu.address, redis_url, args) for name in args.contenders]
    finally:
        tansu.stop()
        redis_server.stop()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    run = {"rate": args.rate, "fans_per_topic": args.fans, "topics": len(CATALOGUE),
           "catalogue_items": sum(len(x) for x in catalogue(args.parts).values()), "every_s": args.every,
           "grace_s": args.grace, "rounds": args.rounds, "results": results}
    out.write_text(json.dumps(run, indent=2, ensure_ascii=False) + "\n")
    plot(run, out.with_suffix(".png"))
    _print(results, args)
    print(f"wrote {out}")


def plot(run: dict, path: Path) -> None:
    """Each contender's times to recommendable as a cumulative share of the new items, by language."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in run["results"]:
        n = r["new_items"]
        for lang in LANGUAGES:
            times = sorted(v for k, v in r["latency_ms"].items() if k.endswith(f"-{lang}"))
            if times:
                ax.step(times, np.arange(1, len(times) + 1) / (n / len(LANGUAGES)), where="post", lw=1, alpha=0.6,
                        label=f"{r['contender']}: {lang}")
        every = sorted(r["latency_ms"].values())
        ax.step(every, np.arange(1, len(every) + 1) / n, where="post", lw=2.5, color="black",
                label=f"{r['contender']}: all ({r['reached']}/{n} reached)")
    ax.axvline(1000, color="red", ls="--", lw=1, label="1 s")
    ax.set_xlabel("ms from producing the item to its first place in a fan's top-10 in Redis")
    ax.set_ylabel("share of new items")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"New items in 7 languages under {run['rate']:,.0f} events/s ({run['catalogue_items']} items, "
                 f"{run['fans_per_topic'] * run['topics']:,} fans)")
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _print(results: list[dict], args) -> None:
    from rich.console import Console
    from rich.table import Table

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:,.0f}"

    table = Table(title=f"Time to recommendable: new items to their topic's fans, {args.rate:,.0f} events/s of load")
    for col in ("contender", "reached", "p50 ms", "p99 ms", "max ms", "to other topics", "produced/s"):
        table.add_column(col, justify="left" if col == "contender" else "right")
    for r in results:
        share = r["slots_to_other_topics"] / max(r["slots_to_fans"] + r["slots_to_other_topics"], 1)
        table.add_row(r["contender"], f"{r['reached']}/{r['new_items']}", ms(r["p50_ms"]), ms(r["p99_ms"]),
                      ms(r["max_ms"]), f"{share:.1%}", f"{r['produced_events_per_s']:,.0f}")
    console = Console(width=max(Console().width, 110))
    console.print(table)
    for r in results:
        console.print(f"{r['contender']} by language (reached, p50 ms): " + ", ".join(
            f"{lang} {v['reached']}/{v['of']} {ms(v['p50_ms'])}" for lang, v in r["per_language"].items()))


if __name__ == "__main__":
    main()
