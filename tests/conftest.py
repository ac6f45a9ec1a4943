"""Shared fixtures: a real Tansu broker, real Redis, worker processes, and the real encoder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis
from hypothesis.configuration import set_hypothesis_home_dir

from tests.support import REDIS_URL

# hypothesis keeps its caches (Unicode tables) in ./.hypothesis by default: the checkout stays clean
set_hypothesis_home_dir(Path(os.environ.get("POLYREC_CACHE", Path.home() / ".cache/polyrec")) / "hypothesis")


@pytest.fixture(scope="session")
def broker():
    """A real Kafka-wire broker (Tansu, in memory) for the whole session."""
    from polyrec_cli.devservers import start_tansu

    server = start_tansu()
    yield server.address
    server.stop()


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    yield client
    client.close()


@pytest.fixture
def workers(tmp_path, redis_client):
    """Start workers with ``workers.new(env)``; all are stopped and their Redis keys removed at the end."""
    from polyrec_cli.harness import WorkerProcess
    from stream.recs import key_pattern

    started: list[WorkerProcess] = []

    class Pool:
        def new(self, env: dict) -> WorkerProcess:
            w = WorkerProcess(env, tmp_path / f"worker{len(started)}.log")
            started.append(w)
            return w.start()

    yield Pool()
    prefixes = {w.env["POLYREC_REDIS_PREFIX"] for w in started}
    for w in started:
        w.stop()
    for prefix in prefixes:
        keys = list(redis_client.scan_iter(key_pattern(prefix)))
        if keys:
            redis_client.delete(*keys)


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The real multilingual-e5-small folder; built here only if ``make setup`` did not."""
    from export.build_model import build_model

    return build_model().path


@pytest.fixture(scope="session")
def onnx_paths(model_dir: Path) -> dict[str, Path]:
    """The exported fp32 and int8 graphs of the real model, keyed by variant."""
    from encoders.artifacts import default_onnx_path
    from export.onnx_export import export_onnx

    paths = {v: default_onnx_path(v) for v in ("fp32", "int8")}
    for variant, path in paths.items():
        if not path.with_suffix(".json").exists():
            export_onnx(str(model_dir), path, variant=variant)
    return paths


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide random BertModel with the real XLM-R tokenizer: exports in seconds."""
    import torch
    from transformers import BertConfig, BertModel

    from export.assets import xlmr_tokenizer_json
    from export.build_model import write_tokenizer_files

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-bert")
    config = BertConfig(vocab_size=250037, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=512, pad_token_id=1)
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    write_tokenizer_files(folder, xlmr_tokenizer_json())
    return folder


@pytest.fixture
def proxied_broker():
    """A broker of its own behind a TCP proxy (its advertised address), as ``(proxy, address)``."""
    from polyrec_cli.devservers import free_port, start_tansu
    from tests.support import TcpProxy

    port = free_port()
    server = start_tansu(advertised_port=port)
    proxy = TcpProxy(int(server.address.rpartition(":")[2]), port)
    try:
        yield proxy, f"127.0.0.1:{port}"
    finally:
        proxy.stop()
        server.stop()
