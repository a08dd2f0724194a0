"""apply-manifests' writes on the real API server, made with the pipeline ServiceAccount's own
token and the real CRDs: server-side apply, managedFields, a no-op re-apply, conflicts with
another field manager, and the 422 a real server returns for changed StatefulSet claim templates.

The readiness gates and the rollout need the operators and a kubelet (Stage C); here the task's
own functions run up to them: check_cluster, apply_one per object, apply_statefulset.
"""

from __future__ import annotations

import copy

import pytest
from suite_writes import apply_all, live, params, statefulset

from cssr_tasks import apply_manifests, manifests
from cssr_tasks.cluster import Cluster
from cssr_tasks.errors import ApiError, Conflict
from cssr_tasks.log import Log

from conftest import SUITE_NAMESPACE


def test_pipeline_account_applies_every_object(admin: Cluster, first_apply: list[manifests.Manifest]) -> None:
    kinds = {m.kind for m in first_apply}
    assert {"MachineConfig", "Namespace", "SriovNetworkNodePolicy", "NetworkAttachmentDefinition",
            "PersistentVolumeClaim", "StatefulSet"} <= kinds
    for manifest in first_apply:
        entries = live(admin, manifest)["metadata"]["managedFields"]
        ours = [e for e in entries if e["manager"] == "cssr-deploy"]
        if manifest.kind == "PersistentVolumeClaim":
            # The install made the claim; the task only looks it up, so it owns none of its fields.
            assert ours == [], f"{manifest}: {entries}"
        else:
            assert [e["operation"] for e in ours] == ["Apply"], f"{manifest}: {entries}"


def written(admin: Cluster, manifest: manifests.Manifest) -> tuple[object, list[tuple[object, ...]]]:
    """What a write by the suite moves: the generation and the suite's managedFields entries (the API
    server moves an entry's time only when an apply changed a field). Not resourceVersion: the
    StatefulSet controller writes the status on its own schedule, in a race with the test."""
    meta = live(admin, manifest)["metadata"]
    return meta.get("generation"), [(e.get("operation"), e.get("subresource", ""), e.get("time"))
                                    for e in meta.get("managedFields") or [] if e.get("manager") == "cssr-deploy"]


def test_second_apply_changes_nothing(admin: Cluster, pipeline_account: Cluster, log: Log,
                                      first_apply: list[manifests.Manifest]) -> None:
    before = {str(m): written(admin, m) for m in first_apply}
    changed = apply_all(params(SUITE_NAMESPACE), pipeline_account, log)
    after = {str(m): written(admin, m) for m in first_apply}
    assert not any(changed)
    assert after == before


def test_changed_claim_templates_are_refused_by_the_server_and_kept_by_the_task(
        admin: Cluster, pipeline_account: Cluster, log: Log, first_apply: list[manifests.Manifest]) -> None:
    bigger = params(SUITE_NAMESPACE, **{"data-size": "1Gi"})
    wanted = next(m for m in manifests.render(bigger) if m.kind == "StatefulSet")
    with pytest.raises(ApiError) as refused:
        pipeline_account.apply(wanted.obj)
    assert refused.value.status == 422
    assert "volumeClaimTemplates" in str(refused.value) or "Forbidden" in str(refused.value)

    apply_manifests.apply_statefulset(wanted, pipeline_account, log)
    templates = admin.get(*statefulset(SUITE_NAMESPACE))["spec"]["volumeClaimTemplates"]
    assert [t["spec"]["resources"]["requests"]["storage"] for t in templates] == ["512Mi"]


def test_a_field_of_another_manager_conflicts_unless_forced(
        admin: Cluster, pipeline_account: Cluster, log: Log, first_apply: list[manifests.Manifest]) -> None:
    sts = next(m for m in first_apply if m.kind == "StatefulSet")
    admin.apply({"apiVersion": "apps/v1", "kind": "StatefulSet",
                 "metadata": {"name": sts.name, "namespace": sts.namespace}, "spec": {"replicas": 3}},
                field_manager="e2e-operator", force=True)
    ours = copy.deepcopy(sts.obj)
    templates = admin.get(*statefulset(SUITE_NAMESPACE))["spec"]["volumeClaimTemplates"]
    ours["spec"]["volumeClaimTemplates"] = [{k: v for k, v in t.items() if k != "status"} for t in templates]
    with pytest.raises(Conflict) as conflict:
        pipeline_account.apply(ours, force=False)
    assert conflict.value.status == 409 and "e2e-operator" in str(conflict.value)

    apply_manifests.apply_statefulset(sts, pipeline_account, log)
    taken_back = admin.get(*statefulset(SUITE_NAMESPACE))
    assert taken_back["spec"]["replicas"] == 1
    owners = {e["manager"] for e in taken_back["metadata"]["managedFields"]
              if "f:replicas" in (e.get("fieldsV1") or {}).get("f:spec", {})}
    assert owners == {"cssr-deploy"}
