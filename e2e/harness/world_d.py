"""Stage D's kernels: the two RHCOS releases of the scripted upgrade, each with real kernel trees.

An upgrade from RHCOS 4.16 to 4.17 moves the nodes from kernel 6.1.0-56-amd64 to 6.1.0-57-amd64
(or 6.1.0-57-rt-amd64 on a realtime pool): e2e/kernels.txt, whose Debian headers
scripts/install-e2e-deps installs. The Driver Toolkit stand-in of each release holds the trees of
both its kernels and names them in /etc/driver-toolkit-release.json, as the real one does; the
ImageStream's `latest` names the release the CVO points it at, so detect-kernel finds the upgrade's
target kernel there before the first node moves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cssr_tasks.sim import fixtures

from . import kernel_trees, world_c
from .image_build import Buildah
from .layout import Layout


def releases() -> dict[str, tuple[str, str, str]]:
    """{"4.16": (RHCOS version, kernel, realtime kernel), "4.17": ...}: fixtures.RELEASES' tuple
    shape, with the Debian kernels of e2e/kernels.txt instead of RHEL's."""
    return {release: (fixtures.RELEASES[release][0], kernel, rt_kernel)
            for release, (kernel, rt_kernel) in kernel_trees.releases().items()}


def images(layout: Layout) -> dict[str, dict[str, Any]]:
    """The Driver Toolkit stand-in of each release, built and pushed unless the registry has it:
    {"4.16": {"digest": ..., "built": ..., "pushed": ..., ...}, "4.17": ...}."""
    buildah = Buildah(layout)
    return {release: world_c.dtk_image(layout, buildah, release) for release in kernel_trees.releases()}


def driver_toolkit(digests: Mapping[str, str], latest: str) -> list[dict[str, Any]]:
    """The openshift/driver-toolkit ImageStream with a tag per release of `digests` (release ->
    digest, as images() returns them) and `latest` naming release `latest`."""
    return world_c.driver_toolkit(digests, latest)


def up(layout: Layout) -> dict[str, Any]:
    """Stage D's step for the kernels: the Driver Toolkit stand-ins of both releases (idempotent)."""
    return {f"standin/driver-toolkit {release}": step for release, step in images(layout).items()}
