"""Step logs that read as a story: what was found, what was decided, what changed, how long.

Every line carries the task's prefix, so that interleaved logs (the local executor, `tkn
pipeline logs`) stay readable. Secrets never reach a Log: callers pass names, not values.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class Log:
    def __init__(self, prefix: str, stream: TextIO | None = None, *, verbose: bool = False) -> None:
        self.prefix = prefix
        self.stream = stream
        self.verbose = verbose

    def _write(self, level: str, message: str) -> None:
        stream = self.stream or sys.stderr
        tag = f"[{self.prefix}]" if not level else f"[{self.prefix}] {level}:"
        for line in message.splitlines() or [""]:
            stream.write(f"{tag} {line}\n")
        stream.flush()

    def info(self, message: str) -> None:
        self._write("", message)

    def warn(self, message: str) -> None:
        self._write("warning", message)

    def debug(self, message: str) -> None:
        if self.verbose:
            self._write("debug", message)

    @contextmanager
    def timed(self, what: str) -> Iterator[None]:
        """Log how long `what` took, also when it fails."""
        start = time.monotonic()
        try:
            yield
        finally:
            self.info(f"{what} took {time.monotonic() - start:.1f}s")
