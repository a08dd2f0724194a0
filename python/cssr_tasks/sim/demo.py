"""`make demo`: the real pipelines/cssr-deploy.yaml, run on this machine against a simulated OpenShift.

    python -m cssr_tasks.sim.demo [--out out] [--workdir DIR] [--without buildah|registry|headers]...

What is real: every Task's YAML and Python, the local executor (`cssr-tasks pipeline run`), the
kubernetes client over HTTP to the simulated API, and, where installed, a registry
(`docker-registry` on 127.0.0.1), buildah building and pushing the cssr-init image from fake
Driver Toolkit images, and igb_uio.ko compiled by kbuild for the cluster's RHEL kernels (Debian's
headers with the release rewritten: sim/kmod_standin.py). What stands in:

- the cluster: three workers on OpenShift 4.16 (RHCOS kernel 5.14.0-427.40.1.el9_4.x86_64), the
  worker pool, the operators' CRDs and SR-IOV node states, the MachineConfig, SR-IOV and
  StatefulSet controllers (sim/workloads.py), Multus giving router pods 127.0.0.1 (sim/router.py);
- the Driver Toolkit: one image per release (4.16, 4.17) in the local registry, FROM scratch,
  holding the kernel trees; the openshift/driver-toolkit ImageStream names them;
- Juniper's images: the router is a FakeSsr over HTTPS on 127.0.0.1 (sim/ssr.py); the kmod-builder
  step runs with the local sh and the stand-in dpdk_build.sh;
- a container runtime: the build-kmods layout step runs chrooted into the pushed cssr-init image
  (sim/oci.py run-step).

A missing tool gives a degraded run that is still green and says so: no buildah, the build
step is sim/oci.py's Containerfile stand-in; no docker-registry, sim/mini_registry.py's MiniRegistry; no
kernel headers (or dpdk-kmods, make, gcc), fake kernel trees and synthetic modules stamped with
the kernel's vermagic. Steps get their volumes at a pod's paths through a private mount
namespace, which needs root (as the module and image tests do).

Tests and the benchmark use `Demo` directly: `with Demo(workdir) as demo: demo.run(...)`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from .. import pipeline
from ..tekton.run import Options, Outcome
from . import (
    SimulatedCluster,
    fixtures,
    images,
    kmod_standin,
    mini_registry,
    oci,
    operators,
    pods,
    router,
    ssr,
    workloads,
)

NAMESPACE = "cssr"  # the PipelineRun's, the router's and the images' namespace
RUNNING = "4.16"  # what the nodes run
RELEASES = ("4.16", "4.17")  # Driver Toolkit images the registry holds
PF_NAMES = ("ens6f0np0", "ens6f1np1")
DTK_REPOSITORY = "openshift/driver-toolkit"
BUILDAH_IMAGE = "registry.access.redhat.com/ubi9/buildah"
KMOD_BUILDER_IMAGE = "quay.io/juniper-128t/kmod-builder-51"
REPO = Path(__file__).resolve().parents[3]
TOOLS = ("buildah", "registry", "headers")


@dataclass(frozen=True)
class Tools:
    """Which real tools the demo uses; the others are stood in for."""

    buildah: bool
    registry: bool
    headers: bool
    forced: tuple[str, ...] = ()  # stand-ins asked for with --without

    @classmethod
    def detect(cls, without: Sequence[str] = ()) -> Tools:
        return cls(buildah="buildah" not in without and shutil.which("buildah") is not None,
                   registry="registry" not in without and Path(images.REGISTRY_BIN).exists(),
                   headers="headers" not in without and not kmod_standin.missing_for_real_builds(),
                   forced=tuple(without))

    def describe(self) -> list[str]:
        def why(tool: str, missing: str) -> str:
            return f"--without {tool}" if tool in self.forced else f"{missing} not installed"

        missing_headers = ", ".join(kmod_standin.missing_for_real_builds())
        return [
            "registry: " + (f"{images.REGISTRY_BIN} on 127.0.0.1" if self.registry else
                            f"stand-in MiniRegistry of sim/mini_registry.py ({why('registry', images.REGISTRY_BIN)})"),
            "image builds: " + ("buildah (vfs storage, chroot isolation)" if self.buildah else
                                f"stand-in Containerfile builder of sim/oci.py ({why('buildah', 'buildah')})"),
            "modules: " + ("igb_uio.ko compiled by kbuild against Debian's headers announcing each RHEL kernel"
                           if self.headers else "stand-in synthetic modules stamped with each kernel's vermagic "
                                                f"({why('headers', missing_headers)})"),
        ]


class Demo:
    """The demo's world: a registry with Driver Toolkit images, the simulated cluster, a fake SSR; stop() it."""

    def __init__(self, workdir: Path, tools: Tools | None = None, *, pipeline_file: Path | None = None) -> None:
        self.workdir = workdir
        self.tools = tools or Tools.detect()
        self.pipeline_file = pipeline_file or REPO / "pipelines" / "cssr-deploy.yaml"
        self.builds = workdir / "builds.txt"  # one line per kernel the stand-in builder built
        self._stack = contextlib.ExitStack()
        self.registry: images.RegistryServer | mini_registry.MiniRegistry | None = None
        self.seed: images.Seed | None = None
        self.sim: SimulatedCluster | None = None
        self.workloads: workloads.Workloads | None = None
        self.ssr: ssr.FakeSsr | None = None
        self.builder = workdir / "dpdk_build.sh"

    def __enter__(self) -> Demo:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Demo:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        registry = images.RegistryServer(self.workdir / "registry") if self.tools.registry else \
            mini_registry.MiniRegistry(self.workdir / "registry")
        self.registry = registry.start()
        self._stack.callback(registry.stop)
        self.seed = self._seed()
        digests = {fixtures.RELEASES[r][0]: self.seed.dtk_images[fixtures.RELEASES[r][1]].split("@")[1]
                   for r in RELEASES}
        stream = fixtures.driver_toolkit(list(RELEASES), latest=RUNNING,
                                         repository=f"{self.registry.host}/{DTK_REPOSITORY}", digests=digests)
        sim = SimulatedCluster(fixtures.default_cluster() + stream).start()
        self._stack.callback(sim.stop)
        self.sim = sim
        operators.install(sim)
        self.workloads = workloads.install(sim)
        self.workloads.pod_hooks.append(router.multus())
        # modules-storage=hostpath: the cssr-modules DaemonSet's init containers run here, a folder per node
        self.workloads.daemonsets.runner = pods.ContainerRunner(
            self.workdir, self.image_commands(),
            {**os.environ, "CONTAINERS_STORAGE_CONF": str(self.workdir / "storage.conf")})
        nets = [router.Net(f"{pf}-macvlan", f"net{i + 1}") for i, pf in enumerate(PF_NAMES)]
        fake = ssr.serve(self.workdir / "ssr-tls", nets)
        self._stack.callback(fake.server.stop)
        self.ssr = fake
        sim.put({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                 "metadata": {"name": "cssr-ssr-credentials", "namespace": NAMESPACE},
                 "data": {"username": _b64(fake.username), "password": _b64(fake.password)}})
        kmod_standin.write_builder(self.builder, record=self.builds,
                                   source=kmod_standin.igb_uio_source() if self.tools.headers else None)
        # The build step's buildah keeps its images in the step's emptyDir (--root), as in a pod; its run
        # state goes here rather than to this machine's /run/containers/storage.
        (self.workdir / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\nrunroot = "{self.workdir / "buildah-run"}"\n'
            f'graphroot = "{self.workdir / "buildah-unused"}"\n')

    def _seed(self) -> images.Seed:
        assert self.registry is not None
        kernel_list = [fixtures.RELEASES[r][1] for r in RELEASES]
        folder = self.workdir / "seed"
        shutil.rmtree(folder, ignore_errors=True)
        if self.tools.buildah:
            store = images.Buildah(folder / "store" / "root", folder / "store" / "runroot")
            push: images.Pusher = store.push_rootfs
        else:
            push = oci.push_rootfs
        headers = kmod_standin.debian_headers() if self.tools.headers else None
        return images.seed_registry(self.registry.host, push, folder, kernel_list, repository=DTK_REPOSITORY,
                                    tags=[fixtures.RELEASES[r][0] for r in RELEASES], headers=headers)

    def stop(self) -> None:
        self._stack.close()

    # -- running the pipeline -------------------------------------------------------------

    @property
    def host(self) -> str:
        assert self.registry is not None, "start() the demo first"
        return self.registry.host

    def params(self, **overrides: str) -> dict[str, str]:
        """The pipeline params of the demo: this registry, the stand-in builder, the fake SSR's port."""
        assert self.ssr is not None and self.seed is not None, "start() the demo first"
        return {
            "image-registry": self.host,
            "registry-tls-verify": "false",
            "init-base-image": self.seed.base_image,
            "kmod-builder-command": f"{self.builder} /",
            "ssr-api-port": str(self.ssr.port),
            "poll-interval": "0.2",
            **overrides,
        }

    def image_commands(self) -> dict[str, str]:
        """How the images no local runner knows run here (see docs/pipeline-run-locally.md)."""
        python = sys.executable
        commands = {
            f"{self.host}/{NAMESPACE}/cssr-init": f"{python} -m cssr_tasks.sim.oci run-step --cache "
                                                  f"{self.workdir / 'image-cache'}",
            KMOD_BUILDER_IMAGE: "sh",
        }
        if not self.tools.buildah:
            commands[BUILDAH_IMAGE] = f"{python} -m cssr_tasks.sim.oci build-step"
        return commands

    def options(self, name: str, *, file: Path | None = None, results_dir: Path | None = None,
                **params: str) -> Options:
        file = file or self.pipeline_file
        environ = {**os.environ, "CONTAINERS_STORAGE_CONF": str(self.workdir / "storage.conf")}
        return Options(file=file, params=self.params(**params),
                       workspaces={"modules": self.workdir / "volumes" / "modules",
                                   "build-context": self.workdir / "volumes" / "build-context"},
                       tasks_dirs=pipeline.default_tasks_dirs(file) or [REPO / "tasks"],
                       image_commands=self.image_commands(),
                       namespace=NAMESPACE, name=name, results_dir=results_dir, environ=environ)

    def run(self, name: str, *, out: TextIO | None = None, **kwargs: Any) -> Outcome:
        assert self.sim is not None, "start() the demo first"
        return pipeline.execute(self.options(name, **kwargs), sim=self.sim, out=out or io.StringIO())

    # -- changing the world ---------------------------------------------------------------

    def upgrade_node(self, node: str, release: str) -> str:
        """Node `node` now runs the kernel of `release` (as after its reboot); returns that kernel."""
        assert self.sim is not None
        rhcos, kernel, _ = fixtures.RELEASES[release]
        obj = self.sim.get("v1", "Node", node)
        assert obj is not None, f"no node {node}"
        obj["status"]["nodeInfo"].update(kernelVersion=kernel, osImage=fixtures.os_image(rhcos))
        self.sim.put(obj)
        return kernel

    def registry_writes(self) -> list[str]:
        """Every write the registry has answered so far (PUT, POST, PATCH), in order."""
        if isinstance(self.registry, images.RegistryServer):
            self.registry.settle()
            return self.registry.writes_since(0)
        return list(self.registry.writes) if self.registry else []

    def applied(self) -> list[dict[str, Any]]:
        """The objects the pipeline's steps wrote through the API, as the cluster holds them now."""
        assert self.sim is not None
        seen: dict[Any, dict[str, Any]] = {}
        for record in self.sim.requests:
            if not record.wrote or record.subresource or not record.resource:
                continue
            body = record.body if isinstance(record.body, dict) else {}
            name = str(record.name or (body.get("metadata") or {}).get("name"))
            key = ((record.group or "", str(record.version), record.resource), record.namespace, name)
            current = self.sim.store.get(key)
            if current is not None:
                seen[key] = current
            else:
                seen.pop(key, None)
        return list(seen.values())

    def write_manifests(self, folder: Path) -> list[Path]:
        """applied() as YAML files, one per object, in the order they were first written."""
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        written = []
        for index, obj in enumerate(self.applied(), start=1):
            meta = obj["metadata"]
            name = f"{index:02d}-{obj['kind'].lower()}-{meta['name']}.yaml".replace(":", "-")
            tidy = {k: v for k, v in obj.items() if k != "status"}
            tidy["metadata"] = {k: v for k, v in meta.items() if k not in ("managedFields", "uid", "resourceVersion",
                                                                             "creationTimestamp", "generation")}
            (folder / name).write_text(yaml.safe_dump(tidy, sort_keys=False))
            written.append(folder / name)
        return written


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@contextlib.contextmanager
def _workdir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="cssr-demo-") as tmp:
        yield Path(tmp)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cssr_tasks.sim.demo", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out"), help="where the applied manifests and the "
                        "pipeline results go (default: out)")
    parser.add_argument("--workdir", type=Path, help="keep the registry, volumes and images here (default: a "
                        "temporary folder, removed at the end)")
    parser.add_argument("--without", action="append", choices=TOOLS, default=[],
                        help="use the stand-in even where the tool is installed (shows the degraded run)")
    parser.add_argument("--pipeline", type=Path, default=REPO / "pipelines" / "cssr-deploy.yaml",
                        help="the Pipeline to run (default: pipelines/cssr-deploy.yaml)")
    args = parser.parse_args(argv)
    out = out or sys.stdout
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        print("demo: the steps get their volumes at a pod's paths (/workspace/modules, /usr/lib/modules) in a "
              "private mount namespace, which needs root and unshare; run `sudo make demo`", file=sys.stderr)
        return 2
    tools = Tools.detect(args.without)
    started = time.monotonic()
    out.write("demo: pipelines/cssr-deploy.yaml against a simulated OpenShift (3 workers on 4.16, pool worker, "
              "Driver Toolkit, SR-IOV)\n")
    for line in tools.describe():
        out.write(f"demo: {line}\n")
    if not (tools.buildah and tools.registry and tools.headers):
        out.write("demo: stand-ins replace what is missing; `make deps` (scripts/install-system-deps) installs it\n")
    with _workdir(args.workdir) as workdir, Demo(workdir, tools, pipeline_file=args.pipeline) as demo:
        out.write(f"demo: registry {demo.host}, fake SSR API https://127.0.0.1:{demo.ssr.port if demo.ssr else 0}, "
                  f"ready in {time.monotonic() - started:.1f}s\n\n")
        outcome = pipeline.execute(demo.options("cssr-deploy-demo", results_dir=args.out / "results"),
                                   sim=demo.sim, out=out)
        written = demo.write_manifests(args.out / "manifests")
        out.write(f"\ndemo: {len(written)} applied object(s) in {args.out / 'manifests'}, pipeline results in "
                  f"{args.out / 'results'}\n")
    out.write(f"demo: {outcome.status} in {time.monotonic() - started:.1f}s\n")
    out.flush()
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main())
