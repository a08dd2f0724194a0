"""Verify the cssr-init image of a kernel set: read its manifest digest back from the registry.

Runs after the build step, whether it built or not. The registry, not buildah's own report, is
the truth: the digest is read from `<image-repository>:<kernel-set-id>`, and the image's labels
must name the kernel set. When this run pushed (the build step left its digest in the context
directory), the two digests are compared; a difference means another run pushed the same
kernel set meanwhile, which is harmless (same kernels), and is logged.

IMAGE_URL and IMAGE_DIGEST are Tekton Chains' type hints (tektoncd/chains docs/config.md, "Chains
Type Hinting"): Chains signs the image they name and records the TaskRun as its provenance. They
name the image only when this run pushed it, and are empty otherwise: Chains appends a signature
and an attestation for every TaskRun that names an image (no duplicate check in its OCI storage),
and a run that built nothing is not the image's provenance. image-url and image-digest always
name what the registry serves.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import init_image
from .errors import ConfigError, CssrError
from .init_image import DEFAULT_REPOSITORY, LABEL_SET_ID
from .log import Log
from .params import Reader
from .registry import ImageRef, Registry
from .registry_refs import AUTH_FILE, auth_dir

NEEDS_CLUSTER = False
# The same name as build_init_image's (task modules do not import each other; a test keeps them equal).
DIGEST_FILE = ".pushed-digest"


@dataclass(frozen=True)
class Params:
    kernel_set_id: str = field(default="", metadata={"help": "the kernel-set-id result of detect-kernel"})
    image_repository: str = DEFAULT_REPOSITORY
    context_dir: str = field(default="cssr-init", metadata={
        "help": "the build context directory; relative to $WORKSPACE_SOURCE_PATH when that is set"})
    docker_config: str = field(default="", metadata={
        "help": "docker config.json, or a directory holding config.json or .dockerconfigjson"})
    tls_verify: bool | str = field(default=True, metadata={"help": "true, false, or the path of a CA bundle"})

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Params:
        read = Reader(environ)
        set_id = read.string("kernel-set-id", required=True, pattern=r"[0-9a-f]{12}",
                             hint="pass the kernel-set-id result of detect-kernel (12 hex digits)")
        repository = read.image("image-repository", DEFAULT_REPOSITORY, bare=True,
                                hint="the tag is the kernel-set-id")
        workspace = environ.get("WORKSPACE_SOURCE_PATH", "")
        context = read.path("context-dir", "cssr-init", inside="the source workspace" if workspace else "",
                            hint="such as cssr-init" if workspace else "")
        config = init_image.read_docker_config(read, environ)
        tls = read.tls_verify()
        read.done()
        return cls(kernel_set_id=set_id, image_repository=repository,
                   context_dir=str(Path(workspace) / context) if workspace else str(Path(context).resolve()),
                   docker_config=config, tls_verify=tls)


@dataclass(frozen=True)
class Result:
    image_url: str
    image_digest: str
    built: bool
    # Tekton Chains' type hints: it matches the names, capitals included.
    IMAGE_URL: str
    IMAGE_DIGEST: str


def run(params: Params, *, cluster: object = None, log: Log) -> Result:
    try:
        return _verify(params, log)
    finally:
        _drop_login_file(log)


def _drop_login_file(log: Log) -> None:
    """The build is over: buildah's login file (the service account token) goes from the pod's memory."""
    folder = auth_dir(os.environ)
    if folder is None:
        return
    try:
        (folder / AUTH_FILE).unlink(missing_ok=True)
    except OSError as e:
        log.warn(f"could not remove the login file {folder / AUTH_FILE}: {e.strerror}; it goes with the pod")


def _verify(params: Params, log: Log) -> Result:
    target = ImageRef.parse(params.image_repository).with_tag(params.kernel_set_id)
    pushed = _pushed_digest(Path(params.context_dir) / DIGEST_FILE)
    with Registry.for_image(target, docker_config=params.docker_config, tls_verify=params.tls_verify,
                            log=log) as registry:
        digest = registry.manifest_digest(target)
        if digest is None:
            after = f" although this run pushed {pushed}" if pushed else ""
            raise CssrError(f"could not verify {target}: the registry has no such tag{after}; check that nothing "
                            "deletes or prunes the repository, and re-run the Task")
        labels = registry.labels(target)
    if labels is not None and labels.get(LABEL_SET_ID) != params.kernel_set_id:
        raise CssrError(f"could not verify {target}: its label {LABEL_SET_ID} is "
                        f"{labels.get(LABEL_SET_ID)!r}, not {params.kernel_set_id}; the tag was overwritten by "
                        "another image: re-run the Task to rebuild it")
    if pushed and pushed != digest:
        log.warn(f"{target} is {digest} in the registry, not {pushed} as this run pushed: another run pushed the "
                 "same kernel set meanwhile (same kernels); the registry's digest is the result")
    state = "built and pushed by this run" if pushed else "already in the registry; nothing built"
    log.info(f"{target}@{digest}: {state}")
    if pushed:
        # What this run made, even when another run's push of the same kernel set holds the tag now.
        log.info(f"IMAGE_URL and IMAGE_DIGEST name {target}@{pushed}: Tekton Chains, when installed, signs it")
    else:
        log.info("IMAGE_URL and IMAGE_DIGEST are empty: this run pushed nothing for Tekton Chains to sign")
    return Result(image_url=str(target), image_digest=digest, built=bool(pushed),
                  IMAGE_URL=str(target) if pushed else "", IMAGE_DIGEST=pushed)


def _pushed_digest(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return ""
    except OSError as e:
        raise ConfigError(f"could not read {path}: {e}; check the source workspace") from e
