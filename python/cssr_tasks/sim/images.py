"""Real image tools for the image tests, the benchmarks and `make demo`: a registry process, buildah, fake images.

- `RegistryServer`: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1, optionally behind
  htpasswd (Basic) auth, with its access log read back to count what clients wrote.
- `Buildah`: buildah with a private vfs store under a temp dir and chroot isolation (crun cannot
  run containers on the CI machine's hybrid cgroups).
- Fake Driver Toolkit images, FROM scratch, laid out as the real one: /usr/src/kernels/<kver>
  (kernel-devel), /usr/lib/modules/<kver> (modules, `build` -> /usr/src/kernels/<kver>), `lib` ->
  `usr/lib`, and /etc/driver-toolkit-release.json alone in the last layer, with no kernel label,
  as released images have it (openshift/driver-toolkit's Dockerfile). The kernel-devel tree
  is a few fake files, or (with `headers`) Debian's real headers announcing the kernel's release,
  so that modules really build against it (sim/kmod_standin.py).
- A fake UBI micro: /bin/sh and the coreutils the entrypoint and the layout step call, with their
  libraries, copied from this machine.

`seed_registry` pushes them with any pusher: `Buildah.push_rootfs`, or `oci.push_rootfs` where
buildah is missing.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from . import kmod_standin

REGISTRY_BIN = "/usr/bin/docker-registry"
# What cssr-init-entrypoint.sh and the build-kmods layout step run besides shell builtins.
IMAGE_TOOLS = ("sh", "cp", "mv", "mkdir", "mktemp", "rm", "chmod", "touch", "uname", "head", "tr")
RELEASE_FILE = Path("etc") / "driver-toolkit-release.json"


class Pusher(Protocol):
    """push(rootfs, destination, labels, top=folder laid as a last layer) -> the pushed manifest's digest"""

    def __call__(self, rootfs: Path, destination: str, labels: dict[str, str], *, top: Path | None = None) -> str: ...


_WRITE = re.compile(r'"(PUT|POST|PATCH|DELETE) (/v2/\S*)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RegistryServer:
    """One `docker-registry serve` process; stop() it (the fixtures do)."""

    def __init__(self, root: Path, *, user: str = "", password: str = "") -> None:
        self.root = root
        self.user = user
        self.password = password
        self.storage = root / "storage"
        self.log_path = root / "registry.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> RegistryServer:
        self.root.mkdir(parents=True, exist_ok=True)
        auth = ""
        if self.user:
            htpasswd = subprocess.run(["htpasswd", "-Bbn", self.user, self.password], check=True,
                                      capture_output=True, text=True).stdout
            (self.root / "htpasswd").write_text(htpasswd)
            auth = f"auth:\n  htpasswd:\n    realm: cssr-test\n    path: {self.root / 'htpasswd'}\n"
        for _ in range(3):  # the port is free when picked, and could be taken before the registry binds it
            self.port = free_port()
            config = self.root / "config.yml"
            config.write_text(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n"
                f"storage:\n  filesystem:\n    rootdirectory: {self.storage}\n  delete:\n    enabled: true\n"
                f"http:\n  addr: {self.host}\n  secret: cssr-test-secret\n" + auth)
            with self.log_path.open("ab") as log:
                self.process = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=log,
                                                stderr=subprocess.STDOUT)
            if self._wait_ready():
                return self
            self.stop()
        raise RuntimeError(f"docker-registry did not start; see {self.log_path}")

    def _wait_ready(self, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1):
                    return True
            except urllib.error.HTTPError as e:
                e.close()
                return e.code == 401
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def docker_config(self, directory: Path, *, name: str = "config.json", password: str | None = None) -> Path:
        """A docker config with this registry's login, in the form Tekton mounts."""
        directory.mkdir(parents=True, exist_ok=True)
        pair = f"{self.user}:{self.password if password is None else password}".encode()
        auths = {self.host: {"auth": base64.b64encode(pair).decode()}} if self.user else {}
        path = directory / name
        path.write_text(json.dumps({"auths": auths}))
        return path

    def settle(self) -> None:
        """The registry logs a request after answering it: wait until its log stops growing."""
        size = -1
        while size != self.log_size():
            size = self.log_size()
            time.sleep(0.2)

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def writes_since(self, mark: int) -> list[str]:
        """Requests that changed the registry (PUT, POST, PATCH, DELETE) logged after `mark`."""
        with self.log_path.open("rb") as log:
            log.seek(mark)
            text = log.read().decode("utf-8", "replace")
        return [f"{m.group(1)} {m.group(2)}" for m in _WRITE.finditer(text)]

    def requests_since(self, mark: int) -> list[str]:
        with self.log_path.open("rb") as log:
            log.seek(mark)
            text = log.read().decode("utf-8", "replace")
        return re.findall(r'"((?:GET|HEAD|PUT|POST|PATCH|DELETE) /v2/\S*)', text)

    def storage_bytes(self) -> int:
        """Bytes of blob data the registry stores: what pushes added."""
        blobs = self.storage / "docker" / "registry" / "v2" / "blobs"
        return sum(p.stat().st_size for p in blobs.rglob("data")) if blobs.exists() else 0


@dataclass
class Buildah:
    """buildah with its own vfs store; the same flags buildah-build.sh gets from the tests."""

    root: Path
    runroot: Path

    @property
    def global_flags(self) -> list[str]:
        return ["--storage-driver", "vfs", "--root", str(self.root), "--runroot", str(self.runroot)]

    def __call__(self, *args: str, check: bool = True, env: dict[str, str] | None = None,
                 timeout: float = 300) -> subprocess.CompletedProcess[str]:
        run = subprocess.run(["buildah", *self.global_flags, *args], capture_output=True, text=True,
                             env=env, timeout=timeout, check=False)
        if check and run.returncode != 0:
            raise AssertionError(f"buildah {' '.join(args)} failed ({run.returncode}):\n{run.stderr[-3000:]}")
        return run

    def push(self, image: str, destination: str, authfile: Path | None, digest_file: Path) -> str:
        args = ["push", "--tls-verify=false", "--digestfile", str(digest_file)]
        if authfile:
            args += ["--authfile", str(authfile)]
        self(*args, image, f"docker://{destination}")
        return digest_file.read_text().strip()

    def env_for_build_script(self) -> dict[str, str]:
        return {"STORAGE_ROOT": str(self.root), "STORAGE_RUNROOT": str(self.runroot)}

    def push_rootfs(self, rootfs: Path, destination: str, labels: dict[str, str],
                    authfile: Path | None = None, *, top: Path | None = None) -> str:
        """FROM scratch + the rootfs (+ `top` as a last layer), built and pushed; returns the pushed digest."""
        local = "localhost/cssr-seed/" + re.sub(r"[^a-z0-9]+", "-", destination.lower()).strip("-")
        build_rootfs_image(self, rootfs, local, labels, top=top)
        return self.push(local, destination, authfile, rootfs.parent / "pushed.digest")


def kernel_tree(rootfs: Path, kernel: str, *, payload_bytes: int = 0, headers: Path | None = None) -> None:
    """The trees of one kernel where the Driver Toolkit keeps them (kernel-devel and kernel-modules).

    With `headers` (Debian's), the kernel-devel tree is a real kbuild tree announcing `kernel`.
    """
    devel = rootfs / "usr" / "src" / "kernels" / kernel
    if headers is not None:
        kmod_standin.headers_for_release(headers, kernel, devel)
    else:
        (devel / "include" / "generated").mkdir(parents=True, exist_ok=True)
        (devel / "scripts").mkdir(exist_ok=True)
        (devel / "Makefile").write_text(f"# kernel-devel {kernel}\nVERSION = 5\nPATCHLEVEL = 14\n")
        (devel / ".config").write_text("CONFIG_MODULES=y\nCONFIG_UIO=m\n")
        (devel / "Module.symvers").write_text(f"0x00000000\tuio_register_device\tvmlinux\tEXPORT_SYMBOL\t# {kernel}\n")
        (devel / "include" / "generated" / "utsrelease.h").write_text(f'#define UTS_RELEASE "{kernel}"\n')
    modules = rootfs / "usr" / "lib" / "modules" / kernel
    # the in-tree uio that igb_uio needs: depmod on the volume resolves its symbols (kmod_standin.build_uio)
    uio = modules / "kernel" / "drivers" / "uio" / "uio.ko"
    uio.parent.mkdir(parents=True, exist_ok=True)
    if headers is not None:
        shutil.copy(kmod_standin.build_uio(devel, rootfs.parent / f"uio-build-{kernel}"), uio)
    else:
        uio.write_bytes(kmod_standin.synthetic_module("uio", kernel))
    (modules / "modules.dep").write_text("kernel/drivers/uio/uio.ko:\n")
    (modules / "modules.alias").write_text("# Aliases extracted from modules themselves.\n")
    (modules / "build").symlink_to(f"/usr/src/kernels/{kernel}")
    if payload_bytes:
        # Incompressible, like the real trees' objects, so that the bytes pushed mean something.
        (modules / "kernel" / "payload.bin").write_bytes(os.urandom(payload_bytes // 2))
        (devel / "payload.bin").write_bytes(os.urandom(payload_bytes - payload_bytes // 2))


def merged_usr(rootfs: Path) -> None:
    for name in ("bin", "lib", "lib64", "sbin"):
        (rootfs / "usr" / name).mkdir(parents=True, exist_ok=True)
        (rootfs / name).symlink_to(f"usr/{name}")


def fake_dtk_rootfs(rootfs: Path, kernel: str, *, payload_bytes: int = 0, headers: Path | None = None,
                    rt_kernel: str | None = None, rt_headers: Path | None = None) -> Path:
    """The kernel trees in `rootfs`; returns the folder of the last layer, the release file alone.

    With `rt_kernel`, the realtime kernel's trees are there too (from `rt_headers`), as the real image
    carries both; without it the release file names `<kernel>+rt`, whose trees are not there.
    """
    merged_usr(rootfs)
    kernel_tree(rootfs, kernel, payload_bytes=payload_bytes, headers=headers)
    if rt_kernel:
        kernel_tree(rootfs, rt_kernel, payload_bytes=payload_bytes, headers=rt_headers)
    return release_layer(rootfs.parent / "release", kernel, rt_kernel or f"{kernel}+rt")


def release_layer(folder: Path, kernel: str, rt_kernel: str | None = None) -> Path:
    """A folder holding only /etc/driver-toolkit-release.json, as the Driver Toolkit's last layer writes it
    (keys of openshift/driver-toolkit's Dockerfile; RT_KERNEL_VERSION with `+rt` since commit 859518f)."""
    content: dict[str, str] = {"KERNEL_VERSION": kernel, "RHEL_VERSION": "9.4"}
    if rt_kernel:
        content["RT_KERNEL_VERSION"] = rt_kernel
    (folder / RELEASE_FILE).parent.mkdir(parents=True, exist_ok=True)
    (folder / RELEASE_FILE).write_text(json.dumps(content, indent=4) + "\n")
    return folder


def fake_base_rootfs(rootfs: Path) -> None:
    """A UBI-micro stand-in: /bin/sh and coreutils from this machine, with the libraries they load."""
    merged_usr(rootfs)
    for name in ("etc", "tmp", "dev", "proc", "sys", "usr/local/bin"):
        (rootfs / name).mkdir(parents=True, exist_ok=True)
    needed: set[str] = set()
    for tool in IMAGE_TOOLS:
        path = shutil.which(tool)
        if path is None:
            raise RuntimeError(f"{tool} not found on this machine")
        needed.add(path)
        needed.update(_libraries(path))
    for path in sorted(needed):
        for name in {path, os.path.realpath(path)}:
            target = rootfs / _in_usr(name).lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                shutil.copy2(os.path.realpath(path), target)


def _libraries(binary: str) -> list[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False).stdout
    return re.findall(r"(/\S+)\s+\(0x", out)


def _in_usr(path: str) -> str:
    for top in ("/bin/", "/lib/", "/lib64/", "/sbin/"):
        if path.startswith(top):
            return "/usr" + path
    return path


def build_rootfs_image(buildah: Buildah, rootfs: Path, tag: str, labels: dict[str, str] | None = None, *,
                       top: Path | None = None) -> None:
    """FROM scratch + the rootfs (+ `top`, a sibling folder, as a layer of its own), as a local image."""
    context = rootfs.parent
    lines = ["FROM scratch", f"COPY {rootfs.name}/ /"] + ([f"COPY {top.name}/ /"] if top else [])
    lines += [f'LABEL {k}="{v}"' for k, v in (labels or {}).items()]
    (context / "Containerfile").write_text("\n".join(lines) + "\n")
    layers = ["--layers"] if top else []  # one layer per COPY, as the real image's build makes them
    buildah("bud", "--isolation", "chroot", *layers, "-q", "-f", str(context / "Containerfile"), "-t", tag,
            str(context))


@dataclass(frozen=True)
class Seed:
    """What a cluster would offer: a Driver Toolkit image per kernel and a base image, by digest."""

    dtk_images: dict[str, str]
    base_image: str


def seed_registry(host: str, push: Pusher, workdir: Path, kernels: list[str], *,
                  repository: str = "openshift-release-dev/ocp-v4.0-art-dev", tags: list[str] | None = None,
                  payload_bytes: int = 0, headers: Path | None = None) -> Seed:
    """Build the fake images and push them to the registry at `host`, as the release payload holds them."""
    images: dict[str, str] = {}
    for i, kernel in enumerate(kernels):
        rootfs = workdir / f"dtk{i}" / "rootfs"
        top = fake_dtk_rootfs(rootfs, kernel, payload_bytes=payload_bytes, headers=headers)
        tag = tags[i] if tags else f"dtk-{i}"
        digest = push(rootfs, f"{host}/{repository}:{tag}", {}, top=top)
        images[kernel] = f"{host}/{repository}@{digest}"
    rootfs = workdir / "base" / "rootfs"
    fake_base_rootfs(rootfs)
    base = f"{host}/ubi9/ubi-micro"
    digest = push(rootfs, f"{base}:9", {})
    return Seed(images, f"{base}:9@{digest}")


def inspect_config(buildah: Buildah, image: str) -> dict[str, Any]:
    run = buildah("inspect", "--type", "image", image)
    return dict(json.loads(run.stdout)["OCIv1"]["config"])
