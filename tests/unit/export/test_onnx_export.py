"""The export's validation gate and sidecar, on a tiny random BERT (seconds) and the real graphs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from encoders.sidecar import OUTPUT_NAME, Sidecar, file_sha256, sidecar_path
from export import onnx_export
from export.validate import Tolerance, ValidationError, compare
from polyrec_cli.main import main


def test_compare_metrics() -> None:
    a = np.eye(3, dtype=np.float32)
    b = a.copy()
    b[2] = [0, 0.6, 0.8]
    m = compare(a, b)
    assert m.max_abs_diff == pytest.approx(0.6) and m.min_cos == pytest.approx(0.8)
    assert m.mean_cos == pytest.approx((2 + 0.8) / 3)


def test_tiny_export_writes_graph_sidecar_and_tokenizer(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny.fp32.onnx"
    sidecar = onnx_export.export_onnx(str(tiny_model), out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.fp32.json", "tiny.fp32.onnx", "tokenizer.json"]
    on_disk = Sidecar.read(sidecar_path(out))
    assert on_disk == sidecar
    assert (on_disk.variant, on_disk.dim, on_disk.max_length, on_disk.opset) == ("fp32", 32, 512, 17)
    assert on_disk.sha256 == file_sha256(out)
    assert on_disk.prefixes == {"query": "query: ", "passage": "passage: "}
    assert on_disk.pooling == "mean" and on_disk.normalized and on_disk.output == OUTPUT_NAME
    assert on_disk.validation["status"] == "passed" and on_disk.validation["tokenizer_match"]
    assert on_disk.validation["max_abs_diff"] <= 1e-4 and on_disk.validation["min_cos"] >= 0.9999
    graph = onnx.load(str(out))
    assert [o.name for o in graph.graph.output] == [OUTPUT_NAME]
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.graph.input]
    assert dims == [["batch", "sequence"], ["batch", "sequence"]]
    assert graph.opset_import[0].version == 17


def test_a_roberta_style_model_without_a_tokenizer_limit_is_capped_by_its_positions(tiny_model: Path,
                                                                                    tmp_path: Path) -> None:
    """XLM-R numbers positions from padding_idx + 1: 514 position embeddings hold 512 tokens."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    torch.manual_seed(0)
    folder = tmp_path / "tiny-xlmr"
    config = XLMRobertaConfig(vocab_size=250002, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                              intermediate_size=64, max_position_embeddings=514, pad_token_id=1)
    XLMRobertaModel(config, add_pooling_layer=False).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_model / name).exists():
            (folder / name).write_bytes((tiny_model / name).read_bytes())
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    tokenizer_config.pop("model_max_length", None)  # transformers then says 1e30
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    sidecar = onnx_export.export_onnx(str(folder), tmp_path / "xlmr.fp32.onnx")
    assert sidecar.max_length == 512 and sidecar.validation["status"] == "passed"


def test_cls_pooling_exports_the_first_token(tiny_model: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from encoders.onnx_encoder import OnnxEncoder

    out = tmp_path / "tiny-cls.fp32.onnx"
    assert main(["export", "--model", str(tiny_model), "--out", str(out), "--pooling", "cls"]) == 0
    assert Sidecar.read(sidecar_path(out)).pooling == "cls"
    texts = ["A cat on the sofa.", "Eine Katze schläft auf dem Sofa, den ganzen Nachmittag lang."]
    tokenizer, model = AutoTokenizer.from_pretrained(tiny_model), AutoModel.from_pretrained(tiny_model)
    with torch.inference_mode():
        hidden = model(**tokenizer(["passage: " + t for t in texts], padding=True, return_tensors="pt"))
    first = torch.nn.functional.normalize(hidden.last_hidden_state[:, 0], dim=-1).numpy()
    with OnnxEncoder(out, provider="cpu") as encoder:
        np.testing.assert_allclose(encoder.encode_passages(texts), first, atol=1e-5)


def test_impossible_tolerance_is_refused_and_leaves_nothing(tiny_model: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tiny.onnx"
    argv = ["export", "--model", str(tiny_model), "--out", str(out), "--max-abs-diff", "0", "--min-cos", "1.01"]
    assert main(argv) == 2
    assert "EXPORT REFUSED" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_perturbed_graph_is_refused(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A graph whose weights drift from torch's (a broken conversion) must not be installed."""
    real_trace = onnx_export._trace

    def perturbed_trace(embedder, tokenizer, path: Path) -> None:
        real_trace(embedder, tokenizer, path)
        model = onnx.load(str(path))
        for init in model.graph.initializer:
            if init.data_type == onnx.TensorProto.FLOAT and len(init.dims) == 2 and init.dims[0] == init.dims[1]:
                w = onnx.numpy_helper.to_array(init)
                init.CopyFrom(onnx.numpy_helper.from_array(w + 0.05 * np.sign(w), init.name))
        onnx.save(model, str(path))

    monkeypatch.setattr(onnx_export, "_trace", perturbed_trace)
    with pytest.raises(ValidationError, match="failed validation"):
        onnx_export.export_onnx(str(tiny_model), tmp_path / "tiny.onnx")
    assert list(tmp_path.iterdir()) == []


def test_int8_is_gated_on_cosine_only(tiny_model: Path, tmp_path: Path) -> None:
    sidecar = onnx_export.export_onnx(str(tiny_model), tmp_path / "tiny.int8.onnx", variant="int8",
                                      tolerance=Tolerance(min_cos=0.5))
    assert sidecar.variant == "int8" and sidecar.validation["tolerance"]["max_abs_diff"] is None
    assert 0.5 <= sidecar.validation["min_cos"] <= 1.0


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_real_sidecars(onnx_paths: dict[str, Path], variant: str) -> None:
    path = onnx_paths[variant]
    sidecar = Sidecar.read(sidecar_path(path))
    assert (sidecar.variant, sidecar.dim, sidecar.max_length) == (variant, 384, 512)
    assert sidecar.sha256 == file_sha256(path)
    assert (path.parent / sidecar.tokenizer).is_file()
    v = sidecar.validation
    assert v["status"] == "passed" and v["tokenizer_match"]
    if variant == "fp32":
        assert v["max_abs_diff"] <= 1e-4 and v["min_cos"] >= 0.9999
    else:
        assert v["min_cos"] >= 0.95


def _weights_only(tiny_model: Path, folder: Path) -> Path:
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        (folder / name).symlink_to(tiny_model / name)
    return folder


def test_a_folder_without_its_tokenizer_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    folder = _weights_only(tiny_model, tmp_path / "no-tokenizer")
    out = tmp_path / "out" / "m.onnx"
    assert main(["export", "--model", str(folder), "--out", str(out)]) == 2
    assert not out.parent.exists()


def test_a_tokenizer_that_does_not_match_the_model_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    folder = _weights_only(tiny_model, tmp_path / "stub-tokenizer")
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n")  # 5 tokens for 250k embeddings
    with pytest.raises(ValidationError, match="do not belong together"):
        onnx_export.export_onnx(str(folder), tmp_path / "m.onnx")


@pytest.mark.parametrize("argv, says", [
    (["--model", "/no/such/model"], "no model folder at /no/such/model"),
    (["--max-length", "600"], "--max-length must be between 1 and the model's 512, got 600"),
    (["--max-length", "0"], "--max-length must be between 1 and the model's 512, got 0"),
])
def test_bad_arguments_are_one_line_errors(tiny_model: Path, tmp_path: Path, argv: list[str], says: str,
                                           capsys: pytest.CaptureFixture) -> None:
    if "--model" not in argv:
        argv = ["--model", str(tiny_model), *argv]
    assert main(["export", "--out", str(tmp_path / "m.onnx"), *argv]) == 2
    err = capsys.readouterr().err  # (above the error: transformers' loading progress bars)
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("polyrec export: ") and says in last, last
    assert not (tmp_path / "m.onnx").exists()


def test_the_graph_refuses_a_tokenizer_it_was_not_exported_with(tiny_model: Path, tmp_path: Path) -> None:
    from encoders.onnx_encoder import OnnxEncoder

    out = tmp_path / "tiny.fp32.onnx"
    sidecar = onnx_export.export_onnx(str(tiny_model), out)
    tokenizer = tmp_path / "tokenizer.json"
    assert sidecar.tokenizer_sha256 == file_sha256(tokenizer)
    assert OnnxEncoder(out).encode(["ok"]).shape == (1, sidecar.dim)
    tokenizer.write_text(tokenizer.read_text() + "\n")  # any other file: another model's, say
    with pytest.raises(ValueError, match="re-export"):
        OnnxEncoder(out)
