"""Item text normalisation."""

from __future__ import annotations

import pytest

from encoders.text import EmptyTextError, item_text, normalize_text


@pytest.mark.parametrize(("raw", "expected"), [
    ("  Toy   Story\n(1995)\t", "Toy Story (1995)"),
    ("<p>Caf&eacute; &amp; <b>Bar</b></p>", "Café & Bar"),
    ("&lt;b&gt;not a tag&lt;/b&gt;", "<b>not a tag</b>"),  # escaped markup is text, not a tag
    ("1 < 2 and 3 > 2", "1 < 2 and 3 > 2"),
    ("ＦＵＬＬ　ｗｉｄｔｈ ﬁle ①", "FULL width file 1"),  # NFKC
    ("zero\u200bwidth soft\u00adhyphen", "zerowidth softhyphen"),
    ("line\u2028break&nbsp;nbsp", "line break nbsp"),
    ("Mitt liv som hund", "Mitt liv som hund"),
    ("\u200fשלום\u200e", "שלום"),  # bidi marks dropped
    ("می\u200cخواهم", "می\u200cخواهم"),  # the zero-width non-joiner is part of the Persian word
    ("♥", "♥"),  # a symbol is text
])
def test_normalize(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


@pytest.mark.parametrize("raw", [
    "", "   ", "<br/><p></p>", "&nbsp;\u200b\ufeff", "<!-- only a comment -->",
    "\u200e\u200f", "\u200d", "\u2061", "\U000e0041", "\ufe0f", "\u034f", "\u061c", "\u2066\u2069",
    "\u3164", "\u2800",  # bidi marks, a lone joiner, tag and variation characters, blank "letters"
])
def test_empty_raises_with_dead_letter_reason(raw: str) -> None:
    with pytest.raises(EmptyTextError) as info:
        normalize_text(raw)
    assert info.value.reason == "empty_text"


def test_item_text_joins_fields() -> None:
    assert item_text("Heat (1995)", "Action, Crime") == "Heat (1995). Action, Crime"
    assert item_text("<b>Heat</b>", "A heist.") == "Heat. A heist."
    assert item_text("  ", "A heist.") == "A heist."  # no stray separator
    assert item_text("Heat", "\u200b") == item_text("Heat", None) == "Heat"
    for fields in ((None, "<i></i>"), ("<b></b>", "<i></i>"), ("  ", "\u200b")):
        with pytest.raises(EmptyTextError):
            item_text(*fields)
