"""How far can onnxruntime fp32 get above torch fp32 on CPU? A load-robust work measure + a GEMM ceiling.

Wall-clock ratios on a shared 2-core machine swing with other people's load (torch's OpenMP pool
suffers most). This measures *CPU seconds* per pass instead, with busy-waiting off on both sides
(``OMP_WAIT_POLICY=PASSIVE`` for torch, ``session.intra_op.allow_spinning=0`` for onnxruntime), so
CPU time is close to the work done; same texts, same batches of 32 as ``encoder_throughput.py``.

It also counts the dense fp32 GEMM work per pass (12 layers x (4 HxH + 2 HxFF) multiply-adds per
*padded* token) and times the best fp32 GEMM this CPU gives (torch and onnxruntime/MLAS, the
model's own shapes). ``ceiling`` = torch CPU-s / (GEMM work / best GEMM rate): the torch/ORT ratio
ORT would reach if everything but the dense GEMMs were free and each GEMM ran at that rate.

    python bench/encoder_roofline.py [--items 320] [--batch 32] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads its OpenMP runtime

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

from encoders.artifacts import default_model_dir, default_onnx_path  # noqa: E402
from encoders.onnx_encoder import OnnxEncoder  # noqa: E402
from encoders.providers import CPU  # noqa: E402


def _no_spin(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def gemm_rates(threads: int, rows: int, hidden: int = 384, ff: int = 1536, reps: int = 100) -> dict[str, float]:
    """GFLOP per CPU-second of fp32 GEMMs with the encoder's shapes, FLOP-weighted, torch and MLAS."""
    import torch
    from onnx import TensorProto, helper, numpy_helper

    shapes = [(hidden, hidden, 4), (hidden, ff, 1), (ff, hidden, 1)]  # (K, N, how many per layer)
    rates = {}
    for name in ("torch", "onnxruntime"):
        flop = cpu = 0.0
        for k, n, count in shapes:
            x = np.random.default_rng(0).standard_normal((rows, k), dtype=np.float32)
            w = np.random.default_rng(1).standard_normal((k, n), dtype=np.float32)
            if name == "torch":
                tx, tw = torch.from_numpy(x), torch.from_numpy(w)
                fn = lambda: torch.mm(tx, tw)  # noqa: E731
            else:
                graph = helper.make_graph(
                    [helper.make_node("MatMul", ["x", "w"], ["y"])], "gemm",
                    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])],
                    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n])],
                    [numpy_helper.from_array(w, "w")])
                model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
                model.ir_version = 8
                session = ort.InferenceSession(model.SerializeToString(), _no_spin(threads), providers=[CPU])
                fn = lambda: session.run(None, {"x": x})  # noqa: E731
            for _ in range(5):
                fn()
            start = time.process_time()
            for _ in range(reps):
                fn()
            cpu += (time.process_time() - start) * count
            flop += 2.0 * rows * k * n * reps * count
        rates[name] = flop / cpu / 1e9
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=320)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--onnx", type=Path, default=default_onnx_path("fp32"))
    parser.add_argument("--out", type=Path, default=Path("results/encoder_roofline.json"))
    args = parser.parse_args(argv)

    import torch

    from bench.encoder_throughput import movielens_texts, torch_encoder

    torch.set_num_threads(args.threads)
    texts = movielens_texts(args.items)
    batches = [texts[i : i + args.batch] for i in range(0, len(texts), args.batch)]
    encoder = OnnxEncoder(args.onnx, provider="cpu", intra_op_threads=args.threads, batch_size=args.batch)
    encoder._session = ort.InferenceSession(str(args.onnx), _no_spin(args.threads), providers=[CPU])
    backends = {"torch fp32": torch_encoder(default_model_dir(), "cpu", torch.float32),
                "ort fp32": encoder.encode}

    lengths = [len(ids) for ids in encoder._tokenize(texts)[0]]
    padded = sum(max(lengths[i : i + args.batch]) * len(lengths[i : i + args.batch])
                 for i in range(0, len(lengths), args.batch))
    gemm_flop = 2.0 * 12 * (4 * 384 * 384 + 2 * 384 * 1536) * padded

    for encode in backends.values():  # warm-up
        for b in batches:
            encode(b)
    cpu: dict[str, list[float]] = {name: [] for name in backends}
    for _ in range(args.repeats):
        for name, encode in backends.items():
            start = time.process_time()
            for b in batches:
                encode(b)
            cpu[name].append(time.process_time() - start)
    rates = gemm_rates(args.threads, rows=padded // len(batches))
    med = {name: statistics.median(v) for name, v in cpu.items()}
    best = max(rates.values())
    ceiling = med["torch fp32"] / (gemm_flop / 1e9 / best)
    for name, v in cpu.items():
        print(f"{name:10s} CPU-s per pass (median of {args.repeats}) {med[name]:6.2f}  "
              f"dense-GEMM GFLOP per CPU-s {gemm_flop / 1e9 / med[name]:5.1f}  "
              f"torch/this {med['torch fp32'] / med[name]:4.2f}"
              f"  (all {[round(x, 2) for x in v]})")
    print(f"padded tokens per pass {padded} (real {sum(lengths)}), dense GEMM work {gemm_flop / 1e9:.0f} GFLOP")
    print("best fp32 GEMM on these shapes, GFLOP per CPU-s: " + ", ".join(f"{k} {v:.1f}" for k, v in rates.items()))
    print(f"ceiling: ORT fp32 at most {ceiling:.2f}x torch fp32 in CPU time if only the GEMMs cost anything")
    result = {"items": args.items, "batch": args.batch, "threads": args.threads, "cpu_s_per_pass": cpu,
              "cpu_s_median": med, "torch_over_ort": med["torch fp32"] / med["ort fp32"],
              "padded_tokens": padded, "real_tokens": sum(lengths), "gemm_gflop": gemm_flop / 1e9,
              "gemm_gflop_per_cpu_s": rates, "ceiling_torch_over_ort": ceiling, "onnx": str(args.onnx)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
