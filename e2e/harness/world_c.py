"""Stage C's OpenShift world for the pipeline runs: what cssr-deploy reads and the operators write,
on a cluster whose only real node cannot load kernel modules.

The real node (cssr-e2e-node) runs kernel 6.18 built without module support (no /proc/modules)
and no kernel-devel for it exists here: no DPDK module can ever be built for it. So the nodes the
pipeline targets are kubelet-less stand-in Node objects, `rhcos-standin-<i>`, labelled as the
nodes of an OpenShift `worker-cnf` pool and reporting, as their kernel, RHCOS 4.17's kernel of
e2e/kernels.txt: Debian's headers installed on this machine (a real kbuild tree; kernel_trees.py). They are tainted
NoSchedule (TAINT): every TaskRun pod lands on the real node and runs in real containers; the
router pods, which must run on the target nodes, stay Pending (there is no kubelet to run them).

- Nodes: modelled on cssr_tasks.sim.fixtures.node (nodeInfo's ten fields of an RHCOS 4.17 node,
  MCO annotations), with the Debian kernel; kept Ready by operators.NodeLeases.
- MachineConfigPool `worker-cnf` (the real CRD, Stage A): status as the MCO writes a settled pool
  (fixtures.pool).
- ImageStream openshift/driver-toolkit: OpenShift serves image.openshift.io from its aggregated
  openshift-apiserver; no CRD of it exists upstream. IMAGESTREAM_CRD is a stand-in CRD (schema
  open) so that detect-kernel's GET of the stream is served; the stream is fixtures.driver_toolkit's
  shape, naming the DTK stand-in image by digest in the local registry (status.dockerImageRepository,
  which detect-kernel's `internal` dtk-source uses, as the cluster registry's name would be).
- The DTK stand-in image of a release (standin/driver-toolkit:<RHCOS version>):
  cssr_tasks.sim.images.fake_dtk_rootfs with the real Debian trees of the release's kernel and
  realtime kernel, FROM scratch, /etc/driver-toolkit-release.json alone in the last layer.
- The buildah stand-in (standin/buildah): the Task's default buildah image is UBI's, unreachable
  here; the e2e install patches that param default (the only change to the suite's objects).
- SriovNetworkNodeStates: fixtures of the SR-IOV config daemon (sim.workloads.node_state);
  operators.SriovNetworks makes the NetworkAttachmentDefinition of each SriovNetwork.
- PersistentVolumes: no provisioner runs here; hostPath folders under .cache/e2e/pv on the real
  node (RWX for the modules claim, pre-bound to it; RWO for each run's build-context claim).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cssr_tasks.sim import fixtures, kmod_standin, workloads
from cssr_tasks.sim import images as sim_images

from . import kernel_trees, registry, tasks_image
from .image_build import KEY_LABEL, Buildah, content_key, ensure
from .layout import CACHE, E2E, NODE_IP, REGISTRY_PORT, Layout

POOL = "worker-cnf"
ROLE_LABEL = f"node-role.kubernetes.io/{POOL}"
NODE_SELECTOR = f"{ROLE_LABEL}="
STANDIN_PREFIX = "rhcos-standin"
TAINT = {"key": "cssr-e2e/no-kubelet", "value": "stand-in", "effect": "NoSchedule"}
# The release of Stage C's nodes: 4.17, whose kernel is also the target of Stage D's upgrade from 4.16.
RELEASE = "4.17"
# The address pods reach the local registry at (the host's end of the node link); containerd,
# in the host's network namespace, reaches the same listener.
POD_REGISTRY = f"{NODE_IP}:{REGISTRY_PORT}"
DTK_REPOSITORY = "standin/driver-toolkit"
BUILDAH_CONTAINERFILE = E2E / "images" / "buildah-standin" / "Containerfile"
PV_ROOT = CACHE / "pv"
IMAGE_API = "image.openshift.io/v1"


def kernel() -> str:
    return kernel_trees.releases()[RELEASE][0]


def rhcos(release: str = RELEASE) -> str:
    return fixtures.RELEASES[release][0]


# -- images ---------------------------------------------------------------------------------------

def dtk_ref(release: str = RELEASE) -> str:
    return f"{registry.ADDRESS}/{DTK_REPOSITORY}:{rhcos(release)}"


def dtk_image(layout: Layout, buildah: Buildah, release: str = RELEASE) -> dict[str, Any]:
    """The Driver Toolkit stand-in of an RHCOS release: the trees of its kernel and its realtime
    kernel (the real image carries both: kernel-devel and kernel-rt-devel), pushed by key."""
    kernel, rt_kernel = kernel_trees.releases()[release]
    headers, rt_headers = kernel_trees.headers(kernel), kernel_trees.headers(rt_kernel)
    key = content_key("dtk-standin", kernel, rt_kernel, Path(sim_images.__file__), Path(kmod_standin.__file__))
    ref = dtk_ref(release)

    def make() -> None:
        with tempfile.TemporaryDirectory(dir=layout.images) as work:
            rootfs = Path(work) / "rootfs"
            top = sim_images.fake_dtk_rootfs(rootfs, kernel, headers=headers, rt_kernel=rt_kernel,
                                             rt_headers=rt_headers)
            lines = ["FROM scratch", f"COPY {rootfs.name}/ /", f"COPY {top.name}/ /",
                     'LABEL org.cssr-deploy.stand-in="OpenShift Driver Toolkit: Debian kernel headers"']
            (Path(work) / "Containerfile").write_text("\n".join(lines) + "\n")
            # One layer per COPY, as the real image's build makes them: the release file alone on top.
            buildah("bud", "--isolation", "chroot", "--layers", "--label", f"{KEY_LABEL}={key}",
                    "-f", str(Path(work) / "Containerfile"), "-t", ref, work, nice=True)

    return ensure(layout, buildah, ref, key, make)


def buildah_ref() -> str:
    return f"{registry.ADDRESS}/standin/buildah:{tasks_image.SUITE}"


def buildah_image(layout: Layout, buildah: Buildah) -> dict[str, Any]:
    key = content_key(BUILDAH_CONTAINERFILE, tasks_image.debian_key())

    def make() -> None:
        base_ref, _ = tasks_image.debian_base(layout, buildah)
        context = Path(tempfile.mkdtemp(dir=layout.images))
        try:
            buildah.bud(buildah_ref(), key, BUILDAH_CONTAINERFILE, context, {"BASE": base_ref})
        finally:
            shutil.rmtree(context)

    return ensure(layout, buildah, buildah_ref(), key, make)


def images(layout: Layout) -> dict[str, Any]:
    buildah = Buildah(layout)
    return {"standin/driver-toolkit": dtk_image(layout, buildah), "standin/buildah": buildah_image(layout, buildah)}


def for_pods(ref_or_digest: str, repository: str) -> str:
    """`<pod registry>/<repository>@<digest>` of a pushed image, the name pods and buildah use."""
    return f"{POD_REGISTRY}/{repository}@{ref_or_digest}"


# -- objects --------------------------------------------------------------------------------------

IMAGESTREAM_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "imagestreams.image.openshift.io",
                 "annotations": {"cssr-e2e/stand-in": "OpenShift serves this API from openshift-apiserver "
                                                      "(aggregated), not from a CRD"}},
    "spec": {"group": "image.openshift.io", "scope": "Namespaced",
             "names": {"plural": "imagestreams", "singular": "imagestream", "kind": "ImageStream",
                       "listKind": "ImageStreamList", "shortNames": ["is"]},
             "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {"type": "object",
                                                          "x-kubernetes-preserve-unknown-fields": True}}}]},
}


def standin_nodes(count: int) -> list[dict[str, Any]]:
    """kubelet-less Nodes of an RHCOS 4.17 worker-cnf pool, reporting its Debian kernel."""
    nodes = []
    for i in range(count):
        name = f"{STANDIN_PREFIX}-{i}"
        # The role label of the pool only, not node-role.kubernetes.io/worker as well (as OpenShift's
        # worker-cnf nodes carry): Stage A's world has pool worker selecting that label, and
        # apply-manifests rightly refuses a pool that holds only some of its target nodes.
        node = fixtures.node(name, kernel=kernel(), rhcos=rhcos(), role=POOL,
                             allocatable={"hugepages-2Mi": "16Gi", "openshift.io/ens6f0np0": "7",
                                          "openshift.io/ens6f1np1": "7"},
                             config=fixtures.rendered(POOL, rhcos()))
        node["metadata"]["annotations"]["cssr-e2e/stand-in"] = "no kubelet: a Node object for the pipeline to target"
        node["spec"] = {"taints": [TAINT]}
        nodes.append(node)
    return nodes


def pool(count: int) -> dict[str, Any]:
    return fixtures.pool(POOL, machine_count=count, config=fixtures.rendered(POOL, rhcos()),
                         node_selector={ROLE_LABEL: ""})


def driver_toolkit(digests: str | Mapping[str, str], latest: str = RELEASE) -> list[dict[str, Any]]:
    """The openshift/driver-toolkit ImageStream (fixtures.driver_toolkit's shape) naming the DTK
    stand-ins by digest: `digests` maps releases ("4.16") to their image's digest (a str is RELEASE's
    alone, Stage C's world); `latest` is the release the CVO points `latest` at (it moves at an upgrade)."""
    by_release = {RELEASE: digests} if isinstance(digests, str) else dict(digests)
    stream, _ = fixtures.driver_toolkit(list(by_release), latest=latest, repository=f"{POD_REGISTRY}/{DTK_REPOSITORY}",
                                       digests={rhcos(r): d for r, d in by_release.items()})
    return [stream]


def sriov_states(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [workloads.node_state(n["metadata"]["name"], workloads.DEFAULT_NICS) for n in nodes]


def folder(name: str) -> Path:
    """A PV's hostPath folder, writable by any user: a hostPath volume ignores the pod's fsGroup,
    by which OpenShift's storage gives the Tasks' non-root steps (random UID, group 0) their claim."""
    path = PV_ROOT / name
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


def modules_volume(namespace: str) -> dict[str, Any]:
    """A hostPath PV pre-bound to the namespace's modules claim (class and size of deploy/modules-pvc.yaml)."""
    return _bound_volume(namespace, "modules", "5Gi", "ReadWriteMany")


def data_volume(namespace: str) -> dict[str, Any]:
    """A hostPath PV pre-bound to router pod 0's data claim (the StatefulSet's volumeClaimTemplate:
    RWO 512Mi of data-storage-class), so that the pod's only reason to stay Pending is its node."""
    return _bound_volume(namespace, "cssr-data-cssr-0", "512Mi", "ReadWriteOnce")


def _bound_volume(namespace: str, claim: str, size: str, mode: str) -> dict[str, Any]:
    path = folder(f"{namespace}-{claim}")
    return {"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": f"e2e-{namespace}-{claim}", "labels": {"cssr-e2e/pv": namespace}},
            "spec": {"capacity": {"storage": size}, "accessModes": [mode],
                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "ocs-storagecluster-cephfs",
                     "claimRef": {"namespace": namespace, "name": claim},
                     "hostPath": {"path": str(path), "type": "Directory"}}}


def scratch_volume(namespace: str, run: str) -> dict[str, Any]:
    """An RWO PV of no class, for the run's build-context claim (volumeClaimTemplate, no class: no
    default StorageClass exists, so the claim binds a class-less volume)."""
    path = folder(f"{namespace}-{run}-build-context")
    return {"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": f"e2e-{namespace}-{run}-bc", "labels": {"cssr-e2e/pv": namespace}},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                     "hostPath": {"path": str(path), "type": "Directory"}}}
