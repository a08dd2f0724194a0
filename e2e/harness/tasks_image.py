"""The suite's tasks image for Stage C, built by the project's own Containerfile FROM Debian.

UBI is unreachable here, so the Containerfile's base images are build arguments: both stages use
a Debian bookworm rootfs made by debootstrap with Python 3.11 (the Containerfile's interpreter,
/usr/bin/python3.11 in both distributions), its venv module, kmod and the CA certificates,
imported FROM scratch with buildah. The runtime stage's package install, microdnf on UBI, is the
third build argument: apt-get, which finds the packages already installed. The rest of the
Containerfile (pip install against the pinned constraints, the venv's trimming, user 1001,
entrypoint) runs unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from . import registry
from .image_build import KEY_LABEL, Buildah, ImageError, content_key, ensure
from .layout import ROOT, Layout
from .log import say

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-venv", "kmod", "ca-certificates")
INSTALL_RUNTIME = "apt-get install -y --no-install-recommends python3.11 kmod"
# The COPY sources of the Containerfile's build stage: what the image is made of.
SOURCES = ("pyproject.toml", "README.md", "requirements/constraints.txt", "python")
# pip in a build trusts what this host trusts (mounted, not copied into the image): where egress
# goes through a TLS-inspecting proxy, Debian's CA list alone refuses PyPI.
CA_VOLUME = "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro"


def version() -> str:
    for line in (ROOT / "pyproject.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split("=", 1)[1].strip().strip('"')
    raise ImageError("pyproject.toml has no `version = ...` line")


def tasks_ref() -> str:
    return f"{registry.ADDRESS}/cssr/cssr-tasks:{version()}"


def debian_key() -> str:
    # The recipe, not the package versions: a rootfs is rebuilt when the recipe changes, or when
    # `.cache/e2e/images` is deleted (security updates arrive that way).
    return content_key(json.dumps([SUITE, MIRROR, PACKAGES, "minbase"]))[:16]


def debian_base(layout: Layout, buildah: Buildah) -> tuple[str, dict[str, Any]]:
    """localhost/cssr-e2e/debian-python:bookworm-<key>, in the harness's buildah store."""
    key = debian_key()
    ref = f"localhost/cssr-e2e/debian-python:{SUITE}-{key}"
    if (buildah.labels(ref) or {}).get(KEY_LABEL) == key:
        return ref, {"built": False, "seconds": 0.0}
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap is missing; install it with `apt-get install debootstrap`")
    began = time.monotonic()
    rootfs = layout.images / f"debian-{SUITE}-rootfs"
    if rootfs.exists():
        shutil.rmtree(rootfs)
    rootfs.parent.mkdir(parents=True, exist_ok=True)
    log = layout.logs / "debootstrap.log"
    say(f"debootstrap {SUITE} with {', '.join(PACKAGES)} from {MIRROR}; log in {log}")
    with open(log, "w") as out:
        proc = subprocess.run(["nice", "-n", "19", "debootstrap", "--variant=minbase",
                               f"--include={','.join(PACKAGES)}", SUITE, str(rootfs), MIRROR],
                              stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode:
        raise ImageError(f"debootstrap {SUITE} failed (exit {proc.returncode}): "
                                f"{log.read_text(errors='replace').strip()[-400:]}")
    debootstrap_seconds = time.monotonic() - began
    for cache in (rootfs / "var/cache/apt/archives", rootfs / "var/lib/apt/lists"):
        for entry in cache.glob("*"):
            if entry.is_file():
                entry.unlink()
    archive = layout.images / f"debian-{SUITE}-rootfs.tar"
    # Numeric owners: the rootfs's files keep their owners (root, _apt, mail) inside the image.
    subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(archive), "."], check=True)
    buildah.from_scratch(ref, key, [(archive, "/")], entrypoint=[], cmd=["/bin/bash"],
                         env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"})
    shutil.rmtree(rootfs)
    archive.unlink()
    seconds = round(time.monotonic() - began, 1)
    say(f"debian base {ref} made in {seconds:.0f} s (debootstrap {debootstrap_seconds:.0f} s)")
    return ref, {"built": True, "seconds": seconds, "debootstrap_seconds": round(debootstrap_seconds, 1)}


def source_files() -> list[Path]:
    found: list[Path] = []
    for source in SOURCES:
        path = ROOT / source
        if path.is_file():
            found.append(path)
            continue
        for folder, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.endswith(".egg-info"))
            found += [Path(folder) / f for f in sorted(files) if not f.endswith(".pyc")]
    return found


def tasks_image(layout: Layout, buildah: Buildah) -> dict[str, Any]:
    """The tasks image by the project's Containerfile FROM the Debian base, pushed as cssr/cssr-tasks."""
    base_key = debian_key()
    build_args = {"INSTALL_RUNTIME": INSTALL_RUNTIME}
    files = source_files()
    key = content_key(ROOT / "Containerfile", ROOT / ".containerignore", base_key, json.dumps(build_args),
                      *(str(f.relative_to(ROOT)) for f in files), *files)
    ref = tasks_ref()
    base: dict[str, Any] = {}

    def make() -> None:
        base_ref, made = debian_base(layout, buildah)
        base.update(made)
        args = {**build_args, "BUILD_BASE": base_ref, "RUNTIME_BASE": base_ref}
        buildah.bud(ref, key, ROOT / "Containerfile", ROOT, args, volumes=(CA_VOLUME,))

    result = ensure(layout, buildah, ref, key, make)
    if base:
        result["debian_base"] = base
    return result
