"""What a registry's manifests say, read without the network: media types, one manifest, the image
of one architecture in a manifest list, the config blob and its labels. The client in registry.py
fetches; this module reads what it fetched.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from .errors import ApiError, CssrError
from .registry_refs import DIGEST, ImageRef

# Accept every manifest type buildah, podman and docker push; a registry that stores an OCI
# manifest answers 404 to a client that does not accept OCI.
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)


@dataclass(frozen=True)
class Manifest:
    data: dict[str, Any]
    digest: str
    media_type: str

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES or "manifests" in self.data

    @classmethod
    def received(cls, body: bytes, data: dict[str, Any], digest: str, content_type: str) -> Manifest:
        """The manifest as a registry answered it: `digest` from Docker-Content-Digest, when it sent one."""
        if not DIGEST.fullmatch(digest):
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
        return cls(data, digest, str(data.get("mediaType") or content_type.partition(";")[0]))


@dataclass(frozen=True)
class FileInImage:
    data: bytes
    image: ImageRef  # the architecture's image, by digest
    layer: int  # index of the layer that holds the file
    layers: int


def platform_image(ref: ImageRef, index: Manifest, architecture: str) -> ImageRef:
    """The image of linux/`architecture` that the manifest list or OCI index `index` of `ref` names."""
    entries = [m for m in index.data.get("manifests") or [] if isinstance(m, dict)]
    chosen = next((m for m in entries if (m.get("platform") or {}).get("architecture") == architecture
                   and (m.get("platform") or {}).get("os", "linux") == "linux"), None)
    if chosen is None or not DIGEST.fullmatch(str(chosen.get("digest") or "")):
        offered = sorted({str((m.get("platform") or {}).get("architecture")) for m in entries})
        raise CssrError(f"{ref} is a manifest list without a linux/{architecture} image (it has "
                        f"{', '.join(offered) or 'none'}); name the image of the nodes' architecture")
    return ImageRef(ref.registry, ref.repository, "", str(chosen["digest"]))


def config_digest(ref: ImageRef, manifest: Manifest) -> str:
    """The digest of the image's config blob, which its manifest names."""
    config = manifest.data.get("config") or {}
    digest = str(config.get("digest") or "")
    if not DIGEST.fullmatch(digest):
        raise ApiError(f"could not read the config of {ref}: its manifest names no config blob", status=200)
    return digest


def labels_of(config: dict[str, Any]) -> dict[str, str]:
    """The labels of an image config blob."""
    labels = (config.get("config") or {}).get("Labels") or {}
    return {str(k): str(v) for k, v in labels.items()}


def layers_of(manifest: Manifest) -> list[dict[str, Any]]:
    return [layer for layer in manifest.data.get("layers") or [] if isinstance(layer, dict)]
