"""The HF folder built from E5S1: parameter mapping, the cached real build, and its loud failure."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from export import build_model as bm
from export.crosslingual import check_alignment
from export.e5s1 import E5S1Config

TINY = E5S1Config(version=1, hidden=32, layers=2, heads=4, ffn=64, vocab=50, max_positions=16, type_vocab=2,
                  eps=1e-12, block=32, n_pieces=50, bos=0, eos=2, pad=1, unk=3)


def fake_tensors(cfg: E5S1Config) -> dict[str, np.ndarray]:
    h, ff = cfg.hidden, cfg.ffn
    shapes = {"emb.word": (cfg.vocab, h), "emb.pos": (cfg.max_positions, h), "emb.type": (1, h),
              "emb.ln.w": (h,), "emb.ln.b": (h,)}
    for i in range(cfg.layers):
        for m, shape in {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (ff, h), "fo": (h, ff)}.items():
            shapes[f"l{i}.{m}.w"], shapes[f"l{i}.{m}.b"] = shape, shape[:1]
        for m in ("aln", "oln"):
            shapes[f"l{i}.{m}.w"] = shapes[f"l{i}.{m}.b"] = (h,)
    rng = np.random.default_rng(0)
    return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}


def test_state_dict_loads_strictly_into_bert() -> None:
    import torch
    from transformers import BertConfig, BertModel

    tensors = fake_tensors(TINY)
    state = bm.bert_state_dict(TINY, tensors)
    model = BertModel(BertConfig(**bm.bert_config(TINY)), add_pooling_layer=False)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    np.testing.assert_array_equal(state["encoder.layer.1.output.dense.weight"], tensors["l1.fo.w"])
    assert state["embeddings.token_type_embeddings.weight"].shape == (2, 32)  # one stored row, repeated


def test_unmapped_tensor_is_an_error() -> None:
    tensors = fake_tensors(TINY) | {"emb.extra": np.zeros(3, np.float32)}
    with pytest.raises(ValueError, match="no BERT equivalent"):
        bm.bert_state_dict(TINY, tensors)


def test_missing_layer_is_an_error() -> None:
    with pytest.raises(ValueError, match="expected"):
        bm.bert_state_dict(replace(TINY, layers=3), fake_tensors(TINY))


def test_real_build_is_valid_and_documented(model_dir: Path) -> None:
    assert bm.is_valid(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    assert config["torch_dtype"] == "float32" and config["architectures"] == ["BertModel"]
    assert json.loads((model_dir / "tokenizer_config.json").read_text())["tokenizer_class"] == "XLMRobertaTokenizerFast"
    assert "not the original checkpoint" in (model_dir / "README.md").read_text()
    alignment = json.loads((model_dir / bm.STAMP).read_text())["alignment"]
    assert all(h >= 7 for h in alignment["hits"].values())


def test_check_fails_on_an_unaligned_encoder() -> None:
    rng = np.random.default_rng(0)

    def random_embed(texts: list[str]) -> np.ndarray:
        x = rng.standard_normal((len(texts), 16))
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    report = check_alignment(random_embed)
    assert not report.passed and "FAILED" in report.lines()[-1]


@pytest.mark.slow
def test_broken_weights_fail_the_build_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Shuffled word embeddings (a plausible conversion bug) must exit non-zero and cache nothing."""
    from polyrec_cli.main import main

    real = bm.bert_state_dict

    def shuffled(cfg: E5S1Config, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        state = real(cfg, tensors)
        key = "embeddings.word_embeddings.weight"
        state[key] = np.random.default_rng(0).permutation(state[key])
        return state

    monkeypatch.setattr(bm, "bert_state_dict", shuffled)
    out = tmp_path / "model"
    assert main(["model", "build", "--out", str(out)]) == 2
    assert "MODEL BUILD FAILED" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []
