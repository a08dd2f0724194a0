"""Fixtures of the real-cluster tests: the cluster `python -m e2e.harness up` started, its admin,
and ServiceAccounts that speak with their own tokens (TokenRequest), as a Task's pod would.

These tests need the running cluster; `make e2e` starts it. Without it they fail with one line
saying so, never skip: a skipped real-cluster test would look like a passing one in CI.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import suite_writes  # noqa: E402
import world  # noqa: E402
from e2e.harness import control_plane  # noqa: E402
from e2e.harness.layout import Layout, api_url  # noqa: E402

from cssr_tasks import manifests  # noqa: E402
from cssr_tasks.cluster import Cluster  # noqa: E402
from cssr_tasks.log import Log  # noqa: E402

# A namespace of this session's own, so that a test run on a cluster kept from an earlier run
# (E2E_KEEP=1) still makes a first install and a first apply.
SUITE_NAMESPACE = f"cssr-{int(time.time())}"
SUITE_ACCOUNT = "cssr-deploy"


@pytest.fixture(scope="session")
def layout() -> Layout:
    layout = Layout()
    ok, answer = control_plane.probes(layout)["kube-apiserver"]()
    if not ok:
        pytest.fail(f"no API server at {api_url()} ({answer.strip()[:200]}); start it with `make e2e` "
                    "or `python -m e2e.harness up`", pytrace=False)
    return layout


@pytest.fixture(scope="session")
def kubectl(layout: Layout) -> Any:
    def run(*args: str, kubeconfig: Path | None = None, check: bool = True,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(layout.binary("kubectl")), f"--kubeconfig={kubeconfig or layout.admin_kubeconfig}",
                               *args], capture_output=True, text=True, input=stdin, check=False)
        if check and proc.returncode:
            raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc
    return run


@pytest.fixture(scope="session")
def log() -> Log:
    return Log("e2e")


@pytest.fixture(scope="session")
def admin(layout: Layout, log: Log) -> Cluster:
    return Cluster.connect(str(layout.admin_kubeconfig), log=log)


def token_kubeconfig(layout: Layout, admin: Cluster, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig holding a fresh token of the ServiceAccount, from the TokenRequest API."""
    answer = admin.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
                           body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                 "spec": {"expirationSeconds": 3600}}, what=f"token of {namespace}/{account}")
    ca = base64.b64encode((layout.pki / "ca.crt").read_bytes()).decode()
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": account,
        "clusters": [{"name": "e2e", "cluster": {"server": api_url(), "certificate-authority-data": ca}}],
        "users": [{"name": account, "user": {"token": answer["status"]["token"]}}],
        "contexts": [{"name": account, "context": {"cluster": "e2e", "user": account, "namespace": namespace}}],
    }))
    return path


def wait_for(what: str, check: Any, timeout: float = 60.0, interval: float = 0.5) -> Any:
    """check()'s first truthy value; fails naming `what` when none came within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"{what} not there after {timeout:.0f} s"
        time.sleep(interval)
    return value


RBAC_KINDS = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
# deploy/ also holds the tasks image's BuildConfig and ImageStream: OpenShift APIs without a CRD here.
NOT_SERVED = {"BuildConfig", "ImageStream"}


@pytest.fixture(scope="session")
def suite_rbac(layout: Layout, admin: Cluster, kubectl: Any,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """deploy/ installed as users install it (kustomize fills in the subjects' namespace): the RBAC
    and the modules claim. Returns the pipeline account's kubeconfig."""
    overlay = tmp_path_factory.mktemp("overlay")
    # A user's overlay that installs deploy/ in another namespace, as the README tells.
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "namespace": SUITE_NAMESPACE, "resources": [os.path.relpath(ROOT / "deploy", overlay)]}))
    rendered = [d for d in yaml.safe_load_all(kubectl("kustomize", str(overlay)).stdout) if d]
    rbac = [d for d in rendered if d["kind"] not in NOT_SERVED]
    assert RBAC_KINDS | {"PersistentVolumeClaim"} == {d["kind"] for d in rbac}
    kubectl("create", "namespace", SUITE_NAMESPACE)
    kubectl("apply", "--server-side", "--field-manager=e2e-installer", "-f", "-", stdin=yaml.safe_dump_all(rbac))
    yield token_kubeconfig(layout, admin, SUITE_NAMESPACE, SUITE_ACCOUNT,
                           tmp_path_factory.mktemp("sa") / "cssr-deploy.kubeconfig")
    kubectl("delete", "namespace", SUITE_NAMESPACE, "--wait=false", check=False)


@pytest.fixture(scope="session")
def pipeline_account(suite_rbac: Path, log: Log) -> Cluster:
    return Cluster.connect(str(suite_rbac), log=log)


@pytest.fixture(scope="session")
def first_apply(admin: Cluster, pipeline_account: Cluster, log: Log) -> list[manifests.Manifest]:
    """The world made by the admin, then everything apply-manifests writes, as the pipeline account."""
    world.make(admin)
    suite_writes.apply_all(suite_writes.params(SUITE_NAMESPACE), pipeline_account, log)
    return manifests.render(suite_writes.params(SUITE_NAMESPACE))


def audit_events(layout: Layout, *, user: str, since: str) -> list[dict[str, Any]]:
    """The audit log's events of one user at or after an RFC 3339 time (the log spans cluster restarts)."""
    events = []
    for path in sorted(layout.logs.glob("audit*.log*")):
        for line in path.read_text(errors="replace").splitlines():
            event = json.loads(line)
            if event.get("user", {}).get("username") == user and event.get("stageTimestamp", "") >= since:
                events.append(event)
    return events


@pytest.fixture
def namespace(kubectl: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of the test's own, deleted afterwards (without waiting for it)."""
    # The digest of the full name tells apart parametrized cases made in the same second.
    digest = hashlib.sha256(request.node.name.encode()).hexdigest()[:6]
    name = f"e2e-{int(time.time())}-{digest}-" + request.node.name.lower().replace("_", "-")[:30].strip("-")
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)
