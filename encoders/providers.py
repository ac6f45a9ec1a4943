"""ONNX Runtime execution providers: what a user may ask for and what each request runs on.

No onnxruntime import here: the worker's settings validate ``POLYREC_ENCODER_PROVIDER`` with
:data:`PROVIDERS` on installs without it.
"""

from __future__ import annotations

from collections.abc import Sequence

PROVIDERS = ("auto", "cpu", "cuda")  # what a user may ask the ONNX encoder for
CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


def select_provider(requested: str, available: Sequence[str]) -> tuple[str, str | None]:
    """Pick CUDA or CPU for ``requested`` ("auto" | "cpu" | "cuda"); return (provider, warning)."""
    if requested not in PROVIDERS:
        raise ValueError(f"provider must be one of {', '.join(PROVIDERS)}, got {requested!r}")
    has_cuda = CUDA in available
    if requested == "cuda" and not has_cuda:
        return CPU, f"CUDA requested but onnxruntime offers only {list(available)}: falling back to CPU"
    return (CUDA if has_cuda and requested != "cpu" else CPU), None
