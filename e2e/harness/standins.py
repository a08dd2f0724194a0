"""Stand-in images for Juniper's, which are not public, built here and pushed under
127.0.0.1:25000/standin/ so that their name says what they are wherever they appear.

- standin/router: e2e/images/router-standin/Containerfile FROM the same base: the fake SSR API
  of cssr_tasks.sim.ssr (the smoke tests' and `make demo`'s) served over HTTPS on port 443 as the
  container's main process, and what the StatefulSet's other containers run in the router image.
- standin/kmod-builder: e2e/images/kmod-builder-standin/Containerfile FROM the Debian base of the
  tasks image: a real kbuild of igb_uio with Debian's gcc, make and the kernel headers of every
  kernel of e2e/kernels.txt (the Driver Toolkit stand-ins hold copies of their arch trees, whose
  links into -common and kbuild resolve in this image) and the igb_uio source of the host's
  dpdk-kmods-dkms. Its /usr/bin/dpdk_build.sh is the stand-in builder
  the module tests and `make demo` run (cssr_tasks.sim.kmod_standin), with the image's python3.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from cssr_tasks import kernels
from cssr_tasks.sim import kmod_standin

from . import kernel_trees, registry, tasks_image
from .image_build import Buildah, ImageError, content_key, ensure
from .layout import E2E, ROOT, Layout

KMOD_BUILDER_CONTAINERFILE = E2E / "images" / "kmod-builder-standin" / "Containerfile"
KMOD_SOURCE = "/usr/src/dpdk-kmods-standin"
BUILDER = "/usr/bin/dpdk_build.sh"
# Where the builder notes each kernel it built (the module tests read theirs; here, the step's log has it).
BUILD_RECORD = "/tmp/dpdk_build.kernels"


def kmod_builder_ref() -> str:
    # Tagged by the set of kernels it builds for, so that a node holding the image of another set
    # pulls this one (the node pulls a tag only if it lacks it).
    return f"{registry.ADDRESS}/standin/kmod-builder:kernels-{kernels.kernel_set_id(kernel_trees.kernels())}"


def builder_script() -> str:
    """The stand-in dpdk_build.sh of cssr_tasks.sim.kmod_standin, with the image's paths."""
    # the image's own python3, not this process's
    return kmod_standin.builder_script(record=BUILD_RECORD, source=KMOD_SOURCE, python="/usr/bin/python3")


def kmod_builder_context(layout: Layout) -> Path:
    """The build context: the igb_uio source and the builder script."""
    source = kmod_standin.igb_uio_source()
    if source is None:
        raise ImageError("no igb_uio source in /usr/src/dpdk-kmods-*; install dpdk-kmods-dkms "
                         "(scripts/install-system-deps does)")
    context = layout.images / "kmod-builder-context"
    if context.exists():
        shutil.rmtree(context)
    shutil.copytree(source, context / "dpdk-kmods")
    (context / "dpdk_build.sh").write_text(builder_script())
    (context / "dpdk_build.sh").chmod(0o755)
    return context


def kmod_builder(layout: Layout, buildah: Buildah) -> dict[str, Any]:
    source = kmod_standin.igb_uio_source()
    files = sorted(p for p in source.rglob("*") if p.is_file()) if source else []
    args = {"HEADERS": " ".join(f"linux-headers-{k}" for k in kernel_trees.kernels())}
    key = content_key(KMOD_BUILDER_CONTAINERFILE, tasks_image.debian_key(), builder_script(), str(args),
                      *(str(f.relative_to(source)) for f in files if source), *files)
    ref = kmod_builder_ref()

    def make() -> None:
        base_ref, _ = tasks_image.debian_base(layout, buildah)
        context = kmod_builder_context(layout)
        buildah.bud(ref, key, KMOD_BUILDER_CONTAINERFILE, context, {**args, "BASE": base_ref})
        shutil.rmtree(context)

    return ensure(layout, buildah, ref, key, make)


def router_ref() -> str:
    return f"{registry.ADDRESS}/standin/router:{tasks_image.version()}"


def router(layout: Layout, buildah: Buildah) -> dict[str, Any]:
    folder = E2E / "images" / "router-standin"
    files = tasks_image.source_files()
    key = content_key(*sorted(folder.iterdir()), tasks_image.debian_key(), ROOT / ".containerignore",
                      *(str(f.relative_to(ROOT)) for f in files), *files)
    ref = router_ref()

    def make() -> None:
        base_ref, _ = tasks_image.debian_base(layout, buildah)
        buildah.bud(ref, key, folder / "Containerfile", ROOT, {"BASE": base_ref}, volumes=(tasks_image.CA_VOLUME,))

    return ensure(layout, buildah, ref, key, make)


def up(layout: Layout, buildah: Buildah) -> dict[str, Any]:
    return {"standin/kmod-builder": kmod_builder(layout, buildah), "standin/router": router(layout, buildah)}
