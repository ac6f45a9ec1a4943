"""E5S1 reading: Q4_0 blocks against hand-computed values, and a whole hand-built file."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from export.e5s1 import F32, Q4, dequantize_q4, read_e5s1


def q4_block(scale: float, q: list[int]) -> bytes:
    """One 18-byte block: f16 scale, then byte j = q[j] | q[j + 16] << 4."""
    assert len(q) == 32
    return np.float16(scale).tobytes() + bytes(q[j] | (q[j + 16] << 4) for j in range(16))


def test_single_block_nibble_order_and_offset() -> None:
    q = list(range(16)) + list(range(15, -1, -1))  # columns 0..15 rise, 16..31 fall
    out = dequantize_q4(np.frombuffer(q4_block(0.5, q), dtype=np.uint8), 1, 32)
    expected = (np.array(q, dtype=np.float32) - 8) * 0.5
    np.testing.assert_array_equal(out, expected[None])


def test_blocks_tile_rows_and_columns() -> None:
    rng = np.random.default_rng(0)
    q = rng.integers(0, 16, size=(2, 64))
    scales = np.array([[0.25, -1.5], [2.0, 0.125]])
    raw = b"".join(q4_block(scales[r, b], q[r, 32 * b : 32 * b + 32].tolist()) for r in range(2) for b in range(2))
    out = dequantize_q4(np.frombuffer(raw, dtype=np.uint8), 2, 64)
    expected = (q - 8) * np.repeat(scales, 32, axis=1)
    np.testing.assert_array_equal(out, expected.astype(np.float32))


def test_wrong_size_is_refused() -> None:
    with pytest.raises(ValueError, match=r"expected 18 bytes for \[1, 32\], got 17"):
        dequantize_q4(np.zeros(17, dtype=np.uint8), 1, 32)


def write_tiny_e5s1(path: Path, hidden: int = 32, vocab: int = 3) -> dict[str, np.ndarray]:
    """An E5S1 file with no layers: header, 2 pieces, a normaliser blob, one Q4 and two f32 tensors."""
    rng = np.random.default_rng(1)
    word_q = rng.integers(0, 16, size=(vocab, hidden))
    word = b"".join(q4_block(0.5, row.tolist()) for row in word_q)
    pos = rng.standard_normal((4, hidden)).astype("<f4")
    token_type = rng.standard_normal((2, hidden)).astype("<f4")
    header = b"E5S1" + struct.pack("<I7ifi", 1, hidden, 1, 2, 64, vocab, 4, 2, 1e-12, 32)
    header += struct.pack("<5i", 2, 0, 2, 1, 3) + struct.pack("<Q", 3)
    header += struct.pack("<3I", 0, 1, 3) + struct.pack("<2f", 0.0, -1.0) + b"abc"
    header += struct.pack("<iI", 1, 5) + b"\x00" * 5  # normaliser blob: skipped
    tensors = [("emb.word", Q4, vocab * hidden, word), ("emb.pos", F32, pos.size, pos.tobytes()),
               ("emb.type", F32, token_type.size, token_type.tobytes())]
    directory_size = 4 + sum(2 + len(name) + 1 + 4 + 8 + 8 for name, *_ in tensors)
    offset = len(header) + directory_size
    directory, payload = struct.pack("<i", len(tensors)), b""
    for name, dtype, n, data in tensors:
        directory += struct.pack("<H", len(name)) + name.encode() + struct.pack("<BIQQ", dtype, n, offset, len(data))
        payload += data
        offset += len(data)
    path.write_bytes(header + directory + payload)
    return {"emb.word": ((word_q - 8) * 0.5).astype(np.float32), "emb.pos": pos, "emb.type": token_type}


def test_read_hand_built_file(tmp_path: Path) -> None:
    expected = write_tiny_e5s1(tmp_path / "tiny.bin")
    cfg, tensors = read_e5s1(tmp_path / "tiny.bin")
    assert (cfg.hidden, cfg.vocab, cfg.max_positions, cfg.type_vocab, cfg.n_pieces, cfg.pad) == (32, 3, 4, 2, 2, 1)
    assert set(tensors) == set(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(tensors[name], value)
        assert tensors[name].dtype == np.float32


def test_bad_magic(tmp_path: Path) -> None:
    (tmp_path / "x.bin").write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(ValueError, match="not an E5S1"):
        read_e5s1(tmp_path / "x.bin")
