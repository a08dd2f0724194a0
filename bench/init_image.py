"""Benchmark: the cssr-init image, first build against a cached re-run.

Runs tasks/cssr-build-init-image.yaml step by step on this machine (as tests/images does) against
a real registry with htpasswd auth, FROM fake Driver Toolkit images of two kernels whose trees
carry incompressible payload (CSSR_BENCH_MB per kernel, default 32; a real kernel-devel plus
modules tree is a few hundred MB). Prints wall time per step and the bytes pushed (growth of the
registry's blob store), for the first run and for a re-run with the tag in place.

    .venv/bin/python bench/init_image.py
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from cssr_tasks import kernels  # noqa: E402
from cssr_tasks.sim import fixtures as fx  # noqa: E402
from cssr_tasks.sim.images import REGISTRY_BIN, Buildah, RegistryServer, seed_registry  # noqa: E402
from images.taskrun import TaskRun, run_task  # noqa: E402

KERNELS = [fx.RELEASES["4.16"][1], fx.RELEASES["4.17"][1]]


def settle(registry: RegistryServer) -> None:
    size = -1
    while size != registry.log_size():
        size = registry.log_size()
        time.sleep(0.2)


def one_run(label: str, registry: RegistryServer, params: dict[str, str], workspace: Path, *, config: Path,
            scratch: Path) -> dict[str, object]:
    store = Buildah(scratch / "root", scratch / "runroot")
    before_bytes, mark = registry.storage_bytes(), registry.log_size()
    started = time.monotonic()
    run: TaskRun = run_task(params, {"source": workspace, "dockerconfig": config}, scratch / "results",
                            {**store.env_for_build_script(), "HOME": str(scratch)})
    wall = time.monotonic() - started
    settle(registry)
    if not run.ok:
        raise SystemExit(f"{label}: the Task failed\n{run.log}")
    return {
        "run": label,
        "wall_s": wall,
        "steps": {s.name: s.seconds for s in run.steps},
        "pushed_bytes": registry.storage_bytes() - before_bytes,
        "writes": len(registry.writes_since(mark)),
        "requests": len(registry.requests_since(mark)),
        "built": run.results.get("built"),
        "digest": run.results.get("image-digest"),
    }


def main() -> int:
    missing = [t for t in ("buildah", REGISTRY_BIN, "htpasswd") if not (shutil.which(t) or Path(t).exists())]
    if missing:
        print(f"init_image: skipped, missing {', '.join(missing)} (scripts/install-system-deps)")
        return 0
    megabytes = int(os.environ.get("CSSR_BENCH_MB", "32"))
    with tempfile.TemporaryDirectory(prefix="cssr-bench-") as tmp:
        root = Path(tmp)
        registry = RegistryServer(root / "registry", user="pipeline", password="bench").start()
        try:
            config_dir = root / "dockerconfig"
            registry.docker_config(config_dir, name=".dockerconfigjson")
            started = time.monotonic()
            seeder = Buildah(root / "seed" / "root", root / "seed" / "runroot")
            push = functools.partial(seeder.push_rootfs, authfile=config_dir / ".dockerconfigjson")
            seed = seed_registry(registry.host, push, root / "seed", KERNELS, payload_bytes=megabytes * 1024 * 1024)
            seeding = time.monotonic() - started
            params = {
                "kernel-versions": json.dumps(KERNELS),
                "kernel-set-id": kernels.kernel_set_id(KERNELS),
                "dtk-images": json.dumps(seed.dtk_images),
                "image-repository": f"{registry.host}/cssr-deploy/cssr-init",
                "base-image": seed.base_image,
                "tls-verify": "false",
            }
            workspace = root / "workspace"
            first = one_run("first build", registry, params, workspace, config=config_dir, scratch=root / "run1")
            cached = one_run("cached re-run", registry, params, workspace, config=config_dir, scratch=root / "run2")
        finally:
            registry.stop()

    print(f"init_image: 2 kernels x {megabytes} MiB of tree payload; seeding the fake Driver Toolkit images "
          f"took {seeding:.1f}s")
    print(f"{'run':<14} {'wall':>7} {'prepare':>8} {'build':>7} {'verify':>7} {'pushed':>12} {'writes':>7} "
          f"{'requests':>9}  built")
    for r in (first, cached):
        steps = r["steps"]
        assert isinstance(steps, dict)
        print(f"{r['run']:<14} {r['wall_s']:>6.2f}s {steps['prepare']:>7.2f}s {steps['build']:>6.2f}s "
              f"{steps['verify']:>6.2f}s {r['pushed_bytes']:>10,} B {r['writes']:>7} {r['requests']:>9}  {r['built']}")
    if first["digest"] != cached["digest"] or cached["pushed_bytes"] or cached["built"] != "false":
        print("init_image: FAILED, the re-run was not a cache hit")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
