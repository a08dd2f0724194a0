"""deploy/monitoring: the optional kustomize component with the watcher's Service, ServiceMonitor and
PrometheusRule, and the example overlay that adds it to the suite.

Covers: the root install holds no Prometheus Operator object (it must apply where those CRDs are
absent); the example overlay, built against this checkout, is the root install plus the three
objects, in the install's namespace (or an overlay's); each validates against the pinned CRDs
(crds/go.mod, prometheus-operator v0.73.2) and a broken one does not; the Service reaches the
watcher's pods on the port its probes use, and the ServiceMonitor scrapes that Service's port; the
files pass yamllint. The alert expressions are checked against a real scrape in
tests/sim/test_watch_metrics.py.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from install import find, render, rendered_repo

from lintsupport import REPO
from schemas import crd_schemas, validate_object

COMPONENT = REPO / "deploy" / "monitoring"
EXAMPLE = REPO / "examples" / "monitoring" / "kustomization.yaml"
MONITORING = {("v1", "Service"), ("monitoring.coreos.com/v1", "ServiceMonitor"),
              ("monitoring.coreos.com/v1", "PrometheusRule")}


def overlay(tmp_path: Path, extra: str = "") -> Path:
    """The example overlay in tmp_path (outside the repository, as kustomize requires), its URLs
    replaced by this checkout's path."""
    folder = tmp_path / "monitoring"
    folder.mkdir()
    text = EXAMPLE.read_text()
    [base] = yaml.safe_load(text)["resources"]
    [component] = yaml.safe_load(text)["components"]
    assert component.startswith(base.split("?")[0] + "//deploy/monitoring?"), "both name the same pinned suite"
    text = text.replace(component, os.path.relpath(COMPONENT, folder)).replace(base, os.path.relpath(REPO, folder))
    (folder / "kustomization.yaml").write_text(text + extra)
    return folder


def monitoring(objects: Any) -> list[dict[str, Any]]:
    return [o for o in objects if (o["apiVersion"], o["kind"]) in MONITORING and o["metadata"]["name"] in
            ("cssr-watch-pools", "cssr-deploy")]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return render(overlay(tmp_path_factory.mktemp("overlay")))


def test_the_root_install_holds_no_prometheus_operator_object():
    assert not [o for o in rendered_repo() if o["apiVersion"].startswith("monitoring.coreos.com/")]


def test_the_example_overlay_is_the_install_plus_the_three_objects(built):
    identity = sorted((o["kind"], o["metadata"]["name"]) for o in built)
    root = sorted((o["kind"], o["metadata"]["name"]) for o in rendered_repo())
    added = [("Service", "cssr-watch-pools"), ("ServiceMonitor", "cssr-watch-pools"), ("PrometheusRule", "cssr-deploy")]
    assert identity == sorted(root + added)
    assert {o["metadata"]["namespace"] for o in monitoring(built)} == {"cssr"}
    for obj in monitoring(built):
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "cssr-deploy"


def test_an_overlays_namespace_moves_the_monitoring_objects(tmp_path):
    objects = render(overlay(tmp_path, "namespace: routers\n"))
    assert {o["metadata"]["namespace"] for o in monitoring(objects)} == {"routers"}
    assert find(objects, "Deployment", "cssr-watch-pools")["metadata"]["namespace"] == "routers"


def test_the_pinned_crds_hold_both_kinds():
    assert {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")} \
        <= crd_schemas().keys()


def test_every_monitoring_object_validates(built):
    objects = monitoring(built)
    assert len(objects) == 3
    for obj in objects:
        assert validate_object(obj) == []


@pytest.mark.parametrize(("kind", "change", "problem"), [
    ("ServiceMonitor", lambda o: o["spec"]["endpoints"][0].update(target="metrics"), "target"),
    ("ServiceMonitor", lambda o: o["spec"]["endpoints"][0].update(interval="thirty seconds"), "does not match"),
    ("PrometheusRule", lambda o: o["spec"]["groups"][0]["rules"][0].pop("expr"), "'expr' is a required property"),
    ("PrometheusRule", lambda o: o["spec"]["groups"][0]["rules"][0].update(alerts="x"), "alerts"),
], ids=["unknown-endpoint-field", "bad-interval", "rule-without-expr", "misspelled-field"])
def test_a_broken_object_fails_its_schema(built, kind, change, problem):
    obj = copy.deepcopy(next(o for o in monitoring(built) if o["kind"] == kind))
    change(obj)
    errors = validate_object(obj)
    assert errors and any(problem in e for e in errors), errors


def test_the_service_reaches_the_watchers_metrics_and_the_servicemonitor_scrapes_it(built):
    service = find(built, "Service", "cssr-watch-pools")
    monitor = find(built, "ServiceMonitor", "cssr-watch-pools")
    deployment = find(built, "Deployment", "cssr-watch-pools")
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    [port] = service["spec"]["ports"]
    container = next(c for c in pod["spec"]["containers"] if c["name"] == "watch-pools")
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port["targetPort"] in named
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert str(named[port["targetPort"]]) == env["PARAM_HEALTH_PORT"], "/metrics is served on the health port"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == (port["name"], "/metrics")
    assert "namespaceSelector" not in monitor["spec"], "the Service's own namespace, wherever the install goes"


def test_the_rule_is_evaluated_by_the_user_workload_prometheus(built):
    rule = find(built, "PrometheusRule", "cssr-deploy")
    assert rule["metadata"]["labels"]["openshift.io/prometheus-rule-evaluation-scope"] == "leaf-prometheus"
    for group in rule["spec"]["groups"]:
        for each in group["rules"]:
            assert each["labels"]["severity"] in ("critical", "warning", "info")
            assert each["annotations"]["summary"] and each["annotations"]["description"]


def test_the_monitoring_files_pass_yamllint():
    files = sorted(map(str, [*COMPONENT.glob("*.yaml"), EXAMPLE]))
    run = subprocess.run([str(Path(sys.executable).parent / "yamllint"), "-s", "-c", str(REPO / ".yamllint"), *files],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout
