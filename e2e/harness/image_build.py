"""Building images with buildah in the harness's own store, and pushing them only when the registry
lacks them: each image carries a label with the hash of what it is made of, and before building,
that label of the pushed image is read from the registry. Equal means nothing is built or pushed.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from . import build, registry
from .layout import Layout
from .log import say

KEY_LABEL = "org.cssr-deploy.e2e.build-key"


class ImageError(RuntimeError):
    pass


class Buildah:
    """buildah with the harness's own store under .cache/e2e/images (vfs: it mounts nothing that
    could outlive a build; chroot isolation: crun refuses this host's hybrid cgroups)."""

    def __init__(self, layout: Layout) -> None:
        self.store = layout.images / "store"
        self.base = ["buildah", "--root", str(self.store / "root"), "--runroot", str(self.store / "run"),
                     "--storage-driver", "vfs"]
        self.log = layout.logs / "images.log"

    def __call__(self, *args: str, nice: bool = False, cwd: Path | None = None) -> str:
        argv = (["nice", "-n", "19"] if nice else []) + self.base + list(args)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as log:
            log.write(f"\n==== {time.strftime('%H:%M:%S')} {' '.join(argv)}\n")
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=cwd)
        with open(self.log, "a") as log:
            # A build's RUN output is on stdout; other commands print only an ID or a name there.
            log.write(proc.stdout[-20000:] + proc.stderr[-20000:])
        if proc.returncode:
            raise ImageError(f"buildah {' '.join(args[:2])} failed (exit {proc.returncode}): "
                             f"{proc.stderr.strip()[-600:]}; full log in {self.log}")
        return proc.stdout.strip()

    def bud(self, ref: str, key: str, containerfile: Path, context: Path, build_args: dict[str, str], *,
            volumes: tuple[str, ...] = ()) -> None:
        """`buildah bud` of containerfile in context, tagged ref and labelled with key (niced)."""
        self("bud", "--isolation", "chroot", "--pull=false", "--label", f"{KEY_LABEL}={key}",
             *(arg for volume in volumes for arg in ("--volume", volume)),
             *(arg for name, value in build_args.items() for arg in ("--build-arg", f"{name}={value}")),
             "-f", str(containerfile), "-t", ref, str(context), nice=True)

    def labels(self, ref: str) -> dict[str, str] | None:
        """The labels of a local image, or None when the store has no such image."""
        probe = subprocess.run([*self.base, "inspect", "--type", "image", ref], capture_output=True, text=True,
                               check=False)
        if probe.returncode:
            return None
        labels: dict[str, str] = (json.loads(probe.stdout).get("OCIv1", {}).get("config", {}).get("Labels")
                                  or {})
        return labels

    def from_scratch(self, ref: str, key: str, files: Iterable[tuple[Path, str]], *, entrypoint: list[str],
                     env: dict[str, str], cmd: list[str] | None = None) -> None:
        """ref made FROM scratch of `files` (local path, path in the image), labelled with key."""
        container = self("from", "scratch")
        try:
            for source, target in files:
                self("add", container, str(source), target)
            settings = ["--entrypoint", json.dumps(entrypoint), "--label", f"{KEY_LABEL}={key}"]
            settings += [arg for name, value in env.items() for arg in ("--env", f"{name}={value}")]
            if cmd is not None:
                settings += ["--cmd", json.dumps(cmd)]
            self("config", *settings, container)
            self("commit", "--rm", container, ref)
        except ImageError:
            self("rm", container)
            raise


def content_key(*parts: str | bytes | Path) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.read_bytes() if isinstance(part, Path) else part.encode() if isinstance(part, str)
                      else part)
        digest.update(b"\0")
    return digest.hexdigest()


def split(ref: str) -> tuple[str, str]:
    """127.0.0.1:25000/tekton/nop:v1.15.0 -> ("tekton/nop", "v1.15.0")."""
    path = ref.split("/", 1)[1]
    repository, tag = path.rsplit(":", 1)
    return repository, tag


def ensure(layout: Layout, buildah: Buildah, ref: str, key: str, make: Callable[[], None]) -> dict[str, Any]:
    """The image ref, made by `make` and pushed, unless the registry already holds it with this key.
    Returns what was done, how long it took, the digest and compressed size, and the last real build."""
    began = time.monotonic()
    repository, tag = split(ref)
    history_path = layout.images / "builds.json"
    history: dict[str, Any] = json.loads(history_path.read_text()) if history_path.exists() else {}
    if registry.label(repository, tag, KEY_LABEL) == key:
        found = registry.manifest(repository, tag)
        digest, manifest = found if found else ("", {})
        return {"built": False, "pushed": False, "seconds": round(time.monotonic() - began, 2), "digest": digest,
                "compressed_bytes": sum(layer["size"] for layer in manifest.get("layers", [])),
                "last_build": history.get(ref)}
    built = (buildah.labels(ref) or {}).get(KEY_LABEL) != key
    if built:
        say(f"build image {ref}")
        make()
        # The image this one replaces: vfs keeps full copies of every layer, so they add up fast.
        buildah("rmi", "--prune")
    build_seconds = round(time.monotonic() - began, 1)
    buildah("push", "--tls-verify=false", ref, f"docker://{ref}")
    found = registry.manifest(repository, tag)
    if found is None:
        raise ImageError(f"pushed {ref}, but the registry at {registry.ADDRESS} does not list it")
    seconds = round(time.monotonic() - began, 1)
    size = sum(layer["size"] for layer in found[1].get("layers", []))
    say(f"{'built and ' if built else ''}pushed {ref} ({size / 1e6:.1f} MB compressed) in {seconds:.1f} s")
    if built:
        history[ref] = {"build_seconds": build_seconds, "push_seconds": round(seconds - build_seconds, 1),
                        "compressed_bytes": size, "at": time.time()}
        build.record(history_path, ref, history[ref])
    return {"built": built, "pushed": True, "seconds": seconds, "digest": found[0], "compressed_bytes": size,
            "last_build": history.get(ref)}
