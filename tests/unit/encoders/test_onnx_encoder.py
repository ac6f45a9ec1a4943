"""The runtime encoder: provider choice, batching, prefixes, real-model quality, thread-safety."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from encoders import onnx_encoder
from encoders.onnx_encoder import OnnxEncoder
from encoders.providers import CPU, CUDA, select_provider
from export.probes import PARALLEL, VALIDATION

# Short texts in many scripts (the probes' 500+ token text is left to the truncation test).
TEXTS = [t.split(": ", 1)[1] for t in VALIDATION[:-1]] + [s for lang in PARALLEL.values() for s in lang]


@pytest.fixture(scope="module")
def fp32(onnx_paths: dict[str, Path]) -> OnnxEncoder:
    with OnnxEncoder(onnx_paths["fp32"], provider="cpu", intra_op_threads=2) as encoder:
        yield encoder


def test_select_provider() -> None:
    assert select_provider("auto", [CUDA, CPU]) == (CUDA, None)
    assert select_provider("auto", [CPU]) == (CPU, None)
    assert select_provider("cpu", [CUDA, CPU]) == (CPU, None)
    provider, warning = select_provider("cuda", [CPU])
    assert provider == CPU and "falling back to CPU" in warning
    with pytest.raises(ValueError, match="provider must be one of .*got 'tpu'"):
        select_provider("tpu", [CPU])


def test_cuda_request_falls_back_to_cpu(onnx_paths: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(onnx_encoder.ort, "get_available_providers", lambda: [CPU])
    with caplog.at_level(logging.INFO, logger=onnx_encoder.__name__):
        with OnnxEncoder(onnx_paths["int8"], provider="cuda") as encoder:
            assert encoder.provider == CPU
            assert encoder.encode_passages(["still works"]).shape == (1, 384)
    assert any(r.levelno == logging.WARNING and "falling back to CPU" in r.message for r in caplog.records)
    assert any("on CPUExecutionProvider" in r.message for r in caplog.records)


def test_output_is_normalised_float32_in_input_order(fp32: OnnxEncoder) -> None:
    out = fp32.encode_passages(TEXTS)
    assert out.dtype == np.float32 and out.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    one_by_one = np.concatenate([fp32.encode_passages([t]) for t in TEXTS[:6]])
    np.testing.assert_allclose(out[:6], one_by_one, atol=1e-5)
    assert fp32.encode([]).shape == (0, 384)


def test_batches_are_bucketed_by_length_without_changing_results(onnx_paths: dict[str, Path], fp32: OnnxEncoder,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with OnnxEncoder(onnx_paths["fp32"], provider="cpu", batch_size=3) as small:
        batches, run = [], small._run
        monkeypatch.setattr(small, "_run", lambda ids, lengths: batches.append(lengths.copy()) or run(ids, lengths))
        np.testing.assert_allclose(small.encode_passages(TEXTS), fp32.encode_passages(TEXTS), atol=1e-5)
    assert [len(b) for b in batches[:-1]] == [3] * (len(batches) - 1)
    lengths = np.concatenate(batches)  # texts of similar length share a batch: shortest first
    assert len(lengths) == len(TEXTS) and (np.diff(lengths) >= 0).all() and lengths[0] < lengths[-1]


def test_prefixes_come_from_the_sidecar(fp32: OnnxEncoder) -> None:
    text = ["Heavy rain tomorrow"]
    np.testing.assert_array_equal(fp32.encode_queries(text), fp32.encode(text, prefix="query: "))
    np.testing.assert_array_equal(fp32.encode_passages(text), fp32.encode(text, prefix="passage: "))
    assert not np.allclose(fp32.encode_queries(text), fp32.encode_passages(text))


def test_long_text_is_truncated_not_rejected(fp32: OnnxEncoder) -> None:
    long = VALIDATION[-1]
    assert len(fp32._tokenize([long])[0][0]) == fp32.sidecar.max_length == 512
    out = fp32.encode([long, long + " more words past the cap", "short"])
    np.testing.assert_allclose(out[0], out[1], atol=1e-6)  # the extra words fall past the cap


def test_matches_torch(fp32: OnnxEncoder, model_dir: Path) -> None:
    from export.pooling import embed_texts, load_embedder

    embedder, tokenizer = load_embedder(str(model_dir))
    texts = TEXTS[::3]
    reference = embed_texts(embedder, tokenizer, ["passage: " + t for t in texts], 512)
    assert np.abs(fp32.encode_passages(texts) - reference).max() <= 1e-4


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_german_and_english_twins_are_nearest_neighbours(onnx_paths: dict[str, Path], variant: str) -> None:
    with OnnxEncoder(onnx_paths[variant], provider="cpu") as encoder:
        english = encoder.encode_queries(list(PARALLEL["en"]))
        german = encoder.encode_passages(list(PARALLEL["de"]))
    sims = english @ german.T
    assert (sims.argmax(axis=1) == np.arange(len(english))).all()
    assert (sims.argmax(axis=0) == np.arange(len(english))).all()


def test_concurrent_encodes_equal_serial(fp32: OnnxEncoder) -> None:
    chunks = [TEXTS[i::5] for i in range(5)] * 4
    serial = [fp32.encode_passages(c) for c in chunks]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(fp32.encode_passages, chunks))
    for a, b in zip(serial, concurrent):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_encode_async_runs_in_the_encoder_pool(fp32: OnnxEncoder, monkeypatch: pytest.MonkeyPatch) -> None:
    threads, encode = [], fp32.encode
    monkeypatch.setattr(fp32, "encode",
                        lambda *a, **k: threads.append(threading.current_thread().name) or encode(*a, **k))

    async def main() -> list[np.ndarray]:
        return await asyncio.gather(fp32.encode_async(TEXTS[:4]), fp32.encode_async(TEXTS[:4], kind="query"))

    passages, queries = asyncio.run(main())
    assert len(threads) == 2 and all(name.startswith("onnx-encoder") for name in threads)  # not the loop's thread
    np.testing.assert_allclose(passages, fp32.encode_passages(TEXTS[:4]), atol=1e-6)
    np.testing.assert_allclose(queries, fp32.encode_queries(TEXTS[:4]), atol=1e-6)


def test_runtime_imports_neither_torch_nor_transformers(onnx_paths: dict[str, Path]) -> None:
    code = (
        "import sys; from encoders.onnx_encoder import OnnxEncoder; "
        f"e = OnnxEncoder({str(onnx_paths['int8'])!r}); e.encode_passages(['x']); e.close(); "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_without_onnxruntime_the_worker_imports_and_the_encoder_paths_say_what_to_install() -> None:
    code = (
        "import sys; sys.modules['onnxruntime'] = None\n"  # as if no extra were installed
        "import stream.app\n"
        "from stream.settings import Settings\n"
        "from polyrec_cli.main import main\n"
        "try:\n"
        "    stream.app.open_encoder(Settings())\n"
        "except ModuleNotFoundError as exc:\n"
        "    print(exc)\n"
        "print('status', main(['export', '--model', 'none', '--out', 'none.onnx']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("the items agent") and "pip install '.[cpu]'" in lines[0]
    assert lines[1] == "status 2"
    assert "polyrec export" in result.stderr and "pip install '.[cpu]'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("cpu_max, expected", [("max 100000", None), ("150000 100000", 2), ("50000 100000", 1),
                                               ("garbage", None)])
def test_available_cpus_honours_a_cgroup_quota(tmp_path: Path, cpu_max: str, expected: int | None) -> None:
    import os

    limit = tmp_path / "cpu.max"
    limit.write_text(cpu_max + "\n")
    affinity = len(os.sched_getaffinity(0))
    got = onnx_encoder.available_cpus(limit)
    assert got == (affinity if expected is None else min(affinity, expected))
    assert onnx_encoder.available_cpus(tmp_path / "missing") == affinity


def test_a_missing_tokenizer_is_an_error_naming_it(onnx_paths: dict[str, Path], tmp_path: Path) -> None:
    graph = onnx_paths["fp32"]
    for name in (graph.name, graph.with_suffix(".json").name):
        (tmp_path / name).symlink_to(graph.parent / name)
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        OnnxEncoder(tmp_path / graph.name)


def test_one_str_is_not_a_batch_of_characters(fp32: OnnxEncoder) -> None:
    with pytest.raises(TypeError, match="not one str"):
        fp32.encode("hello")
