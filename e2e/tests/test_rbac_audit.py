"""The suite's RBAC (deploy/rbac.yaml) judged by the real authorizer: every request the pipeline
ServiceAccount made with its own token is in the API server's audit log, and none was refused.

The negative control proves the check can fail: a request outside the granted rules is refused
and shows up in the same log as a 403 of the same user.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from e2e.harness.layout import Layout

from cssr_tasks.cluster import Cluster
from cssr_tasks.errors import Forbidden

from conftest import SUITE_ACCOUNT, SUITE_NAMESPACE, audit_events

USER = f"system:serviceaccount:{SUITE_NAMESPACE}:{SUITE_ACCOUNT}"
SESSION_START = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))


def summary(events: list[dict[str, Any]]) -> Counter[str]:
    return Counter(f"{e['verb']} {e.get('objectRef', {}).get('resource', e.get('requestURI'))} "
                   f"{e['responseStatus']['code']}" for e in events)


def test_no_request_of_the_suite_was_forbidden(layout: Layout, pipeline_account: Cluster,
                                               request: pytest.FixtureRequest) -> None:
    # The apply-manifests tests write everything apply-manifests writes; run them first if alone.
    request.getfixturevalue("first_apply")
    events = audit_events(layout, user=USER, since=SESSION_START)
    assert len(events) >= 10, f"too few audited requests of {USER}: {summary(events)}"
    forbidden = [e for e in events if e["responseStatus"]["code"] == 403]
    assert forbidden == [], f"refused: {summary(forbidden)}"
    assert {e["verb"] for e in events} >= {"get", "list", "patch"}


def test_a_request_outside_the_rules_is_a_403_in_the_audit_log(layout: Layout, pipeline_account: Cluster) -> None:
    began = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))
    with pytest.raises(Forbidden):
        pipeline_account.list("v1", "secrets", namespace="kube-system")
    # The API server writes a request's ResponseComplete event just after it answers: poll briefly.
    deadline = time.monotonic() + 10
    while True:
        refused = [e for e in audit_events(layout, user=USER, since=began) if e["responseStatus"]["code"] == 403
                   and e.get("objectRef", {}).get("namespace") == "kube-system"]
        if refused or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [(e["verb"], e["objectRef"]["resource"]) for e in refused] == [("list", "secrets")]
