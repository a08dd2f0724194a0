"""The suite's own errors: every command ends in one of these, never in a library exception.

Messages read "could not <verb> <what>: <reason>; <what to do>" so that the one line a step
prints names both the problem and the fix.
"""

from __future__ import annotations


class CssrError(Exception):
    """Base of every error a command reports as one line and a non-zero exit."""

    exit_code = 1


class ConfigError(CssrError):
    """Bad or missing input: a param, a flag, a file the user named."""

    exit_code = 2


class ApiError(CssrError):
    """The cluster (or a registry) answered with an error, or could not be reached."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


class Forbidden(ApiError):
    pass


class WaitTimeout(CssrError):
    """A bounded wait ran out before the cluster reached the state we waited for."""


def one_line(error: BaseException) -> str:
    """The error as a step prints it: one line, whatever the message quoted."""
    return " ".join(str(error).split())
