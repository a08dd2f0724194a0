"""Helpers shared by tests in every folder (import as `from support import ...`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def crd_dir() -> Path:
    return Path(os.environ.get("CSSR_CRD_DIR") or REPO / ".cache" / "crds")


def require_tool(*names: str) -> None:
    """Skip when a system tool is missing, except under CI, where a missing tool is a failure."""
    missing = [n for n in names if not (shutil.which(n) or Path(n).exists())]
    if missing:
        message = f"missing tool(s): {', '.join(missing)}; run scripts/install-system-deps"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
