"""Stage B: Tekton Pipelines' controller and webhook, built from the pinned release, run as host
processes with their own ServiceAccount tokens against the Stage A API server.

Tekton's own config/ folder of the pinned module (never a copy of it) is applied minus what runs
in pods (its Deployments and the webhook's HorizontalPodAutoscaler) and minus config/300-crds,
which Stage A installs from the same release. The env and flags of each process are those of
config/controller.yaml and config/webhook.yaml, with ports moved off the defaults.

The API server reaches the webhook through its Service, as on a real cluster, but the Service is
an ExternalName one naming 127.0.0.1: for a webhook, the API server resolves an ExternalName
Service to https://<externalName>:<port of the webhook configuration> itself (k8s.io/apiserver
pkg/util/proxy ResolveCluster), while a ClusterIP Service would need kube-proxy and
Endpoints/EndpointSlices refuse loopback addresses (tried: "may not be in the loopback range").
So the three webhook configurations name the webhook's own port instead of 443; Knative keeps
the port when it writes their caBundle, rules and path (knative.dev/pkg webhook reconcilers), and
refuses URL-based configurations. Knative's webhook makes its own certificate (for the Service's
DNS names, which the API server checks) into the webhook-certs Secret.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from . import control_plane
from .build import go_env
from .layout import (
    E2E,
    HOST,
    TEKTON_CONTROLLER_METRICS_PORT,
    TEKTON_CONTROLLER_PROBES_PORT,
    TEKTON_CONTROLLER_PROFILING_PORT,
    TEKTON_WEBHOOK_METRICS_PORT,
    TEKTON_WEBHOOK_PORT,
    TEKTON_WEBHOOK_PROBES_PORT,
    TEKTON_WEBHOOK_PROFILING_PORT,
    Layout,
    api_url,
)
from .log import say
from .processes import Processes

MODULE = "github.com/tektoncd/pipeline"
NAMESPACE = "tekton-pipelines"
WEBHOOK_SERVICE = "tekton-pipelines-webhook"
ORDER = ["tekton-webhook", "tekton-controller"]
ACCOUNTS = {"tekton-webhook": "tekton-pipelines-webhook", "tekton-controller": "tekton-pipelines-controller"}
# What runs in pods on a real cluster; here the processes below take their place.
NOT_APPLIED = {"Deployment", "HorizontalPodAutoscaler"}
WEBHOOK_CONFIGURATIONS = {
    "mutatingwebhookconfigurations": ["webhook.pipeline.tekton.dev"],
    "validatingwebhookconfigurations": ["validation.webhook.pipeline.tekton.dev", "config.webhook.pipeline.tekton.dev"],
}
TOKEN_DURATION = "720h"
# The images a TaskRun's pod is made of. No pod runs before Stage C builds them and serves them from
# a local registry; the controller refuses to start without all six flags.
STAGE_C_REGISTRY = "127.0.0.1:25000/tekton"


class TektonError(RuntimeError):
    pass


def config_dir(layout: Layout, module: str = MODULE, wrapper: str = "tekton") -> Path:
    """config/ of the pinned release in the Go module cache (`go mod download` fetches it if missing);
    `module` as pinned by build/<wrapper>/go.mod (Stage D's Triggers use it too)."""
    module_dir = E2E / "build" / wrapper
    proc = subprocess.run(["go", "mod", "download", "-json", module], cwd=module_dir, env=go_env(layout),
                          capture_output=True, text=True, check=False)
    folder = json.loads(proc.stdout or "{}").get("Dir", "")
    if proc.returncode or not folder or not (Path(folder) / "config").is_dir():
        detail = (proc.stderr or proc.stdout).strip()[-300:]
        raise TektonError(f"go mod download {module} in {module_dir} failed: {detail}")
    return Path(folder) / "config"


def objects(config: Path) -> list[dict[str, Any]]:
    """Tekton's install objects (config/*.yaml and config/100-namespace), in file order, as applied here."""
    files = sorted(config.glob("100-namespace/*.yaml")) + sorted(config.glob("*.yaml"))
    chosen = []
    for file in files:
        for doc in yaml.safe_load_all(file.read_text()):
            if not doc or doc.get("kind") in NOT_APPLIED:
                continue
            if doc["kind"] == "Service":
                doc["spec"].pop("selector", None)  # no pods to select
                if doc["metadata"]["name"] == WEBHOOK_SERVICE:
                    doc["spec"] = {"type": "ExternalName", "externalName": HOST, "ports": doc["spec"]["ports"]}
            if doc["kind"] in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
                for hook in doc["webhooks"]:
                    hook["clientConfig"]["service"]["port"] = TEKTON_WEBHOOK_PORT
            chosen.append(doc)
    return chosen


def kubectl(layout: Layout, *args: str, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(layout.binary("kubectl")), f"--kubeconfig={layout.admin_kubeconfig}", *args],
                          capture_output=True, text=True, input=stdin, check=False, timeout=120)
    if check and proc.returncode:
        raise TektonError(f"kubectl {' '.join(args[:3])} failed: {proc.stderr.strip()[-600:]}")
    return proc


def apply(layout: Layout, docs: list[dict[str, Any]], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    return kubectl(layout, "apply", "--server-side", "--field-manager=cssr-e2e-tekton", "--force-conflicts",
                   "-f", "-", stdin=yaml.safe_dump_all(docs), check=check)


def account_kubeconfig(layout: Layout, path: Path, account: str, namespace: str, *, name: str = "") -> Path:
    """A kubeconfig at `path` with a fresh TokenRequest token of `namespace/account`, the way the
    cluster's in-cluster components speak: Tekton's processes, CoreDNS, Multus."""
    token = kubectl(layout, "create", "token", account, "-n", namespace,
                    f"--duration={TOKEN_DURATION}").stdout.strip()
    name = name or account
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": name,
        "clusters": [{"name": "cssr-e2e", "cluster": {"server": api_url(),
                                                       "certificate-authority": str(layout.pki / "ca.crt")}}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": "cssr-e2e", "user": account}}],
    }, sort_keys=False))
    path.chmod(0o600)
    return path


def token_kubeconfig(layout: Layout, name: str) -> Path:
    """A kubeconfig with a fresh TokenRequest token of the process's own ServiceAccount."""
    return account_kubeconfig(layout, layout.kubeconfig(name), ACCOUNTS[name], NAMESPACE, name=name)


def converting_crds(layout: Layout) -> list[dict[str, Any]]:
    """The CRDs whose versions Tekton's webhook converts (Stage A installed them from the release)."""
    crds = json.loads(kubectl(layout, "get", "crd", "-o", "json").stdout)["items"]
    return [c for c in crds
            if ((((c["spec"].get("conversion") or {}).get("webhook") or {}).get("clientConfig") or {})
                .get("service") or {}).get("name") == WEBHOOK_SERVICE]


def point_conversions(layout: Layout) -> list[str]:
    """The CRDs' conversion webhooks name port 443 of the Service, as the webhook configurations
    did: point them at the webhook's port too (a merge patch; Knative keeps the port when it writes
    the caBundle, and Stage A's apply of the CRDs does not own it)."""
    names = []
    for crd in converting_crds(layout):
        name = crd["metadata"]["name"]
        if crd["spec"]["conversion"]["webhook"]["clientConfig"]["service"].get("port") != TEKTON_WEBHOOK_PORT:
            patch = {"spec": {"conversion": {"webhook": {"clientConfig": {"service": {"port": TEKTON_WEBHOOK_PORT}}}}}}
            kubectl(layout, "patch", "crd", name, "--type=merge", "-p", json.dumps(patch))
        names.append(name)
    if not names:
        raise TektonError("no CRD names tekton-pipelines-webhook for conversion; Stage A's CRDs are missing")
    return names


def commands(layout: Layout) -> dict[str, tuple[list[str], dict[str, str]]]:
    """argv and env per process, from the Deployments of config/webhook.yaml and config/controller.yaml."""
    common = {"SYSTEM_NAMESPACE": NAMESPACE, "KUBERNETES_MIN_VERSION": "v1.28.0",
              "CONFIG_LOGGING_NAME": "config-logging", "CONFIG_OBSERVABILITY_NAME": "config-observability",
              "CONFIG_FEATURE_FLAGS_NAME": "feature-flags", "METRICS_DOMAIN": "tekton.dev/pipeline",
              "METRICS_PROMETHEUS_HOST": HOST}
    webhook_env = {**common, "CONFIG_LEADERELECTION_NAME": "config-leader-election-webhook",
                   "PROBES_PORT": str(TEKTON_WEBHOOK_PROBES_PORT), "WEBHOOK_PORT": str(TEKTON_WEBHOOK_PORT),
                   "WEBHOOK_ADMISSION_CONTROLLER_NAME": "webhook.pipeline.tekton.dev",
                   "WEBHOOK_SERVICE_NAME": WEBHOOK_SERVICE, "WEBHOOK_SECRET_NAME": "webhook-certs",
                   "METRICS_PROMETHEUS_PORT": str(TEKTON_WEBHOOK_METRICS_PORT),
                   "PROFILING_PORT": str(TEKTON_WEBHOOK_PROFILING_PORT), "POD_NAME": "tekton-webhook-host"}
    controller_env = {**common, "CONFIG_DEFAULTS_NAME": "config-defaults",
                      "CONFIG_LEADERELECTION_NAME": "config-leader-election-controller",
                      "CONFIG_SPIRE": "config-spire", "PROBES_PORT": str(TEKTON_CONTROLLER_PROBES_PORT),
                      "METRICS_PROMETHEUS_PORT": str(TEKTON_CONTROLLER_METRICS_PORT),
                      "PROFILING_PORT": str(TEKTON_CONTROLLER_PROFILING_PORT),
                      "POD_NAME": "tekton-controller-host"}
    images = [f"-{flag}-image={STAGE_C_REGISTRY}/{flag}:v1.15.0"
              for flag in ("entrypoint", "nop", "sidecarlogresults", "workingdirinit", "shell")]
    return {
        "tekton-webhook": ([str(layout.binary("tekton-webhook")),
                            f"--kubeconfig={layout.kubeconfig('tekton-webhook')}"], webhook_env),
        "tekton-controller": ([str(layout.binary("tekton-controller")),
                               f"--kubeconfig={layout.kubeconfig('tekton-controller')}", *images,
                               f"-shell-image-win={STAGE_C_REGISTRY}/shell-win:v1.15.0"], controller_env),
    }


def _http_ok(port: int) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=3) as response:
            return response.status == 200, ""
    except (OSError, urllib.error.URLError) as e:
        return False, str(e)


PROBE_TASK = {"apiVersion": "tekton.dev/v1", "kind": "Task",
              "metadata": {"name": "e2e-webhook-probe", "namespace": NAMESPACE},
              "spec": {"steps": [{"name": "probe", "image": "registry.invalid/probe:1", "script": "true"}]}}


def webhook_answers(layout: Layout) -> tuple[bool, str]:
    """Knative has written caBundle and rules into every webhook configuration and the caBundle of
    every converting CRD, and a server-side dry-run of a Task passes the webhooks (rules set: the
    API server called them)."""
    for resource, names in WEBHOOK_CONFIGURATIONS.items():
        for name in names:
            proc = kubectl(layout, "get", resource, name, "-o", "json", check=False)
            if proc.returncode:
                return False, proc.stderr.strip()
            hooks = json.loads(proc.stdout)["webhooks"]
            if not all(h["clientConfig"].get("caBundle") and h.get("rules") for h in hooks):
                return False, f"{resource}/{name}: no caBundle or rules yet"
    for crd in converting_crds(layout):
        if not crd["spec"]["conversion"]["webhook"]["clientConfig"].get("caBundle"):
            return False, f"crd/{crd['metadata']['name']}: no conversion caBundle yet"
    proc = kubectl(layout, "create", "--dry-run=server", "-f", "-", stdin=json.dumps(PROBE_TASK), check=False)
    return proc.returncode == 0, proc.stderr.strip()


def up(layout: Layout, *, restart: bool, timeout: float = 180.0) -> dict[str, Any]:
    """Apply Tekton's config, start the webhook, wait until the API server's calls reach it, then
    start the controller. `restart`: the control plane was restarted, so are these."""
    began = time.monotonic()
    config = config_dir(layout)
    docs = objects(config)
    config_maps = [d for d in docs if d["kind"] == "ConfigMap"]
    service = kubectl(layout, "get", "service", WEBHOOK_SERVICE, "-n", NAMESPACE, "-o", "json", check=False)
    if service.returncode == 0 and json.loads(service.stdout)["spec"].get("type") != "ExternalName":
        # A ClusterIP Service keeps its allocated IP under apply: it cannot become ExternalName.
        kubectl(layout, "delete", "service", WEBHOOK_SERVICE, "-n", NAMESPACE)
    apply(layout, [d for d in docs if d["kind"] != "ConfigMap"])
    converted = point_conversions(layout)
    # Once the webhook has registered its rules, ConfigMaps of Tekton pass its config validation
    # (failurePolicy Fail): a cluster kept from an earlier run refuses them until the webhook runs.
    refused = apply(layout, config_maps, check=False)
    if refused.returncode and "failed calling webhook" not in refused.stderr:
        raise TektonError(f"kubectl apply of Tekton's ConfigMaps failed: {refused.stderr.strip()[-600:]}")
    result: dict[str, Any] = {"config": str(config), "objects": len(docs), "conversion_crds": len(converted),
                              "apply_seconds": round(time.monotonic() - began, 2)}
    processes = Processes(layout.processes)
    argvs = commands(layout)
    checks = {"tekton-webhook": lambda: webhook_answers(layout),
              "tekton-controller": lambda: _http_ok(TEKTON_CONTROLLER_PROBES_PORT)}
    for name in ORDER:
        argv, env = argvs[name]
        if not restart and processes.running(name, argv, env) and checks[name]()[0]:
            say(f"{name} is running and answers (pid {processes.records()[name].pid}); reusing it")
            result[name] = {"reused": True, "seconds_to_ready": 0.0}
        else:
            restart = True
            token_kubeconfig(layout, name)
            processes.start(name, argv, layout.logs / f"{name}.log", env)
            seconds = control_plane.wait_until(name, checks[name], processes, timeout)
            say(f"{name} answers after {seconds:.1f} s")
            result[name] = {"reused": False, "seconds_to_ready": round(seconds, 2)}
        if name == "tekton-webhook" and refused.returncode:
            apply(layout, config_maps)
    return result


def down_order() -> list[str]:
    return list(reversed(ORDER))


# Knative's webhook answers SIGTERM by failing its readiness probe for 45 s so that a load
# balancer drains it; nothing here balances, and its state lives in the API server.
STOP_TIMEOUTS = {"tekton-webhook": 2.0}
