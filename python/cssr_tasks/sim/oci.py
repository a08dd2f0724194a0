"""Images by hand, for `make demo`: a small registry, OCI images pushed and pulled in Python, steps run in an image.

The demo prefers the real tools (docker-registry, buildah); these stand in where they are
missing, and one of them always runs a step "in" an image, since this machine has no container
runtime:

- `MiniRegistry` (in mini_registry.py): the registry these push to and pull from when the demo
  has no docker-registry.
- `push_rootfs` / `pull_rootfs`: a folder as a one-layer OCI image, and an image's layers
  extracted into a folder (whiteouts honoured). Plain HTTP, anonymous: the demo's registries.
- `build_containerfile`: the cssr-init Containerfile's instructions (FROM ... AS, COPY [--from],
  LABEL, ENV, ENTRYPOINT; no RUN) executed on folders, then pushed: buildah's stand-in.
- `python -m cssr_tasks.sim.oci build-step SCRIPT`: the build-init-image Task's build step
  without buildah (`--image-command <buildah image>=...`): it builds and pushes only when the
  prepare step said so, and leaves the pushed digest where buildah-build.sh leaves it.
- `python -m cssr_tasks.sim.oci run-step --cache DIR SCRIPT [ARGS]`: a step whose image is
  `$CSSR_STEP_IMAGE` (e.g. build-kmods' layout step in the cssr-init image): the image is pulled
  into DIR, and the script runs chrooted into it in a private mount namespace, with /workspace
  (where the executor mounts the workspaces, as a pod has them) and /dev bound in. Needs root.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ACCEPT = ", ".join((OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST))
_TRUSTED = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def split_image(image: str) -> tuple[str, str, str]:
    """host/name[:tag][@digest] -> (host, name, the digest, else the tag, else latest)."""
    host, _, rest = image.partition("/")
    rest, _, digest = rest.partition("@")
    tag = "latest"
    if ":" in rest.rsplit("/", 1)[-1]:
        rest, _, tag = rest.rpartition(":")
    return host, rest, digest or tag


# -- push and pull --------------------------------------------------------------------------


def _http(method: str, url: str, data: bytes | None = None, headers: Mapping[str, str] | None = None,
          login: tuple[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request; `login` is sent as Basic auth up front, which an htpasswd registry accepts."""
    headers = dict(headers or {})
    if login:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(login).encode()).decode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, dict(e.headers), e.read()


def _check(status: int, body: bytes, what: str, ok: tuple[int, ...] = (200, 201, 202)) -> None:
    if status not in ok:
        raise RuntimeError(f"could not {what}: the registry answered {status}: {body[:300]!r}")


def _put_blob(host: str, name: str, data: bytes, login: tuple[str, str] | None = None) -> str:
    digest = sha256(data)
    status, _, _ = _http("HEAD", f"http://{host}/v2/{name}/blobs/{digest}", login=login)
    if status == 200:
        return digest
    status, headers, body = _http("POST", f"http://{host}/v2/{name}/blobs/uploads/", login=login)
    _check(status, body, f"start an upload to {host}/{name}")
    location = headers.get("Location", "")
    url = location if location.startswith("http") else f"http://{host}{location}"
    url += ("&" if "?" in url else "?") + f"digest={digest}"
    status, _, body = _http("PUT", url, data, {"Content-Type": "application/octet-stream"}, login)
    _check(status, body, f"upload a blob to {host}/{name}")
    return digest


def _layer(rootfs: Path) -> tuple[bytes, str]:
    """The folder as a gzipped tar (owners root, as an image's files are) and the uncompressed tar's digest."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(rootfs.rglob("*")):
            info = tar.gettarinfo(str(path), str(path.relative_to(rootfs)))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if info.isfile():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    data = raw.getvalue()
    return gzip.compress(data, compresslevel=1, mtime=0), sha256(data)


def push_rootfs(rootfs: Path, destination: str, labels: Mapping[str, str], *, env: Sequence[str] = (),
                entrypoint: Sequence[str] | None = None, top: Path | None = None,
                architecture: str = "amd64", login: tuple[str, str] | None = None) -> str:
    """`rootfs` (and `top`, as a second layer) as an OCI image at host/name:tag; returns the manifest digest."""
    host, name, tag = split_image(destination)
    layers = [_layer(folder) for folder in (rootfs, top) if folder is not None]
    config = json.dumps({
        "architecture": architecture, "os": "linux",
        "config": {"Labels": dict(labels), "Env": list(env), **({"Entrypoint": list(entrypoint)} if entrypoint
                                                                   else {})},
        "rootfs": {"type": "layers", "diff_ids": [diff_id for _, diff_id in layers]},
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": _put_blob(host, name, config, login), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": _put_blob(host, name, layer, login), "size": len(layer)} for layer, _ in layers],
    }, sort_keys=True).encode()
    status, _, body = _http("PUT", f"http://{host}/v2/{name}/manifests/{tag}", manifest,
                            {"Content-Type": OCI_MANIFEST}, login)
    _check(status, body, f"push {destination}")
    return sha256(manifest)


def push_index(destination: str, images: Mapping[str, str], login: tuple[str, str] | None = None) -> str:
    """An OCI image index at host/name:tag over `images` (architecture -> image by digest, in the same
    repository), as `oc image mirror` keeps a multi-arch release image; returns the index digest."""
    host, name, tag = split_image(destination)
    entries = []
    for architecture, image in images.items():
        _, _, digest = split_image(image)
        status, _, body = _http("GET", f"http://{host}/v2/{name}/manifests/{digest}", None, {"Accept": ACCEPT}, login)
        _check(status, body, f"read the manifest of {image}", ok=(200,))
        entries.append({"mediaType": json.loads(body).get("mediaType") or OCI_MANIFEST, "digest": digest,
                        "size": len(body), "platform": {"architecture": architecture, "os": "linux"}})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}, sort_keys=True).encode()
    status, _, body = _http("PUT", f"http://{host}/v2/{name}/manifests/{tag}", index, {"Content-Type": OCI_INDEX},
                            login)
    _check(status, body, f"push {destination}")
    return sha256(index)


def manifest_of(image: str) -> tuple[str, dict[str, Any]]:
    """(digest, manifest) of the linux/amd64 image behind `image`."""
    host, name, reference = split_image(image)
    status, headers, body = _http("GET", f"http://{host}/v2/{name}/manifests/{reference}", headers={"Accept": ACCEPT})
    _check(status, body, f"read the manifest of {image}", ok=(200,))
    data = json.loads(body)
    if data.get("mediaType") in (OCI_INDEX, DOCKER_LIST) or "manifests" in data:
        chosen = next((m for m in data["manifests"] if (m.get("platform") or {}).get("architecture") == "amd64"),
                      data["manifests"][0])
        return manifest_of(f"{host}/{name}@{chosen['digest']}")
    return headers.get("Docker-Content-Digest") or sha256(body), data


def pull_rootfs(image: str, cache: Path) -> tuple[Path, dict[str, Any]]:
    """The image's layers extracted under `cache`/<digest>/rootfs (once), and its config."""
    host, name, _ = split_image(image)
    digest, manifest = manifest_of(image)
    folder = cache / digest.replace(":", "-")
    rootfs = folder / "rootfs"

    def blob(digest: str) -> bytes:
        status, _, body = _http("GET", f"http://{host}/v2/{name}/blobs/{digest}")
        _check(status, body, f"read blob {digest} of {image}", ok=(200,))
        return body

    if not (folder / "config.json").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        rootfs.mkdir(parents=True)
        for layer in manifest.get("layers") or []:
            _extract(blob(layer["digest"]), rootfs)
        (folder / "config.json").write_bytes(blob(manifest["config"]["digest"]))
    return rootfs, json.loads((folder / "config.json").read_text())


def _extract(layer: bytes, rootfs: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(layer), mode="r:*") as tar:
        members = []
        for member in tar.getmembers():
            path = Path(member.name)
            if path.name == ".wh..wh..opq":
                for child in (rootfs / path.parent).glob("*"):
                    _remove(child)
            elif path.name.startswith(".wh."):
                _remove(rootfs / path.parent / path.name[len(".wh."):])
            else:
                if not member.isdir():
                    _remove(rootfs / path)  # a file of a lower layer, replaced
                members.append(member)
        tar.extractall(rootfs, members=members, **_TRUSTED)  # type: ignore[arg-type]


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


# -- a Containerfile without buildah ----------------------------------------------------------


def in_root(root: Path, path: str) -> Path:
    """`path` as seen inside `root`, following symlinks (absolute ones from `root`), never leaving it."""
    parts, resolved, hops = [p for p in path.split("/") if p], root, 0
    while parts:
        part = parts.pop(0)
        candidate = resolved / part if part != ".." else (resolved.parent if resolved != root else root)
        if candidate.is_symlink() and hops < 40:
            hops += 1
            target = os.readlink(candidate)
            parts = [p for p in target.split("/") if p] + parts
            resolved = root if target.startswith("/") else resolved
            continue
        resolved = candidate
    return resolved


def _copy(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, destination, symlinks=True, dirs_exist_ok=True)
    else:
        shutil.copy2(source, destination, follow_symlinks=False)


def build_containerfile(context: Path, image: str, work: Path, *, containerfile: str = "Containerfile") -> str:
    """The Containerfile in `context` executed on folders under `work` and pushed as `image`; returns the digest."""
    text = re.sub(r"\\\n", " ", (context / containerfile).read_text())
    stages: dict[str, Path] = {}
    current: Path | None = None
    labels: dict[str, str] = {}
    env: list[str] = []
    entrypoint: list[str] | None = None
    for line in (line.strip() for line in text.splitlines()):
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        words = shlex.split(rest)
        match instruction.upper():
            case "FROM":
                pulled, config = pull_rootfs(words[0], work / "layers")
                current = work / f"stage{len(stages)}"
                shutil.rmtree(current, ignore_errors=True)
                shutil.copytree(pulled, current, symlinks=True)
                stages[words[2] if len(words) > 2 and words[1].upper() == "AS" else str(len(stages))] = current
                inner = config.get("config") or {}
                labels, env = dict(inner.get("Labels") or {}), list(inner.get("Env") or [])
                entrypoint = inner.get("Entrypoint")
            case "COPY" if current is not None:
                source_root = stages[words[0].split("=", 1)[1]] if words[0].startswith("--from=") else None
                source, target = words[-2], words[-1]
                _copy(in_root(source_root, source) if source_root else context / source, in_root(current, target))
            case "LABEL":
                labels.update(w.split("=", 1) for w in words)  # type: ignore[misc]
            case "ENV":
                env.append(" ".join(words) if "=" in words[0] else f"{words[0]}={' '.join(words[1:])}")
            case "ENTRYPOINT":
                entrypoint = json.loads(rest)
            case _:
                raise RuntimeError(f"{context / containerfile}: {instruction} is not supported by this stand-in")
    if current is None:
        raise RuntimeError(f"{context / containerfile} has no FROM")
    return push_rootfs(current, image, labels, env=env, entrypoint=entrypoint)


# -- the step stand-ins -----------------------------------------------------------------------


def build_step(environ: Mapping[str, str]) -> int:
    """build-init-image's build step, with the env the Task gives it, where buildah is missing."""
    needed = Path(environ["BUILD_NEEDED_PATH"]).read_text().strip()
    image = Path(environ["IMAGE_URL_PATH"]).read_text().strip()
    if needed != "true":
        print(f"[build-init-image] {image} is in the registry already; nothing to build")
        return 0
    context = Path(environ["CONTEXT_DIR"])
    print(f"[build-init-image] stand-in for buildah (cssr_tasks.sim.oci): building {image} from "
          f"{context}/Containerfile (FROM, COPY, LABEL, ENV, ENTRYPOINT), then pushing it")
    with tempfile.TemporaryDirectory(prefix="cssr-build-") as work:
        digest = build_containerfile(context, image, Path(work))
    (context / ".pushed-digest").write_text(digest)
    print(f"[build-init-image] pushed {image}@{digest}")
    return 0


_CHROOT = """set -e
root=$1; shift
mkdir -p "$root/workspace" "$root/dev" "$root/tmp"
if [ -d /workspace ]; then mount --rbind /workspace "$root/workspace"; fi
# a simulated pod's volumes (sim/pods.py), at their mountPaths
for target in ${CSSR_STEP_MOUNTS:-}; do mkdir -p "$root$target" && mount --rbind "$target" "$root$target"; done
mount --rbind /dev "$root/dev"
exec chroot "$root" "$@"
"""


def run_step(image: str, cache: Path, script: Path, args: Sequence[str]) -> int:
    """A script step run in `image`: pulled into `cache`, chrooted into, with /workspace and /dev bound in."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        print(f"could not run a step in {image}: running a step in an image here needs root and unshare",
              file=sys.stderr)
        return 125
    rootfs, _ = pull_rootfs(image, cache)
    inside = rootfs / "tmp" / f"cssr-step-{os.getpid()}.sh"
    inside.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(script, inside)
    try:
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _CHROOT, "chroot-step", str(rootfs),
                "/bin/sh", f"/tmp/{inside.name}", *args]
        return subprocess.run(argv, check=False).returncode
    finally:
        inside.unlink(missing_ok=True)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m cssr_tasks.sim.oci", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    build = sub.add_parser("build-step", help="build-init-image's build step without buildah")
    build.add_argument("script", nargs="?", help="the step's script (replaced by this stand-in)")
    run = sub.add_parser("run-step", help="run a script step in the image $CSSR_STEP_IMAGE")
    run.add_argument("--cache", type=Path, required=True, help="where pulled images are kept")
    run.add_argument("script", type=Path)
    run.add_argument("args", nargs="*")
    args = parser.parse_args(argv)
    try:
        if args.action == "build-step":
            return build_step(os.environ)
        return run_step(os.environ["CSSR_STEP_IMAGE"], args.cache, args.script, args.args)
    except (RuntimeError, OSError, KeyError, ValueError) as e:
        print(f"[{args.action}] error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
