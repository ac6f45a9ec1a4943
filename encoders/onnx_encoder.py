"""Runtime text encoder: an exported ONNX graph + its sidecar + ``tokenizer.json``.

Imports neither torch nor transformers. Texts are tokenised with the ``tokenizers`` library,
bucketed by token length (so padding stays small), run through onnxruntime and returned as
float32 L2-normalised rows in input order.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from encoders.encoder import TextEncoder, available_cpus
from encoders.providers import CPU, CUDA, select_provider
from encoders.sidecar import Sidecar, file_sha256, sidecar_path

log = logging.getLogger(__name__)


class OnnxEncoder(TextEncoder):
    """Thread-safe encoder over one exported graph; ``provider`` says where it runs."""

    def __init__(self, onnx_path: Path | str, *, provider: str = "auto", batch_size: int = 32,
                 intra_op_threads: int = 0, workers: int = 1) -> None:
        """``intra_op_threads`` 0: :func:`available_cpus`; ``workers`` sizes the async pool."""
        super().__init__(workers=workers, thread_name="onnx-encoder")
        self.path = path = Path(onnx_path)
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
        self.dim, self.prefixes = self.sidecar.dim, self.sidecar.prefixes
        log.info("OnnxEncoder %s (%s, dim %d) on %s", path.name, self.sidecar.variant, self.dim, self.provider)

    def describe(self) -> dict[str, str]:
        return {"model": self.sidecar.model_id, "graph": self.sidecar.variant, "provider": self.provider,
                "path": str(self.path), "prefix": self.prefixes["passage"]}

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

    def _embed(self, texts: list[str]) -> np.ndarray:
        """Token-length buckets of ``batch_size`` through the graph, rows back in input order."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        ids, lengths = self._tokenize(texts)
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            out[chunk] = self._run([ids[i] for i in chunk], lengths[chunk])
        return out
