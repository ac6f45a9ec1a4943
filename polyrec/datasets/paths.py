"""Where polyrec keeps downloads, models and data: one cache root, never inside the repo."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """Return (and create) a folder under the cache root.

    The root is ``$POLYREC_CACHE`` or ``~/.cache/polyrec``.
    """
    root = Path(os.environ.get("POLYREC_CACHE", Path.home() / ".cache" / "polyrec"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
