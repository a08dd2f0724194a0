"""The cssr-init image of a kernel set in the registry: its name, its labels, and whether it is there.

One rule, shared by check-init-image (the Pipeline's `when` guard of the build) and build-init-image
(which still checks before it builds, so that the Task stays safe on its own): the image exists when
`<image-repository>:<kernel-set-id>` is in the registry and its labels name exactly this kernel set.
Task modules never import each other; both import this one. It also reads the params they share
(docker-config).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import kernels
from .cluster import RetrySettings
from .errors import ConfigError
from .log import Log
from .params import Reader
from .registry import ImageRef, Registry
from .registry_refs import Credentials, read_docker_config

# read_docker_config: the image tasks read their docker-config param through here.
__all__ = ["DEFAULT_REPOSITORY", "LABEL_KERNELS", "LABEL_SET_ID", "Found", "check_reference", "lookup",
           "read_docker_config", "read_kernel_set"]
DEFAULT_REPOSITORY = "image-registry.openshift-image-registry.svc:5000/cssr/cssr-init"
LABEL_SET_ID = "cssr-deploy.kernel-set-id"
LABEL_KERNELS = "cssr-deploy.kernel-versions"
_KERNEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_SET_ID = r"[0-9a-f]{12}"


@dataclass(frozen=True)
class Found:
    image: ImageRef  # <image-repository>:<kernel-set-id>
    digest: str  # what the registry serves for the tag; "" when the tag is absent
    exists: bool  # the tag is there and its labels name exactly this kernel set
    held: str = ""  # the kernels a tag of another kernel set holds
    login: Credentials | None = None  # the login the registry accepted (the token, or the docker config's)

    @property
    def other_set(self) -> bool:
        """The tag is there but holds other kernels (pushed by hand, say)."""
        return bool(self.digest) and not self.exists

    def __str__(self) -> str:
        if not self.digest:
            return f"{self.image} is not in the registry"
        if self.exists:
            return f"{self.image} exists ({self.digest}) with the trees of this kernel set"
        return f"{self.image} exists ({self.digest}) but holds {self.held!r}, not this kernel set"


def lookup(repository: str, kernel_set_id: str, kernel_versions: list[str], *, docker_config: str,
           tls_verify: bool | str, log: Log, retry: RetrySettings | None = None) -> Found:
    """Ask the registry for the kernel set's tag and read its labels; never writes."""
    target = ImageRef.parse(repository).with_tag(kernel_set_id)
    with Registry.for_image(target, docker_config=docker_config, tls_verify=tls_verify, log=log,
                            retry=retry) as registry:
        digest = registry.manifest_digest(target)
        login = registry.credentials
        if digest is None:
            return Found(target, "", exists=False, login=login)
        labels = registry.labels(target)
    wanted = {LABEL_SET_ID: kernel_set_id, LABEL_KERNELS: " ".join(kernel_versions)}
    # A multi-arch index has no labels of its own (labels is None): its tag is trusted as it stands.
    if labels is not None and any(labels.get(k) != v for k, v in wanted.items()):
        return Found(target, digest, exists=False, held=labels.get(LABEL_KERNELS) or "no kernel label", login=login)
    return Found(target, digest, exists=True, login=login)


# -- the params both tasks read -------------------------------------------------------------------


def read_kernel_set(read: Reader) -> tuple[list[str], str]:
    """kernel-versions (normalized, sorted) and kernel-set-id, which must be its id."""
    versions = read.json("kernel-versions", [], kind=list, required=True,
                         hint='pass the kernel-versions result of detect-kernel, e.g. ["5.14.0-427.el9.x86_64"]')
    set_id = read.string("kernel-set-id", required=True, pattern=_SET_ID,
                         hint="pass the kernel-set-id result of detect-kernel (12 hex digits)")
    bad = [v for v in versions if not isinstance(v, str) or not _KERNEL.fullmatch(kernels.normalize(v))]
    if bad:
        read.fail(f"param kernel-versions holds values that are not kernel versions: {bad[:3]}")
        return [], set_id
    if read.raw("kernel-versions") and not versions:
        read.fail("param kernel-versions is empty; the kernel set needs at least one kernel")
    kernel_list = kernels.kernel_set(str(v) for v in versions)
    if kernel_list and re.fullmatch(_SET_ID, set_id):
        expected = kernels.kernel_set_id(kernel_list)
        if set_id != expected:
            read.fail(f"param kernel-set-id={set_id} is not the id of kernel-versions ({expected}); pass both "
                      "from the same detect-kernel run")
    return kernel_list, set_id


def check_reference(read: Reader, name: str, value: str, *, bare: bool = False) -> None:
    """An image reference param; `bare`: a repository without tag or digest (the tag is the kernel-set-id)."""
    try:
        ref = ImageRef.parse(value)
    except ConfigError as e:
        read.fail(f"param {name}: {e}")
        return
    if bare and (ref.tag or ref.digest):
        read.fail(f"param {name}={value!r} must be a repository without tag or digest; the tag is the kernel-set-id")
