"""Start, find again and stop the cluster's processes, and nothing else.

Each process starts in its own session (it outlives `make e2e` when E2E_KEEP=1), logs to a file,
and is recorded in processes.json with its PID, its binary and a hash of its command line. A
record counts as running only if that PID still runs that binary, so a reused PID is never
signalled; `stop` signals only recorded PIDs, never processes found by name.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .log import say


@dataclass(frozen=True)
class Record:
    name: str
    pid: int
    binary: str
    config: str  # hash of the command line: a changed flag means a restart
    log: str
    started: float


def config_hash(argv: list[str], env: dict[str, str] | None = None) -> str:
    return hashlib.sha256(json.dumps([argv, env or {}]).encode()).hexdigest()[:16]


class Processes:
    def __init__(self, path: Path) -> None:
        self.path = path

    def records(self) -> dict[str, Record]:
        if not self.path.exists():
            return {}
        return {name: Record(**fields) for name, fields in json.loads(self.path.read_text()).items()}

    @contextlib.contextmanager
    def _locked(self):  # type: ignore[no-untyped-def]
        # Two harness calls (a test starting its component beside `up`) must not lose each other's records.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _update(self, name: str, record: Record | None) -> None:
        with self._locked():
            records = self.records()
            if record is None:
                records.pop(name, None)
            else:
                records[name] = record
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({n: asdict(r) for n, r in records.items()}, indent=2))
            os.replace(tmp, self.path)

    @staticmethod
    def alive(record: Record) -> bool:
        """The recorded PID runs the recorded binary (and is not a zombie)."""
        try:
            exe = os.readlink(f"/proc/{record.pid}/exe")
            state = Path(f"/proc/{record.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return exe.removesuffix(" (deleted)") == record.binary and state != "Z"

    def running(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Record | None:
        record = self.records().get(name)
        if record and self.alive(record) and record.config == config_hash(argv, env):
            return record
        return None

    def start(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> Record:
        self.stop(name)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            out.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} start: {' '.join(argv)}\n".encode())
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env={**os.environ, **(env or {})})
        record = Record(name=name, pid=proc.pid, binary=str(Path(argv[0]).resolve()),
                        config=config_hash(argv, env), log=str(log), started=time.time())
        self._update(name, record)
        say(f"started {name} (pid {proc.pid}), log {log}")
        return record

    def stop(self, name: str, timeout: float = 20.0) -> None:
        record = self.records().get(name)
        if record is None:
            return
        if self.alive(record):
            began = time.monotonic()
            os.kill(record.pid, signal.SIGTERM)
            # Not `alive`: an exiting process loses its exe link before it closes its sockets.
            while self._exists(record.pid) and time.monotonic() - began < timeout:
                self._reap(record.pid)
                time.sleep(0.1)
            if self._exists(record.pid):
                say(f"{name} (pid {record.pid}) ignored SIGTERM for {timeout:.0f} s; killing it")
                os.kill(record.pid, signal.SIGKILL)
            self._reap(record.pid)
            say(f"stopped {name} (pid {record.pid}) in {time.monotonic() - began:.1f} s")
        self._update(name, None)

    @staticmethod
    def _exists(pid: int) -> bool:
        """The PID is there and not a zombie (a zombie holds no ports or files any more)."""
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    @staticmethod
    def _reap(pid: int) -> None:
        # A child of this very process (started in the same run) lingers as a zombie until reaped.
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass

    def stop_all(self, order: list[str], timeouts: dict[str, float] | None = None) -> None:
        names = list(self.records())
        for name in [n for n in order if n in names] + [n for n in names if n not in order]:
            self.stop(name, (timeouts or {}).get(name, 20.0))
