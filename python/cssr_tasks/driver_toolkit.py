"""The cluster's Driver Toolkit images: which image serves which RHCOS version, and which kernels an image holds.

The `openshift/driver-toolkit` ImageStream has one tag per RHCOS version the cluster has seen, and
`latest`, the release the cluster runs or is moving to. Released Driver Toolkit images carry no
usable kernel label (the `kernel-version` labels of the Dockerfile are filled from build args the
release build leaves empty); the kernels are in `/etc/driver-toolkit-release.json`, written by the
image's last layer: `{"KERNEL_VERSION": ..., "RT_KERNEL_VERSION": ...+rt, "RHEL_VERSION": ...}`.
`ReleaseReader` reads that file through the registry client, a blob GET of the layer that holds it
and never a pull of the image, once per image digest.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from . import kernels
from .cluster import RetrySettings
from .errors import CssrError
from .log import Log
from .registry import ImageRef, Registry, Traffic

NAMESPACE = "openshift"
STREAM = "driver-toolkit"
RELEASE_FILE = "/etc/driver-toolkit-release.json"
# What a kernel version may look like before it names builds, images and folders.
_KERNEL = re.compile(r"[0-9][A-Za-z0-9._+-]{0,199}")


def images_by_rhcos(stream: dict[str, Any], *, internal: bool = True) -> dict[str, str]:
    """RHCOS version -> Driver Toolkit pull spec; resolved status items win over spec tags.

    `internal` names the image through the cluster's registry (`<repository>@<digest>`), which the
    pipeline's ServiceAccount token can pull: every authenticated user may pull from the
    `openshift` namespace, and the registry pulls through from quay.io with the cluster's pull
    secret. The upstream reference needs that pull secret in the build step itself.
    """
    images: dict[str, str] = {}
    for tag in (stream.get("spec") or {}).get("tags") or []:
        source = tag.get("from") or {}
        if tag.get("name") != "latest" and source.get("kind") == "DockerImage" and source.get("name"):
            images[tag["name"]] = source["name"]
    for tag in (stream.get("status") or {}).get("tags") or []:
        if tag.get("tag") == "latest":
            continue
        reference = _item_reference(stream, tag, internal=internal)
        if reference:
            images[tag["tag"]] = reference
    return images


@dataclass(frozen=True)
class Latest:
    """The `latest` tag: the image to read, and the RHCOS tag that names the same image, if any."""

    reference: str
    rhcos: str | None
    internal: bool  # the reference goes through the cluster's registry


def latest(stream: dict[str, Any], *, internal: bool = True) -> Latest | None:
    tags = (stream.get("status") or {}).get("tags") or []
    tag = next((t for t in tags if t.get("tag") == "latest" and t.get("items")), None)
    if tag is None:
        return None
    reference = _item_reference(stream, tag, internal=internal)
    if not reference:
        return None
    image = tag["items"][0].get("image")
    rhcos = next((str(t["tag"]) for t in tags if t.get("tag") != "latest"
                  and any(i.get("image") == image for i in t.get("items") or [])), None)
    repository = (stream.get("status") or {}).get("dockerImageRepository")
    return Latest(reference, rhcos, internal=bool(internal and repository and image))


def _item_reference(stream: dict[str, Any], tag: dict[str, Any], *, internal: bool) -> str:
    items = tag.get("items") or []
    if not items:
        return ""
    repository = (stream.get("status") or {}).get("dockerImageRepository")
    if internal and repository and items[0].get("image"):
        return f"{repository}@{items[0]['image']}"
    return str(items[0].get("dockerImageReference") or "")


@dataclass(frozen=True)
class Release:
    """The kernels of one Driver Toolkit image; "" for one the file does not name."""

    kernel: str
    rt_kernel: str


@dataclass
class ReleaseReader:
    """Reads the release file of Driver Toolkit images, each image (by digest and architecture) once."""

    log: Log
    docker_config: str = ""
    tls_verify: bool | str = True
    retry: RetrySettings | None = None
    traffic: Traffic = field(default_factory=Traffic)
    reads: int = 0  # images read from the registry, not from the cache
    _cache: dict[tuple[str, str], Release | None] = field(default_factory=dict)

    def read(self, reference: str, *, architecture: str, internal: bool = False) -> Release | None:
        """The image's kernels, or None with a warning naming the image when they cannot be known."""
        key = (reference.rpartition("@")[2] or reference, architecture)
        if key not in self._cache:
            self._cache[key] = self._read(reference, architecture, internal=internal)
        return self._cache[key]

    def _read(self, reference: str, architecture: str, *, internal: bool) -> Release | None:
        self.reads += 1
        try:
            ref = ImageRef.parse(reference)
            with Registry.for_image(ref, docker_config=self.docker_config, tls_verify=self.tls_verify, log=self.log,
                                    retry=self.retry, internal=internal) as registry:
                try:
                    found = registry.read_file(ref, RELEASE_FILE, architecture=architecture)
                finally:
                    self.traffic.requests += registry.traffic.requests
                    self.traffic.bytes += registry.traffic.bytes
        except CssrError as e:
            self.log.warn(f"could not read {RELEASE_FILE} of the Driver Toolkit image {reference}: {e}; "
                          "going on without its kernels")
            return None
        if found is None:
            self.log.warn(f"the Driver Toolkit image {reference} has no {RELEASE_FILE} in any layer; going on "
                          "without its kernels (is it a Driver Toolkit image?)")
            return None
        self.log.info(f"read {RELEASE_FILE} from layer {found.layer + 1}/{found.layers} of {found.image} "
                      f"({self.traffic.requests} registry request(s), {self.traffic.bytes} bytes so far)")
        release = parse_release(found.data)
        if not release.kernel and not release.rt_kernel:
            self.log.warn(f"{RELEASE_FILE} of the Driver Toolkit image {reference} names no kernel "
                          "(KERNEL_VERSION, RT_KERNEL_VERSION); going on without its kernels")
            return None
        return release


def parse_release(data: bytes) -> Release:
    """KERNEL_VERSION and RT_KERNEL_VERSION of the file; a value that is not a kernel version counts as none."""
    try:
        content = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return Release("", "")
    if not isinstance(content, dict):
        return Release("", "")

    def kernel(key: str) -> str:
        value = kernels.normalize(str(content.get(key) or ""))
        return value if _KERNEL.fullmatch(value) else ""

    return Release(kernel("KERNEL_VERSION"), kernel("RT_KERNEL_VERSION"))
