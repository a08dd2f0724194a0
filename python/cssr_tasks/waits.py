"""Bounded waits that ride out a flaky API until their own deadline.

A wait polls a `check` that raises `NotYet` while the state it waits for is not reached. Each
API call inside the check already has the suite's retry policy (`cluster.retrying`: a few
attempts with backoff); when those attempts are used up on a transient error (5xx, 429, no
connection), the wait does not end the step: it logs the error as progress and checks again at
the next interval, until its own deadline. Only then does the last problem become the step's
error, and a refusal (403, 404, 409, 422) ends the wait at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from .cluster import is_retryable
from .errors import CssrError, WaitTimeout
from .log import Log

T = TypeVar("T")


class Clock:
    """One deadline, `timeout` seconds from now, shared by the waits that must fit in it."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def remaining(self) -> float:
        return self.timeout - self.elapsed()


class NotYet(Exception):
    """The state we wait for is not reached: the message is the progress line, the rest makes the final error."""

    def __init__(self, progress: str, *, what: str, reason: str, hint: str) -> None:
        super().__init__(progress)
        self.what, self.reason, self.hint = what, reason, hint


def wait_until(check: Callable[[], T], *, clock: Clock, interval: float, log: Log,
               sleep: Callable[[float], None] = time.sleep) -> T:
    """Call `check` every `interval` seconds until it returns, riding out transient API errors.

    It is called at least once, also with a deadline already passed. A progress line is logged
    before each pause; the last `NotYet` or transient error becomes a `WaitTimeout` at the deadline.
    """
    while True:
        try:
            return check()
        except NotYet as e:
            last: NotYet | CssrError = e
            progress = str(e)
        except CssrError as e:
            if not is_retryable(e):  # what the suite's retry policy retries: no connection, 429, 5xx
                raise
            last, progress = e, f"transient API error, still waiting: {e}"
        if clock.remaining() <= 0:
            raise _timeout(last, clock) from None
        log.info(f"{progress}; {clock.elapsed():.0f}s of {clock.timeout:g}s")
        sleep(max(0.0, min(interval, clock.remaining())))


def _timeout(last: NotYet | CssrError, clock: Clock) -> WaitTimeout:
    if isinstance(last, NotYet):
        return WaitTimeout(f"could not see {last.what} within {clock.timeout:g}s: {last.reason}; {last.hint}")
    return WaitTimeout(f"{last}; the API kept failing until the {clock.timeout:g}s wait ran out: check the API "
                       "server's health (`oc get clusteroperators`), or raise the timeout")
