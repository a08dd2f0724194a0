"""The `cssr-modules` DaemonSet of modules-storage=hostpath, as data (templates/modules-daemonset.yaml).

build-kmods applies it when the cluster has no ReadWriteMany storage: one pod per target node lays
out the kernel trees, builds, commits, indexes and verifies the modules on the node's /mnt/cssr, by
the same programs and under the same build lock as the Task's steps on the claim. The pod template
holds nothing but the kernel set and the build settings, so that an unchanged set re-applies the
same object (no new generation, no pod restarted) and a new kernel rolls the pods once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from . import kernels as kernel_sets
from .manifests import HOST_MODULES_PATH, skeleton

NAME = "cssr-modules"
HOST_PATH = HOST_MODULES_PATH
MODULES_DIR = f"{HOST_PATH}/modules"
KERNEL_SET_ANNOTATION = "cssr.juniper.net/kernel-set-id"
# The DaemonSet controller labels each pod with its template's generation (pkg/controller/daemon,
# extensions.DaemonSetTemplateGenerationKey), which tells this run's pods from a rollout's old ones.
GENERATION_LABEL = "pod-template-generation"
SELECTOR = {"app": NAME}


@dataclass(frozen=True)
class Settings:
    """What the pods need: the kernel set, the images, and the build params as build-kmods takes them."""

    namespace: str
    node_selector: dict[str, str]
    kernels: tuple[str, ...]
    modules: tuple[str, ...]
    init_image: str
    kmod_builder_image: str
    tasks_image: str
    builder_command: str
    builder_output: str
    builder_root: str
    lock_timeout: int
    stale_after: int


def render(s: Settings) -> dict[str, Any]:
    ds = skeleton("modules-daemonset.yaml")
    ds["metadata"]["namespace"] = s.namespace
    template = ds["spec"]["template"]
    template["metadata"]["annotations"][KERNEL_SET_ANNOTATION] = kernel_sets.kernel_set_id(list(s.kernels))
    pod = template["spec"]
    if s.node_selector:
        pod["nodeSelector"] = dict(s.node_selector)
    else:
        del pod["nodeSelector"]
    # the router's tolerations: these pods go wherever the router may run
    pod["tolerations"] = skeleton("statefulset.yaml")["spec"]["template"]["spec"]["tolerations"]
    env = [{"name": name, "value": value} for name, value in (
        ("PARAM_KERNELS", json.dumps(list(s.kernels))),
        ("PARAM_MODULES", ",".join(s.modules)),
        ("PARAM_MODULES_DIR", MODULES_DIR),
        ("PARAM_KERNEL_TREE_DIR", HOST_PATH),
        ("PARAM_BUILDER_COMMAND", s.builder_command),
        ("PARAM_BUILDER_OUTPUT", s.builder_output),
        ("PARAM_BUILDER_ROOT", s.builder_root),
        ("PARAM_LOCK_TIMEOUT", str(s.lock_timeout)),
        ("PARAM_STALE_AFTER", str(s.stale_after)),
    )]
    images = {"layout": s.init_image, "build": s.kmod_builder_image}
    for container in pod["initContainers"]:
        container["image"] = images.get(container["name"], s.tasks_image)
        if "env" in container:
            container["env"] = [dict(e) for e in env]
    layout = pod["initContainers"][0]
    layout["args"] += list(s.kernels)  # $1... of its script; the kernels were checked by build-kmods
    pod["containers"][0]["image"] = s.tasks_image
    ds["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "cssr-deploy"
    return ds
