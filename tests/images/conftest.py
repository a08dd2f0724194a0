"""Fixtures of the image tests: real registries on 127.0.0.1, buildah stores, fake cluster images.

Session-scoped, because building and pushing even small images costs seconds: one registry with
htpasswd auth (as a real internal registry requires a login) seeded with fake Driver Toolkit
images for two kernels and a fake UBI micro, one open registry, and buildah stores under a temp
dir (vfs storage, chroot isolation).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

from cssr_tasks.sim import fixtures as fx
from cssr_tasks.sim.images import REGISTRY_BIN, Buildah, RegistryServer, Seed, seed_registry

from support import require_tool

# An upgrade in flight: the nodes' 4.16 kernel and the 4.17 target.
KERNELS = [fx.RELEASES["4.16"][1], fx.RELEASES["4.17"][1]]
USER, PASSWORD = "pipeline", "s3cret-token"


def _tools() -> None:
    require_tool("buildah", REGISTRY_BIN, "htpasswd")


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """docker-registry with htpasswd auth: answers Basic challenges."""
    _tools()
    server = RegistryServer(tmp_path_factory.mktemp("auth-registry"), user=USER, password=PASSWORD).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def open_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """docker-registry without auth: anonymous pulls and pushes."""
    _tools()
    server = RegistryServer(tmp_path_factory.mktemp("open-registry")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def docker_config_dir(auth_registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dockerconfig workspace: a kubernetes.io/dockerconfigjson secret mounted as a directory."""
    directory = tmp_path_factory.mktemp("dockerconfig")
    auth_registry.docker_config(directory, name=".dockerconfigjson")
    return directory


@pytest.fixture(scope="session")
def seed_buildah(tmp_path_factory: pytest.TempPathFactory) -> Buildah:
    _tools()
    root = tmp_path_factory.mktemp("seed-store")
    return Buildah(root / "root", root / "runroot")


@pytest.fixture(scope="session")
def seeded(auth_registry: RegistryServer, seed_buildah: Buildah, docker_config_dir: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Seed:
    """Fake Driver Toolkit images for KERNELS and a fake base image, pushed to the auth registry."""
    push = functools.partial(seed_buildah.push_rootfs, authfile=docker_config_dir / ".dockerconfigjson")
    return seed_registry(auth_registry.host, push, tmp_path_factory.mktemp("seed"), KERNELS)


@pytest.fixture
def new_buildah(tmp_path: Path) -> Buildah:
    _tools()
    return Buildah(tmp_path / "store" / "root", tmp_path / "store" / "runroot")
