"""The ``polyrec`` command line. Each sub-command imports its own module lazily."""

from __future__ import annotations

import argparse
import sys


def _cmd_fetch(args: argparse.Namespace) -> int:
    from polyrec.datasets.movielens import DATASETS, ensure_movielens

    for source in DATASETS.values():
        print(f"{source.title} ready in {ensure_movielens(source)}")
    return 0


def _single_threaded_blas() -> None:
    """One BLAS thread unless the environment says otherwise, set before numpy loads: the model's
    matrix products are small (a micro-batch against a 64-item pool, a few users against the
    catalogue), and OpenBLAS's threads cost more than they save, beside Faust's own threads on a
    worker (docs/performance.md) and in implicit's ALS (its advice) in the evaluation."""
    import os

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _cmd_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    _single_threaded_blas()
    if args.cold_start:
        from polyrec_cli.evaluation import coldstart_report
        from polyrec_cli.evaluation.coldstart_run import output_paths as cold_paths
        from polyrec_cli.evaluation.coldstart_run import run as run_cold_start

        result = run_cold_start(Path(args.out), dataset=args.dataset, limit=args.limit, dim=args.dim,
                                sample_every=args.sample_every)
        coldstart_report.print_table(result)
        json_path, png_path = cold_paths(Path(args.out), args.dataset)
        print(f"wrote {json_path} and {png_path} in {result['elapsed_s']} s")
        return 0
    from polyrec_cli.evaluation import report
    from polyrec_cli.evaluation.run import output_paths, run

    sweep = tuple(int(b) for b in args.batch_sizes.split(","))
    result = run(Path(args.out), dataset=args.dataset, dim=args.dim, sweep=sweep, limit=args.limit,
                 repeats=args.repeats, sample_every=args.sample_every, resamples=args.resamples)
    report.print_table(result)
    json_path, png_path = output_paths(Path(args.out), args.dataset)
    print(f"wrote {json_path} and {png_path} in {result['elapsed_s']} s")
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    _single_threaded_blas()
    from polyrec_cli.worker import run_worker
    from stream.settings import Settings

    run_worker(Settings.from_env(), loglevel=args.loglevel)
    return 0


def _cmd_topics(args: argparse.Namespace) -> int:
    import asyncio

    from stream.settings import Settings
    from stream.topics import ensure_topics, topic_specs

    settings = Settings.from_env()
    asyncio.run(ensure_topics(settings, replication=settings.replication))
    for spec in topic_specs(settings):
        print(f"{spec.name}: {spec.partitions} partitions{', compacted' if spec.compacted else ''}")
    return 0


def _cmd_recs(args: argparse.Namespace) -> int:
    import json

    from stream.recs import RecsReader
    from stream.settings import Settings, redact_url

    settings = Settings.from_env()
    got = RecsReader.from_url(settings.redis_url, settings.redis_prefix).get(args.user_id)
    if got is None:
        print(f"no recommendations for user {args.user_id!r} in {redact_url(settings.redis_url)}", file=sys.stderr)
        return 1
    print(json.dumps(got, indent=2, ensure_ascii=False))
    return 0


def _cmd_forget(args: argparse.Namespace) -> int:
    import json

    from polyrec_cli.forget import forget
    from stream.settings import Settings

    report = forget(Settings.from_env(), args.user_id, timeout=args.timeout)
    print(json.dumps(report.to_json(), ensure_ascii=False))
    if not report.applied:
        print(f"polyrec forget: no worker applied the request within {args.timeout:g} s (is one running?); "
              "it stays on the events topic and will be applied when a worker reaches it: run the command "
              "again then, to clean Redis of what was written meanwhile", file=sys.stderr)
        return 3
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from polyrec_cli.demo import run_demo

    try:
        run_demo(limit=args.limit, keep_running=args.keep_running)
    except KeyboardInterrupt:
        print("polyrec demo: interrupted; the broker, Redis and worker it started are stopped", file=sys.stderr)
        return 130
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    from stream.settings import Settings, markdown_table

    if args.markdown:
        print(markdown_table(), end="")
    else:
        print("\n".join(Settings.from_env().describe()))
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polyrec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="download the MovieLens-100K and -1M data sets into the cache")
    fetch.set_defaults(func=_cmd_fetch)
    ev = sub.add_parser("eval", help="prequential evaluation of polyrec against peers on MovieLens")
    ev.add_argument("--dataset", choices=("ml-100k", "ml-1m"), default="ml-100k",
                    help="MovieLens-100K (default) or MovieLens-1M (its full run takes hours on 2 cores)")
    ev.add_argument("--out", default="results",
                    help="folder for prequential.json and prequential.png (ml-1m: prequential-ml-1m.*)")
    ev.add_argument("--dim", type=int, default=32, help="factor dimension for every MF model")
    ev.add_argument("--batch-sizes", default="1,10,100",
                    help="micro-batch sizes to replay; the first is the headline protocol (1 = per event)")
    ev.add_argument("--limit", type=int, default=None, help="replay only the first N events (smoke runs)")
    ev.add_argument("--repeats", type=int, default=5, help="repeats of the throughput measurement")
    ev.add_argument("--sample-every", type=_positive_int, default=1,
                    help="score a fixed 1-in-N sample of the scorable events (the same for every model)")
    ev.add_argument("--resamples", type=_positive_int, default=2000,
                    help="bootstrap resamples (over users) of the 95%% confidence intervals")
    ev.add_argument("--cold-start", action="store_true",
                    help="evaluate new items started from multilingual text instead (coldstart.json, .png; "
                         "ml-1m: coldstart-ml-1m.*)")
    ev.set_defaults(func=_cmd_eval)
    wk = sub.add_parser("worker", help="run one streaming worker (configured from environment variables)")
    wk.add_argument("--loglevel", default="info")
    wk.set_defaults(func=_cmd_worker)
    dm = sub.add_parser("demo", help="run the whole pipeline on embedded defaults with MovieLens-100K")
    dm.add_argument("--limit", type=_positive_int, default=None, help="replay only the first N events")
    dm.add_argument("--keep-running", action="store_true",
                    help="leave the broker, Redis and worker up and print how to query them")
    dm.set_defaults(func=_cmd_demo)
    fg = sub.add_parser("forget", help="erase a user: state, changelog, worker memory, Redis key and stream entries")
    fg.add_argument("user_id")
    fg.add_argument("--timeout", type=float, default=60.0,
                    help="seconds to wait for a worker to apply the request (exit code 3 if none does)")
    fg.set_defaults(func=_cmd_forget)
    rc = sub.add_parser("recs", help="print a user's current recommendations from Redis")
    rc.add_argument("user_id")
    rc.set_defaults(func=_cmd_recs)
    cf = sub.add_parser("config", help="print the settings read from the environment")
    cf.add_argument("--markdown", action="store_true",
                    help="print the configuration reference (docs/configuration.md) instead")
    cf.set_defaults(func=_cmd_config)
    tp = sub.add_parser("topics", help="create polyrec's topics (partitions, compaction) if missing, then exit")
    tp.set_defaults(func=_cmd_topics)
    from polyrec_cli.export_cmds import add_commands as add_export_commands

    add_export_commands(sub)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that a bad setting or an unreachable service causes: a one-line message, not a
    traceback. Imported here, on the error path only, so that each command's imports stay lazy."""
    from aiokafka.errors import KafkaError
    from redis.exceptions import RedisError

    from polyrec_cli.devservers import EmbeddedError
    from stream.topics import TopicError

    # ModuleNotFoundError: an extra not installed
    return ValueError, OSError, ModuleNotFoundError, RedisError, KafkaError, EmbeddedError, TopicError


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Exception as exc:
        if not isinstance(exc, _user_errors()):
            raise
        print(f"polyrec {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
