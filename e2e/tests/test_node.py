"""Stage C, the node: a kubelet built from the pinned Kubernetes registers a Ready Node whose pods
run in real containers (Debian's containerd and runc), get addresses of the CNI bridge, and reach
the API server through the `kubernetes` Service (kube-proxy's iptables rules), with the
ServiceAccount token the kubelet mounted, as Tekton's step containers do (in-cluster config).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from e2e.harness import containerd, node_images
from e2e.harness.build import COMPONENTS, pinned_version
from e2e.harness.layout import FIRST_SERVICE_IP, NODE_NAME, POD_CIDR, Layout

from cssr_tasks.cluster import Cluster

TERMINAL = ("Succeeded", "Failed")


def busybox_ref() -> str:
    return node_images.busybox(Layout()).ref


def run_pod(admin: Cluster, namespace: str, name: str, script: str, timeout: float = 120.0) -> dict[str, Any]:
    """A busybox pod that runs `script` once; returns the pod once it has ended."""
    admin.create({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "main", "image": busybox_ref(), "imagePullPolicy": "Never",
                                 "command": ["/bin/busybox", "sh", "-c", script]}]},
    })
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        pod = admin.get("v1", "pods", name, namespace)
        if (pod.get("status") or {}).get("phase") in TERMINAL:
            return pod
        time.sleep(0.5)
    raise AssertionError(f"pod {namespace}/{name} not ended after {timeout:.0f} s: {pod.get('status')}")


def logs(kubectl: Any, namespace: str, name: str) -> str:
    # Through the API server to the kubelet's own server (authenticated, authorized by webhook).
    return str(kubectl("logs", "-n", namespace, name).stdout)


def test_node_is_ready_with_the_pinned_kubelet_and_containerd(admin: Cluster) -> None:
    node = admin.get("v1", "nodes", NODE_NAME)
    conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert conditions["Ready"] == "True", node["status"]["conditions"]
    info = node["status"]["nodeInfo"]
    kubernetes = next(c.module_dir for c in COMPONENTS if c.name == "kubelet")
    assert info["kubeletVersion"] == pinned_version(kubernetes, "k8s.io/kubernetes")
    assert info["containerRuntimeVersion"].startswith("containerd://1.")
    assert not any(t.get("effect") == "NoSchedule" for t in node["spec"].get("taints") or [])


def test_a_pod_runs_to_completion_in_a_real_container(admin: Cluster, kubectl: Any, namespace: str,
                                                      layout: Layout) -> None:
    pod = run_pod(admin, namespace, "hello", "echo hello from $(hostname); /bin/busybox ip -4 -o addr show eth0")
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    [status] = pod["status"]["containerStatuses"]
    assert status["containerID"].startswith("containerd://")
    assert status["state"]["terminated"]["exitCode"] == 0
    prefix = POD_CIDR.rsplit(".", 2)[0]
    assert pod["status"]["podIP"].startswith(prefix + "."), pod["status"].get("podIP")
    text = logs(kubectl, namespace, "hello")
    assert "hello from hello" in text and f"inet {pod['status']['podIP']}/" in text
    # containerd itself knows the container the API reports, by the same ID.
    seen = json.loads(containerd.crictl(layout, "ps", "-a", "-o", "json").stdout)["containers"]
    assert status["containerID"].removeprefix("containerd://") in {c["id"] for c in seen}


def test_a_failing_container_reports_its_exit_code(admin: Cluster, namespace: str) -> None:
    pod = run_pod(admin, namespace, "fails", "exit 3")
    assert pod["status"]["phase"] == "Failed"
    [status] = pod["status"]["containerStatuses"]
    assert status["state"]["terminated"]["exitCode"] == 3


def test_a_pod_reaches_the_api_server_through_the_kubernetes_service(admin: Cluster, kubectl: Any,
                                                                     namespace: str) -> None:
    # In-cluster config as client-go reads it: the Service's env and the mounted token. The
    # SelfSubjectReview answers who the API server took the caller for: the pod's own account.
    script = (
        'echo "host=$KUBERNETES_SERVICE_HOST port=$KUBERNETES_SERVICE_PORT"; '
        "token=$(cat /var/run/secrets/kubernetes.io/serviceaccount/token); "
        "/bin/busybox wget -q -O - --no-check-certificate --header 'Content-Type: application/json' "
        '--header "Authorization: Bearer $token" '
        "--post-data '{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"SelfSubjectReview\"}' "
        "https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/apis/authentication.k8s.io/v1/selfsubjectreviews"
    )
    pod = run_pod(admin, namespace, "in-cluster", script)
    text = logs(kubectl, namespace, "in-cluster")
    assert pod["status"]["phase"] == "Succeeded", text
    first, _, body = text.partition("\n")
    assert first == f"host={FIRST_SERVICE_IP} port=443"
    review = json.loads(body)
    assert review["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:default"


@pytest.mark.parametrize("image", ["pause", "busybox"])
def test_node_images_are_built_here_and_pinned_to_their_sources(layout: Layout, image: str) -> None:
    built = getattr(node_images, image)(layout)
    assert not built.built, "a second build with nothing changed rebuilt the image"
    listed = json.loads(containerd.crictl(layout, "images", "-o", "json").stdout)["images"]
    assert any(built.ref in i["repoTags"] for i in listed), f"{built.ref} not in containerd's k8s.io namespace"
