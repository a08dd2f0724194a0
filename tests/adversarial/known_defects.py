"""Defects the adversarial suite found in commands other helpers are fixing (issue 14 point 5).

Each (command, param) here runs as xfail(strict=True): a fix makes it pass, which fails the run
until the entry is removed. Run `pytest tests/adversarial -k "<command>:<param>" --runxfail` to
see every failing value and what went wrong. Temporary: the list must end empty.
"""

from __future__ import annotations

OPEN: set[tuple[str, str]] = set()
