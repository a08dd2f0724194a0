"""Durable renames on the modules volume: a rename is only as durable as its folder's entry on disk."""

from __future__ import annotations

import os
from pathlib import Path


def fsync(path: Path) -> None:
    """Flush a file or a folder (its entries, for a rename into it) to the storage under it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
