"""The JSON sidecar written next to every exported ``.onnx``: everything the runtime needs.

``model.int8.onnx`` has ``model.int8.json`` beside it, and ``tokenizer.json`` in the same folder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Bump when the sidecar schema or the export recipe changes: the Makefile then re-exports.
FORMAT = "polyrec-onnx/2"
OUTPUT_NAME = "sentence_embedding"  # onnxruntime refused a graph whose output was "embedding"
INPUT_NAMES = ("input_ids", "attention_mask")
TOKENIZER_FILE = "tokenizer.json"
E5_PREFIXES = {"query": "query: ", "passage": "passage: "}  # what E5 models expect before each text
POOLINGS = ("mean", "cls")  # the sentence vector: mean of the tokens (E5...) or the first token (BGE-style)


@dataclass(frozen=True)
class Sidecar:
    """What the exporter measured and what the runtime must do around the graph."""

    model_id: str
    variant: str  # "fp32" | "fp16" | "int8"
    dim: int
    max_length: int
    opset: int
    sha256: str
    pad_token_id: int
    prefixes: dict[str, str]  # {"query": ..., "passage": ...}, e.g. E5_PREFIXES
    validation: dict
    conversion: str  # how the graph was produced
    pooling: str = "mean"
    normalized: bool = True
    inputs: tuple[str, ...] = INPUT_NAMES
    output: str = OUTPUT_NAME
    tokenizer: str = TOKENIZER_FILE
    tokenizer_sha256: str = ""  # of the tokenizer file the graph was validated with ("" in older exports)
    versions: dict[str, str] = field(default_factory=dict)
    format: str = FORMAT

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def read(cls, path: Path) -> Sidecar:
        data = json.loads(Path(path).read_text())
        if data.get("format") != FORMAT:
            raise ValueError(f"{path}: sidecar format {data.get('format')!r}, expected {FORMAT!r}: re-export it")
        try:
            data["inputs"] = tuple(data["inputs"])
            return cls(**data)
        except (KeyError, TypeError) as exc:  # a missing or unknown field: written by another version
            raise ValueError(f"{path}: not a {FORMAT} sidecar ({exc}): re-export it") from None


def sidecar_path(onnx_path: Path) -> Path:
    """``dir/model.int8.onnx`` -> ``dir/model.int8.json``."""
    return Path(onnx_path).with_suffix(".json")


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
