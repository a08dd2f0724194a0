"""The node's own images, built here FROM scratch with buildah and imported into containerd:

- pause: Kubernetes' own build/pause/linux/pause.c of the pinned k8s.io/kubernetes module (read
  from the Go module cache, never copied here), compiled with the CFLAGS of build/pause/Makefile
  and put in an image as build/pause/Dockerfile does (USER 65535:65535, ENTRYPOINT /pause);
- busybox: Debian's busybox-static (downloaded with `apt-get download`, not installed: it
  conflicts with the dynamic busybox other tests use), for the test pods.

Each archive is rebuilt only when its key (sources, compiler, package version) changes; buildah
uses its own vfs store under .cache/e2e/node/images (vfs: no mounts to leave behind).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .build import go_env, pinned_version
from .layout import E2E, Layout
from .log import say

PAUSE_REPOSITORY = "localhost/cssr-e2e/pause"
BUSYBOX_REPOSITORY = "localhost/cssr-e2e/busybox"


class ImageError(RuntimeError):
    pass


@dataclass(frozen=True)
class Built:
    ref: str
    archive: Path
    key: str
    built: bool
    seconds: float

    def summary(self) -> dict[str, Any]:
        return {"ref": self.ref, "built": self.built, "seconds": self.seconds}


def _run(argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=cwd, env=env)
    if proc.returncode:
        raise ImageError(f"{' '.join(argv[:3])} failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return proc.stdout


def folder(layout: Layout) -> Path:
    return layout.node / "images"


def kubernetes_source(layout: Layout) -> tuple[Path, str]:
    """The pinned k8s.io/kubernetes module's folder in the Go module cache, and its version."""
    module_dir = E2E / "build" / "kubernetes"
    version = pinned_version(module_dir, "k8s.io/kubernetes")
    out = _run(["go", "mod", "download", "-json", f"k8s.io/kubernetes@{version}"], cwd=module_dir, env=go_env(layout))
    return Path(json.loads(out)["Dir"]), version


def pause_tag(source: Path) -> str:
    match = re.search(r"^TAG \?= (\S+)", (source / "build" / "pause" / "Makefile").read_text(), re.MULTILINE)
    if not match:
        raise ImageError(f"no `TAG ?=` in {source}/build/pause/Makefile")
    return match.group(1)


def _buildah(layout: Layout, *args: str) -> str:
    store = folder(layout) / "buildah"
    return _run(["buildah", f"--root={store / 'root'}", f"--runroot={store / 'run'}", "--storage-driver=vfs", *args])


def _image(layout: Layout, ref: str, files: dict[str, Path], config: list[str], archive: Path) -> None:
    """FROM scratch, the files at their paths, the config flags, committed to a docker-archive."""
    name = ref.rsplit("/", 1)[1].split(":", 1)[0]
    container = _buildah(layout, "from", "--name", f"e2e-{name}", "scratch").strip()
    try:
        for target, source in files.items():
            _buildah(layout, "copy", "--chmod", "0755", container, str(source), target)
        _buildah(layout, "config", *config, container)
        archive.unlink(missing_ok=True)
        # --timestamp 0: the same inputs give the same image, so an unchanged rebuild changes nothing.
        _buildah(layout, "commit", "--timestamp", "0", "--format", "docker", "--rm", container,
                 f"docker-archive:{archive}:{ref}")
        container = ""
    finally:
        if container:
            _buildah(layout, "rm", container)
    _buildah(layout, "rmi", "--all", "--force")


def _cached(layout: Layout, name: str, key: str) -> Path | None:
    archive = folder(layout) / f"{name}.tar"
    stamp = archive.with_suffix(".key")
    return archive if archive.exists() and stamp.exists() and stamp.read_text() == key else None


def _record(archive: Path, key: str) -> None:
    archive.with_suffix(".key").write_text(key)


def pause(layout: Layout) -> Built:
    source, version = kubernetes_source(layout)
    tag = pause_tag(source)
    ref = f"{PAUSE_REPOSITORY}:{tag}"
    pause_c = source / "build" / "pause" / "linux" / "pause.c"
    # build/pause/Makefile: CFLAGS = -Os -Wall -Werror -static -DVERSION=v$(TAG)-$(REV); REV is the
    # git describe of a checkout, here the module version.
    cflags = ["-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{tag}-{version}"]
    gcc = _run(["gcc", "--version"]).splitlines()[0]
    key = hashlib.sha256(json.dumps([pause_c.read_text(), cflags, gcc, ref]).encode()).hexdigest()
    began = time.monotonic()
    cached = _cached(layout, "pause", key)
    if cached:
        return Built(ref, cached, key, False, round(time.monotonic() - began, 2))
    work = folder(layout) / "pause-build"
    work.mkdir(parents=True, exist_ok=True)
    binary = work / "pause"
    _run(["gcc", *cflags, "-o", str(binary), str(pause_c)])
    _run(["strip", str(binary)])
    archive = folder(layout) / "pause.tar"
    _image(layout, ref, {"/pause": binary},
           ["--user", "65535:65535", "--entrypoint", '["/pause"]', "--cmd", "", "--os", "linux"], archive)
    _record(archive, key)
    seconds = round(time.monotonic() - began, 2)
    say(f"built {ref} from {pause_c} in {seconds:.1f} s")
    return Built(ref, archive, key, True, seconds)


def busybox(layout: Layout) -> Built:
    """Debian's busybox-static at /bin/busybox (pods call `/bin/busybox sh -c ...`)."""
    version = _run(["apt-cache", "policy", "busybox-static"])
    match = re.search(r"Candidate:\s*(\S+)", version)
    if not match or match.group(1) == "(none)":
        raise ImageError("apt-cache knows no busybox-static; run `apt-get update`")
    candidate = match.group(1)
    ref = f"{BUSYBOX_REPOSITORY}:{candidate.split(':')[-1].replace('+', '_').replace('~', '_')}"
    key = hashlib.sha256(json.dumps([candidate, ref]).encode()).hexdigest()
    began = time.monotonic()
    cached = _cached(layout, "busybox", key)
    if cached:
        return Built(ref, cached, key, False, round(time.monotonic() - began, 2))
    work = folder(layout) / "busybox-build"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    _run(["apt-get", "download", f"busybox-static={candidate}"], cwd=work)
    [deb] = work.glob("busybox-static_*.deb")
    _run(["dpkg-deb", "-x", str(deb), str(work / "root")])
    archive = folder(layout) / "busybox.tar"
    _image(layout, ref, {"/bin/busybox": work / "root" / "bin" / "busybox"},
           ["--entrypoint", '["/bin/busybox"]', "--cmd", "sh", "--os", "linux"], archive)
    _record(archive, key)
    seconds = round(time.monotonic() - began, 2)
    say(f"built {ref} from Debian's busybox-static {candidate} in {seconds:.1f} s")
    return Built(ref, archive, key, True, seconds)
