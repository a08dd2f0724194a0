"""Build the cluster's binaries from the pinned upstream modules in e2e/build/<module>/go.mod.

The wrapper modules hold no Go source: `go build <import path>` builds the upstream main
package with the versions the wrapper's go.mod and go.sum pin. A binary is rebuilt only when
its key changes (go.mod, go.sum, package, ldflags, Go version), so a second run builds nothing.
Builds run under `nice -n 19` (CI machines have two cores shared with other jobs) with their
own GOCACHE, so that the first build is a true cold build and its time means something.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .layout import E2E, Layout
from .log import say


@dataclass(frozen=True)
class Component:
    name: str
    module: str  # folder under e2e/build
    package: str

    @property
    def module_dir(self) -> Path:
        return E2E / "build" / self.module


COMPONENTS = (
    Component("etcd", "etcd", "go.etcd.io/etcd/server/v3"),
    Component("kube-apiserver", "kubernetes", "k8s.io/kubernetes/cmd/kube-apiserver"),
    Component("kube-controller-manager", "kubernetes", "k8s.io/kubernetes/cmd/kube-controller-manager"),
    Component("kube-scheduler", "kubernetes", "k8s.io/kubernetes/cmd/kube-scheduler"),
    Component("kubectl", "kubernetes", "k8s.io/kubernetes/cmd/kubectl"),
    Component("kubelet", "kubernetes", "k8s.io/kubernetes/cmd/kubelet"),
    Component("kube-proxy", "kubernetes", "k8s.io/kubernetes/cmd/kube-proxy"),
    Component("crictl", "cri-tools", "sigs.k8s.io/cri-tools/cmd/crictl"),
    Component("tekton-controller", "tekton", "github.com/tektoncd/pipeline/cmd/controller"),
    Component("tekton-webhook", "tekton", "github.com/tektoncd/pipeline/cmd/webhook"),
    Component("tkn", "tkn", "github.com/tektoncd/cli/cmd/tkn"),
    # What Tekton's TaskRun pods are made of (Stage C puts each FROM scratch into an image).
    Component("tekton-entrypoint", "tekton", "github.com/tektoncd/pipeline/cmd/entrypoint"),
    Component("tekton-nop", "tekton", "github.com/tektoncd/pipeline/cmd/nop"),
    Component("tekton-sidecarlogresults", "tekton", "github.com/tektoncd/pipeline/cmd/sidecarlogresults"),
    Component("tekton-workingdirinit", "tekton", "github.com/tektoncd/pipeline/cmd/workingdirinit"),
    # Stage D: cluster DNS, Tekton Triggers (each binary becomes an image FROM scratch), Multus.
    Component("coredns", "coredns", "github.com/coredns/coredns"),
    Component("triggers-controller", "triggers", "github.com/tektoncd/triggers/cmd/controller"),
    Component("triggers-webhook", "triggers", "github.com/tektoncd/triggers/cmd/webhook"),
    Component("triggers-interceptors", "triggers", "github.com/tektoncd/triggers/cmd/interceptors"),
    Component("triggers-eventlistenersink", "triggers", "github.com/tektoncd/triggers/cmd/eventlistenersink"),
    Component("multus", "multus", "gopkg.in/k8snetworkplumbingwg/multus-cni.v4/cmd/multus"),
)

STAGE_A = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
STAGE_B = ("tekton-controller", "tekton-webhook", "tkn")
TEKTON_IMAGES = ("tekton-entrypoint", "tekton-nop", "tekton-sidecarlogresults", "tekton-workingdirinit")
STAGE_C = ("kubelet", "kube-proxy", "crictl")
STAGE_D = ("coredns", "triggers-controller", "triggers-webhook", "triggers-interceptors",
           "triggers-eventlistenersink", "multus")


class BuildError(RuntimeError):
    pass


def pinned_version(module_dir: Path, module: str) -> str:
    """The version go.mod requires of `module`: the one pin both the build and the ldflags use."""
    text = (module_dir / "go.mod").read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", text, re.MULTILINE)
    if not match:
        raise BuildError(f"{module_dir}/go.mod does not require {module}; add `require {module} vX.Y.Z`")
    return match.group(1)


def go_env(layout: Layout) -> dict[str, str]:
    env = dict(os.environ)
    env.update(GOCACHE=str(layout.gocache), CGO_ENABLED="0", GOFLAGS="-trimpath -mod=readonly",
               GOTOOLCHAIN="local")
    return env


def release_time(module_dir: Path, module: str, version: str, env: dict[str, str]) -> str:
    """The module version's publication time from the proxy: a build date that never changes."""
    out = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"], cwd=module_dir, env=env,
                         capture_output=True, text=True, check=False)
    download = json.loads(out.stdout or "{}")
    info = json.loads(Path(download["Info"]).read_text()) if download.get("Info") else {}
    stamp = str(download.get("Time") or info.get("Time") or "")
    if out.returncode or not stamp:
        raise BuildError(f"go mod download {module}@{version} failed: {(out.stderr or out.stdout).strip()[-300:]}")
    return stamp.replace("+00:00", "Z")


def ldflags(component: Component, env: dict[str, str]) -> str:
    """Version stamps, as Kubernetes' hack/lib/version.sh sets them: `kubectl version` must show
    the real version (Knative, under Tekton, refuses a server that reports v0.0.0)."""
    flags = ["-s", "-w"]
    if component.module == "kubernetes":
        version = pinned_version(component.module_dir, "k8s.io/kubernetes")
        major, minor = version.lstrip("v").split(".")[:2]
        date = release_time(component.module_dir, "k8s.io/kubernetes", version, env)
        for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
            flags += [f"-X {pkg}.gitVersion={version}", f"-X {pkg}.gitMajor={major}",
                      f"-X {pkg}.gitMinor={minor}", f"-X {pkg}.gitTreeState=archive",
                      f"-X {pkg}.buildDate={date}"]
    if component.module == "tkn":
        # As tektoncd/cli's Makefile and .goreleaser.yml stamp it: `tkn version` shows the release.
        version = pinned_version(component.module_dir, "github.com/tektoncd/cli")
        flags.append(f"-X github.com/tektoncd/cli/pkg/cmd/version.clientVersion={version.lstrip('v')}")
    if component.module == "cri-tools":
        # As cri-tools' Makefile stamps it: `crictl --version` shows the release.
        version = pinned_version(component.module_dir, "sigs.k8s.io/cri-tools")
        flags.append(f"-X sigs.k8s.io/cri-tools/pkg/version.Version={version.lstrip('v')}")
    return " ".join(flags)


def build_key(component: Component, flags: str, go_version: str) -> str:
    digest = hashlib.sha256()
    for part in (component.package, flags, go_version,
                 (component.module_dir / "go.mod").read_text(), (component.module_dir / "go.sum").read_text()):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def build(layout: Layout, names: tuple[str, ...] = STAGE_A) -> dict[str, dict[str, object]]:
    """Build what is missing or stale; return, per component, whether it was built and how long it took."""
    layout.bin.mkdir(parents=True, exist_ok=True)
    env = go_env(layout)
    go_version = subprocess.run(["go", "version"], capture_output=True, text=True, check=True, env=env).stdout.strip()
    results: dict[str, dict[str, object]] = {}
    for component in (c for c in COMPONENTS if c.name in names):
        binary = layout.binary(component.name)
        stamp = binary.with_suffix(".key")
        flags = ldflags(component, env)
        key = build_key(component, flags, go_version)
        started = time.monotonic()
        if binary.exists() and stamp.exists() and stamp.read_text() == key:
            results[component.name] = {"built": False, "seconds": round(time.monotonic() - started, 2)}
            continue
        cold = not any(layout.gocache.glob("*/*")) if layout.gocache.exists() else True
        say(f"build {component.name} from {component.package} ({'cold' if cold else 'warm'} Go cache); "
            f"log in {layout.logs / ('build-' + component.name + '.log')}")
        layout.logs.mkdir(parents=True, exist_ok=True)
        with open(layout.logs / f"build-{component.name}.log", "w") as log:
            out = f"{binary}.{os.getpid()}"  # two harness runs may build the same binary at once
            proc = subprocess.run(["nice", "-n", "19", "go", "build", "-ldflags", flags, "-o", out, component.package],
                                  cwd=component.module_dir, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
        if proc.returncode:
            tail = (layout.logs / f"build-{component.name}.log").read_text()[-800:]
            raise BuildError(f"go build {component.package} failed (exit {proc.returncode}):\n{tail}")
        os.replace(out, binary)
        stamp.write_text(key)
        seconds = round(time.monotonic() - started, 1)
        say(f"built {component.name} in {seconds:.0f} s")
        results[component.name] = {"built": True, "seconds": seconds, "cold_go_cache": cold}
        record(layout.cache / "builds.json", component.name,
               {"seconds": seconds, "cold_go_cache": cold, "go": go_version, "at": time.time()})
    return results


def record(path: Path, name: str, entry: dict[str, object]) -> None:
    """Adds one build's time to a history file. Two harness runs may build at once (`up` beside `build`):
    the file is read and replaced under a lock, so that neither loses the other's entries."""
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        history: dict[str, object] = json.loads(path.read_text()) if path.exists() else {}
        history[name] = entry
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(history, indent=2))
        os.replace(tmp, path)


def last_builds(layout: Layout) -> dict[str, dict[str, object]]:
    """When each binary was last actually built, and how long that took (the cold time on a fresh machine)."""
    path = layout.cache / "builds.json"
    return json.loads(path.read_text()) if path.exists() else {}
