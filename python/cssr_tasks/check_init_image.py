"""Ask the registry whether the cssr-init image of a kernel set exists; never build it.

The Pipeline's guard of the image build: build-cssr-init runs only `when` this says `exists=false`.
The image exists when `<image-repository>:<kernel-set-id>` is in the registry and its labels name
exactly this kernel set (init_image.py, the rule build-init-image also applies). `image-url` is
that tag whether or not it exists, so that the tasks after the (maybe skipped) build take the
image from here; `image-digest` is its digest when it exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from . import init_image
from .init_image import DEFAULT_REPOSITORY
from .log import Log
from .params import Reader

NEEDS_CLUSTER = False


@dataclass(frozen=True)
class Params:
    kernel_versions: list[str] = field(default_factory=list, metadata={
        "help": "JSON array of kernel versions (the kernel-versions result of detect-kernel)"})
    kernel_set_id: str = field(default="", metadata={"help": "the kernel-set-id result of detect-kernel"})
    image_repository: str = DEFAULT_REPOSITORY
    docker_config: str = field(default="", metadata={
        "help": "docker config.json, or a directory holding config.json or .dockerconfigjson"})
    tls_verify: bool | str = field(default=True, metadata={"help": "true, false, or the path of a CA bundle"})

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Params:
        read = Reader(environ)
        kernel_list, set_id = init_image.read_kernel_set(read)
        repository = read.image("image-repository", DEFAULT_REPOSITORY, bare=True, hint="the tag is the kernel-set-id")
        params = cls(kernel_versions=kernel_list, kernel_set_id=set_id, image_repository=repository,
                     docker_config=init_image.read_docker_config(read, environ), tls_verify=read.tls_verify())
        read.done()
        return params


@dataclass(frozen=True)
class Result:
    exists: bool
    image_url: str
    image_digest: str


def run(params: Params, *, cluster: object = None, log: Log) -> Result:
    log.info(f"kernel set {params.kernel_set_id}: {', '.join(params.kernel_versions)}")
    found = init_image.lookup(params.image_repository, params.kernel_set_id, params.kernel_versions,
                              docker_config=params.docker_config, tls_verify=params.tls_verify, log=log)
    if found.exists:
        log.info(f"{found}: nothing to build")
    elif found.other_set:
        log.warn(f"{found}: it must be built again, over it")
    else:
        log.info(f"{found}: it must be built")
    return Result(exists=found.exists, image_url=str(found.image), image_digest=found.digest if found.exists else "")
