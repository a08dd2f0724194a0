"""Stage C's images, built here with buildah and pushed to the local registry (registry.py).

- Tekton's entrypoint, nop, sidecarlogresults and workingdirinit: static Go binaries (CGO off)
  built from the pinned tektoncd/pipeline module by build.py, each FROM scratch at the path Tekton
  v1.15.0's pod builder runs: pkg/pod/pod.go starts the "prepare" init container with
  `/ko-app/entrypoint init /ko-app/entrypoint /tekton/bin/entrypoint <steps>`, the results sidecar
  with `/ko-app/sidecarlogresults`; pkg/pod/workingdir_init.go runs `/ko-app/workingdirinit`. That
  is where ko, which builds Tekton's release images (.ko.yaml), puts a binary; its PATH is ko's.
- shell: Debian's busybox-static FROM scratch. pkg/pod/script.go runs it as the "place-scripts"
  init container, `sh -c` with a script of `touch`, `chmod`, `cat` heredocs and
  `/tekton/bin/entrypoint decode-script`; the release uses cgr.dev/chainguard/busybox.
- shell-win: never pulled (pkg/pod/script.go picks it only for `#!win` scripts); the controller
  refuses to start without the flag, so the flag names a tag nothing serves.
- the tasks image: tasks_image.py; the stand-ins for Juniper's images: standins.py.

Building and the registry check before it: image_build.py.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import build, registry, standins, tasks_image
from .image_build import Buildah, ImageError, content_key, ensure
from .layout import E2E, Layout

TEKTON_REPOSITORY = "tekton"
# ko's PATH in the images it builds; /ko-app holds the binary.
KO_PATH = "/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/ko-app"
# The applets place-scripts and a step's `sh` need at least; busybox --list gives the rest.
SHELL_APPLETS = ("sh", "cat", "touch", "chmod")


def tekton_version() -> str:
    module_dir = E2E / "build" / "tekton"
    return build.pinned_version(module_dir, "github.com/tektoncd/pipeline")


def tekton_ref(name: str) -> str:
    return f"{registry.ADDRESS}/{TEKTON_REPOSITORY}/{name}:{tekton_version()}"


def binary_image(buildah: Buildah, ref: str, key: str, binary: Path, *, entrypoint: list[str],
                 env: dict[str, str]) -> Callable[[], None]:
    return lambda: buildah.from_scratch(ref, key, [(binary, entrypoint[0])], entrypoint=entrypoint, env=env)


def tekton_images(layout: Layout, buildah: Buildah) -> dict[str, dict[str, Any]]:
    """entrypoint, nop, sidecarlogresults, workingdirinit: one static binary each at /ko-app/<name>."""
    builds = build.build(layout, build.TEKTON_IMAGES)
    results: dict[str, dict[str, Any]] = {}
    for component in build.TEKTON_IMAGES:
        name = component.removeprefix("tekton-")
        binary = layout.binary(component)
        entrypoint = [f"/ko-app/{name}"]
        env = {"PATH": KO_PATH}
        key = content_key(binary, json.dumps([entrypoint, env]))
        ref = tekton_ref(name)
        results[name] = ensure(layout, buildah, ref, key, binary_image(buildah, ref, key, binary, entrypoint=entrypoint,
                                                                env=env))
        results[name]["go_build_seconds"] = builds[component]["seconds"]
        results[name]["go_built"] = builds[component]["built"]
    return results


def busybox_static(layout: Layout) -> Path:
    """Debian's static busybox, from its .deb (`apt-get download`): installing busybox-static would
    remove the dynamic busybox other tests use."""
    debs = layout.images / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    binary = debs / "busybox-static" / "bin" / "busybox"
    if binary.exists():
        return binary
    proc = subprocess.run(["apt-get", "download", "busybox-static"], cwd=debs, capture_output=True, text=True,
                          check=False)
    found = sorted(debs.glob("busybox-static_*.deb"))
    if proc.returncode or not found:
        raise ImageError(f"apt-get download busybox-static failed: {proc.stderr.strip()[-300:]}; "
                         "run `apt-get update` and check that deb.debian.org is reachable")
    subprocess.run(["dpkg-deb", "-x", str(found[-1]), str(debs / "busybox-static")], check=True)
    return binary


def shell_rootfs(busybox: Path, folder: Path) -> Path:
    """bin/busybox and a symlink per applet, and a /tmp (sh's here-documents may use it)."""
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True).stdout.split()
    missing = set(SHELL_APPLETS) - set(applets)
    if missing:
        raise ImageError(f"{busybox} lacks the applets {sorted(missing)} that Tekton's place-scripts runs")
    if folder.exists():
        subprocess.run(["rm", "-rf", str(folder)], check=True)
    (folder / "bin").mkdir(parents=True)
    (folder / "tmp").mkdir(mode=0o1777)
    (folder / "tmp").chmod(0o1777)
    (folder / "bin" / "busybox").write_bytes(busybox.read_bytes())
    (folder / "bin" / "busybox").chmod(0o755)
    for applet in applets:
        if applet != "busybox":
            (folder / "bin" / applet).symlink_to("busybox")
    return folder


def shell_image(layout: Layout, buildah: Buildah) -> dict[str, Any]:
    busybox = busybox_static(layout)
    env = {"PATH": "/bin"}
    key = content_key(busybox, json.dumps([SHELL_APPLETS, env]))

    def make() -> None:
        rootfs = shell_rootfs(busybox, layout.images / "shell-rootfs")
        buildah.from_scratch(tekton_ref("shell"), key, [(rootfs / "bin", "/bin"), (rootfs / "tmp", "/tmp")],
                             entrypoint=["/bin/sh"], env=env, cmd=[])

    return ensure(layout, buildah, tekton_ref("shell"), key, make)


def up(layout: Layout) -> dict[str, Any]:
    """Start the registry, then build and push what it lacks; per image: built, pushed, seconds, size."""
    result: dict[str, Any] = {"registry": registry.up(layout)}
    buildah = Buildah(layout)
    result.update(tekton_images(layout, buildah))
    result["shell"] = shell_image(layout, buildah)
    result["cssr-tasks"] = tasks_image.tasks_image(layout, buildah)
    result.update(standins.up(layout, buildah))
    return result
