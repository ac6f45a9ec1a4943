"""Runtime text encoder: an exported ONNX graph + its sidecar + ``tokenizer.json``.

Imports neither torch nor transformers. Texts are tokenised with the ``tokenizers`` library,
bucketed by token length (so padding stays small), run through onnxruntime and returned as
float32 L2-normalised rows in input order.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from encoders.providers import CPU, CUDA, select_provider
from encoders.sidecar import Sidecar, file_sha256, sidecar_path

log = logging.getLogger(__name__)


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


class OnnxEncoder:
    """Thread-safe encoder over one exported graph; ``provider`` says where it runs."""

    def __init__(self, onnx_path: Path | str, *, provider: str = "auto", batch_size: int = 32,
                 intra_op_threads: int = 0, workers: int = 1) -> None:
        """``intra_op_threads`` 0: :func:`available_cpus`; ``workers`` sizes the async pool."""
        path = Path(onnx_path)
        self.sidecar = Sidecar.read(sidecar_path(path))
        if self.sidecar.validation.get("status") != "passed":
            log.warning("%s was not validated against torch (%s): its numbers are unchecked", path.name,
                        self.sidecar.validation.get("status"))
        self.batch_size = batch_size
        tokenizer_path = path.parent / self.sidecar.tokenizer
        if not tokenizer_path.is_file():
            raise FileNotFoundError(f"{tokenizer_path} is missing: export writes it next to the graph; "
                                    f"re-run `polyrec export` for {path}")
        if self.sidecar.tokenizer_sha256 and file_sha256(tokenizer_path) != self.sidecar.tokenizer_sha256:
            raise ValueError(f"{tokenizer_path} is not the tokenizer {path.name} was exported and validated with "
                             f"(another export into the same folder replaced it?): re-export {path.name}")
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.sidecar.max_length)
        self._tokenizer_lock = threading.Lock()  # never share the Rust tokenizer between threads

        chosen, warning = select_provider(provider, ort.get_available_providers())
        if warning:
            log.warning(warning)
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads or available_cpus()
        providers = [CUDA, CPU] if chosen == CUDA else [CPU]
        self._session = ort.InferenceSession(str(path), options, providers=providers)
        self.provider = self._session.get_providers()[0]
        if self.provider != chosen:
            log.warning("%s could not start: running on %s", chosen, self.provider)
        log.info("OnnxEncoder %s (%s, dim %d) on %s", path.name, self.sidecar.variant, self.dim, self.provider)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="onnx-encoder")

    @property
    def dim(self) -> int:
        return self.sidecar.dim

    def _tokenize(self, texts: list[str]) -> tuple[list[list[int]], np.ndarray]:
        with self._tokenizer_lock:
            ids = [e.ids for e in self._tokenizer.encode_batch(texts)]
        return ids, np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))

    def _run(self, ids: list[list[int]], lengths: np.ndarray) -> np.ndarray:
        """One padded batch through the graph."""
        mask = np.arange(lengths.max()) < lengths[:, None]
        input_ids = np.full(mask.shape, self.sidecar.pad_token_id, dtype=np.int64)
        input_ids[mask] = np.concatenate(ids)
        feed = {"input_ids": input_ids, "attention_mask": mask.astype(np.int64)}
        return self._session.run([self.sidecar.output], feed)[0]

    def encode(self, texts: Sequence[str], *, prefix: str = "") -> np.ndarray:
        """Encode ``prefix + text`` for each text; float32 ``[len(texts), dim]``, L2-normalised."""
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts, not one str")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        ids, lengths = self._tokenize([prefix + t for t in texts])
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            out[chunk] = self._run([ids[i] for i in chunk], lengths[chunk])
        return out

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Items: the sidecar's passage prefix ("passage: " for E5)."""
        return self.encode(texts, prefix=self.sidecar.prefixes["passage"])

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Queries: the sidecar's query prefix ("query: " for E5)."""
        return self.encode(texts, prefix=self.sidecar.prefixes["query"])

    async def encode_async(self, texts: Sequence[str], *, kind: str = "passage") -> np.ndarray:
        """Encode off the event loop, in this encoder's own thread pool."""
        prefix = self.sidecar.prefixes[kind]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: self.encode(texts, prefix=prefix))

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def __enter__(self) -> OnnxEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
