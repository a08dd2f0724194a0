"""Realistic OpenShift objects for the simulated cluster: RHCOS nodes, pools, the Driver Toolkit.

Values follow what OpenShift 4.16/4.17 clusters report (nodeInfo with all ten fields, MCO
annotations, the `openshift/driver-toolkit` ImageStream with one tag per RHCOS version).
The Driver Toolkit's kernels are not in the API at all: released images carry no kernel label,
only /etc/driver-toolkit-release.json in their last layer (openshift/driver-toolkit's Dockerfile;
openshift-eng/ocp-build-data images/driver-toolkit.yml leaves the label build args empty), which
sim/images.py writes into the images it pushes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

# One OpenShift release: its RHCOS version, kernel, realtime kernel.
RELEASES = {
    "4.16": ("416.94.202410211619-0", "5.14.0-427.40.1.el9_4.x86_64", "5.14.0-427.40.1.el9_4.x86_64+rt"),
    "4.17": ("417.94.202411131433-0", "5.14.0-427.44.1.el9_4.x86_64", "5.14.0-427.44.1.el9_4.x86_64+rt"),
}
DTK_REPOSITORY = "quay.io/openshift-release-dev/ocp-v4.0-art-dev"


def digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


INTERNAL_DTK_REPOSITORY = "image-registry.openshift-image-registry.svc:5000/openshift/driver-toolkit"


def dtk_pullspec(rhcos: str, *, internal: bool = False) -> str:
    """The Driver Toolkit image of an RHCOS version, upstream (quay.io) or through the cluster's registry."""
    return f"{INTERNAL_DTK_REPOSITORY if internal else DTK_REPOSITORY}@{digest('driver-toolkit ' + rhcos)}"


def os_image(rhcos: str) -> str:
    """nodeInfo.osImage of an RHCOS node, as 4.16 reports it: no release codename after the version
    (KMM's kernel_dtk_reconciler_test.go has the older `... 411.86.202210072320-0 (Ootpa)`)."""
    return f"Red Hat Enterprise Linux CoreOS {rhcos}"


def rendered(pool: str, seed: str) -> str:
    return f"rendered-{pool}-{hashlib.sha256(seed.encode()).hexdigest()[:32]}"


def node(name: str, *, kernel: str, rhcos: str, role: str = "worker", labels: dict[str, str] | None = None,
         allocatable: dict[str, str] | None = None, config: str | None = None) -> dict[str, Any]:
    all_labels = {
        "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
        f"node-role.kubernetes.io/{role}": "", "node.openshift.io/os_id": "rhcos",
    }
    all_labels.update(labels or {})
    config = config or rendered(role, rhcos)
    resources = {"cpu": "31500m", "memory": "128401960Ki", "pods": "250", "ephemeral-storage": "430960981390",
                 "hugepages-1Gi": "0", "hugepages-2Mi": "0"}
    resources.update(allocatable or {})
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name, "labels": all_labels,
            "annotations": {
                "machineconfiguration.openshift.io/currentConfig": config,
                "machineconfiguration.openshift.io/desiredConfig": config,
                "machineconfiguration.openshift.io/state": "Done",
            },
        },
        "spec": {},
        "status": {
            "allocatable": resources, "capacity": dict(resources),
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": hashlib.md5(f"boot {name} {kernel}".encode()).hexdigest(),
                "containerRuntimeVersion": "cri-o://1.29.10-3.rhaos4.16.git6b8e8e0.el9",
                "kernelVersion": kernel,
                "kubeProxyVersion": "v1.29.10+67d3387",
                "kubeletVersion": "v1.29.10+67d3387",
                "machineID": hashlib.md5(f"machine {name}".encode()).hexdigest(),
                "operatingSystem": "linux",
                "osImage": os_image(rhcos),
                "systemUUID": hashlib.md5(f"uuid {name}".encode()).hexdigest(),
            },
        },
    }


def pool(name: str, *, machine_count: int, config: str, node_selector: dict[str, str] | None = None,
         updating: bool = False, target: str | None = None, updated_count: int | None = None,
         degraded: bool = False) -> dict[str, Any]:
    updated = machine_count if updated_count is None else updated_count

    def condition(kind: str, value: bool) -> dict[str, str]:
        return {"type": kind, "status": "True" if value else "False", "reason": "", "message": "",
                "lastTransitionTime": "2026-11-01T00:00:00Z"}

    return {
        "apiVersion": "machineconfiguration.openshift.io/v1", "kind": "MachineConfigPool",
        "metadata": {"name": name, "labels": {f"pools.operator.machineconfiguration.openshift.io/{name}": ""}},
        "spec": {
            "configuration": {"name": target or config},
            "machineConfigSelector": {"matchLabels": {"machineconfiguration.openshift.io/role": name}},
            "nodeSelector": {"matchLabels": node_selector or {f"node-role.kubernetes.io/{name}": ""}},
            "paused": False,
        },
        "status": {
            "configuration": {"name": config},
            "machineCount": machine_count, "readyMachineCount": updated, "updatedMachineCount": updated,
            "unavailableMachineCount": 0 if not updating else 1, "degradedMachineCount": 1 if degraded else 0,
            "observedGeneration": 2,
            "conditions": [
                condition("Updated", not updating and not degraded), condition("Updating", updating),
                condition("Degraded", degraded), condition("NodeDegraded", degraded),
                condition("RenderDegraded", False),
            ],
        },
    }


def driver_toolkit(releases: list[str], latest: str, *, repository: str | None = None,
                   digests: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The `openshift/driver-toolkit` ImageStream and its `latest` ImageStreamTag.

    By default the images are quay.io's and the cluster registry's (digests made up). With
    `repository` and `digests` (RHCOS version -> digest), they are images pushed there, as `make
    demo`'s and the tests' local registries hold them: the stream names that repository both upstream and
    as its own, so detect-kernel's pull specs name images that exist. The image objects carry no
    kernel label, as the released ones do not.
    """

    def image(rhcos: str) -> str:
        return digests[rhcos] if digests else digest("driver-toolkit " + rhcos)

    def pullspec(rhcos: str) -> str:
        return f"{repository}@{image(rhcos)}" if repository else dtk_pullspec(rhcos)

    tags = [RELEASES[r] for r in releases]
    rhcos_latest = RELEASES[latest][0]
    stream = {
        "apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
        "metadata": {"name": "driver-toolkit", "namespace": "openshift"},
        "spec": {"lookupPolicy": {"local": False}, "tags": [
            {"name": rhcos, "from": {"kind": "DockerImage", "name": pullspec(rhcos)},
             "importPolicy": {"scheduled": False}, "referencePolicy": {"type": "Source"}} for rhcos, _, _ in tags
        ] + [{"name": "latest", "from": {"kind": "DockerImage", "name": pullspec(rhcos_latest)},
              "referencePolicy": {"type": "Source"}}]},
        "status": {
            "dockerImageRepository": repository or INTERNAL_DTK_REPOSITORY,
            "tags": [{"tag": rhcos, "items": [{"dockerImageReference": pullspec(rhcos), "image": image(rhcos),
                                                "created": "2026-11-01T00:00:00Z", "generation": 2}]}
                     for rhcos, _, _ in tags]
                    + [{"tag": "latest", "items": [{"dockerImageReference": pullspec(rhcos_latest),
                                                     "image": image(rhcos_latest),
                                                     "created": "2026-11-01T00:00:00Z", "generation": 2}]}],
        },
    }
    latest_tag = {
        "apiVersion": "image.openshift.io/v1", "kind": "ImageStreamTag",
        "metadata": {"name": "driver-toolkit:latest", "namespace": "openshift"},
        "tag": {"name": "latest", "from": {"kind": "DockerImage", "name": pullspec(rhcos_latest)}},
        "image": {"metadata": {"name": image(rhcos_latest)}, "dockerImageReference": pullspec(rhcos_latest)},
    }
    return [stream, latest_tag]


def workers(count: int, release: str = "4.16", *, prefix: str = "worker", role: str = "worker",
            realtime: bool = False, **kwargs: Any) -> list[dict[str, Any]]:
    rhcos, kernel, rt = RELEASES[release]
    return [node(f"{prefix}-{i}", kernel=rt if realtime else kernel, rhcos=rhcos, role=role, **kwargs)
            for i in range(count)]


def default_cluster() -> list[dict[str, Any]]:
    """Three masters and three workers on 4.16, settled, with the Driver Toolkit ImageStream."""
    rhcos = RELEASES["4.16"][0]
    objects: list[dict[str, Any]] = []
    objects += workers(3, prefix="master", role="master")
    objects += workers(3, allocatable={"hugepages-2Mi": "16Gi", "openshift.io/ens6f0np0": "7",
                                       "openshift.io/ens6f1np1": "7"})
    objects.append(pool("master", machine_count=3, config=rendered("master", rhcos)))
    objects.append(pool("worker", machine_count=3, config=rendered("worker", rhcos)))
    objects += driver_toolkit(["4.16"], latest="4.16")
    return objects
