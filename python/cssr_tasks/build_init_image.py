"""Prepare the cssr-init image of a kernel set: its build context, and whether a build is needed.

One image per kernel set, built FROM the cluster's own Driver Toolkit images: no RHEL
subscription (the proof of concept's image was an entitled UBI8 pinned to RHEL 8.4), the exact
kernel trees, and every kernel the nodes run or will run after an upgrade. This step writes the
build context (a Containerfile with one stage per Driver Toolkit image, the image's entrypoint,
and the buildah script the Task's next step runs), then asks the registry whether
`<image-repository>:<kernel-set-id>` exists: when it does, and its labels name this kernel set,
no build is needed. The Pipeline asks the same question first (check-init-image, init_image.py's
one rule) and skips this Task when the answer is yes; the check here keeps the Task safe on its own.

buildah logs in by the rule the Python client follows (registry_refs.logins): the pod's service
account token for the cluster registry, the docker config for the rest. This step writes those
logins into one file in the pod's memory volume and names it in the context for the build step.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from . import init_image, kernels, registry_refs
from .errors import ConfigError
from .init_image import DEFAULT_REPOSITORY, LABEL_KERNELS, LABEL_SET_ID
from .log import Log
from .params import Reader, image_problem
from .registry import TOKEN_FILE_ENV

NEEDS_CLUSTER = False
# UBI 9 micro: glibc, bash and coreutils (cp, mv -T, mktemp) for the entrypoint, no package manager,
# freely redistributable, from the RHEL the Driver Toolkit images are built on. Pinned by tag and digest.
DEFAULT_BASE_IMAGE = ("registry.access.redhat.com/ubi9/ubi-micro:9.8-1786321990"
                      "@sha256:7e7f79ab747bf2b452e3043dd89f388e92be4c7fdcc8b815b58adf6c99c39c95")
ENTRYPOINT = "cssr-init-entrypoint.sh"
BUILD_SCRIPT = "buildah-build.sh"
DIGEST_FILE = ".pushed-digest"  # written by buildah-build.sh after a push, read by verify-image
# The registry settings buildah-build.sh takes from here, parsed once, in Python: tls-verify as
# true, false or an absolute CA bundle path; the docker config to hand buildah, or nothing.
TLS_FILE = ".tls-verify"
AUTHFILE_FILE = ".authfile"
# Everything this step and the build step write into the context; anything else there is not ours.
CONTEXT_FILES = frozenset({"Containerfile", "cssr-init-entrypoint.sh", "buildah-build.sh", DIGEST_FILE, TLS_FILE,
                           AUTHFILE_FILE})
IMAGE_ENTRYPOINT = "/usr/local/bin/cssr-init"
VOLUME = "/mnt/modules-volume"
DTK_HINT = ("its RHCOS version has no tag in the openshift/driver-toolkit ImageStream yet (`oc get is driver-toolkit "
            "-n openshift`); wait until the release's Driver Toolkit is imported, or add it to dtk-images")


@dataclass(frozen=True)
class Params:
    kernel_versions: list[str] = field(default_factory=list, metadata={
        "help": 'JSON array of kernel versions (the kernel-versions result of detect-kernel)'})
    kernel_set_id: str = field(default="", metadata={"help": "the kernel-set-id result of detect-kernel"})
    dtk_images: dict[str, str] = field(default_factory=dict, metadata={
        "help": "JSON object, kernel version -> Driver Toolkit pull spec (the dtk-images result of detect-kernel)"})
    image_repository: str = DEFAULT_REPOSITORY
    context_dir: str = field(default="cssr-init", metadata={
        "help": "directory of the build context; relative to $WORKSPACE_SOURCE_PATH when that is set"})
    base_image: str = DEFAULT_BASE_IMAGE
    docker_config: str = field(default="", metadata={
        "help": "docker config.json, or a directory holding config.json or .dockerconfigjson"})
    tls_verify: bool | str = field(default=True, metadata={"help": "true, false, or the path of a CA bundle"})

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Params:
        read = Reader(environ)
        kernel_list, set_id = init_image.read_kernel_set(read)
        images = read.json("dtk-images", {}, kind=dict, required=True,
                           hint="pass the dtk-images result of detect-kernel")
        repository = read.image("image-repository", DEFAULT_REPOSITORY, bare=True, hint="the tag is the kernel-set-id")
        base_image = read.image("base-image", DEFAULT_BASE_IMAGE)
        workspace = environ.get("WORKSPACE_SOURCE_PATH", "")
        context = read.path("context-dir", "cssr-init", inside="the source workspace" if workspace else "",
                            hint="such as cssr-init" if workspace else "")
        dtk = check_images(read, kernel_list, images)
        params = cls(
            kernel_versions=kernel_list,
            kernel_set_id=set_id,
            dtk_images=dtk,
            image_repository=repository,
            context_dir=resolve_context(read, context, environ),
            base_image=base_image,
            docker_config=init_image.read_docker_config(read, environ),
            tls_verify=read.tls_verify(),
        )
        read.done()
        return params


def check_images(read: Reader, kernel_list: list[str], images: Mapping[object, object]) -> dict[str, str]:
    dtk = {kernels.normalize(str(k)): str(v) for k, v in images.items() if isinstance(v, str) and v}
    for kernel in kernel_list:
        if kernel not in dtk:
            read.fail(f"no Driver Toolkit image for kernel {kernel} in dtk-images: {DTK_HINT}")
        else:
            # detect-kernel names each by digest (an ImageStream item): the kernel tree built against is fixed.
            problem = image_problem(dtk[kernel], pinned=True)
            if problem:
                read.fail(f"param dtk-images[{kernel}]: {problem}; pass the dtk-images result of detect-kernel")
    return {k: dtk[k] for k in kernel_list if k in dtk}


def resolve_context(read: Reader, value: str, environ: Mapping[str, str]) -> str:
    """In a Task the context is a directory of the source workspace; from a shell, any path. Either way it
    is new, or a directory that holds nothing but a build context: this step never writes over other files."""
    workspace = environ.get("WORKSPACE_SOURCE_PATH", "")
    path = Path(value)
    if workspace:
        if path.is_absolute() or ".." in path.parts:
            read.fail(f"param context-dir={value!r} must be a relative path inside the source workspace, "
                      "such as cssr-init")
            return value
        root = Path(workspace).resolve()
        resolved = (root / path).resolve()
        if resolved != root and root not in resolved.parents:
            read.fail(f"param context-dir={value!r} leads out of the source workspace through a symbolic link; "
                      "name a plain directory inside it")
            return value
        if resolved == root:
            read.fail("param context-dir must name a directory inside the source workspace, not the workspace itself")
            return value
    else:
        resolved = path.resolve()
    problem = _not_a_context(resolved)
    if problem:
        read.fail(f"param context-dir={value!r}: {problem}; name a new directory, or one that holds only a "
                  "build context of this Task")
    return str(resolved)


def _not_a_context(path: Path) -> str:
    if not path.exists():
        return ""
    if not path.is_dir():
        return f"{path} exists and is not a directory"
    try:
        others = sorted(p.name for p in path.iterdir() if p.name not in CONTEXT_FILES and not p.name.endswith(".tmp"))
    except OSError as e:
        return f"{path} cannot be listed ({e.strerror})"
    return f"{path} holds other files ({', '.join(others[:3])}{', ...' if len(others) > 3 else ''})" if others else ""


@dataclass(frozen=True)
class Result:
    build_needed: bool
    image_url: str


def run(params: Params, *, cluster: object = None, log: Log) -> Result:
    log.info(f"kernel set {params.kernel_set_id}: {', '.join(params.kernel_versions)}")
    write_context(Path(params.context_dir), params)
    log.info(f"wrote the build context to {params.context_dir}: Containerfile, {ENTRYPOINT}, {BUILD_SCRIPT}")
    found = init_image.lookup(params.image_repository, params.kernel_set_id, params.kernel_versions,
                              docker_config=params.docker_config, tls_verify=params.tls_verify, log=log)
    if found.other_set:
        log.warn(f"{found}: build needed, over it")
    else:
        log.info(f"{found}: {'no build needed' if found.exists else 'build needed'}")
    if not found.exists:
        login_file = write_login_file(params.docker_config, found, log)
        if login_file:
            _write(Path(params.context_dir) / AUTHFILE_FILE, login_file, 0o644)
    return Result(build_needed=not found.exists, image_url=str(found.image))


def write_login_file(docker_config: str, found: init_image.Found, log: Log) -> str:
    """buildah's logins, in the pod's memory volume: the file's path, or "" to keep the docker config as it is.

    Outside a build pod (no memory volume) nothing is written: the token must not reach a disk.
    """
    token = registry_refs.service_account_token(os.environ.get(TOKEN_FILE_ENV) or registry_refs.SERVICE_ACCOUNT_TOKEN)
    folder = registry_refs.auth_dir(os.environ)
    if folder is None:
        if token is not None:
            log.warn(f"no login folder {registry_refs.AUTH_DIR} (the Task's memory volume): buildah logs in with the "
                     "docker config only, not with the service account token")
        return ""
    # The lookup above tried the token first; where the registry refused it, buildah gets the docker
    # config's login for that registry instead, as the Python client fell back to it.
    target = found.image.registry
    refused = {target} if token is not None and target in registry_refs.INTERNAL_REGISTRIES and \
        found.login is not None and found.login != token else set()
    auths = registry_refs.buildah_auths(docker_config, token, refused=refused)
    if not auths:
        return ""
    path = folder / registry_refs.AUTH_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.unlink(missing_ok=True)
        # created 0600, never wider for a moment; the build step runs as root and reads it
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as out:
            json.dump({"auths": auths}, out)
        os.replace(tmp, path)
    except OSError as e:
        raise ConfigError(f"could not write the registry logins to {path}: {e.strerror}; check the Task's "
                          "registry-auth volume") from e
    with_token = sorted(registry_refs.INTERNAL_REGISTRIES - refused) if token else []
    said = [f"the service account token for {', '.join(with_token)}"] if with_token else []
    others = sorted(set(auths) - set(with_token))
    said += [f"{docker_config} for {', '.join(others)}"] if others else []
    if refused:
        log.warn(f"{target} refused the service account token: buildah gets the docker config's login there")
    log.info(f"buildah logs in with {' and '.join(said)} (login file {path}, in memory)")
    return str(path)


def write_context(directory: Path, params: Params) -> None:
    """The Containerfile, the entrypoint, the build script and its registry settings; a stale push digest is removed."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / DIGEST_FILE).unlink(missing_ok=True)
        _write(directory / "Containerfile", containerfile(params), 0o644)
        tls = params.tls_verify
        _write(directory / TLS_FILE, tls if isinstance(tls, str) else str(tls).lower(), 0o644)
        _write(directory / AUTHFILE_FILE, str(Path(params.docker_config).resolve()) if params.docker_config else "",
               0o644)
        files = resources.files("cssr_tasks") / "files"
        for name in (ENTRYPOINT, BUILD_SCRIPT):
            _write(directory / name, (files / name).read_text(encoding="utf-8"), 0o755)
    except OSError as e:
        raise ConfigError(f"could not write the build context to {directory}: {e}; check that the source "
                          "workspace is bound and writable") from e


def _write(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(mode)
    os.replace(tmp, path)


def containerfile(params: Params) -> str:
    """One stage per Driver Toolkit image, and a small final stage with every kernel's trees."""
    stages: dict[str, str] = {}
    for kernel in params.kernel_versions:
        stages.setdefault(params.dtk_images[kernel], f"dtk{len(stages)}")
    kernel_list = " ".join(params.kernel_versions)
    lines = [
        f"# cssr-init for kernel set {params.kernel_set_id}: {', '.join(params.kernel_versions)}",
        "# Written by `cssr-tasks build-init-image`; buildah-build.sh beside it builds and pushes it.",
        "# One stage per Driver Toolkit image: a Driver Toolkit holds the kernel-devel tree",
        "# (/usr/src/kernels/<kver>) and the modules (/lib/modules/<kver>) of its release's kernels,",
        "# the realtime one included, so kernels of one release share a stage.",
    ]
    for image, stage in stages.items():
        served = ", ".join(k for k in params.kernel_versions if params.dtk_images[k] == image)
        lines += [f"FROM {image} AS {stage}", f"# {stage}: {served}"]
    lines += ["", "# The final stage: small, with /bin/sh and coreutils for the entrypoint.",
              f"FROM {params.base_image}"]
    for kernel in params.kernel_versions:
        stage = stages[params.dtk_images[kernel]]
        lines += [f"COPY --from={stage} /usr/src/kernels/{kernel} /usr/src/kernels/{kernel}",
                  f"COPY --from={stage} /lib/modules/{kernel} /lib/modules/{kernel}"]
    description = (f"Kernel trees of kernel set {params.kernel_set_id} for the cSSR module builds; "
                   "the entrypoint copies the running kernel's trees onto the modules volume.")
    lines += [
        f"COPY {ENTRYPOINT} {IMAGE_ENTRYPOINT}",
        'LABEL name="cssr-init" summary="cssr-init: kernel trees for the cSSR module builds" \\',
        f'      description="{description}" io.k8s.description="{description}" \\',
        '      io.k8s.display-name="cssr-init" \\',
        f'      {LABEL_SET_ID}="{params.kernel_set_id}" {LABEL_KERNELS}="{kernel_list}"',
        f"ENV CSSR_VOLUME={VOLUME}",
        f'ENTRYPOINT ["/bin/sh", "{IMAGE_ENTRYPOINT}"]',
        "",
    ]
    return "\n".join(lines)
