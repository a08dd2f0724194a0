"""The control plane's processes: etcd, kube-apiserver, kube-controller-manager, kube-scheduler.

Flags follow Kubernetes' hack/local-up-cluster.sh where it applies to one loopback-only node:
Node,RBAC authorization, ServiceAccount tokens signed by our key, an audit log at Metadata level
(the RBAC tests read every request's user, verb and status from it), controllers with their own
ServiceAccount credentials, no leader election. Everything listens on 127.0.0.1 only, but the API
server: it listens on NODE_IP, an address of a link of its own (hostnet.py), so that pods reach it too.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml

from . import certs, hostnet
from .layout import (
    APISERVER_PORT,
    CONTROLLER_MANAGER_PORT,
    ETCD_PEER_PORT,
    HOST,
    NODE_IP,
    SCHEDULER_PORT,
    SERVICE_CIDR,
    Layout,
    api_url,
    etcd_url,
)
from .log import say
from .processes import Processes

ORDER = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]

# Health probes are not audited: they would bury the suite's requests.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "nonResourceURLs": ["/healthz*", "/readyz*", "/livez*", "/version"]},
        {"level": "Metadata"},
    ],
}


class StartError(RuntimeError):
    pass


def write_kubeconfig(path: Path, pki: Path, user: str, *, embed: bool = False) -> None:
    """A kubeconfig for one client certificate; embedded (portable) for the one handed to people."""
    def ref(key: str, file: Path) -> dict[str, str]:
        if embed:
            import base64
            return {f"{key}-data": base64.b64encode(file.read_bytes()).decode()}
        return {key: str(file)}

    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "cssr-e2e",
        "clusters": [{"name": "cssr-e2e", "cluster": {"server": api_url(),
                                                       **ref("certificate-authority", pki / "ca.crt")}}],
        "users": [{"name": user, "user": {**ref("client-certificate", pki / f"{user}.crt"),
                                          **ref("client-key", pki / f"{user}.key")}}],
        "contexts": [{"name": "cssr-e2e", "context": {"cluster": "cssr-e2e", "user": user}}],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)


def commands(layout: Layout) -> dict[str, list[str]]:
    pki, state = layout.pki, layout.state
    b = layout.binary
    scheduler_config = state / "kube-scheduler.yaml"
    return {
        "etcd": [
            str(b("etcd")), "--name=e2e", f"--data-dir={layout.etcd_data}",
            f"--listen-client-urls={etcd_url()}", f"--advertise-client-urls={etcd_url()}",
            f"--listen-peer-urls=http://{HOST}:{ETCD_PEER_PORT}",
            f"--initial-advertise-peer-urls=http://{HOST}:{ETCD_PEER_PORT}",
            f"--initial-cluster=e2e=http://{HOST}:{ETCD_PEER_PORT}", "--log-level=warn",
        ],
        "kube-apiserver": [
            str(b("kube-apiserver")), f"--etcd-servers={etcd_url()}",
            f"--bind-address={NODE_IP}", f"--advertise-address={NODE_IP}", f"--secure-port={APISERVER_PORT}",
            f"--tls-cert-file={pki / 'kube-apiserver.crt'}", f"--tls-private-key-file={pki / 'kube-apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}", "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki / 'service-account.pub'}",
            f"--service-account-signing-key-file={pki / 'service-account.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--kubelet-client-certificate={pki / 'kube-apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'kube-apiserver-kubelet-client.key'}",
            # The node's name resolves nowhere: logs and exec go to its InternalIP (NODE_IP).
            "--kubelet-preferred-address-types=InternalIP",
            "--enable-admission-plugins=NodeRestriction", "--allow-privileged=true",
            f"--audit-policy-file={state / 'audit-policy.yaml'}", f"--audit-log-path={layout.audit_log}",
            "--audit-log-maxsize=200", "--audit-log-maxbackup=1",
            f"--cert-dir={state / 'apiserver-certs'}",
        ],
        "kube-controller-manager": [
            str(b("kube-controller-manager")), f"--kubeconfig={layout.kubeconfig('kube-controller-manager')}",
            f"--authentication-kubeconfig={layout.kubeconfig('kube-controller-manager')}",
            f"--authorization-kubeconfig={layout.kubeconfig('kube-controller-manager')}",
            f"--bind-address={HOST}", f"--secure-port={CONTROLLER_MANAGER_PORT}",
            f"--cert-dir={state / 'controller-manager-certs'}",
            f"--service-account-private-key-file={pki / 'service-account.key'}",
            f"--root-ca-file={pki / 'ca.crt'}", f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}", f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--use-service-account-credentials", "--leader-elect=false", "--controllers=*",
        ],
        "kube-scheduler": [
            str(b("kube-scheduler")), f"--config={scheduler_config}",
            f"--authentication-kubeconfig={layout.kubeconfig('kube-scheduler')}",
            f"--authorization-kubeconfig={layout.kubeconfig('kube-scheduler')}",
            f"--bind-address={HOST}", f"--secure-port={SCHEDULER_PORT}",
        ],
    }


def write_configs(layout: Layout) -> None:
    certs.ensure(layout.pki)
    for user in ("kube-controller-manager", "kube-scheduler", "admin"):
        write_kubeconfig(layout.kubeconfig(user), layout.pki, user)
    write_kubeconfig(layout.admin_kubeconfig, layout.pki, "admin", embed=True)
    (layout.state / "audit-policy.yaml").write_text(yaml.safe_dump(AUDIT_POLICY, sort_keys=False))
    (layout.state / "kube-scheduler.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": str(layout.kubeconfig("kube-scheduler"))},
        "leaderElection": {"leaderElect": False},
    }, sort_keys=False))


def _get(url: str, context: ssl.SSLContext | None, timeout: float = 3.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, context=context, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (OSError, urllib.error.URLError) as e:
        return 0, str(e)


def admin_context(layout: Layout) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(layout.pki / "ca.crt"))
    context.load_cert_chain(str(layout.pki / "admin.crt"), str(layout.pki / "admin.key"))
    return context


def probes(layout: Layout) -> dict[str, Callable[[], tuple[bool, str]]]:
    """Per component, a check that it serves: etcd's /health, the API server's /readyz, the
    controller-manager's and scheduler's /healthz (self-signed serving certificates)."""
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE

    def etcd() -> tuple[bool, str]:
        status, body = _get(f"{etcd_url()}/health", None)
        return status == 200 and json.loads(body or "{}").get("health") == "true", body

    def apiserver() -> tuple[bool, str]:
        status, body = _get(f"{api_url()}/readyz", admin_context(layout))
        return status == 200, body

    def healthz(port: int) -> Callable[[], tuple[bool, str]]:
        def probe() -> tuple[bool, str]:
            status, body = _get(f"https://{HOST}:{port}/healthz", insecure)
            return status == 200, body
        return probe

    return {"etcd": etcd, "kube-apiserver": apiserver,
            "kube-controller-manager": healthz(CONTROLLER_MANAGER_PORT), "kube-scheduler": healthz(SCHEDULER_PORT)}


def wait_until(name: str, probe: Callable[[], tuple[bool, str]], processes: Processes, timeout: float) -> float:
    began = time.monotonic()
    last = ""
    while time.monotonic() - began < timeout:
        ok, last = probe()
        if ok:
            return time.monotonic() - began
        record = processes.records().get(name)
        if record is None or not processes.alive(record):
            log = Path(record.log).read_text(errors="replace")[-1500:] if record else ""
            raise StartError(f"{name} exited while starting; the end of its log:\n{log}")
        time.sleep(0.25)
    raise StartError(f"{name} not healthy after {timeout:.0f} s (last answer: {last.strip()[:300]}); "
                     f"see {processes.records()[name].log}")


def up(layout: Layout, timeout: float = 180.0) -> dict[str, dict[str, object]]:
    """Start what is not running healthy with the current flags; return per component whether it
    was reused or started, and how long it took to serve."""
    for folder in (layout.state, layout.logs, layout.etcd_data):
        folder.mkdir(parents=True, exist_ok=True)
    layout.etcd_data.chmod(0o700)
    hostnet.ensure_node_link()
    write_configs(layout)
    processes = Processes(layout.processes)
    argvs, checks = commands(layout), probes(layout)
    result: dict[str, dict[str, object]] = {}
    restarted = False
    for name in ORDER:
        # Whatever comes after a restarted component is restarted too: it may hold stale state.
        result[name] = start_or_reuse(processes, name, argvs[name], checks[name],
                                      log=layout.logs / f"{name}.log", timeout=timeout, restart=restarted)
        restarted = restarted or not result[name]["reused"]
    return result


def start_or_reuse(processes: Processes, name: str, argv: list[str], probe: Callable[[], tuple[bool, str]],
                   *, log: Path, timeout: float, restart: bool) -> dict[str, object]:
    """Reuse the recorded process when it runs healthy with this argv (and `restart` is false); else
    start it and wait until its probe passes. Says which, and how long the wait took."""
    if not restart and processes.running(name, argv) and probe()[0]:
        say(f"{name} is running and healthy (pid {processes.records()[name].pid}); reusing it")
        return {"reused": True, "seconds_to_ready": 0.0}
    processes.start(name, argv, log)
    seconds = wait_until(name, probe, processes, timeout)
    say(f"{name} is healthy after {seconds:.1f} s")
    return {"reused": False, "seconds_to_ready": round(seconds, 2)}


def down(layout: Layout, first: list[str] | None = None,
         timeouts: dict[str, float] | None = None) -> list[str]:
    """Stop every recorded process: `first` (Stage B's, which talk to the API server), then the
    control plane in reverse order of start."""
    processes = Processes(layout.processes)
    names = list(processes.records())
    processes.stop_all((first or []) + list(reversed(ORDER)), timeouts)
    return names
