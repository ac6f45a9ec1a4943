"""Item text normalisation before encoding: pure functions, no state.

NFKC, HTML tags stripped and entities unescaped, invisible characters dropped, whitespace
collapsed. A text that normalises to nothing raises ``EmptyTextError``; the stream routes such
items to the dead-letter topic with reason ``empty_text``.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable

_TAG = re.compile(r"<[a-zA-Z/!?][^>]*>")  # "<b>", "</p>", "<!-- -->"; not "1 < 2 > 0"
_SPACE = re.compile(r"\s+")
# Control characters and invisible format characters (soft hyphen, zero-width space, word joiner,
# BOM); zero-width (non-)joiners stay, some scripts need them.
_INVISIBLE = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u00ad\u200b\u2060\ufeff]")


class EmptyTextError(ValueError):
    """The item has no text left after normalisation."""

    reason = "empty_text"


def normalize_text(text: str) -> str:
    """Return ``text`` NFKC-normalised, without HTML markup, with single spaces; never empty."""
    text = _TAG.sub(" ", text)  # tags before unescaping, so "&lt;b&gt;" stays literal text
    text = unicodedata.normalize("NFKC", html.unescape(text))
    text = _SPACE.sub(" ", _INVISIBLE.sub("", text)).strip()
    if not text:
        raise EmptyTextError("text is empty after normalisation")
    return text


def item_text(*fields: str | Iterable[str] | None) -> str:
    """Join item fields (title, genres, description...) into one normalised text.

    Iterable fields (e.g. a genre tuple) are space-joined; None and blank fields are skipped.
    """
    parts = [f if isinstance(f, str) else " ".join(f) for f in fields if f is not None]
    return normalize_text(" ".join(parts))
