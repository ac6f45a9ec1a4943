"""Cross-lingual sanity check: English queries must retrieve their own translations.

For each language, the eight English sentences (as E5 queries) rank the eight translations (as
E5 passages); a language passes when at least ``min_hits`` of the eight top-1 hits are the true
translation. A "mixed" pool of every translation in every language is reported as well.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from encoders.sidecar import E5_PREFIXES
from export.probes import PARALLEL

Embed = Callable[[list[str]], np.ndarray]  # L2-normalised rows, prefixes already applied
QUERY, PASSAGE = E5_PREFIXES["query"], E5_PREFIXES["passage"]


class AlignmentError(RuntimeError):
    """The encoder does not map translations near each other: the weights are broken."""


@dataclass(frozen=True)
class AlignmentReport:
    """Top-1 hits per language (out of ``n``) and the cosine margin over unrelated pairs."""

    hits: dict[str, int]
    mixed_hits: int
    n: int
    min_hits: int
    pair_cos: float  # mean cosine of an English query with its translations
    other_cos: float  # mean cosine of an English query with other sentences' translations

    @property
    def passed(self) -> bool:
        return all(h >= self.min_hits for h in self.hits.values()) and self.pair_cos > self.other_cos

    def lines(self) -> list[str]:
        """Human-readable summary, one line per language."""
        rows = [f"  {lang}: top-1 {h}/{self.n}{'' if h >= self.min_hits else '  FAIL'}"
                for lang, h in self.hits.items()]
        return [
            f"cross-lingual check (English queries -> translated passages, need >= {self.min_hits}/{self.n}):",
            *rows,
            f"  mixed pool of {len(self.hits) * self.n} passages: top-1 {self.mixed_hits}/{self.n}",
            f"  mean cosine: translation pairs {self.pair_cos:.4f}, unrelated pairs {self.other_cos:.4f}",
            f"  {'PASSED' if self.passed else 'FAILED'}",
        ]


def check_alignment(embed: Embed, min_hits: int = 7) -> AlignmentReport:
    """Embed the parallel probe sentences with ``embed`` and score top-1 retrieval per language."""
    english = PARALLEL["en"]
    langs = [lang for lang in PARALLEL if lang != "en"]
    n = len(english)
    queries = embed([QUERY + s for s in english])  # [n, H]
    passages = embed([PASSAGE + s for lang in langs for s in PARALLEL[lang]])  # [L*n, H]
    sims = (queries @ passages.T).reshape(n, len(langs), n)  # [query, lang, passage]
    truth = np.arange(n)
    hits = (sims.argmax(axis=2) == truth[:, None]).sum(axis=0)  # per language
    mixed = (sims.reshape(n, -1).argmax(axis=1) % n == truth).sum()
    diagonal = np.eye(n, dtype=bool)[:, None, :].repeat(len(langs), axis=1)
    return AlignmentReport(
        hits={lang: int(h) for lang, h in zip(langs, hits)},
        mixed_hits=int(mixed),
        n=n,
        min_hits=min_hits,
        pair_cos=float(sims[diagonal].mean()),
        other_cos=float(sims[~diagonal].mean()),
    )
