"""Sentence embeddings in torch: a transformer encoder, pooling (mean over the mask, or the first
token for CLS-pooled models), L2 norm.

The same module is what gets traced into ONNX, so the pooling lives inside the graph.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from encoders.sidecar import POOLINGS


class SentenceEmbedder(nn.Module):
    """Wrap a Hugging Face encoder: ``(input_ids, attention_mask) -> L2-normalised [B, H]``."""

    def __init__(self, encoder: nn.Module, pooling: str = "mean") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.encoder, self.pooling = encoder, pooling

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            return nn.functional.normalize(hidden[:, 0], p=2.0, dim=-1)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        summed = (hidden * mask).sum(dim=1)
        counts = mask.sum(dim=1).clamp(min=1e-9)
        return nn.functional.normalize(summed / counts, p=2.0, dim=-1)


def load_embedder(model: str, *, dtype: torch.dtype = torch.float32, attention: str | None = None,
                  pooling: str = "mean") -> tuple[SentenceEmbedder, object]:
    """Load a model folder or hub id (honours ``HF_HUB_OFFLINE``); return (embedder, tokenizer).

    ``attention`` picks transformers' attention implementation ("eager" traces most safely).
    """
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    kwargs = {"dtype": dtype, "attn_implementation": attention}
    try:  # BERT-family encoders: skip the unused [CLS] pooler
        encoder = AutoModel.from_pretrained(model, add_pooling_layer=False, **kwargs)
    except TypeError:
        encoder = AutoModel.from_pretrained(model, **kwargs)
    return SentenceEmbedder(encoder, pooling).eval(), tokenizer


@torch.inference_mode()
def embed_texts(embedder: SentenceEmbedder, tokenizer, texts: list[str], max_length: int,
                batch_size: int = 32) -> np.ndarray:
    """Embed ``texts`` (prefixes already applied) in input-order batches; float32 ``[N, H]``."""
    device = next(embedder.parameters()).device
    out = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start : start + batch_size], padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt")
        emb = embedder(batch["input_ids"].to(device), batch["attention_mask"].to(device))
        out.append(emb.float().cpu().numpy())
    return np.concatenate(out).astype(np.float32)
