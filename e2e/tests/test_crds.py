"""The upstream CRDs (pinned in crds/go.mod, fetched by `make crds`) are served, and the real API
server enforces their structural schemas: wrong types are refused with 422, unknown fields pruned."""

from __future__ import annotations

import json
from typing import Any

import pytest
from e2e.harness import crds
from e2e.harness.layout import Layout

from cssr_tasks.cluster import Cluster, RetrySettings
from cssr_tasks.errors import ApiError
from cssr_tasks.log import Log

MCO = "machineconfiguration.openshift.io/v1"


def test_every_pinned_crd_is_established(kubectl: Any) -> None:
    wanted = {name for names in crds.files(crds.source_dir()).values() for name in names}
    served = json.loads(kubectl("get", "crd", "-o", "json").stdout)["items"]
    established = {c["metadata"]["name"] for c in served
                   if any(k["type"] == "Established" and k["status"] == "True" for k in c["status"]["conditions"])}
    assert wanted, "no CRDs in the cache"
    assert wanted <= established
    for name in ("machineconfigpools.machineconfiguration.openshift.io", "tasks.tekton.dev",
                 "sriovnetworknodepolicies.sriovnetwork.openshift.io",
                 "network-attachment-definitions.k8s.cni.cncf.io"):
        assert name in established


def pool(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": MCO, "kind": "MachineConfigPool", "metadata": {"name": name},
            "spec": {"machineConfigSelector": {"matchLabels": {"machineconfiguration.openshift.io/role": name}},
                     "nodeSelector": {"matchLabels": {f"node-role.kubernetes.io/{name}": ""}}, **spec}}


def test_schema_refuses_a_wrong_type_with_422(admin: Cluster) -> None:
    with pytest.raises(ApiError) as refused:
        admin.create(pool("e2e-typed", paused="yes please"))
    assert refused.value.status == 422
    assert "spec.paused" in str(refused.value)


def test_schema_prunes_unknown_fields(admin: Cluster) -> None:
    stored = admin.create(pool("e2e-pruned", inventedField="dropped"))
    assert "inventedField" not in stored["spec"]
    assert stored["spec"]["nodeSelector"] == {"matchLabels": {"node-role.kubernetes.io/e2e-pruned": ""}}
    admin.delete(MCO, "machineconfigpools", "e2e-pruned")


@pytest.mark.parametrize("spec", [{"paused": "yes please"}, {"inventedField": "x"}], ids=["wrong-type", "unknown"])
def test_server_side_apply_outside_the_schema_is_a_500(layout: Layout, spec: dict[str, Any]) -> None:
    # Kubernetes 1.34 answers an apply that does not fit the schema with 500 "failed to create typed
    # patch object" (kubernetes/kubernetes#139253, #122480), not 4xx: the suite's client, which
    # retries 5xx, tries such an apply again before it fails.
    once = Cluster.connect(str(layout.admin_kubeconfig), log=Log("e2e"), retry=RetrySettings(attempts=1))
    with pytest.raises(ApiError) as refused:
        once.apply(pool("e2e-applied", **spec), field_manager="e2e")
    assert refused.value.status == 500
    assert "failed to create typed patch object" in str(refused.value)
