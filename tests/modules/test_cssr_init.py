"""cssr-init's entrypoint (python/cssr_tasks/files/cssr-init-entrypoint.sh) run with sh over a fake image root.

Issue 14 point 3: two copies over a kernel folder left without its completion mark failed 3 of 3
times (the old script completed it in place with `cp -RPpf`), and killed runs left temporary
copies that nothing removed. Here: concurrent runs over such a folder all succeed and leave one
complete copy (its dpdk folder kept); a run killed with SIGKILL mid-copy is followed by one that
completes and removes the dead run's copy; leftovers of other hosts go only when stale.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from importlib import resources
from pathlib import Path

import pytest

KVER = "5.14.0-427.40.1.el9_4.x86_64"
MARK = ".cssr-init-complete"
FILES = 3000  # enough that concurrent copies overlap in time


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/lib/modules/<kver> and /usr/src/kernels/<kver> as the cssr-init image holds them, with many files."""
    root = tmp_path_factory.mktemp("image")
    modules = root / "lib" / "modules" / KVER
    (modules / "kernel" / "drivers" / "uio").mkdir(parents=True)
    (modules / "kernel" / "drivers" / "uio" / "uio.ko").write_bytes(b"\x7fELF uio")
    (modules / "modules.dep").write_text("kernel/drivers/uio/uio.ko:\n")
    (modules / "build").symlink_to(f"/usr/src/kernels/{KVER}")
    devel = root / "usr" / "src" / "kernels" / KVER
    for i in range(FILES):
        folder = devel / "include" / f"d{i % 30}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"h{i}.h").write_text(f"/* header {i} */\n" * 20)
    return root


def script() -> str:
    return str(resources.files("cssr_tasks").joinpath("files/cssr-init-entrypoint.sh"))


def start(image_root: Path, volume: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(["sh", script()], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "CSSR_KERNEL": KVER, "CSSR_VOLUME": str(volume),
                                 "CSSR_IMAGE_ROOT": str(image_root), **env})


def run(image_root: Path, volume: Path, **env: str) -> subprocess.CompletedProcess[str]:
    proc = start(image_root, volume, **env)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_complete(image_root: Path, volume: Path) -> None:
    for sub, source in (("modules", image_root / "lib/modules" / KVER),
                        ("kernels", image_root / "usr/src/kernels" / KVER)):
        dest = volume / sub / KVER
        assert (dest / MARK).is_file()
        want = sorted(str(p.relative_to(source)) for p in source.rglob("*"))
        got = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.name != MARK
                     and "dpdk" not in p.relative_to(dest).parts)
        assert got == want
        # nothing but the kernel's folder: no temporary copy left behind
        assert sorted(p.name for p in (volume / sub).iterdir()) == [KVER]


def test_concurrent_runs_over_a_folder_without_its_mark_all_succeed(image_root, tmp_path):
    """The original failure: 4 runs over <kver>/ holding a half copy and a built dpdk/ (no mark)."""
    leftover = tmp_path / "modules" / KVER
    (leftover / "kernel").mkdir(parents=True)
    (leftover / "modules.dep").write_text("half")
    (leftover / "dpdk").mkdir()
    (leftover / "dpdk" / "igb_uio.ko").write_bytes(b"\x7fELF built")
    partial = tmp_path / "kernels" / KVER / "include" / "d0"
    partial.mkdir(parents=True)
    (partial / "h0.h").write_text("truncated")
    procs = [start(image_root, tmp_path) for _ in range(4)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    assert_complete(image_root, tmp_path)
    assert (leftover / "dpdk" / "igb_uio.ko").read_bytes() == b"\x7fELF built"
    assert (leftover / "modules.dep").read_text() == "kernel/drivers/uio/uio.ko:\n"
    assert (tmp_path / "kernels" / KVER / "include" / "d0" / "h0.h").read_text().startswith("/* header 0 */")
    text = "".join(out for out, _ in outputs)
    assert "completed" in text or "copied" in text


def test_a_run_killed_mid_copy_is_cleaned_up_by_the_next(image_root, tmp_path):
    proc = start(image_root, tmp_path)
    deadline = time.monotonic() + 30
    while not any((tmp_path / "kernels").glob(f".{KVER}.cssr-tmp.*/include")) and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    time.sleep(0.2)  # the killed shell's cp child ends on its own write errors or finishes; either way it is dead
    left = list((tmp_path / "kernels").glob(f".{KVER}.cssr-tmp.*"))
    assert left, "the killed run left no temporary copy: the test did not reproduce the failure"
    again = run(image_root, tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"removing {left[0]} left by a run on {socket.gethostname()}: its process" in again.stdout
    assert_complete(image_root, tmp_path)


def test_leftovers_of_other_hosts_go_only_when_stale(image_root, tmp_path):
    parent = tmp_path / "modules"
    stale = parent / f".{KVER}.cssr-tmp.other-pod.7.AbC123"
    fresh = parent / f".{KVER}.cssr-tmp.busy-pod.7.XyZ789"
    older_version = parent / f".{KVER}.Q1w2E3"
    for folder in (stale, fresh, older_version):
        (folder / "kernel").mkdir(parents=True)
    hour_ago = time.time() - 7200
    for folder in (stale, older_version):
        os.utime(folder, (hour_ago, hour_ago))
    done = run(image_root, tmp_path)
    assert done.returncode == 0, done.stderr
    assert not stale.exists() and not older_version.exists()
    assert fresh.exists()  # another pod may still be copying into it
    assert "untouched for more than 3600s" in done.stdout


@pytest.mark.parametrize(("env", "message"), [
    ({"CSSR_KERNEL": "*"}, "kernel version '*' is not valid"),
    ({"CSSR_KERNEL": "../etc"}, "kernel version '../etc' is not valid"),
    ({"CSSR_STALE_SECONDS": "soon"}, "CSSR_STALE_SECONDS='soon' is not a whole number"),
], ids=["glob", "traversal", "stale-word"])
def test_bad_input_is_one_line_and_writes_nothing(image_root, tmp_path, env, message):
    done = run(image_root, tmp_path, **env)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and message in done.stderr
    assert list(tmp_path.iterdir()) == []
