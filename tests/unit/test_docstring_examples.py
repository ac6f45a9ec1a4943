"""Every docstring example in the code runs and prints what it says (River's habit: examples that
cannot rot)."""

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("polyrec", "stream", "encoders", "export", "polyrec_cli")
MODULES = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts)
                 for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if ">>> " in p.read_text())


def test_the_examples_are_found():
    assert "polyrec.cooccurrence" in MODULES


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted and not result.failed
