from pathlib import Path

import pytest

from encoders import artifacts
from polyrec.datasets import paths


@pytest.mark.parametrize("env", [None, "custom"])
def test_encoders_cache_root_is_the_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: str | None) -> None:
    """encoders keeps its own copy of the cache-root rule (it imports nothing from polyrec): the two agree."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if env is None:
        monkeypatch.delenv("POLYREC_CACHE", raising=False)
    else:
        monkeypatch.setenv("POLYREC_CACHE", str(tmp_path / env))
    assert artifacts.cache_dir("onnx", "m") == paths.cache_dir("onnx", "m")
    assert artifacts.cache_dir("onnx", "m").is_dir()
    assert artifacts.default_onnx_path("int8").parent == paths.cache_dir("onnx", artifacts.DEFAULT_MODEL)
