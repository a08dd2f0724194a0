"""Real kernel modules for the module tests (fixtures are registered by conftest.py), built once per session against Debian's kernel headers.

Two kernels, both real builds: Debian's `linux-headers-<kver>` as installed, and a copy of its
arch headers whose release string is rewritten, so that kbuild stamps a second, different
vermagic. The headers, the igb_uio build, the rte_kni rename and the stand-in builder (which plays
Juniper's `dpdk_build.sh` and records each kernel it built) are `cssr_tasks.sim.kmod_standin`'s,
shared with `make demo`.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from cssr_tasks.sim import kmod_standin

from support import require_tool

SECOND_RELEASE_TAG = "cssrtest"  # 6.1.0-56-amd64 -> 6.1.0-56-cssrtest-amd64


@dataclass(frozen=True)
class Kernel:
    release: str
    headers: Path
    modules: dict[str, Path]  # module name -> built .ko
    uio: Path  # the in-tree uio.ko they need (kmod_standin.build_uio)


def _debian_headers() -> Path:
    headers, source = kmod_standin.debian_headers(), kmod_standin.igb_uio_source()
    require_tool("make", "gcc", str(headers or "/" + kmod_standin.HEADERS_GLOB),
                 str(source or "/" + kmod_standin.SOURCE_GLOB))
    assert headers is not None
    return headers


def _igb_uio_source() -> Path:
    source = kmod_standin.igb_uio_source()
    assert source is not None, "no igb_uio.c in /usr/src/dpdk-kmods-*"
    return source


@pytest.fixture(scope="session")
def kernels(tmp_path_factory: pytest.TempPathFactory) -> list[Kernel]:
    """[Debian's kernel, the rewritten second kernel], each with igb_uio.ko and rte_kni.ko built for it."""
    headers = _debian_headers()
    source = _igb_uio_source()
    root = tmp_path_factory.mktemp("kernels")
    release = kmod_standin.release_of(headers)
    second = release.replace("-amd64", f"-{SECOND_RELEASE_TAG}-amd64")
    second_headers = kmod_standin.headers_for_release(headers, second, root / f"linux-headers-{second}")
    found = []
    for name, path in ((release, headers), (second, second_headers)):
        igb_uio = kmod_standin.build_igb_uio(path, source, root / f"build-{name}")
        rte_kni = igb_uio.with_name("rte_kni.ko")
        rte_kni.write_bytes(kmod_standin.rename_module(igb_uio.read_bytes(), "igb_uio", "rte_kni"))
        uio = kmod_standin.build_uio(path, root / f"uio-{name}")
        found.append(Kernel(name, path, {"igb_uio": igb_uio, "rte_kni": rte_kni}, uio))
    return found


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder laid out like the signing Secret: key.pem and cert.der (openssl, as DOMAIN facts show)."""
    require_tool("openssl")
    folder = tmp_path_factory.mktemp("signing-key")
    subprocess.run(["openssl", "req", "-new", "-x509", "-newkey", "rsa:2048", "-keyout", str(folder / "key.pem"),
                    "-outform", "DER", "-out", str(folder / "cert.der"), "-nodes", "-days", "36500",
                    "-subj", "/CN=cssr-deploy test/"], capture_output=True, check=True)
    return folder


def install(kernel: Kernel, modules_dir: Path, *, modules: tuple[str, ...] = ("igb_uio", "rte_kni"),
            release: str | None = None) -> Path:
    """Copy the kernel's modules to modules_dir/<release>/dpdk/, as a finished build leaves them: in a tree
    that holds the in-tree uio, indexed by the real depmod."""
    release = release or kernel.release
    dpdk = modules_dir / release / "dpdk"
    dpdk.mkdir(parents=True, exist_ok=True)
    for module in modules:
        shutil.copy(kernel.modules[module], dpdk / f"{module}.ko")
    uio = modules_dir / release / "kernel" / "drivers" / "uio" / "uio.ko"
    if not uio.exists():
        uio.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(kernel.uio, uio)
    depmod(modules_dir, release)
    return dpdk


def depmod(modules_dir: Path, release: str) -> None:
    """kmod's depmod over modules_dir/<release> (it reads <base>/lib/modules/<release>)."""
    require_tool("depmod")
    with tempfile.TemporaryDirectory() as base:
        (Path(base) / "lib").mkdir()
        (Path(base) / "lib" / "modules").symlink_to(modules_dir.absolute())
        subprocess.run(["depmod", "-b", base, release], capture_output=True, check=True)


@dataclass
class Volume:
    """The modules volume in the cssr-init layout, and the builder's own root (a private view lands there)."""

    path: Path  # volume root: modules/<kver>, kernels/<kver>
    root: Path  # the builder's root: root/usr/lib/modules, root/usr/src/kernels
    builder: Path  # the stand-in builder script
    record: Path  # one line per build the stand-in ran: the kernel
    kernels: list[Kernel]

    @property
    def modules_dir(self) -> Path:
        return self.path / "modules"

    def builds(self) -> list[str]:
        return self.record.read_text().split() if self.record.exists() else []

    def args(self, *kernels: Kernel | str, **extra: str) -> list[str]:
        """Flags for `cssr-tasks build-kmods` over this volume with the stand-in builder."""
        names = [k if isinstance(k, str) else k.release for k in kernels or self.kernels]
        flags = {
            "modules-dir": str(self.modules_dir),
            "kernels": "[" + ",".join(f'"{n}"' for n in names) + "]",
            "builder-command": f"{self.builder} {self.root}",
            "builder-root": str(self.root),
            "kernel-tree-dir": str(self.path),
            "lock-timeout": "60",
            **{k.replace("_", "-"): v for k, v in extra.items()},
        }
        return [part for name, value in flags.items() for part in (f"--{name}", value)]


def lay_out_tree(kernel: Kernel, modules_dir: Path) -> Path:
    """modules_dir/<release> as the kernel's package lays it out: the in-tree uio.ko, and modules.dep naming it."""
    tree = modules_dir / kernel.release
    (tree / "kernel" / "drivers" / "uio").mkdir(parents=True)
    shutil.copy(kernel.uio, tree / "kernel" / "drivers" / "uio" / "uio.ko")
    (tree / "modules.dep").write_text("kernel/drivers/uio/uio.ko:\n")
    return tree


@pytest.fixture
def volume(tmp_path: Path, kernels: list[Kernel]) -> Volume:
    """A volume with both kernels' trees laid out (as cssr-init does) and no modules built yet."""
    path, root = tmp_path / "volume", tmp_path / "root"
    for kernel in kernels:
        tree = lay_out_tree(kernel, path / "modules")
        (tree / "build").symlink_to(f"/usr/src/kernels/{kernel.release}")  # RHEL's link, dangling here
        (path / "kernels").mkdir(parents=True, exist_ok=True)
        (path / "kernels" / kernel.release).symlink_to(kernel.headers)
    root.mkdir()
    record = tmp_path / "builds.txt"
    builder = kmod_standin.write_builder(tmp_path / "dpdk_build.sh", record=record, source=_igb_uio_source())
    return Volume(path, root, builder, record, kernels)


def modprobe_plan(modules_dir: Path, kernel: str, module: str, base: Path) -> list[str]:
    """What `modprobe -n -v` would insmod for `module` against the volume's tree: kmod's own resolution.

    modprobe -d reads <base>/lib/modules/<kernel>; `base` gets that link to the volume's modules folder.
    """
    require_tool("modprobe")
    if not (base / "lib" / "modules").exists():
        (base / "lib").mkdir(parents=True)
        (base / "lib" / "modules").symlink_to(modules_dir)
    done = subprocess.run(["modprobe", "-n", "-v", "-d", str(base), "-S", kernel, module],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return [line.split()[1].removeprefix(f"{base}/lib/modules/{kernel}/") for line in done.stdout.splitlines()
            if line.startswith("insmod ")]
