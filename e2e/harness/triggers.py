"""Stage D: Tekton Triggers (the release crds/go.mod pins), its controller, webhook and core
interceptors as real pods on the real node, and the EventListener sink image the controller gives
every EventListener's Deployment.

The four binaries are built from build/triggers/go.mod (build.py) and put FROM scratch at ko's
/ko-app/<name>, as Stage C does for Tekton's (images.binary_image), pushed to the local registry as
127.0.0.1:25000/tekton-triggers/<name>:<version>. Triggers' own config/ and config/interceptors/ of
the module cache (never a copy) are applied server-side, minus config/300-* (the CRDs: Stage A
installs the same files), with two rewrites, both what Triggers' release does
(tekton/publish.yaml): `ko resolve` puts the image for each `ko://` path, here by digest, and sed
turns the "devel" release labels and triggers-info's version into the release tag. One setting
differs: EventListener sinks log at debug (EVENTLISTENER_LOG_LEVEL says why).

Nothing else differs from the release: the API server reaches the webhook through its ClusterIP
Service (kube-proxy's rules apply to the host's own connections too), and the sink reaches the core
interceptors by the Service's DNS name (cluster DNS). A second `up` with nothing changed applies
nothing (`kubectl diff` first) and restarts nothing.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from . import build, images, tekton
from .image_build import Buildah, content_key, ensure
from .layout import E2E, NODE_NAME, Layout
from .log import say

MODULE = "github.com/tektoncd/triggers"
WRAPPER = "triggers"
NAMESPACE = "tekton-pipelines"
REPOSITORY = "tekton-triggers"
FIELD_MANAGER = "cssr-e2e-triggers"
# cmd/<name> of the module; build.py names each binary triggers-<name>.
COMMANDS = ("controller", "webhook", "interceptors", "eventlistenersink")
DEPLOYMENTS = ("tekton-triggers-controller", "tekton-triggers-webhook", "tekton-triggers-core-interceptors")
WEBHOOK_CONFIGURATIONS = {
    "mutatingwebhookconfigurations": ["webhook.triggers.tekton.dev"],
    "validatingwebhookconfigurations": ["validation.webhook.triggers.tekton.dev", "config.webhook.triggers.tekton.dev"],
}
# The interceptor the suite's EventListener names; the core interceptors write its caBundle.
CEL_INTERCEPTOR = "cel"
# tekton/publish.yaml's three seds over the resolved YAML.
RELEASE_SEDS = (r'(triggers.tekton.dev/release): "devel"', r'(app.kubernetes.io/version): "devel"',
                r'(version): "devel"')
# The one change to the release's settings: EventListener sinks log at debug. A sink logs an event
# its interceptor rejects only at debug ("interceptor stopped trigger processing", pkg/sink/sink.go),
# and the tests wait for that line per event ID rather than sleep. At debug a sink also logs each
# event's headers (the test token among them).
LOGGING = "config-logging-triggers"
EVENTLISTENER_LOG_LEVEL = {"loglevel.eventlistener": "debug"}


class TriggersError(RuntimeError):
    pass


def version() -> str:
    return build.pinned_version(E2E / "build" / WRAPPER, MODULE)


def image_ref(name: str) -> str:
    return f"{images.registry.ADDRESS}/{REPOSITORY}/{name}:{version()}"


def build_images(layout: Layout, buildah: Buildah) -> dict[str, dict[str, Any]]:
    """One static binary each at /ko-app/<name>, as ko builds the release's images."""
    components = tuple(f"triggers-{name}" for name in COMMANDS)
    builds = build.build(layout, components)
    results: dict[str, dict[str, Any]] = {}
    for name, component in zip(COMMANDS, components, strict=True):
        binary = layout.binary(component)
        entrypoint = [f"/ko-app/{name}"]
        env = {"PATH": images.KO_PATH}
        key = content_key(binary, json.dumps([entrypoint, env]))
        ref = image_ref(name)
        results[name] = ensure(layout, buildah, ref, key,
                               images.binary_image(buildah, ref, key, binary, entrypoint=entrypoint, env=env))
        results[name].update(ref=f"{ref}@{results[name]['digest']}", go_build_seconds=builds[component]["seconds"],
                             go_built=builds[component]["built"])
    return results


def release_text(text: str, refs: dict[str, str]) -> str:
    """What `ko resolve` and publish.yaml's seds make of one file of config/."""
    for name, ref in refs.items():
        text = text.replace(f"ko://{MODULE}/cmd/{name}", ref)
    for pattern in RELEASE_SEDS:
        text = re.sub(pattern, rf'\1: "{version()}"', text)
    return text


def objects(config: Path, refs: dict[str, str]) -> list[dict[str, Any]]:
    """config/*.yaml and config/interceptors/*.yaml, less the CRDs, in file order, as released."""
    files = [f for f in sorted(config.glob("*.yaml")) if not f.name.startswith("300-")]
    files += sorted((config / "interceptors").glob("*.yaml"))
    docs = []
    for file in files:
        text = release_text(file.read_text(), refs)
        if "ko://" in text:
            raise TriggersError(f"{file} names an image this harness does not build ({text.split('ko://')[1][:80]}); "
                                "add its cmd to triggers.COMMANDS and build.py")
        docs += [d for d in yaml.safe_load_all(text) if d]
    for doc in docs:
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == LOGGING:
            doc["data"].update(EVENTLISTENER_LOG_LEVEL)
    return docs


def kubectl_apply(layout: Layout, docs: list[dict[str, Any]], verb: str = "apply") -> Any:
    return tekton.kubectl(layout, verb, "--server-side", f"--field-manager={FIELD_MANAGER}", "--force-conflicts",
                          "-f", "-", stdin=yaml.safe_dump_all(docs), check=False)


def differs(layout: Layout, docs: list[dict[str, Any]]) -> bool:
    """Whether applying would change anything (`kubectl diff` exits 0 for no difference, 1 for some).
    Another answer (a webhook that does not run yet refuses the dry-run) counts as a difference."""
    return kubectl_apply(layout, docs, "diff").returncode != 0


def pod_states(layout: Layout, deployment: dict[str, Any]) -> list[str]:
    """One phrase per pod of the Deployment: phase, node, and why a container waits."""
    selector = ",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items())
    pods = json.loads(tekton.kubectl(layout, "get", "pods", "-n", NAMESPACE, "-l", selector, "-o", "json").stdout)
    states = []
    for pod in pods["items"]:
        waiting = [f"{s['state']['waiting'].get('reason', '')} {s['state']['waiting'].get('message', '')}".strip()
                   for s in pod["status"].get("containerStatuses") or [] if "waiting" in s["state"]]
        states.append(f"pod {pod['metadata']['name']} {pod['status'].get('phase')} on "
                      f"{pod['spec'].get('nodeName') or 'no node'}{': ' + '; '.join(waiting) if waiting else ''}")
    return states


def deployment_ready(layout: Layout, name: str) -> tuple[bool, str]:
    """Available with every replica of the current template, and its pods Running on the real node."""
    proc = tekton.kubectl(layout, "get", "deployment", name, "-n", NAMESPACE, "-o", "json", check=False)
    if proc.returncode:
        return False, proc.stderr.strip()
    deployment = json.loads(proc.stdout)
    status = deployment.get("status") or {}
    available = any(c["type"] == "Available" and c["status"] == "True" for c in status.get("conditions") or [])
    replicas = deployment["spec"].get("replicas", 1)
    current = (status.get("observedGeneration") == deployment["metadata"]["generation"]
               and status.get("updatedReplicas") == replicas == status.get("availableReplicas")
               and not status.get("unavailableReplicas") and status.get("replicas") == replicas)
    states = pod_states(layout, deployment)
    on_node = len(states) == replicas and all(s.endswith(f"Running on {NODE_NAME}") for s in states)
    return available and current and on_node, "; ".join(states) or "no pod yet"


def webhook_answers(layout: Layout) -> tuple[bool, str]:
    """Knative has written caBundle and rules into the three webhook configurations, and a
    server-side dry-run of a TriggerBinding passes them (the API server called the webhook)."""
    for resource, names in WEBHOOK_CONFIGURATIONS.items():
        for name in names:
            proc = tekton.kubectl(layout, "get", resource, name, "-o", "json", check=False)
            if proc.returncode:
                return False, proc.stderr.strip()
            hooks = json.loads(proc.stdout)["webhooks"]
            if not all(h["clientConfig"].get("caBundle") and h.get("rules") for h in hooks):
                return False, f"{resource}/{name}: no caBundle or rules yet"
    probe = {"apiVersion": "triggers.tekton.dev/v1beta1", "kind": "TriggerBinding",
             "metadata": {"name": "e2e-webhook-probe", "namespace": NAMESPACE},
             "spec": {"params": [{"name": "probe", "value": "$(body.probe)"}]}}
    proc = tekton.kubectl(layout, "create", "--dry-run=server", "-f", "-", stdin=json.dumps(probe), check=False)
    return proc.returncode == 0, proc.stderr.strip()


def cel_interceptor_ready(layout: Layout) -> tuple[bool, str]:
    """The core interceptors have written their CA into ClusterInterceptor cel (the sink trusts it)."""
    proc = tekton.kubectl(layout, "get", "clusterinterceptor", CEL_INTERCEPTOR, "-o", "json", check=False)
    if proc.returncode:
        return False, proc.stderr.strip()
    return bool(json.loads(proc.stdout)["spec"]["clientConfig"].get("caBundle")), "no caBundle yet"


def wait(what: str, probe: Callable[[], tuple[bool, str]], timeout: float, fix: str) -> float:
    began = time.monotonic()
    while True:
        ok, last = probe()
        if ok:
            return time.monotonic() - began
        if time.monotonic() - began > timeout:
            raise TriggersError(f"{what} not ready after {timeout:.0f} s ({last.strip()[:400]}); {fix}")
        time.sleep(0.5)


def up(layout: Layout, timeout: float = 240.0) -> dict[str, Any]:
    """Build and push the images, apply Triggers' release where it differs, wait for the three
    Deployments' pods, the webhook and the cel interceptor's CA."""
    began = time.monotonic()
    built = build_images(layout, Buildah(layout))
    config = tekton.config_dir(layout, MODULE, WRAPPER)
    docs = objects(config, {name: built[name]["ref"] for name in COMMANDS})
    result: dict[str, Any] = {"version": version(), "config": str(config), "objects": len(docs),
                              "images": {name: {k: v for k, v in built[name].items() if k != "last_build"}
                                         for name in COMMANDS}}
    changed = differs(layout, docs)
    refused = None
    if changed:
        proc = kubectl_apply(layout, docs)
        # With the webhook's rules registered but its pod not serving yet (a restarted node), the
        # Triggers objects (the ClusterInterceptors) are refused: applied again once it serves.
        refused = [line for line in proc.stderr.splitlines() if line.strip()]
        if proc.returncode and not all("failed calling webhook" in line for line in refused if "Error" in line):
            raise TriggersError(f"kubectl apply of Triggers' config failed: {proc.stderr.strip()[-600:]}")
        say(f"applied Triggers {version()}'s config ({len(docs)} objects) from {config}")
    else:
        say(f"Triggers {version()}'s config is applied as it is ({len(docs)} objects); applying nothing")
    result["applied"] = changed
    fix = f"see `kubectl -n {NAMESPACE} describe pods` and `kubectl -n {NAMESPACE} logs deploy/<name>`"
    applied_at = time.monotonic()
    ready: dict[str, Any] = {}  # seconds from the apply until each is Available
    for name in DEPLOYMENTS:
        wait(f"Deployment {NAMESPACE}/{name}", lambda n=name: deployment_ready(layout, n), timeout, fix)
        ready[name] = round(time.monotonic() - applied_at, 2)
    result["deployments_available_seconds"] = ready
    seconds = wait("Triggers' webhook", lambda: webhook_answers(layout), 60.0, fix)
    if refused and any("failed calling webhook" in line for line in refused):
        say("Triggers' webhook refused objects before its pod served; applying them again")
        proc = kubectl_apply(layout, docs)
        if proc.returncode:
            raise TriggersError(f"kubectl apply of Triggers' config failed: {proc.stderr.strip()[-600:]}")
    # The core interceptors write the CA at start and then once a minute.
    cel = wait(f"ClusterInterceptor {CEL_INTERCEPTOR}'s caBundle", lambda: cel_interceptor_ready(layout), 90.0, fix)
    result["webhook_seconds"] = round(seconds, 2)
    result["cel_ca_seconds"] = round(cel, 2)
    result["reused"] = not changed and not any(b["built"] or b["pushed"] for b in built.values())
    result["seconds_to_ready"] = round(time.monotonic() - began, 2)
    say(f"Triggers {version()} ready after {result['seconds_to_ready']:.1f} s: "
        + ", ".join(f"{n} {s:.1f} s" for n, s in ready.items()))
    return result
