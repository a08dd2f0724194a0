"""Benchmark: `cssr-tasks detect-kernel` as a fresh process (as a Tekton step runs it) against the
simulated cluster with 10, 1,000 and 5,000 worker nodes. Prints wall time, the child's peak
memory and the API requests it made, next to the interpreter's own start-up for scale.

Then the upgrade target's read from the Driver Toolkit image in a real registry (Debian's
docker-registry): an image with a large lower layer (the kernel trees; 64 MiB of incompressible
bytes here, GBs in a real one) and the release file alone in its last layer. Prints the wall time
of detect-kernel with the read, the registry requests and bytes of the read, cold and cached.
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


def dtk_read() -> None:
    from cssr_tasks import detect_kernel, driver_toolkit
    from cssr_tasks.cluster import Cluster
    from cssr_tasks.log import Log
    from cssr_tasks.sim import oci
    from cssr_tasks.sim.images import RegistryServer, release_layer

    kernel416, kernel417 = fx.RELEASES["4.16"][1], fx.RELEASES["4.17"][1]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = RegistryServer(root / "registry").start()
        try:
            trees = root / "trees" / "usr"
            trees.mkdir(parents=True)
            (trees / "payload.bin").write_bytes(os.urandom(64 << 20))
            digests = {fx.RELEASES[r][0]: oci.push_rootfs(trees.parent, f"{server.host}/openshift/dtk:{r}", {},
                                                          top=release_layer(root / r, k, k + "+rt"))
                       for r, k in (("4.16", kernel416), ("4.17", kernel417))}
            stream = fx.driver_toolkit(["4.16", "4.17"], latest="4.17", repository=f"{server.host}/openshift/dtk",
                                       digests=digests)
            with SimulatedCluster(fx.default_cluster() + stream) as sim:
                log = Log("bench", open(os.devnull, "w"))
                params = detect_kernel.Params.from_env({"PARAM_TLS_VERIFY": "false"})
                server.settle()
                mark = server.log_size()
                start = time.perf_counter()
                result = detect_kernel.run(params, cluster=Cluster.at(sim.url, log=log), log=log)
                wall = time.perf_counter() - start
                server.settle()
                assert kernel417 in result.kernel_versions, result
                print(f"detect-kernel with the DTK read (in-process): {wall:.3f}s; registry requests "
                      f"{len(server.requests_since(mark))}")
            reader = driver_toolkit.ReleaseReader(log, tls_verify=False)
            reference = f"{server.host}/openshift/dtk@{digests[fx.RELEASES['4.17'][0]]}"
            for label in ("cold", "cached"):
                before = (reader.traffic.requests, reader.traffic.bytes)
                start = time.perf_counter()
                reader.read(reference, architecture="amd64")
                wall = time.perf_counter() - start
                print(f"  DTK release file {label:>6}: {wall * 1000:7.1f} ms, "
                      f"{reader.traffic.requests - before[0]} requests, {reader.traffic.bytes - before[1]} bytes "
                      f"(the image: {server.storage_bytes()} bytes of blobs in the registry)")
        finally:
            server.stop()


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
    dtk_read()


if __name__ == "__main__":
    main()
