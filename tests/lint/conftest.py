"""The lint tests import their helpers (crossref, schemas, lintsupport) from this folder."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lintsupport import broken_copy  # noqa: F401  (fixture)
