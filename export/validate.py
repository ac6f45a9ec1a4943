"""The export's validation gate: an ONNX graph must reproduce torch on multilingual probes.

The probes run through onnxruntime twice, as one padded batch and one text at a time (so both
dynamic axes and the pooling mask are exercised), and are compared with torch fp32 embeddings of
the same token ids.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from encoders.providers import CPU, CUDA
from encoders.sidecar import OUTPUT_NAME


class ValidationError(RuntimeError):
    """The exported graph does not match torch within tolerance; nothing was written."""


@dataclass(frozen=True)
class Tolerance:
    """Gate thresholds; ``max_abs_diff`` None means only cosine is gated."""

    min_cos: float
    max_abs_diff: float | None = None


DEFAULT_TOLERANCE = {
    "fp32": Tolerance(min_cos=0.9999, max_abs_diff=1e-4),
    "fp16": Tolerance(min_cos=0.999),
    "int8": Tolerance(min_cos=0.95),
}


@dataclass(frozen=True)
class Metrics:
    max_abs_diff: float
    min_cos: float
    mean_cos: float

    def within(self, tol: Tolerance) -> bool:
        ok_diff = tol.max_abs_diff is None or self.max_abs_diff <= tol.max_abs_diff
        return ok_diff and self.min_cos >= tol.min_cos


def compare(reference: np.ndarray, candidate: np.ndarray) -> Metrics:
    """Row-wise agreement of two ``[N, H]`` embedding matrices."""
    ref = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    cand = candidate / np.linalg.norm(candidate, axis=1, keepdims=True)
    cos = (ref * cand).sum(axis=1)
    return Metrics(float(np.abs(reference - candidate).max()), float(cos.min()), float(cos.mean()))


def run_graph(path: Path, input_ids: np.ndarray, attention_mask: np.ndarray, provider: str) -> np.ndarray:
    """Run the graph on one padded batch and again one unpadded text at a time; stack both."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=[provider])
    batch = session.run([OUTPUT_NAME], {"input_ids": input_ids, "attention_mask": attention_mask})[0]
    singles = [
        session.run([OUTPUT_NAME], {"input_ids": ids[mask == 1][None], "attention_mask": mask[mask == 1][None]})[0]
        for ids, mask in zip(input_ids, attention_mask)
    ]
    return np.concatenate([batch, *singles]).astype(np.float32)


def validation_provider(variant: str) -> str:
    """fp16 is meant for CUDA: validate it there when onnxruntime has it; everything else on CPU."""
    import onnxruntime as ort

    return CUDA if variant == "fp16" and CUDA in ort.get_available_providers() else CPU


def validate(path: Path, variant: str, reference: np.ndarray, input_ids: np.ndarray,
             attention_mask: np.ndarray, tolerance: Tolerance) -> dict:
    """Gate ``path`` against torch ``reference``; return the numbers or raise ``ValidationError``.

    An fp16 graph that no available provider can run (CPU-only onnxruntime lacks fp16 kernels
    for some ops) is recorded as unvalidated instead of refused.
    """
    provider = validation_provider(variant)
    try:
        candidate = run_graph(path, input_ids, attention_mask, provider)
    except Exception as exc:  # onnxruntime raises its own exception types
        if variant != "fp16":
            raise ValidationError(f"onnxruntime could not run the {variant} graph: {exc}") from exc
        return {"status": "unvalidated", "provider": provider, "reason": str(exc).splitlines()[0][:300]}
    metrics = compare(np.concatenate([reference, reference]), candidate)
    report = {"status": "passed" if metrics.within(tolerance) else "failed", "provider": provider,
              "reference": "torch fp32", "probes": len(reference), "runs": "padded batch + one text at a time",
              **asdict(metrics), "tolerance": asdict(tolerance)}
    if report["status"] != "passed":
        raise ValidationError(f"{variant} export failed validation: max abs diff {metrics.max_abs_diff:.3g}, "
                              f"min cos {metrics.min_cos:.6f}, tolerance {asdict(tolerance)}")
    return report
