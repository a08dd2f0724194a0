"""Benchmark: verify-kmods over 20 kernels x 2 modules (real igb_uio.ko builds), wall time in total and per file.

igb_uio.ko is built once against Debian's headers; the 20 kernels are variants whose `.modinfo`
vermagic is rewritten to another release of the same length (`6.1.0-56-amd64` -> `6.1.0-07-amd64`),
and rte_kni.ko is the same build renamed in `.modinfo`, as in the module tests. Measured twice: the
command as a Tekton step runs it (a fresh `python -m cssr_tasks verify-kmods` process), and the
`run()` function alone in this process.
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

from cssr_tasks import verify_kmods  # noqa: E402
from cssr_tasks.log import Log  # noqa: E402

KERNELS = 20
MODULES = ("igb_uio", "rte_kni")
ROUNDS = 5


def build_igb_uio(work: Path) -> tuple[str, bytes]:
    headers = sorted(Path("/usr/src").glob("linux-headers-*-amd64"))
    sources = sorted(Path("/usr/src").glob("dpdk-kmods-*"))
    if not headers or not sources or not shutil.which("make"):
        print("skipped: needs make, linux-headers-amd64 and dpdk-kmods-dkms (scripts/install-system-deps)")
        sys.exit(0)
    source = work / "igb_uio"
    shutil.copytree(sources[-1], source)
    subprocess.run(["make", "-C", str(headers[-1]), f"M={source}", "MODULE_CFLAGS=-fno-PIE", "modules"],
                   check=True, capture_output=True)
    return headers[-1].name.removeprefix("linux-headers-"), (source / "igb_uio.ko").read_bytes()


def variants(release: str, count: int) -> list[str]:
    """Releases of the same length as `release`, its ABI number replaced (6.1.0-56-amd64 -> 6.1.0-07-amd64)."""
    version, abi, flavour = release.split("-", 2)
    return [f"{version}-{str(i).zfill(len(abi))}-{flavour}" for i in range(count)]


def lay_out(modules_dir: Path, release: str, data: bytes, count: int) -> list[str]:
    kernels = variants(release, count)
    for kernel in kernels:
        dpdk = modules_dir / kernel / "dpdk"
        dpdk.mkdir(parents=True)
        patched = data.replace(f"vermagic={release} ".encode(), f"vermagic={kernel} ".encode(), 1)
        (dpdk / "igb_uio.ko").write_bytes(patched)
        (dpdk / "rte_kni.ko").write_bytes(patched.replace(b"name=igb_uio\0", b"name=rte_kni\0", 1))
    return kernels


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        release, data = build_igb_uio(work)
        modules_dir = work / "modules"
        kernels = lay_out(modules_dir, release, data, KERNELS)
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


if __name__ == "__main__":
    main()
