"""build-kmods under kill -9 and SIGTERM (issue 14 point 3), with real processes and the real igb_uio build.

The original failure: SIGKILL of build-kmods left its builder running (same process group, nobody
ended it), and the next run took the lock over at once (the kernel had released the flock) and
started a second builder on the same kernel. Now the builder runs in its own process group, ended
with the step, and a lease is taken over only when its builder's heartbeat says it is gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from modsupport import Volume

from cssr_tasks import build_kmods
from cssr_tasks.kmod_checks import verify_tree

pytestmark = [pytest.mark.tools, pytest.mark.slow]


def slow_builder(volume: Volume, tmp_path: Path, seconds: float) -> Path:
    """A builder that records its pid, sleeps, then runs the real stand-in build."""
    path = tmp_path / "slow_build.sh"
    path.write_text(f"#!/bin/sh\necho $$ >> '{tmp_path}/starts.txt'\nsleep {seconds}\nexec '{volume.builder}' \"$@\"\n")
    path.chmod(0o755)
    return path


def starts(tmp_path: Path) -> list[int]:
    record = tmp_path / "starts.txt"
    return [int(p) for p in record.read_text().split()] if record.exists() else []


def start(volume: Volume, tmp_path: Path, name: str, **extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(build_kmods.__file__).parents[1])}
    return subprocess.Popen([sys.executable, "-m", "cssr_tasks", "build-kmods", *volume.args(volume.kernels[0], **extra),
                             "--results-dir", str(tmp_path / f"results-{name}")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigkill_of_build_kmods_never_lets_a_second_builder_start(volume, tmp_path):
    builder = slow_builder(volume, tmp_path, 4)
    command = f"{builder} {volume.root}"
    first = start(volume, tmp_path, "killed", builder_command=command, stale_after="60")
    wait_for(lambda: starts(tmp_path))
    first.send_signal(signal.SIGKILL)
    first.communicate()
    [orphan] = starts(tmp_path)
    assert alive(orphan)  # SIGKILL cannot end the group: the builder lives on, as in the report
    # the next run finds the flock free, and still waits: the builder's heartbeat is fresh
    second = start(volume, tmp_path, "second", builder_command=command, lock_timeout="1", stale_after="60")
    _, err = second.communicate(timeout=60)
    assert second.returncode == 1, err
    assert "could not take the build lock" in err
    assert "its process is gone, but its builder may still run: heartbeat" in err
    assert starts(tmp_path) == [orphan]  # no second builder on the same kernel
    # once the orphan's script ends it leaves its exit mark: the next run takes over at once and builds
    wait_for(lambda: not alive(orphan), timeout=120)
    third = start(volume, tmp_path, "third", builder_command=command, lock_timeout="60", stale_after="60")
    _, err = third.communicate(timeout=120)
    assert third.returncode == 0, err
    assert "and so is its builder (it left its exit mark)" in err
    assert len(starts(tmp_path)) == 2
    assert all(c.ok for c in verify_tree(volume.modules_dir, volume.kernels[0].release, ("igb_uio", "rte_kni")))
    assert list((volume.modules_dir / build_kmods.STAGING).iterdir()) == []


def test_sigterm_ends_the_builders_process_group_and_releases_the_lock(volume, tmp_path):
    builder = slow_builder(volume, tmp_path, 60)
    proc = start(volume, tmp_path, "stopped", builder_command=f"{builder} {volume.root}")
    wait_for(lambda: starts(tmp_path))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "this step was told to stop (SIGTERM); the builder was ended" in err
    assert "Traceback" not in err
    [pid] = starts(tmp_path)
    wait_for(lambda: not alive(pid), timeout=10)
    assert (volume.modules_dir / build_kmods.LOCK_FILE).read_bytes() == b""
    assert not (volume.modules_dir / volume.kernels[0].release / "dpdk").exists()


def test_a_process_lease_with_a_fresh_heartbeat_is_waited_for(volume, run_cli):
    """The rule alone: a free flock (holder gone) is not enough while the builder's heartbeat is fresh."""
    owner = "gone-host-4242"
    (volume.modules_dir / build_kmods.LOCK_FILE).write_text(json.dumps(
        {"owner": owner, "host": "gone-host", "pid": 4242, "since": time.time() - 3600, "span": "process"}))
    beat = volume.modules_dir / build_kmods.STAGING / owner / "heartbeat"
    beat.parent.mkdir(parents=True)
    beat.touch()
    run = run_cli(["build-kmods", *volume.args(volume.kernels[0], lock_timeout="0", stale_after="600")])
    assert run.code == 1
    assert "its builder may still run" in run.err
    old = time.time() - 700
    os.utime(beat, (old, old))
    run = run_cli(["build-kmods", *volume.args(volume.kernels[0], stale_after="600")])
    assert run.code == 0, run.err
    assert "its builder's heartbeat stopped 700s ago (stale-after is 600s)" in run.err
