"""What every runtime text encoder offers the worker and the eval.

Rows are float32 and L2-normalised, in input order; items are encoded as passages and queries
as queries, each with the model's own prefix; ``encode_async`` runs off the event loop, in the
encoder's own thread pool. Subclasses: :class:`encoders.onnx_encoder.OnnxEncoder` (an exported
graph) and :class:`encoders.use_m3.UseM3Encoder` (a numpy forward pass).
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def available_cpus(cgroup_cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 quota (a container's CPU
    limit), which onnxruntime's own default ignores: it would start a thread per host core."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = cgroup_cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return cpus
    if quota == "max":
        return cpus
    return max(1, min(cpus, math.ceil(int(quota) / int(period))))


class TextEncoder:
    """Base of the runtime encoders: subclasses set ``dim``, ``provider`` and ``prefixes`` and
    implement ``_embed`` and ``describe``."""

    dim: int
    provider: str  # where it runs: an onnxruntime provider name, or "numpy"
    prefixes: dict[str, str]  # {"query": ..., "passage": ...}

    def __init__(self, *, workers: int, thread_name: str) -> None:
        """``workers`` sizes the pool that :meth:`encode_async` runs in."""
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=thread_name)

    def _embed(self, texts: list[str]) -> np.ndarray:
        """``[len(texts), dim]`` float32 L2-normalised rows of non-empty ``texts`` (prefixes applied)."""
        raise NotImplementedError

    def describe(self) -> dict[str, str]:
        """Which model, in which form, from where, on which provider: for logs and result files."""
        raise NotImplementedError

    def encode(self, texts: Sequence[str], *, prefix: str = "") -> np.ndarray:
        """Encode ``prefix + text`` for each text; float32 ``[len(texts), dim]``, L2-normalised."""
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts, not one str")
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        return self._embed([prefix + t for t in texts])

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Items: the model's passage prefix ("passage: " for E5)."""
        return self.encode(texts, prefix=self.prefixes["passage"])

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Queries: the model's query prefix ("query: " for E5)."""
        return self.encode(texts, prefix=self.prefixes["query"])

    async def encode_async(self, texts: Sequence[str], *, kind: str = "passage") -> np.ndarray:
        """Encode off the event loop, in this encoder's own thread pool."""
        prefix = self.prefixes[kind]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: self.encode(texts, prefix=prefix))

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def __enter__(self) -> TextEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
