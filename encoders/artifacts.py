"""Where the default encoder's files live in the polyrec cache (the Makefile uses the same paths)."""

from __future__ import annotations

from pathlib import Path

from polyrec.paths import cache_dir

DEFAULT_MODEL = "multilingual-e5-small"


def default_model_dir() -> Path:
    """The Hugging Face folder that ``polyrec model build`` writes."""
    return cache_dir("models", DEFAULT_MODEL)


def default_onnx_path(variant: str = "int8") -> Path:
    """``model.<variant>.onnx`` for the default model (its sidecar and tokenizer.json beside it)."""
    return cache_dir("onnx", DEFAULT_MODEL) / f"model.{variant}.onnx"
