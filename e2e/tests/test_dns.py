"""Stage D, cluster DNS: a pod on the real node resolves Service names through the kube-dns
Service (kube-proxy DNATs 10.96.0.10:53 to CoreDNS on the node's address), by short name from its
namespace's search list and by FQDN, reaches a Service it resolved through its ClusterIP, and gets
NXDOMAIN for a name that does not exist. CoreDNS is the real one (dns.py), built from its module.

One client pod runs every lookup (busybox's nslookup and wget) and prints each section after a
`--- <name>` line; the tests read their section from its log.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from e2e.harness import dns
from e2e.harness.layout import CLUSTER_DNS_IP, CLUSTER_DOMAIN, FIRST_SERVICE_IP, NODE_IP, Layout
from e2e.harness.processes import Processes
from test_node import busybox_ref, logs, run_pod

from cssr_tasks.cluster import Cluster

from conftest import wait_for

WEB_PORT = 8080
BUSYBOX = "/bin/busybox"


def _web_pod(namespace: str) -> dict[str, Any]:
    # busybox's httpd serves a page naming the pod, so an answer shows which pod the Service reached.
    script = (f"{BUSYBOX} mkdir -p /www && echo \"served by $({BUSYBOX} hostname)\" > /www/index.html && "
              f"exec {BUSYBOX} httpd -f -p {WEB_PORT} -h /www")
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": namespace, "labels": {"app": "web"}},
        "spec": {"terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "httpd", "image": busybox_ref(), "imagePullPolicy": "Never",
                                 "command": [BUSYBOX, "sh", "-c", script],
                                 "ports": [{"containerPort": WEB_PORT}],
                                 "readinessProbe": {"tcpSocket": {"port": WEB_PORT}, "periodSeconds": 1}}]},
    }


def _web_service(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": namespace},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": WEB_PORT}]}}


def _client_script(namespace: str, cluster_ip: str) -> str:
    fqdn = f"web.{namespace}.svc.{CLUSTER_DOMAIN}"
    sections = {
        "resolv.conf": f"{BUSYBOX} cat /etc/resolv.conf",
        "kubernetes": f"{BUSYBOX} nslookup kubernetes.default.svc.{CLUSTER_DOMAIN}",
        "reverse": f"{BUSYBOX} nslookup {FIRST_SERVICE_IP}",
        "short": f"{BUSYBOX} nslookup web",
        "fqdn": f"{BUSYBOX} nslookup {fqdn}",
        # wget looks the short name up through the C library's resolver (search list, ndots).
        # No -T: busybox-static 1.35's wget segfaults with it.
        "http-by-name": f"{BUSYBOX} wget -q -O - http://web:80/",
        "http-by-ip": f"{BUSYBOX} wget -q -O - http://{cluster_ip}:80/",
        "missing": f"{BUSYBOX} nslookup no-such-service.{namespace}.svc.{CLUSTER_DOMAIN}",
    }
    return "; ".join(f"echo '--- {name}'; {command} 2>&1; echo \"exit=$?\"" for name, command in sections.items())


def _sections(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in re.finditer(r"^--- (\S+)\n(.*?)(?=^--- |\Z)", text, re.M | re.S)}


@pytest.fixture(scope="module")
def lookups(admin: Cluster, kubectl: Any) -> Iterator[dict[str, Any]]:
    """A namespace with a web pod behind a ClusterIP Service, and the client pod's sections."""
    namespace = f"dns-{int(time.time())}"
    kubectl("create", "namespace", namespace)
    try:
        admin.create(_web_pod(namespace))
        service = admin.create(_web_service(namespace))
        cluster_ip = service["spec"]["clusterIP"]

        def web_ready() -> bool:
            pod = admin.get("v1", "pods", "web", namespace)
            conditions = {c["type"]: c["status"] for c in (pod.get("status") or {}).get("conditions") or []}
            slices = admin.list("discovery.k8s.io/v1", "endpointslices", namespace=namespace)
            ready = [e for s in slices for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready")]
            return conditions.get("Ready") == "True" and bool(ready)
        wait_for("pod web Ready behind Service web", web_ready, timeout=120)
        pod = run_pod(admin, namespace, "client", _client_script(namespace, cluster_ip))
        text = logs(kubectl, namespace, "client")
        yield {"namespace": namespace, "cluster_ip": cluster_ip, "pod": pod, "text": text,
               "sections": _sections(text)}
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def section(lookups: dict[str, Any], name: str, exit_code: int | None = 0) -> str:
    body = lookups["sections"].get(name)
    assert body is not None, f"no section {name} in the client's log:\n{lookups['text']}"
    if exit_code is not None:
        assert f"exit={exit_code}" in body, f"section {name} did not exit {exit_code}:\n{body}"
    return str(body)


def addresses(answer: str) -> list[str]:
    """The addresses of busybox nslookup's answer (after its `Name:` line; the server's come before)."""
    _, _, after = answer.partition("Name:")
    return re.findall(r"^Address(?: \d+)?:\s*(\S+)", after, re.M)


def test_the_pod_resolv_conf_names_the_cluster_dns_service(lookups: dict[str, Any]) -> None:
    text = section(lookups, "resolv.conf")
    assert re.search(rf"^nameserver {re.escape(CLUSTER_DNS_IP)}$", text, re.M), text
    [search] = re.findall(r"^search (.*)$", text, re.M)
    assert search.split()[:3] == [f"{lookups['namespace']}.svc.{CLUSTER_DOMAIN}", f"svc.{CLUSTER_DOMAIN}",
                                  CLUSTER_DOMAIN], text
    assert "ndots:5" in text


def test_the_kubernetes_service_resolves_to_its_cluster_ip(lookups: dict[str, Any]) -> None:
    answer = section(lookups, "kubernetes")
    assert re.search(rf"^Server:\s+{re.escape(CLUSTER_DNS_IP)}$", answer, re.M), answer
    assert addresses(answer) == [FIRST_SERVICE_IP], answer


def test_the_kubernetes_service_ip_resolves_back_to_its_name(lookups: dict[str, Any]) -> None:
    answer = section(lookups, "reverse")
    assert f"kubernetes.default.svc.{CLUSTER_DOMAIN}" in answer, answer


def test_a_service_resolves_by_short_name_and_by_fqdn(lookups: dict[str, Any]) -> None:
    fqdn = f"web.{lookups['namespace']}.svc.{CLUSTER_DOMAIN}"
    # busybox's nslookup tries the short name with every domain of the search list and exits 1 when
    # any of them is NXDOMAIN; the first, <namespace>.svc.cluster.local, must give the Service.
    short, full = section(lookups, "short", exit_code=None), section(lookups, "fqdn")
    assert addresses(full) == [lookups["cluster_ip"]], full
    assert fqdn in full
    assert re.search(rf"^Name:\s+{re.escape(fqdn)}\nAddress:\s+{re.escape(lookups['cluster_ip'])}$", short, re.M), short


def test_a_service_answers_http_through_its_cluster_ip(lookups: dict[str, Any]) -> None:
    # kube-proxy's DNAT: ClusterIP port 80 to the pod's 8080, to the address resolved in the pod and
    # to the one the API server allocated.
    assert section(lookups, "http-by-name").startswith("served by web\n"), lookups["sections"]["http-by-name"]
    assert section(lookups, "http-by-ip").startswith("served by web\n"), lookups["sections"]["http-by-ip"]


def test_a_name_that_does_not_exist_is_nxdomain(lookups: dict[str, Any]) -> None:
    answer = section(lookups, "missing", exit_code=1)
    assert "NXDOMAIN" in answer, answer
    assert addresses(answer) == [], answer


def test_coredns_listens_on_the_node_address_only(layout: Layout) -> None:
    record = Processes(layout.processes).records()[dns.NAME]
    listening = []
    for flag in ("-lunpH", "-ltnpH"):
        out = subprocess.run(["ss", flag], capture_output=True, text=True, check=True).stdout
        listening += [line.split()[3] for line in out.splitlines() if f"pid={record.pid}," in line]
    dns_ports = sorted({a for a in listening if a.endswith(":53")})
    assert dns_ports == [f"{NODE_IP}:53"], listening


def test_a_second_up_starts_nothing_and_writes_nothing(layout: Layout, kubectl: Any) -> None:
    def versions() -> dict[str, str]:
        got = json.loads(kubectl("get", "-n", dns.NAMESPACE, "-o", "json", "service/kube-dns",
                                 "endpointslice/kube-dns-host", "serviceaccount/coredns").stdout)["items"]
        return {i["kind"]: i["metadata"]["resourceVersion"] for i in got}
    pid = Processes(layout.processes).records()[dns.NAME].pid
    before, corefile_mtime = versions(), dns.corefile_path(layout).stat().st_mtime_ns
    kubeconfig_mtime = layout.kubeconfig(dns.NAME).stat().st_mtime_ns
    result = dns.up(layout)
    assert result["reused"] is True
    assert Processes(layout.processes).records()[dns.NAME].pid == pid
    assert versions() == before
    assert dns.corefile_path(layout).stat().st_mtime_ns == corefile_mtime
    assert layout.kubeconfig(dns.NAME).stat().st_mtime_ns == kubeconfig_mtime
