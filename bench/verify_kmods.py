"""Benchmark: verify-kmods over 20 kernels x 2 modules (real igb_uio.ko builds), wall time in total and per file.

igb_uio.ko is built once against Debian's headers; the 20 kernels are variants whose `.modinfo`
vermagic is rewritten to another release of the same length (`6.1.0-56-amd64` -> `6.1.0-07-amd64`),
and rte_kni.ko is the same build renamed in `.modinfo`, as in the module tests. Each kernel's tree
holds the in-tree uio.ko they need (kmod_standin's build) and is indexed by kmod's depmod through
`cssr_tasks.depmod.update`, as build-kmods' commit leaves it: verify-kmods checks modules.dep too.
Measured twice: the command as a Tekton step runs it (a fresh `python -m cssr_tasks verify-kmods`
process), and the `run()` function alone in this process; the depmod time per kernel is printed too.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))

from cssr_tasks import depmod, verify_kmods  # noqa: E402
from cssr_tasks.log import Log  # noqa: E402
from cssr_tasks.sim import kmod_standin  # noqa: E402

KERNELS = 20
MODULES = ("igb_uio", "rte_kni")
ROUNDS = 5


def build_modules(work: Path) -> tuple[str, bytes, Path]:
    """(release, igb_uio.ko's bytes, uio.ko) built against Debian's headers."""
    headers, source = kmod_standin.debian_headers(), kmod_standin.igb_uio_source()
    if headers is None or source is None or not shutil.which("make") or not shutil.which("depmod"):
        print("skipped: needs make, depmod, linux-headers-amd64 and dpdk-kmods-dkms (scripts/install-system-deps)")
        sys.exit(0)
    igb_uio = kmod_standin.build_igb_uio(headers, source, work / "igb_uio")
    uio = kmod_standin.build_uio(headers, work / "uio")
    return kmod_standin.release_of(headers), igb_uio.read_bytes(), uio


def variants(release: str, count: int) -> list[str]:
    """Releases of the same length as `release`, its ABI number replaced (6.1.0-56-amd64 -> 6.1.0-07-amd64)."""
    version, abi, flavour = release.split("-", 2)
    return [f"{version}-{str(i).zfill(len(abi))}-{flavour}" for i in range(count)]


def lay_out(modules_dir: Path, release: str, data: bytes, uio: Path, *, count: int, work: Path) -> tuple[list[str], float]:
    """The kernels' trees with their modules, indexed by depmod; returns (kernels, median depmod seconds)."""
    kernels = variants(release, count)
    took = []
    with open("/dev/null", "w") as sink:
        log = Log("bench", sink)
        for kernel in kernels:
            tree = modules_dir / kernel
            (tree / "dpdk").mkdir(parents=True)
            (tree / "kernel" / "drivers" / "uio").mkdir(parents=True)
            shutil.copy(uio, tree / "kernel" / "drivers" / "uio" / "uio.ko")
            patched = data.replace(f"vermagic={release} ".encode(), f"vermagic={kernel} ".encode(), 1)
            (tree / "dpdk" / "igb_uio.ko").write_bytes(patched)
            (tree / "dpdk" / "rte_kni.ko").write_bytes(kmod_standin.rename_module(patched, "igb_uio", "rte_kni"))
            took.append(depmod.update(modules_dir, kernel, MODULES, scratch=work / "depmod", system_map=None,
                                      log=log))
    return kernels, statistics.median(took)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        release, data, uio = build_modules(work)
        modules_dir = work / "modules"
        kernels, depmod_seconds = lay_out(modules_dir, release, data, uio, count=KERNELS, work=work)
        files = len(kernels) * len(MODULES)
        size = sum(p.stat().st_size for p in modules_dir.glob("*/dpdk/*.ko"))

        command = [sys.executable, "-m", "cssr_tasks", "verify-kmods", "--modules-dir", str(modules_dir),
                   "--kernels", json.dumps(kernels), "--results-dir", str(work / "results")]
        step_times, result = [], ""
        for _ in range(ROUNDS):
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, check=False,
                                  env={"PYTHONPATH": str(REPO / "python"), "PATH": "/usr/bin:/bin"})
            step_times.append(time.perf_counter() - start)
            if done.returncode != 0:
                raise SystemExit(f"verify-kmods failed: {done.stderr}")
            result = (work / "results" / "modules").read_text()

        params = verify_kmods.Params(modules_dir=str(modules_dir), kernels=tuple(kernels), modules=MODULES)
        with open("/dev/null", "w") as sink:
            log = Log("bench", sink)
            run_times = []
            for _ in range(ROUNDS):
                start = time.perf_counter()
                verify_kmods.run(params, log=log)
                run_times.append(time.perf_counter() - start)

        step, inproc = statistics.median(step_times), statistics.median(run_times)
        print(f"verify-kmods: {len(kernels)} kernels x {len(MODULES)} modules = {files} files, "
              f"{size / 1e6:.1f} MB of real igb_uio.ko builds (median of {ROUNDS})")
        print(f"  as a step (fresh process): {step * 1000:.0f} ms wall, {step / files * 1000:.2f} ms per file")
        print(f"  run() in process:          {inproc * 1000:.0f} ms wall, {inproc / files * 1000:.2f} ms per file")
        print(f"  result `modules`: {len(result)} bytes ({json.loads(result).get('_omitted', 0)} kernels omitted)")
        print(f"  depmod per kernel (setup, as build-kmods' commit runs it): {depmod_seconds * 1000:.0f} ms median")


if __name__ == "__main__":
    main()
