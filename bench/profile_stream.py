"""Where a consumer spends its time: py-spy on a polyrec worker or the no-op Faust agent.

Starts Tansu, fills a 4-partition topic with MovieLens events, starts the contender, attaches
``py-spy record --nonblocking`` once it is consuming, stops at 95% of the events, and prints the
functions with the largest inclusive and self shares of the samples, and (for a worker) the shares
of its parts: polyrec's own code against Faust's, aiokafka's and the loop's. Writes the raw collapsed
stacks to ``results/profile_<contender>_<order>[_gil].txt`` (speedscope or a flame-graph tool opens them).

    python bench/profile_stream.py polyrec|noop [--events 30000] [--order time|interleaved] [--gil]
        [--rate 200] [--top 40]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from stream_throughput import (  # noqa: E402
    ORDERS,
    ROOT,
    STOP_TIMEOUT_S,
    _clean_redis,
    _events_total,
    _fill,
    noop_agent,
    polyrec_worker,
)

from polyrec_cli.devservers import free_port, start_tansu  # noqa: E402
from stream.settings import Settings  # noqa: E402
from stream.topics import ensure_topics  # noqa: E402

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>.*?)(?::\d+)?\)$")


def _label(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    return f"{m['name']} {m['file'].split('site-packages/')[-1]}"


def shares(raw: Path) -> tuple[int, collections.Counter, collections.Counter]:
    """(samples, inclusive counts, self counts) per function from py-spy's raw output."""
    inclusive: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        frames = [_label(f) for f in stack.split(";")]
        total += int(n)
        for f in set(frames):
            inclusive[f] += int(n)
        own[frames[-1]] += int(n)
    return total, inclusive, own


# a worker's samples split into parts: the first rule whose frames a stack holds takes it
PARTS = [
    ("polyrec: user states and item contributions at commit (flush)", ("FlushOnCommit", "EventPipeline.flush")),
    ("polyrec: the item and events replicas", ("TopicReplica.run",)),
    ("polyrec: learning the batch (WorkerModel.process)", ("WorkerModel.process",)),
    ("polyrec: validation", ("EventPipeline.validate",)),
    ("polyrec: the top-K thread (RecsJob.run)", ("RecsJob.run",)),
    ("polyrec: holding states and publishing", ("_hold_and_publish", "EventPipeline._publish")),
    ("polyrec: the rest of the agent body", ("process_or_dead_letter", "EventPipeline.")),
    ("Faust: stream iteration (take_events, _c_aiter, acks)", ("take_events", "_c_aiter", "Stream.ack", "Event.ack")),
    ("Faust/aiokafka: consumer, fetcher, commits", ("_drain_messages", "Fetcher", "on_message", "Consumer.",
                                                    "_commit")),
    ("aiokafka: producer and connections", ("aiokafka/producer", "AIOKafkaConnection", "AIOKafkaClient",
                                            "MessageAccumulator")),
    ("the metrics endpoint", ("wsgiref", "prometheus_client")),
]
_SERVICES = ("mode/", "asyncio/", "faust/", "aiokafka/")


def parts(raw: Path) -> collections.Counter:
    """Samples per part (:data:`PARTS`); of the rest, a stack that ends in the loop's entry point is
    the loop's own native time (uvloop), one that ends in Faust, mode, asyncio or aiokafka code
    their services and waits."""
    out: collections.Counter = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        name = next((part for part, keys in PARTS if any(k in stack for k in keys)), None)
        if name is None:
            frames = stack.split(";")
            name = ("the event loop's own native time" if frames[-1].startswith("Worker.execute_from_commandline")
                    else "Faust/mode/asyncio: services, waits, tasks" if any(s in f for f in frames[-3:]
                                                                             for s in _SERVICES)
                    else "other")
        out[name] += int(n)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("contender", choices=("polyrec", "noop"))
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--order", choices=ORDERS, default="time", help="event order (stream_throughput.event_order)")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--gil", action="store_true",
                        help="sample only the thread holding the GIL: where the process's Python time goes, "
                             "without threads that wait for it")
    args = parser.parse_args()
    out = ROOT / "results" / f"profile_{args.contender}_{args.order}{'_gil' if args.gil else ''}.txt"
    out.parent.mkdir(exist_ok=True)
    tansu = start_tansu()
    try:
        topic = f"events-profile-{args.contender}"
        asyncio.run(ensure_topics(Settings(kafka_bootstrap=tansu.address, events_topic=topic)))
        asyncio.run(_fill(tansu.address, topic, args.events, order=args.order))
        port = free_port()
        env = {"REDIS_URL": REDIS_URL, "POLYREC_ITEMS_AGENT": "0"} if args.contender == "polyrec" else {}
        app_id = f"profile-{args.contender}"
        try:
            server = (polyrec_worker(tansu.address, topic, app_id, port, **env) if args.contender == "polyrec"
                      else noop_agent(tansu.address, topic, app_id, port))
            try:
                proc = server.proc
                while _events_total(port) < 0.05 * args.events:
                    if proc.poll() is not None:
                        raise RuntimeError(f"{args.contender} exited with {proc.returncode}")
                    time.sleep(0.2)
                spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--nonblocking",
                                        "-p", str(proc.pid), "-r", str(args.rate), "-f", "raw", "-o", str(out),
                                        *(["--gil"] if args.gil else [])],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                t0, n0 = time.perf_counter(), _events_total(port)
                while _events_total(port) < 0.95 * args.events:
                    time.sleep(0.5)
                rate = (_events_total(port) - n0) / (time.perf_counter() - t0)
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
            finally:
                server.stop(timeout=STOP_TIMEOUT_S)
        finally:
            if args.contender == "polyrec":
                _clean_redis(REDIS_URL, app_id)
    finally:
        tansu.stop()
    total, inclusive, own = shares(out)
    print(f"{args.contender}: {rate:,.0f} events/s while profiled (py-spy at {args.rate} Hz, {total:,} samples); "
          f"raw stacks in {out}")
    print("\ninclusive share")
    for f, n in inclusive.most_common(args.top):
        print(f"{100 * n / total:6.1f}%  {f}")
    print("\nself share")
    for f, n in own.most_common(args.top // 2):
        print(f"{100 * n / total:6.1f}%  {f}")
    if args.contender == "polyrec":
        split = parts(out)
        print("\nparts")
        for name, n in sorted(split.items(), key=lambda kv: (not kv[0].startswith("polyrec"), -kv[1])):
            print(f"{100 * n / total:6.1f}%  {name}")
        print(f"{100 * sum(n for k, n in split.items() if k.startswith('polyrec')) / total:6.1f}%  polyrec's own code")


if __name__ == "__main__":
    main()
