"""Benchmark: `cssr-tasks detect-kernel` as a fresh process (as a Tekton step runs it) against the
simulated cluster with 10, 1,000 and 5,000 worker nodes. Prints wall time, the child's peak
memory and the API requests it made, next to the interpreter's own start-up for scale.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cssr_tasks.sim import SimulatedCluster
from cssr_tasks.sim import fixtures as fx

SIZES = (10, 1000, 5000)
RUNS = 3


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return wall, usage.ru_maxrss / 1024


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def main() -> None:
    env = dict(os.environ)
    baseline = median([timed([sys.executable, "-c", "pass"], env)[0] for _ in range(RUNS)])
    imports = median([timed([sys.executable, "-c", "import kubernetes.client"], env)[0] for _ in range(RUNS)])
    print(f"interpreter start-up {baseline:.3f}s; import kubernetes.client {imports:.3f}s (median of {RUNS})")
    print(f"{'nodes':>6} {'wall s':>8} {'x python':>9} {'x import':>9} {'peak MiB':>9} {'requests':>9} {'pages':>6}")
    for size in SIZES:
        objects = fx.default_cluster()
        objects += fx.workers(size - 3, prefix="bench") if size > 3 else []
        with SimulatedCluster(objects) as sim, tempfile.TemporaryDirectory() as tmp:
            kubeconfig = sim.write_kubeconfig(Path(tmp) / "kubeconfig")
            argv = [sys.executable, "-m", "cssr_tasks", "detect-kernel", "--kubeconfig", str(kubeconfig),
                    "--results-dir", str(Path(tmp) / "results")]
            samples = []
            for _ in range(RUNS):
                sim.clear_requests()
                samples.append(timed(argv, env))
            wall = median([s[0] for s in samples])
            peak = max(s[1] for s in samples)
            requests = len(sim.requests)
            pages = len([r for r in sim.requests if r.resource == "nodes"])
            print(f"{size:>6} {wall:>8.3f} {wall / baseline:>9.1f} {wall / imports:>9.1f} {peak:>9.1f} "
                  f"{requests:>9} {pages:>6}")


if __name__ == "__main__":
    main()
