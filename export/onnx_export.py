"""Export a Hugging Face encoder to ONNX with pooling and L2 norm inside the graph, gated.

Everything is written under a hidden ``.partial`` folder next to ``out``; the graph lands at
``out`` (with its sidecar and ``tokenizer.json`` beside it) only after it passed validation.
"""

from __future__ import annotations

import importlib
import os
import shutil
import warnings
from pathlib import Path

import numpy as np

from encoders.sidecar import E5_PREFIXES, INPUT_NAMES, OUTPUT_NAME, TOKENIZER_FILE, Sidecar, file_sha256, sidecar_path
from export.probes import VALIDATION
from export.validate import DEFAULT_TOLERANCE, Tolerance, ValidationError, validate

# Files any one of which makes a folder's tokenizer loadable by AutoTokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "sentencepiece.bpe.model", "spiece.model",
                   "vocab.txt")

OPSET = 17
VARIANTS = ("fp32", "fp16", "int8")


def _trace(embedder, tokenizer, path: Path) -> None:
    """TorchScript-trace ``embedder`` to ``path`` with dynamic batch and sequence axes."""
    import torch

    texts = [E5_PREFIXES["passage"] + "a short text", E5_PREFIXES["query"] + "a somewhat longer text to pad against"]
    sample = tokenizer(texts, padding=True, return_tensors="pt")
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    # The tracer warns about transformers' shape checks and that it is deprecated (dynamo=False is
    # deliberate: it is the exporter measured to match torch); the validation gate proves the graph.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        torch.onnx.export(
            embedder, (sample["input_ids"], sample["attention_mask"]), str(path),
            input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
            dynamic_axes={**axes, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET, dynamo=False, do_constant_folding=True,
        )


def _convert(fp32: Path, variant: str, dest: Path) -> str:
    """Derive the fp16 or int8 graph from the fp32 one; return how, for the sidecar."""
    if variant == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # Per-channel, 7-bit range weights: same speed on AVX2 and min cosine to fp32 0.975 -> 0.99
        # on MovieLens titles (u8s8 without VNNI can saturate; reduce_range avoids it).
        quantize_dynamic(str(fp32), str(dest), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
        return "onnxruntime quantize_dynamic: QInt8 weights, per-channel, reduce_range; uint8 activations"
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True), str(dest))
    return "onnxruntime float16 conversion, fp32 inputs/outputs kept"


def _tokenizer_matches(tokenizer_json: str, tokenizer, texts: list[str], max_length: int) -> bool:
    """The copied ``tokenizer.json`` (what the runtime uses) must give transformers' token ids."""
    from tokenizers import Tokenizer

    runtime = Tokenizer.from_str(tokenizer_json)
    runtime.no_padding()
    runtime.enable_truncation(max_length)
    ours = [e.ids for e in runtime.encode_batch(texts)]
    return ours == tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]


def _versions() -> dict[str, str]:
    return {m: importlib.import_module(m).__version__ for m in ("torch", "transformers", "onnx", "onnxruntime")}


def model_id(model: str) -> str:
    """The id a sidecar records for ``model``: a local folder's name, else the hub id."""
    path = Path(model)
    return path.resolve().name if path.is_dir() else model


def _check_model_folder(model: str) -> None:
    """A local folder must exist and hold its tokenizer (a hub id is checked by transformers)."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not any((path / name).is_file() for name in TOKENIZER_FILES):
            raise FileNotFoundError(f"{path} has no tokenizer ({', '.join(TOKENIZER_FILES)}): "
                                    f"copy the model's tokenizer files into the folder")
    elif path.exists() or model.startswith(("/", ".", "~")) or model.count("/") > 1:
        raise FileNotFoundError(f"no model folder at {path} (give a Hugging Face model folder or a hub id)")


def export_onnx(model: str, out: Path, *, variant: str = "fp32", tolerance: Tolerance | None = None,
                prefixes: dict[str, str] = E5_PREFIXES, max_length: int | None = None,
                pooling: str = "mean") -> Sidecar:
    """Export, validate and install ``out`` (+ sidecar + tokenizer.json); return the sidecar.

    Raises ``export.validate.ValidationError`` (leaving no file behind) when the graph fails.
    """
    from export.pooling import embed_texts, load_embedder

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    tolerance = tolerance or DEFAULT_TOLERANCE[variant]
    out = Path(out)
    _check_model_folder(model)
    embedder, tokenizer = load_embedder(model, attention="eager", pooling=pooling)
    config = embedder.encoder.config
    if len(tokenizer) < config.vocab_size // 2:  # transformers falls back to a stub tokenizer
        raise ValidationError(f"the tokenizer has {len(tokenizer)} tokens, the model's embedding table "
                              f"{config.vocab_size}: they do not belong together")
    positions = config.max_position_embeddings
    padding_idx = getattr(getattr(embedder.encoder, "embeddings", None), "padding_idx", None)
    if padding_idx is not None:  # RoBERTa-style position ids start after the padding index (514 -> 512)
        positions -= padding_idx + 1
    limit = min(tokenizer.model_max_length, positions)
    if max_length is not None and not 0 < max_length <= limit:
        raise ValueError(f"--max-length must be between 1 and the model's {limit}, got {max_length}")
    max_length = max_length or limit
    probes = tokenizer(list(VALIDATION), padding=True, truncation=True, max_length=max_length, return_tensors="np")
    input_ids, mask = probes["input_ids"].astype(np.int64), probes["attention_mask"].astype(np.int64)
    reference = embed_texts(embedder, tokenizer, list(VALIDATION), max_length, batch_size=len(VALIDATION))
    tokenizer_json = tokenizer.backend_tokenizer.to_str()

    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.partial"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        graph = work / "fp32.onnx"
        _trace(embedder, tokenizer, graph)
        conversion = f"torch.onnx.export (TorchScript tracer, opset {OPSET})"
        if variant != "fp32":
            conversion += "; " + _convert(graph, variant, work / f"{variant}.onnx")
            graph = work / f"{variant}.onnx"
        report = validate(graph, variant, reference, input_ids, mask, tolerance)
        report["tokenizer_match"] = _tokenizer_matches(tokenizer_json, tokenizer, list(VALIDATION), max_length)
        if not report["tokenizer_match"]:
            raise ValidationError("tokenizer.json does not reproduce transformers' token ids")
        (work / TOKENIZER_FILE).write_text(tokenizer_json, encoding="utf-8")
        sidecar = Sidecar(
            model_id=model_id(model), variant=variant, dim=int(config.hidden_size), max_length=int(max_length),
            opset=OPSET, sha256=file_sha256(graph), pad_token_id=int(tokenizer.pad_token_id or 0),
            tokenizer_sha256=file_sha256(work / TOKENIZER_FILE),  # as OnnxEncoder checks it
            prefixes=dict(prefixes), pooling=pooling, validation=report, conversion=conversion,
            versions=_versions(),
        )
        sidecar.write(work / "sidecar.json")
        os.replace(work / TOKENIZER_FILE, out.parent / TOKENIZER_FILE)
        os.replace(graph, out)
        os.replace(work / "sidecar.json", sidecar_path(out))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return sidecar
