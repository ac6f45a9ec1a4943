"""Item text normalisation before encoding: pure functions, no state.

NFKC, HTML tags stripped and entities unescaped, invisible characters dropped, whitespace
collapsed. A text that normalises to nothing raises ``EmptyTextError``; the stream routes such
items to the dead-letter topic with reason ``empty_text``.
"""

from __future__ import annotations

import html
import re
import unicodedata

_TAG = re.compile(r"<[a-zA-Z/!?][^>]*>")  # "<b>", "</p>", "<!-- -->"; not "1 < 2 > 0"
_SPACE = re.compile(r"\s+")
# Control characters, and blank "letters" that render as nothing (Hangul fillers, braille blank).
_INVISIBLE = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u115f\u1160\u2800\u3164\uffa0]")
_JOINERS = "\u200c\u200d"  # zero-width (non-)joiners: format characters some scripts need


class EmptyTextError(ValueError):
    """The item has no text left after normalisation."""

    reason = "empty_text"


def _visible(text: str) -> str:
    """``text`` without control and format characters (soft hyphen, zero-width space, bidi marks,
    BOM, tag characters...), keeping the joiners."""
    text = _INVISIBLE.sub("", text)
    if text.isascii():
        return text
    return "".join(ch for ch in text if ch in _JOINERS or unicodedata.category(ch) != "Cf")


def normalize_text(text: str) -> str:
    """Return ``text`` NFKC-normalised, without HTML markup, with single spaces; raise
    ``EmptyTextError`` unless a letter, digit, symbol or punctuation mark is left."""
    text = _TAG.sub(" ", text)  # tags before unescaping, so "&lt;b&gt;" stays literal text
    text = unicodedata.normalize("NFKC", html.unescape(text))
    text = _SPACE.sub(" ", _visible(text)).strip()
    if not any(unicodedata.category(ch)[0] in "LNSP" for ch in text):
        raise EmptyTextError("text is empty after normalisation")
    return text


def item_text(title: str | None, description: str | None) -> str:
    """The text an item is encoded from: ``"title. description"``, each normalised on its own;
    a field with nothing left (None, blank, only markup) is skipped with its separator."""
    parts = []
    for field in (title, description):
        if field is None:
            continue
        try:
            parts.append(normalize_text(field))
        except EmptyTextError:
            continue
    if not parts:
        raise EmptyTextError("every text field is empty after normalisation")
    return ". ".join(parts)
