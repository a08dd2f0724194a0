"""One line per thing the harness found, decided or changed, with the time since it started."""

from __future__ import annotations

import sys
import time

_START = time.monotonic()


def say(message: str) -> None:
    print(f"[e2e {time.monotonic() - _START:6.1f}s] {message}", file=sys.stderr, flush=True)
