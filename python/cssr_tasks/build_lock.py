"""The modules volume's build lock: a flock plus a lease record, and the rule for taking over a lease.

Two kinds of holder share the lock: a one-process build (`cssr-tasks build-kmods`) holds the flock
for its whole life, and the Task's build holds a lease across its steps (the flock is dropped
between them). Either one runs a builder, kmod-build.sh, which touches `<staging>/<owner>/heartbeat`
every few seconds while it lives and leaves `<staging>/<owner>/exited` when it ends.

The holder's process can die (SIGKILL, an evicted pod) while its builder runs on: the kernel then
drops the flock, but the builder still writes into the staging folder and still compiles. So the
lock state alone never allows a takeover: a lease is taken over only when no builder of its holder
may still live, judged by the heartbeat's age (and the builder's exit mark).
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, CssrError, WaitTimeout
from .log import Log

LOCK_FILE = ".cssr-build.lock"
STAGING = ".cssr-staging"
HEARTBEAT = "heartbeat"  # touched by kmod-build.sh while it (and so its builder) lives
EXITED = "exited"  # written by kmod-build.sh when it ends: its builder ended with it
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Lease:
    """Who holds the build lock: kept in the lock file, so that it outlives a step and names a dead holder."""

    owner: str
    host: str
    pid: int
    since: float
    span: str  # "process": held with the flock for one process's life; "task": across a Task's steps

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.since)) if self.since else "an unknown time"
        return f"{self.owner} (pid {self.pid} on {self.host}, {self.span} lease since {when})"


class BuildLock:
    """flock on `<modules-dir>/.cssr-build.lock`, plus the lease written in that file.

    The flock guards each change of the lease and, in the one-process mode, the whole build. A lease
    is stale when its holder is gone AND its builder is: for a "process" lease the first is a free
    flock, for a "task" lease it is stale-after seconds without a change of the lease or heartbeat;
    the second is an exit mark, no heartbeat at all, or a heartbeat older than stale-after.
    """

    def __init__(self, modules_dir: Path, owner: str, span: str, *, timeout: float, stale_after: float,
                 log: Log) -> None:
        self.path = modules_dir / LOCK_FILE
        self.staging = modules_dir / STAGING
        self.owner, self.span, self.timeout, self.stale_after, self.log = owner, span, timeout, stale_after, log
        self.fd: int | None = None

    def acquire(self, *, resume: bool = False) -> None:
        """Wait up to `timeout` seconds for the lock. With resume, the lease must already be ours."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o664)
        except OSError as e:
            raise CssrError(f"could not open the build lock {self.path}: {e.strerror}; the modules volume must "
                            "be mounted and writable") from None
        deadline = time.monotonic() + self.timeout
        waited = False
        start = time.monotonic()
        why_held = ""
        while True:
            holder = self._read(fd)
            if self._try_flock(fd):
                holder = self._read(fd)
                if resume:
                    if holder is None or holder.owner != self.owner:
                        self._close(fd)
                        taken = f"is held by {holder.describe()}" if holder else "was released"
                        raise CssrError(f"could not resume build {self.owner}: its build lease {taken}, so its "
                                        "staged modules are gone; the build took longer than stale-after, or "
                                        "another run took over; run the Task again")
                    break
                if holder is None or holder.owner == self.owner:
                    break
                stale, why_held = self._stale(holder)
                if stale:
                    self.log.warn(f"taking over the build lock from {holder.describe()}: {stale}")
                    break
                fcntl.flock(fd, fcntl.LOCK_UN)
            who = (holder.describe() if holder else "another process") + (f"; {why_held}" if why_held else "")
            if time.monotonic() >= deadline:
                self._close(fd)
                raise WaitTimeout(f"could not take the build lock {self.path} within {self.timeout:.0f}s: held by "
                                  f"{who}; wait for that build to finish, or raise lock-timeout")
            if not waited:
                self.log.info(f"waiting up to {self.timeout:.0f}s for the build lock, held by {who}")
                waited = True
            time.sleep(POLL_SECONDS)
        if waited:
            self.log.info(f"took the build lock after {time.monotonic() - start:.1f}s")
        self.fd = fd
        lease = Lease(self.owner, host(), os.getpid(), time.time(), self.span)
        data = json.dumps(dataclasses.asdict(lease)).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)

    def detach(self) -> None:
        """Let go of the flock and keep the lease: the Task's later step resumes it."""
        if self.fd is not None:
            self._close(self.fd)
            self.fd = None

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            self._close(self.fd)
            self.fd = None

    @staticmethod
    def _try_flock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise CssrError(f"could not lock the build lock file: {e.strerror}; the volume must support "
                            "flock (CephFS and NFSv4 do)") from None

    @staticmethod
    def _close(fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @staticmethod
    def _read(fd: int) -> Lease | None:
        raw = os.pread(fd, 4096, 0)
        if not raw.strip():
            return None
        try:
            data = json.loads(raw)
            return Lease(str(data["owner"]), str(data["host"]), int(data["pid"]), float(data["since"]),
                         str(data["span"]))
        except (ValueError, KeyError, TypeError):
            return Lease("an unreadable lock record", "?", 0, 0.0, "process")

    def _stale(self, lease: Lease) -> tuple[str, str]:
        """(why the lease is stale, "") or ("", why its holder or builder may still be alive)."""
        now = time.time()
        if lease.span == "task":
            beat = self._heartbeat(lease)
            idle = now - max(lease.since, beat or 0.0)
            if idle <= self.stale_after:
                return "", f"its build showed a sign of life {idle:.0f}s ago (stale-after is {self.stale_after:.0f}s)"
            return f"no sign of life for {idle:.0f}s (stale-after is {self.stale_after:.0f}s)", ""
        gone = "its process is gone (the kernel released its lock)"
        folder = self.staging / lease.owner
        if (folder / EXITED).exists():
            return f"{gone}, and so is its builder (it left its exit mark)", ""
        beat = self._heartbeat(lease)
        if beat is None:
            return f"{gone}, and it started no builder (no heartbeat)", ""
        idle = now - beat
        if idle > self.stale_after:
            return f"{gone}, and its builder's heartbeat stopped {idle:.0f}s ago (stale-after is " \
                   f"{self.stale_after:.0f}s)", ""
        return "", (f"its process is gone, but its builder may still run: heartbeat {idle:.0f}s ago in {folder} "
                    f"(taken over when older than stale-after, {self.stale_after:.0f}s)")

    def _heartbeat(self, lease: Lease) -> float | None:
        try:
            return (self.staging / lease.owner / HEARTBEAT).stat().st_mtime
        except OSError:
            return None


def host() -> str:
    """This pod's name on a cluster (every step of a TaskRun shares it), the machine's name elsewhere."""
    name = socket.gethostname()
    if not name or not all(c.isalnum() or c in "._-" for c in name):
        raise ConfigError(f"could not use the host name {name!r} to name the build; set a plain host name")
    return name
