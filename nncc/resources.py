"""Locate the data folders (templates/, runtime_c/, targets/) in a checkout or an installed wheel."""
from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    # A wheel installs the folders inside the package; a checkout keeps them beside it.
    for base in (_PKG / name, _PKG.parent / name):
        if base.is_dir():
            return base
    raise FileNotFoundError(f"nncc data folder {name!r} not found (broken installation?)")
