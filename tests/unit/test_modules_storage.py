"""modules-storage=hostpath, offline: the router's hostPath volume, and the cssr-modules DaemonSet's render.

The StatefulSet differs from the pvc one in the `modules` volume alone and no claim is rendered; the
DaemonSet validates against the Kubernetes schema, depends on the kernel set only, and its
containers give build-kmods and verify-kmods params they accept, on the node's /mnt/cssr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cssr_tasks import build_kmods, manifests, modules_daemonset, verify_kmods
from cssr_tasks.errors import ConfigError
from cssr_tasks.manifests import Params

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lint"))
from schemas import validate_object  # the lint gate's validator, shared

K1, K2 = "5.14.0-427.40.1.el9_4.x86_64", "5.14.0-427.42.1.el9_4.x86_64"


def params(**env: str) -> Params:
    return Params.from_env({f"PARAM_{k.upper().replace('-', '_')}": v for k, v in env.items()})


def settings(*kernels: str, **changes: object) -> modules_daemonset.Settings:
    values: dict[str, object] = dict(
        namespace="cssr", node_selector={"node-role.kubernetes.io/worker": ""}, kernels=kernels or (K1,),
        modules=("igb_uio", "rte_kni"), init_image="registry.example/cssr/cssr-init:set1",
        kmod_builder_image="quay.io/juniper-128t/kmod-builder-51:5.1.2-1",
        tasks_image="registry.example/cssr/cssr-tasks:0.1.0",
        builder_command="/usr/bin/dpdk_build.sh /usr/share/128technology/dpdk/src",
        builder_output="{builder_root}/usr/lib/modules/{kernel}/dpdk", builder_root="/", lock_timeout=1800,
        stale_after=600)
    values.update(changes)
    return modules_daemonset.Settings(**values)  # type: ignore[arg-type]


def containers(ds: dict) -> dict[str, dict]:
    pod = ds["spec"]["template"]["spec"]
    return {c["name"]: c for c in pod["initContainers"] + pod["containers"]}


def test_hostpath_router_mounts_the_nodes_folder_and_no_claim_is_rendered():
    pvc, hostpath = manifests.render(params()), manifests.render(params(**{"modules-storage": "hostpath"}))
    assert [m.kind for m in pvc if m.kind == "PersistentVolumeClaim"] == ["PersistentVolumeClaim"]
    assert not [m for m in hostpath if m.kind == "PersistentVolumeClaim"]
    [old] = [m.obj for m in pvc if m.kind == "StatefulSet"]
    [new] = [m.obj for m in hostpath if m.kind == "StatefulSet"]
    volumes = new["spec"]["template"]["spec"]["volumes"]
    assert volumes[0] == {"name": "modules", "hostPath": {"path": "/mnt/cssr", "type": "DirectoryOrCreate"}}
    volumes[0] = {"name": "modules", "persistentVolumeClaim": {"claimName": "modules"}}
    assert new == old  # the same mounts, subPaths and init containers otherwise
    assert all(validate_object(m.obj) == [] for m in hostpath)


def test_a_bad_modules_storage_is_named():
    with pytest.raises(ConfigError, match="param modules-storage='rwx' must be one of pvc, hostpath"):
        params(**{"modules-storage": "rwx"})


def test_the_daemonset_validates_and_runs_each_step_on_the_nodes_folder():
    ds = modules_daemonset.render(settings())
    assert validate_object(ds) == []
    pod = ds["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["layout", "prepare", "build", "commit", "verify"]
    images = {name: c["image"] for name, c in containers(ds).items()}
    assert images == {"layout": "registry.example/cssr/cssr-init:set1",
                      "build": "quay.io/juniper-128t/kmod-builder-51:5.1.2-1",
                      **{n: "registry.example/cssr/cssr-tasks:0.1.0" for n in ("prepare", "commit", "verify", "ready")}}
    assert pod["volumes"][0] == {"name": "host-modules", "hostPath": {"path": "/mnt/cssr", "type": "DirectoryOrCreate"}}
    router = manifests.render(params())[-1].obj["spec"]["template"]["spec"]
    assert pod["tolerations"] == router["tolerations"]
    assert pod["nodeSelector"] == {"node-role.kubernetes.io/worker": ""}
    assert pod["serviceAccountName"] == "privileged" and pod["automountServiceAccountToken"] is False
    # each result file a tasks-image container writes is its termination message, which build-kmods reads
    for name, result in (("commit", "built-kernels"), ("verify", "modules")):
        container = containers(ds)[name]
        results_dir = container["command"][container["command"].index("--results-dir") + 1]
        assert container["terminationMessagePath"] == f"{results_dir}/{result}"
        assert {"name": "results", "mountPath": results_dir} in container["volumeMounts"]


def test_the_containers_env_is_what_build_kmods_and_verify_kmods_accept():
    ds = modules_daemonset.render(settings(K1, K2))
    env = {e["name"]: e["value"] for e in containers(ds)["prepare"]["env"]}
    built = build_kmods.Params.from_env(env)
    assert (built.modules_dir, built.kernel_tree_dir, built.kernels) == ("/mnt/cssr/modules", "/mnt/cssr", (K1, K2))
    assert built.modules_storage == "pvc"  # on the node, build-kmods works on the volume it is given
    assert built.builder_command == ("/usr/bin/dpdk_build.sh", "/usr/share/128technology/dpdk/src")
    checked = verify_kmods.Params.from_env({e["name"]: e["value"] for e in containers(ds)["verify"]["env"]})
    assert (checked.modules_dir, checked.kernels, checked.modules_storage) == ("/mnt/cssr/modules", (K1, K2), "pvc")


def test_the_template_depends_on_the_kernel_set_only():
    assert modules_daemonset.render(settings(K1)) == modules_daemonset.render(settings(K1))
    one, two = modules_daemonset.render(settings(K1)), modules_daemonset.render(settings(K1, K2))
    annotation = modules_daemonset.KERNEL_SET_ANNOTATION
    assert one["spec"]["template"]["metadata"]["annotations"][annotation] != \
        two["spec"]["template"]["metadata"]["annotations"][annotation]
    assert containers(two)["layout"]["args"][1:] == ["layout", K1, K2]
    assert json.loads({e["name"]: e["value"] for e in containers(two)["commit"]["env"]}["PARAM_KERNELS"]) == [K1, K2]


def test_the_layout_script_runs_cssr_init_once_per_kernel_on_the_nodes_folder(tmp_path):
    layout = containers(modules_daemonset.render(settings(K1, K2)))["layout"]
    fake = tmp_path / "bin" / "cssr-init"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$CSSR_KERNEL $CSSR_VOLUME $CSSR_MODULES_VOLUME" >> {tmp_path}/calls\n')
    fake.chmod(0o755)
    argv = [*layout["command"], *layout["args"]]
    done = subprocess.run(argv, env={"PATH": f"{fake.parent}:{os.environ['PATH']}"}, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "calls").read_text().splitlines() == [f"{K1} /mnt/cssr /mnt/cssr", f"{K2} /mnt/cssr /mnt/cssr"]
