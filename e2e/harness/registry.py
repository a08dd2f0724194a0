"""Stage C's local registry: Debian's docker-registry (distribution 2.8) on 127.0.0.1:25000, plain
http, no auth, its storage under .cache/e2e/registry; and the few reads of it the image builds
need (does this tag exist, with which labels).

It runs as a recorded host process like the cluster's (processes.py), so `make e2e-down` stops
it and a second `make e2e` reuses it. The node pulls Tekton's, the suite's and the stand-in
images from it, and pods push to it at 10.250.0.1 (it listens on every interface).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from . import control_plane
from .layout import HOST, REGISTRY_PORT, Layout
from .log import say
from .processes import Processes

NAME = "registry"
BINARY = Path("/usr/bin/docker-registry")
ADDRESS = f"{HOST}:{REGISTRY_PORT}"
# Every interface: the host reaches it at ADDRESS, pods at the node link's 10.250.0.1 (their
# 127.0.0.1 is their own), where build-cssr-init pushes and check-cssr-init looks. docker-registry
# takes one address only; the link's address cannot be used alone, as Tekton's image flags and
# the node's pulls name 127.0.0.1.
LISTEN = f":{REGISTRY_PORT}"
MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
))


class RegistryError(RuntimeError):
    pass


def config(layout: Layout) -> str:
    # The packaged /etc/docker/registry/config.yml has htpasswd auth and listens on :5000 on all
    # interfaces: this one is open (no auth), as a node's pull needs no secret here.
    return (f"version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {layout.registry_root / 'storage'}\n"
            f"  delete:\n    enabled: true\n"
            f"http:\n  addr: {LISTEN}\n  secret: cssr-e2e-local\n")


def command(layout: Layout) -> tuple[list[str], dict[str, str]]:
    path = layout.registry_root / "config.yml"
    # The config's text goes into the record's env, so a changed config restarts the process.
    return [str(BINARY), "serve", str(path)], {"CSSR_E2E_REGISTRY_CONFIG": config(layout)}


def probe() -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(f"http://{ADDRESS}/v2/", timeout=3) as response:
            return response.status == 200, ""
    except (OSError, urllib.error.URLError) as e:
        return False, str(e)


def up(layout: Layout, timeout: float = 30.0) -> dict[str, Any]:
    """Start the registry unless it runs with this config and answers /v2/."""
    if not BINARY.exists():
        raise RegistryError(f"{BINARY} is missing; install Debian's docker-registry "
                            "(scripts/install-system-deps does)")
    layout.registry_root.mkdir(parents=True, exist_ok=True)
    argv, env = command(layout)
    (layout.registry_root / "config.yml").write_text(env["CSSR_E2E_REGISTRY_CONFIG"])
    processes = Processes(layout.processes)
    record = processes.running(NAME, argv, env)
    if record and probe()[0]:
        say(f"registry is running on {ADDRESS} (pid {record.pid}); reusing it")
        return {"reused": True, "seconds_to_ready": 0.0, "address": ADDRESS}
    processes.start(NAME, argv, layout.logs / f"{NAME}.log", env)
    seconds = control_plane.wait_until(NAME, probe, processes, timeout)
    say(f"registry answers on http://{ADDRESS}/v2/ after {seconds:.1f} s")
    return {"reused": False, "seconds_to_ready": round(seconds, 2), "address": ADDRESS}


def _get(path: str, accept: str = "") -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(f"http://{ADDRESS}{path}", headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as e:
        body = e.read()
        e.close()
        return e.code, body, dict(e.headers)
    except OSError as e:
        raise RegistryError(f"registry at {ADDRESS} does not answer ({e}); start it with "
                            "`python -m e2e.harness up`") from e


def manifest(repository: str, tag: str) -> tuple[str, dict[str, Any]] | None:
    """The digest and manifest of repository:tag, or None when the tag is not there."""
    status, body, headers = _get(f"/v2/{repository}/manifests/{tag}", MANIFEST_TYPES)
    if status == 404:
        return None
    if status != 200:
        raise RegistryError(f"GET manifest {repository}:{tag} answered {status}: {body[:200]!r}")
    return headers.get("Docker-Content-Digest", ""), json.loads(body)


def blob(repository: str, digest: str) -> bytes:
    status, body, _ = _get(f"/v2/{repository}/blobs/{digest}")
    if status != 200:
        raise RegistryError(f"GET blob {repository}@{digest} answered {status}")
    return body


def image_config(repository: str, tag: str) -> dict[str, Any] | None:
    """The image's config document (its `config` holds Entrypoint, Env, Labels), or None."""
    found = manifest(repository, tag)
    if found is None:
        return None
    config_blob: dict[str, Any] = json.loads(blob(repository, found[1]["config"]["digest"]))
    return config_blob


def label(repository: str, tag: str, key: str) -> str | None:
    """One label of the pushed image: the build key the harness compares before building."""
    document = image_config(repository, tag)
    if document is None:
        return None
    labels = (document.get("config") or {}).get("Labels") or {}
    value = labels.get(key)
    return str(value) if value is not None else None

