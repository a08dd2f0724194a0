"""Least privilege, proven: every API request the Python steps make is allowed by the install's RBAC, and
every rule the install grants is used by some request.

The install is rendered with `kubectl kustomize .`; its Roles and bindings are replayed by tests/rbac.py,
which decides as the Kubernetes RBAC authorizer does. The requests are the simulator's request log
(`sim.requests`) of runs against the simulated OpenShift, as the pipeline's ServiceAccount `cssr-deploy`
makes them, plus the checks other components make on its behalf and which never reach the log: the internal
registry's pull and push checks, and SCC admission of each TaskRun pod (from the Tasks' securityContexts).
The pool watcher's requests, in a rolling upgrade, are checked the same way against its own rules.

A PipelineRun that names no ServiceAccount (the console's Start dialog, tkn without -s) runs as the namespace's
`pipeline` account, OpenShift Pipelines' default: the install binds the same roles to it, and the replayed run,
which names none, is checked as that account too.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pytest_httpserver import HTTPServer

from cssr_tasks import cli, kernels, manifests
from cssr_tasks import watch_pools as wp
from cssr_tasks.cluster import Cluster, RetrySettings
from cssr_tasks.log import Log
from cssr_tasks.sim import SimulatedCluster, operators, router, ssr
from cssr_tasks.sim import fixtures as fx
from cssr_tasks.sim import workloads as wl
from cssr_tasks.sim.demo import Demo
from cssr_tasks.sim.upgrades import Upgrades
from eventlistener_sim import FakeEventListener
from install import find, rendered_repo
from rbac import Authorizer, Request, requests_of, rule_allows

from support import REPO, require_tool

NS = "cssr"
PIPELINE_SA = "cssr-deploy"
DEFAULT_SA = "pipeline"  # OpenShift Pipelines' default-service-account, made in every namespace
WATCHER_SA = "cssr-watch-pools"
FAST = {"PARAM_POLL_INTERVAL": "0.1", "PARAM_GATE_TIMEOUT": "10", "PARAM_ROLLOUT_TIMEOUT": "10"}
TASKS = [yaml.safe_load(p.read_text()) for p in sorted((REPO / "tasks").glob("*.yaml"))]


# -- the checks that never reach the API server's log -----------------------------------------------------


def pod_scc(task: dict[str, Any]) -> str | None:
    """The SCC a Task's pod needs beyond restricted-v2 (which every authenticated account may use)."""
    spec = task["spec"]
    template = (spec.get("stepTemplate") or {}).get("securityContext") or {}
    contexts = [{**template, **(s.get("securityContext") or {})} for s in (spec.get("steps") or [])
                + (spec.get("sidecars") or [])]
    if any(c.get("privileged") for c in contexts):
        return "privileged"
    if any(c.get("runAsUser") == 0 or (c.get("capabilities") or {}).get("add") for c in contexts):
        return "pipelines-scc"  # root and SETFCAP: OpenShift Pipelines' SCC for buildah
    return None


def admission_requests(tasks: list[dict[str, Any]], namespace: str = NS) -> list[Request]:
    return [Request("use", "security.openshift.io", "securitycontextconstraints", namespace, scc,
                    f"SCC admission of a {t['metadata']['name']} pod")
            for t in tasks if (scc := pod_scc(t)) is not None]


def registry_request(image: str, verb: str, why: str) -> Request:
    """The internal registry's SubjectAccessReview for <registry>/<namespace>/<stream>[:tag|@digest]:
    get imagestreams/layers to pull, update to push."""
    path = image.split("@", maxsplit=1)[0].split("/", 1)[1]
    namespace, stream = path.split("/", 1)
    stream = stream.rsplit(":", 1)[0] if ":" in stream else stream
    return Request(verb, "image.openshift.io", "imagestreams/layers", namespace, stream, why)


def build_requests(dtk_images: dict[str, str], image_url: str, built: bool) -> list[Request]:
    """build-init-image: buildah pulls every Driver Toolkit image and pushes cssr-init; the tag checks read
    (preflight, check-init-image, build-init-image), and build-kmods' layout step runs cssr-init: the kubelet pulls
    it with the TaskRun pod's account, this one (the router pods run no internal-registry image)."""
    found = [registry_request(i, "get", "build-init-image pulls the Driver Toolkit") for i in set(dtk_images.values())]
    found.append(registry_request(image_url, "get", "preflight, check-init-image and build-init-image look the tag up"))
    found.append(registry_request(image_url, "get", "build-kmods' layout step pulls cssr-init"))
    if built:
        found.append(registry_request(image_url, "update", "build-init-image pushes cssr-init"))
    return found


# -- runs against the simulated cluster --------------------------------------------------------------------


def require_root() -> None:
    """The demo gives steps their volumes in a private mount namespace (root and unshare), as its tests do."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        message = "the simulated pipeline run needs root and unshare (see python/cssr_tasks/sim/demo.py)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def installed(sim: SimulatedCluster) -> None:
    """What `oc apply -k .` made that the pipeline's steps meet: the modules claim."""
    claim = find(rendered_repo(), "PersistentVolumeClaim", "modules")
    sim.put({k: v for k, v in claim.items() if k != "status"})


def kubelet_reads(pipeline_file: Path) -> set[tuple[str, str]]:
    """Secrets and ConfigMaps the kubelet reads for the Tasks' volumes and env (the local executor reads them
    through the API in its place): (resource, name), with $(params.x) taken from the Pipeline's or Task's default."""
    pipeline_defaults = {p["name"]: p.get("default") for p in yaml.safe_load(pipeline_file.read_text())["spec"]["params"]}
    found = set()
    for task in TASKS:
        spec = task["spec"]
        defaults = {**{p["name"]: p.get("default") for p in spec.get("params") or []}, **pipeline_defaults}
        refs = [("secrets", (v.get("secret") or {}).get("secretName")) for v in spec.get("volumes") or []]
        refs += [("configmaps", (v.get("configMap") or {}).get("name")) for v in spec.get("volumes") or []]
        for step in (spec.get("steps") or []) + [spec.get("stepTemplate") or {}]:
            for env in step.get("env") or []:
                source = env.get("valueFrom") or {}
                refs.append(("secrets", (source.get("secretKeyRef") or {}).get("name")))
                refs.append(("configmaps", (source.get("configMapKeyRef") or {}).get("name")))
        for resource, name in refs:
            if name:
                found.add((resource, re.sub(r"\$\(params\.([\w-]+)\)", lambda m, d=defaults: str(d.get(m[1])), name)))
    return found


def steps_requests(sim: SimulatedCluster, why: str) -> list[Request]:
    return list(requests_of(sim.requests, why))


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> list[Request]:
    """The whole Pipeline, run by the local executor against the simulated cluster of `make demo`
    (sim/demo.py): every Python step's requests, and the registry's and SCC admission's checks."""
    require_root()
    with Demo(tmp_path_factory.mktemp("demo")) as demo:
        assert demo.sim is not None
        installed(demo.sim)
        outcome = demo.run("cssr-deploy-rbac")
        assert outcome.status == "Succeeded", [(t.name, t.status) for t in outcome.tasks]
        # the run names no ServiceAccount, as the console's Start dialog makes it: its TaskRuns run as `pipeline`
        [run] = demo.sim.objects("tekton.dev/v1", "PipelineRun", NS)
        assert "serviceAccountName" not in str(run["spec"])
        assert {t["spec"]["serviceAccountName"] for t in demo.sim.objects("tekton.dev/v1", "TaskRun", NS)} == {
            DEFAULT_SA}
        skip = kubelet_reads(demo.pipeline_file)
        found = [r for r in steps_requests(demo.sim, "the pipeline")
                 if not (r.verb == "get" and (r.resource, r.name) in skip)]
    results = {t.name: t.results for t in outcome.tasks}
    found += build_requests(json.loads(results["detect-kernel"]["dtk-images"]), results["check-cssr-init"]["image-url"],
                            results["build-cssr-init"].get("built") == "true")
    found += admission_requests(TASKS)
    return found


def command(sim: SimulatedCluster, folder: Path, name: str, env: dict[str, str]) -> dict[str, str]:
    """`cssr-tasks <name>` as its step runs it: a fresh client, the params in PARAM_* variables."""
    results = folder / f"results-{name}-{len(list(folder.glob('results-*')))}"
    kubeconfig = sim.write_kubeconfig(folder / "kubeconfig")
    code = cli.main([name, "--kubeconfig", str(kubeconfig), "--results-dir", str(results)],
                    {"CSSR_RETRY_WAIT": "0", **env})
    assert code == 0, f"cssr-tasks {name} failed with {env}"
    return {p.name: p.read_text() for p in results.iterdir()}


def other_settings(folder: Path, **settings: str) -> list[Request]:
    """preflight and apply-manifests with settings the pipeline run above does not use."""
    env = {f"PARAM_{k.upper().replace('-', '_')}": v for k, v in settings.items()}
    with SimulatedCluster.with_default_cluster() as sim:
        operators.install(sim)
        wl.install(sim, step=0.01)
        installed(sim)
        # without a registry: its checks are derived in build_requests (the registry authorizes them, not the API)
        command(sim, folder, "preflight", {"PARAM_IMAGE_REPOSITORY": "", **env})
        command(sim, folder, "apply-manifests", {"PARAM_NAMESPACE": NS, **FAST, **env})
        return steps_requests(sim, f"preflight and apply-manifests with {settings}")


def traffic_test(folder: Path) -> list[Request]:
    """smoke-test with traffic=true: its client and server pods are created, read, logged and deleted."""
    require_tool("openssl")
    nets = [router.Net("ens6f0np0-macvlan", "net1", ips=("192.168.10.1/24",)),
            router.Net("sriov-b", "net2", ips=("192.168.20.1/24",), pci="0000:19:00.4",
                       resource="openshift.io/ens6f1np1")]
    credentials = folder / "credentials"
    credentials.mkdir()
    (credentials / "username").write_text(ssr.USERNAME)
    (credentials / "password").write_text(ssr.PASSWORD)
    fake = ssr.serve(folder / "tls", nets)
    try:
        with SimulatedCluster.with_default_cluster() as sim:
            sim.put(router.macvlan_nad(nets[0].name, NS, "ens6f0v0"))
            sim.put(router.sriov_nad(nets[1].name, NS, nets[1].resource))
            sim.put(router.router_pod(sim.put(router.statefulset("cssr", NS, nets)), 0, nets))
            sim.emulator.controllers.append(router.TrafficController())
            command(sim, folder, "smoke-test", {
                "PARAM_NAMESPACE": NS, "PARAM_STATEFULSET": "cssr", "PARAM_API_PORT": str(fake.port),
                "PARAM_CREDENTIALS_DIR": str(credentials), "PARAM_ROUTER_NAME": ssr.ROUTER, "PARAM_TRAFFIC": "true",
                "PARAM_TIMEOUT": "5", "PARAM_INTERVAL": "0.1"})
            return steps_requests(sim, "smoke-test with traffic")
    finally:
        fake.server.stop()


def hostpath_nodes(folder: Path) -> list[Request]:
    """build-kmods' last step with modules-storage=hostpath: the DaemonSet, its rollout, its pods' reports."""
    from cssr_tasks.sim import pods

    with SimulatedCluster.with_default_cluster() as sim:
        workloads = wl.install(sim, step=0.01)
        workloads.daemonsets.runner = pods.Scripted({"commit": "[]", "verify": "{}"})
        installed(sim)
        env = {"PARAM_MODULES_STORAGE": "hostpath", "PARAM_NAMESPACE": NS, "PARAM_POLL_INTERVAL": "0.1",
               "PARAM_NODES_TIMEOUT": "10", "PARAM_KERNELS": json.dumps([fx.RELEASES["4.16"][1]]),
               "PARAM_INIT_IMAGE": "image-registry.openshift-image-registry.svc:5000/cssr/cssr-init:x"}
        command(sim, folder, "build-kmods-nodes", env)
        command(sim, folder, "build-kmods-nodes", env)  # the second run: gets, an unchanged apply
        return steps_requests(sim, "build-kmods with modules-storage=hostpath")


SCENARIOS: dict[str, Callable[[Path], list[Request]]] = {
    "pipeline": lambda folder: [],  # the module fixture pipeline_run
    "performanceprofile": lambda folder: other_settings(
        folder, **{"hugepages-method": "performanceprofile", "cpu-reserved": "0-1", "cpu-isolated": "2-31"}),
    "sriov": lambda folder: other_settings(folder, **{"network-mode": "sriov", "device-type": "vfio-pci"}),
    "traffic": traffic_test,
    "hostpath": hostpath_nodes,
}


@pytest.fixture(scope="module")
def pipeline_requests(pipeline_run: list[Request], tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Request]]:
    found = {name: run(tmp_path_factory.mktemp(name)) for name, run in SCENARIOS.items() if name != "pipeline"}
    return {"pipeline": pipeline_run, **found}


@pytest.fixture(scope="module")
def pipeline_account() -> Authorizer:
    return Authorizer.for_service_account(rendered_repo(), PIPELINE_SA, NS)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_request_of_the_pipeline_is_allowed(pipeline_requests, pipeline_account, scenario):
    requests = pipeline_requests[scenario]
    assert requests
    denied = pipeline_account.denied(requests)
    assert not denied, "denied:\n" + "\n".join(denied)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_run_without_a_service_account_is_allowed_as_the_namespaces_pipeline_account(pipeline_requests, scenario):
    """Issue 13: the console's runs took `pipeline` and failed in preflight with forbidden."""
    account = Authorizer.for_service_account(rendered_repo(), DEFAULT_SA, NS)
    requests = pipeline_requests[scenario]
    assert any("preflight" in r.why or r.resource == "customresourcedefinitions" for r in requests) or \
        scenario in ("traffic", "hostpath")
    denied = account.denied(requests)
    assert not denied, "denied:\n" + "\n".join(denied)


@pytest.mark.slow
def test_every_rule_of_the_pipeline_account_is_used(pipeline_requests, pipeline_account):
    every = [r for requests in pipeline_requests.values() for r in requests]
    unused = pipeline_account.unused(every)
    assert not unused, "granted but never used:\n" + "\n".join(unused)


# -- the pool watcher --------------------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def watcher_requests(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Request]]:
    """A 4.16 -> 4.17 upgrade of pool worker, watched, sent and recorded by cssr-tasks watch-pools in cssr."""
    folder = tmp_path_factory.mktemp("watcher")
    token = "0123456789abcdef" * 4
    (folder / "token").write_text(token)
    with SimulatedCluster() as sim, HTTPServer(host="127.0.0.1", port=0) as server:
        mco = Upgrades(sim)
        mco.add_pool("worker", 2)
        deployed = kernels.kernel_set([fx.RELEASES["4.16"][1]])
        sim.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cssr-deploy-state", "namespace": NS},
                 "data": {"kernel-set-id": kernels.kernel_set_id(deployed), "kernel-versions": json.dumps(deployed)}})
        listener = FakeEventListener(sim, token, namespace=NS)
        server.expect_request("/", method="POST").respond_with_handler(listener)
        params = wp.Params(pools=("worker",), eventlistener_url=server.url_for("/"), secret_file=str(folder / "token"),
                           namespace=NS, pipeline_namespace=NS, health_port=0, resync_seconds=1,
                           watch_timeout_seconds=1, confirm_seconds=2)
        log = Log("watch-pools", io.StringIO())
        retry = RetrySettings(attempts=3, wait_initial=0)
        watcher = wp.Watcher(params, cluster=Cluster.at(sim.url, log=log, retry=retry), log=log,
                             sender=wp.EventListener(params.url, params.secret_file, retry=retry, log=log))
        watcher.start()
        try:
            target = mco.render("worker", release="4.17")
            for _ in mco.roll("worker", target):
                version = max(int(o["metadata"]["resourceVersion"]) for o in sim.objects(wp.MCO_API, "MachineConfigPool"))
                wait_for(lambda v=version: int(watcher.reconciled.get("machineconfigpools") or 0) >= v)
            wait_for(lambda: {b["type"] for b in listener.accepted()} >= {"pool-updating", "kernel-changed"})
            wait_for(lambda: len(sim.get("v1", "ConfigMap", "cssr-watch-pools-state", NS)["data"]) >= 2)
        finally:
            watcher.stop()
            watcher.sender.close()
        yield list(requests_of(sim.requests, "the pool watcher in a rolling upgrade"))


def test_every_request_of_the_watcher_is_allowed_and_every_rule_used(watcher_requests):
    account = Authorizer.for_service_account(rendered_repo(), WATCHER_SA, NS)
    assert {r.resource for r in watcher_requests} >= {"machineconfigpools", "nodes", "machineconfigs", "configmaps",
                                                       "pipelineruns"}
    denied, unused = account.denied(watcher_requests), account.unused(watcher_requests)
    assert not denied, "denied:\n" + "\n".join(denied)
    assert not unused, "granted but never used:\n" + "\n".join(unused)


# -- the rules themselves ----------------------------------------------------------------------------------


def named_rule(resource: str) -> set[str]:
    """The names every rule that writes (or uses) `resource` is limited to; a rule without names fails."""
    names: set[str] = set()
    for obj in own_rbac():
        for rule in obj.get("rules") or []:
            if resource in (rule.get("resources") or []) and {"patch", "create", "update", "use"} & set(rule["verbs"]):
                assert rule.get("resourceNames"), f"{obj['kind']} {obj['metadata']['name']} grants any {resource}"
                names |= set(rule["resourceNames"])
    return names


def test_power_over_nodes_is_granted_by_the_names_apply_manifests_renders_for_the_pipelines_defaults():
    """Issue 14: get, patch and create of ANY MachineConfig (root on every node, control plane included), and
    cluster-wide on PerformanceProfiles, SR-IOV policies and networks; now each is limited to the names the
    suite writes with the Pipeline's defaults, in both hugepages methods and both network modes."""
    defaults = {p["name"]: p.get("default", "") for p in
                yaml.safe_load((REPO / "pipelines" / "cssr-deploy.yaml").read_text())["spec"]["params"]}
    rendered: dict[str, set[str]] = {}
    for mode in ("macvlan", "sriov"):
        for method in ("machineconfig", "performanceprofile"):
            env = {"PARAM_POOL": defaults["pool"], "PARAM_PF_NAMES": defaults["pf-names"],
                   "PARAM_RESOURCE_NAME": defaults["resource-name"], "PARAM_NETWORK_MODE": mode,
                   "PARAM_HUGEPAGES_METHOD": method, "PARAM_CPU_RESERVED": "0-1", "PARAM_CPU_ISOLATED": "2-31"}
            for m in manifests.render(manifests.Params.from_env(env)):
                rendered.setdefault(m.kind, set()).add(m.name)
    assert named_rule("machineconfigs") == rendered["MachineConfig"]
    assert named_rule("performanceprofiles") == rendered["PerformanceProfile"]
    assert named_rule("sriovnetworknodepolicies") == rendered["SriovNetworkNodePolicy"]
    assert named_rule("sriovnetworks") == rendered["SriovNetwork"]
    assert named_rule("securitycontextconstraints") == {"privileged", "pipelines-scc"}


def test_the_install_binds_no_scc_role_it_does_not_name():
    """Issue 13: pipelines-scc-clusterrole grants whatever TektonConfig names as the default SCC."""
    refs = {(o.get("roleRef") or {}).get("name") for o in own_rbac() if o["kind"].endswith("Binding")}
    assert "pipelines-scc-clusterrole" not in refs
    pipeline_account = Authorizer.for_service_account(rendered_repo(), PIPELINE_SA, NS)
    for scc in ("anyuid", "hostaccess", "restricted-v2-custom"):
        assert not pipeline_account.allowed(Request("use", "security.openshift.io", "securitycontextconstraints", NS,
                                                    scc))
    assert not pipeline_account.allowed(Request("create", "machineconfiguration.openshift.io", "machineconfigs",
                                                None, "99-master-evil"))
    assert not pipeline_account.allowed(Request("create", "machineconfiguration.openshift.io", "machineconfigs",
                                                None, None))  # a POST carries no name


def own_rbac() -> list[dict[str, Any]]:
    return [o for o in rendered_repo() if o["kind"] in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")]


def test_no_wildcard_and_no_broad_role():
    for obj in own_rbac():
        for rule in obj.get("rules") or []:
            for key in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert not any("*" in value for value in rule.get(key) or []), (obj["metadata"]["name"], rule)
        ref = (obj.get("roleRef") or {}).get("name", "")
        assert ref not in ("cluster-admin", "admin", "edit", "view", "system:openshift:scc:anyuid"), obj


def test_every_rule_says_which_task_needs_it():
    """In deploy/rbac.yaml, each rule follows a comment that names the task (or tasks) using it."""
    lines = (REPO / "deploy" / "rbac.yaml").read_text().splitlines()
    tasks = [t["metadata"]["name"].removeprefix("cssr-") for t in TASKS]
    rules = [n for n, line in enumerate(lines) if line.strip().startswith("- apiGroups:")]
    assert len(rules) > 10
    for number in rules:
        comment = []
        while lines[number - 1 - len(comment)].strip().startswith("#"):
            comment.append(lines[number - 1 - len(comment)].strip())
        text = " ".join(reversed(comment))
        assert any(f"{t}:" in text or f"{t}," in text for t in tasks), \
            f"deploy/rbac.yaml:{number + 1}: the rule is not under a comment naming its task: {text!r}"


# -- the authorizer, on cases whose answer is known ---------------------------------------------------------


ROLES = [
    {"kind": "Role", "metadata": {"name": "r", "namespace": "a"},
     "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["x"], "verbs": ["get"]},
               {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
               {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]}]},
    {"kind": "RoleBinding", "metadata": {"name": "rb", "namespace": "a"},
     "roleRef": {"kind": "Role", "name": "r"}, "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "a"}]},
    {"kind": "ClusterRole", "metadata": {"name": "c"},
     "rules": [{"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": ["patch"]}]},
    {"kind": "ClusterRoleBinding", "metadata": {"name": "crb"},
     "roleRef": {"kind": "ClusterRole", "name": "c"}, "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "a"}]},
    {"kind": "RoleBinding", "metadata": {"name": "scc", "namespace": "a"},
     "roleRef": {"kind": "ClusterRole", "name": "system:openshift:scc:privileged"},
     "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "a"}]},
]


@pytest.mark.parametrize(("request_", "allowed"), [
    (Request("get", "", "configmaps", "a", "x"), True),
    (Request("get", "", "configmaps", "a", "y"), False),  # not a listed name
    (Request("get", "", "configmaps", "b", "x"), False),  # a RoleBinding grants in its namespace only
    (Request("list", "", "configmaps", "a", None), False),  # resourceNames never match a list
    (Request("get", "", "pods/log", "a", "p"), True),
    (Request("get", "", "pods", "a", "p"), False),  # the subresource rule is not the resource
    (Request("patch", "apps", "statefulsets", "z", "s"), True),  # a ClusterRoleBinding grants everywhere
    (Request("patch", "", "statefulsets", "z", "s"), False),  # another group
    (Request("get", "", "namespaces", "a", "a"), True),  # a Role reaches its own Namespace object
    (Request("bind", "rbac.authorization.k8s.io", "clusterroles", "a", "system:openshift:scc:privileged"), True),
    (Request("bind", "rbac.authorization.k8s.io", "clusterroles", "b", "system:openshift:scc:privileged"), False),
], ids=["named", "other-name", "other-namespace", "list-by-name", "subresource", "not-the-subresource",
        "cluster-binding", "other-group", "own-namespace", "bind-held-role", "bind-elsewhere"])
def test_the_authorizer_decides_as_rbac_does(request_, allowed):
    assert Authorizer.for_service_account(ROLES, "sa", "a").allowed(request_) is allowed


def test_recorded_requests_carry_the_api_servers_attributes(sim, cluster):
    """An apply that creates needs create too; a Namespace is its own namespace; a binding write needs bind."""
    sim.clear_requests()
    cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "a"}})
    cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "a"}})
    cluster.get_or_none("v1", "namespaces", "a")
    cluster.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": "b", "namespace": "a"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                   "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "a"}]})
    assert [(r.verb, r.resource, r.namespace, r.name) for r in requests_of(sim.requests)] == [
        ("patch", "configmaps", "a", "x"), ("create", "configmaps", "a", "x"),
        ("patch", "configmaps", "a", "x"),
        ("get", "namespaces", "a", "a"),
        ("patch", "rolebindings", "a", "b"), ("create", "rolebindings", "a", "b"), ("bind", "clusterroles", "a", "view"),
    ]


def test_an_unused_rule_and_an_unused_binding_are_reported():
    account = Authorizer.for_service_account(ROLES, "sa", "a")
    unused = account.unused([Request("get", "", "configmaps", "a", "x")])
    assert "Role a/r: get pods/log.core" in unused
    assert "ClusterRole c: patch statefulsets.apps" in unused
    assert "Role a/r: get configmaps.core x" not in unused
    assert any("system:openshift:scc:privileged" in u and "allows no request" in u for u in unused)
    assert rule_allows({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}, Request("get", "", "pods", "a", "p"))
    assert re.search(r"Role a/r: get namespaces\.core$", "\n".join(unused), re.M)


def test_the_readme_security_table_says_what_the_rbac_allows_verb_by_verb():
    """Each resource row of the README's RBAC table lists exactly the verbs (and names) the pipeline's own rules
    grant on it."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Security"):text.index("## Layout")]
    table: dict[str, tuple[set[str], set[str]]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or cells[0] in ("where", "---") or "system:image-builder" in cells[1]:
            continue
        names = set(re.findall(r"`([^`]+)`", cells[2]))
        for resource in cells[1].split(", "):
            verbs, known = table.setdefault(resource, (set(), set()))
            verbs |= {v.strip() for v in cells[3].split(",")}
            known |= names
    granted: dict[str, tuple[set[str], set[str]]] = {}
    for obj in own_rbac():
        if obj["kind"] not in ("Role", "ClusterRole") or not obj["metadata"]["name"].startswith("cssr-deploy"):
            continue
        for rule in obj.get("rules") or []:
            for resource in rule["resources"]:
                verbs, known = granted.setdefault(resource, (set(), set()))
                verbs |= set(rule["verbs"])
                if resource != "customresourcedefinitions":  # the README counts those seven names
                    known |= set(rule.get("resourceNames") or [])
    assert {r: v for r, (v, _) in table.items()} == {r: v for r, (v, _) in granted.items()}
    for resource, (_, names) in granted.items():
        assert names <= table[resource][1], resource
