"""The pool watcher's params and the names it shares with the cluster and triggers/.

Every number has bounds: the watcher runs for months, and a resync of 0 seconds or a watch that
ends at once would turn it into a loop that floods the API server.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .params import POOL_NAME, Reader, shown

MCO_API = "machineconfiguration.openshift.io/v1"
TEKTON_API = "tekton.dev/v1"


TOKEN_HEADER = "X-Cssr-Trigger-Token"
SECRET_NAME = "cssr-trigger-secret"
SECRET_KEY = "token"
DEFAULT_SECRET_FILE = f"/var/run/secrets/{SECRET_NAME}/{SECRET_KEY}"
SA_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
EVENTLISTENER = "cssr-deploy"

# Labels the TriggerTemplate puts on each PipelineRun (triggers/triggertemplate.yaml).
KEY_LABEL = "cssr-deploy/idempotency-key"
EVENT_ID_LABEL = "triggers.tekton.dev/triggers-eventid"

_NAME = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
# http(s), a host name or IPv4 address, a port, a plain path: no user info that would leak into
# logs, nothing a shell or a YAML document would read twice.
_URL = r"https?://[A-Za-z0-9]([-A-Za-z0-9.]{0,251}[A-Za-z0-9])?(:[0-9]{1,5})?(/[-A-Za-z0-9._~/%]*)?"
# An absolute path that climbs nowhere: the mounted Secret's file, not any file of the pod.
_FILE = r"/(?!.*(^|/)\.\.(/|$))[-A-Za-z0-9._/+@=]{1,4095}"
MAX_POOLS = 32


@dataclass(frozen=True)
class Params:
    pools: tuple[str, ...] = field(default=("worker",), metadata={
        "help": "MachineConfigPools to watch: a comma list or a JSON array (default: worker)"})
    eventlistener_url: str = field(default="", metadata={
        "help": "EventListener URL (default: http://el-cssr-deploy.<pipeline-namespace>.svc.cluster.local:8080)"})
    secret_file: str = field(default=DEFAULT_SECRET_FILE, metadata={
        "help": "file holding the shared secret (the mounted Secret cssr-trigger-secret)"})
    namespace: str = field(default="", metadata={
        "help": "the watcher's namespace, where its state ConfigMap lives (default: the pod's)"})
    pipeline_namespace: str = field(default="", metadata={
        "help": "namespace of the EventListener, the PipelineRuns and cssr-deploy-state (default: namespace)"})
    state_configmap: str = "cssr-watch-pools-state"
    deploy_state_configmap: str = "cssr-deploy-state"
    health_port: int = 8081
    resync_seconds: int = 30
    watch_timeout_seconds: int = 300
    confirm_seconds: int = 30

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, namespace_file: str = SA_NAMESPACE_FILE) -> Params:
        read = Reader(environ)
        pools = _pool_list(read)
        namespace = read.string("namespace", "", pattern=_NAME, hint="a namespace name")
        if not namespace:
            try:
                namespace = Path(namespace_file).read_text().strip()
            except OSError:
                pass
            if not namespace:
                read.fail(f"param namespace is empty and {namespace_file} is unreadable; set PARAM_NAMESPACE")
        pipeline_namespace = read.string("pipeline-namespace", "", pattern=_NAME, hint="a namespace name")
        params = cls(
            pools=pools,
            eventlistener_url=read.string("eventlistener-url", "", pattern=_URL,
                                          hint="an http(s) URL such as http://el-cssr-deploy.cssr.svc:8080"),
            secret_file=read.string("secret-file", DEFAULT_SECRET_FILE, pattern=_FILE,
                                    hint=f"an absolute path without .. such as {DEFAULT_SECRET_FILE}"),
            namespace=namespace,
            pipeline_namespace=pipeline_namespace or namespace,
            state_configmap=read.string("state-configmap", cls.state_configmap, pattern=_NAME,
                                        hint="a ConfigMap name"),
            deploy_state_configmap=read.string("deploy-state-configmap", cls.deploy_state_configmap, pattern=_NAME,
                                               hint="a ConfigMap name"),
            # 0 binds any free port (tests); the Deployment's probes name 8081.
            health_port=read.integer("health-port", cls.health_port, minimum=0, maximum=65535),
            # Each resync rereads two ConfigMaps; a watch that ends opens a new one. At the
            # minimum of 1 s the watcher makes a handful of requests per second, never a flood.
            resync_seconds=read.integer("resync-seconds", cls.resync_seconds, minimum=1, maximum=3600),
            watch_timeout_seconds=read.integer("watch-timeout-seconds", cls.watch_timeout_seconds, minimum=1,
                                               maximum=3600),
            confirm_seconds=read.integer("confirm-seconds", cls.confirm_seconds, minimum=0, maximum=3600),
        )
        read.done()
        return params

    @property
    def url(self) -> str:
        return self.eventlistener_url or (
            f"http://el-{EVENTLISTENER}.{self.pipeline_namespace}.svc.cluster.local:8080")


def _pool_list(read: Reader) -> tuple[str, ...]:
    raw = (read.raw("pools") or "").strip()
    if raw.startswith("["):
        value = read.json("pools", ["worker"], kind=list)
    else:
        value = [p.strip() for p in (raw or "worker").split(",") if p.strip()]
    # JSON may hold numbers, nulls, lists: only strings are names (str(1) would pass the pattern).
    pools = tuple(dict.fromkeys(p for p in value if isinstance(p, str)))
    bad = not all(isinstance(p, str) and re.fullmatch(POOL_NAME, p) for p in value)
    if bad or not pools or len(pools) > MAX_POOLS:
        read.fail(f"param pools={shown(raw)} must name 1 to {MAX_POOLS} MachineConfigPools, e.g. worker,worker-cnf "
                  '(or ["worker", "worker-cnf"])')
    return pools
