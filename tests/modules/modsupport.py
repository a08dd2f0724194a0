"""Real kernel modules for the module tests (fixtures are registered by conftest.py), built once per session against Debian's kernel headers.

Two kernels, both real builds: Debian's `linux-headers-<kver>` as installed, and a copy of its
arch headers whose release string is rewritten (`utsrelease.h`), so that kbuild stamps a second,
different vermagic. `igb_uio.ko` comes from `dpdk-kmods-dkms`'s source with
`make -C <headers> M=<copy> MODULE_CFLAGS=-fno-PIE modules`; `rte_kni` is not packaged in Debian,
so its stand-in is igb_uio with the `.modinfo` name rewritten (same length, same vermagic).

The stand-in builder plays Juniper's `dpdk_build.sh`: it reads the headers at
ROOT/usr/src/kernels/$(uname -r), needs the modules tree at ROOT/usr/lib/modules/$(uname -r), writes
ROOT/usr/lib/modules/$(uname -r)/dpdk/{igb_uio,rte_kni}.ko, and records each kernel it built.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import require_tool

SOURCE_GLOB = "/usr/src/dpdk-kmods-*"
HEADERS_GLOB = "/usr/src/linux-headers-*-amd64"
SECOND_RELEASE_TAG = "cssrtest"  # 6.1.0-56-amd64 -> 6.1.0-56-cssrtest-amd64


@dataclass(frozen=True)
class Kernel:
    release: str
    headers: Path
    modules: dict[str, Path]  # module name -> built .ko


def rename_module(data: bytes, old: str, new: str) -> bytes:
    assert len(old) == len(new)
    needle = f"name={old}\0".encode()
    assert needle in data
    return data.replace(needle, f"name={new}\0".encode(), 1)


def _debian_headers() -> Path:
    found = sorted(Path("/").glob(HEADERS_GLOB.lstrip("/")))
    sources = sorted(Path("/").glob(SOURCE_GLOB.lstrip("/")))
    require_tool("make", "gcc", *(str(p) for p in found[:1] or [Path(HEADERS_GLOB)]),
                 *(str(p) for p in sources[:1] or [Path(SOURCE_GLOB)]))
    return found[-1]


def _igb_uio_source() -> Path:
    source = sorted(Path("/").glob(SOURCE_GLOB.lstrip("/")))[-1]
    assert (source / "igb_uio.c").is_file(), f"no igb_uio.c in {source}"
    return source


def _second_headers(headers: Path, target: Path) -> tuple[str, Path]:
    """A copy of the arch headers that announces another release; links made absolute so they still resolve."""
    release = headers.name.removeprefix("linux-headers-")
    second = release.replace("-amd64", f"-{SECOND_RELEASE_TAG}-amd64")
    copy = target / f"linux-headers-{second}"
    shutil.copytree(headers, copy, symlinks=True)
    for link in [p for p in copy.iterdir() if p.is_symlink()]:
        resolved = (headers / link.name).resolve()
        link.unlink()
        link.symlink_to(resolved)
    for name in ("include/generated/utsrelease.h", ".kernelvariables"):
        path = copy / name
        path.write_text(path.read_text().replace(release, second))
    return second, copy


def build_igb_uio(headers: Path, source: Path, work: Path) -> Path:
    shutil.copytree(source, work)
    run = subprocess.run(["make", "-C", str(headers), f"M={work}", "MODULE_CFLAGS=-fno-PIE", "modules"],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    return work / "igb_uio.ko"


@pytest.fixture(scope="session")
def kernels(tmp_path_factory: pytest.TempPathFactory) -> list[Kernel]:
    """[Debian's kernel, the rewritten second kernel], each with igb_uio.ko and rte_kni.ko built for it."""
    headers = _debian_headers()
    source = _igb_uio_source()
    root = tmp_path_factory.mktemp("kernels")
    release = headers.name.removeprefix("linux-headers-")
    second, second_headers = _second_headers(headers, root)
    found = []
    for name, path in ((release, headers), (second, second_headers)):
        igb_uio = build_igb_uio(path, source, root / f"build-{name}")
        rte_kni = igb_uio.with_name("rte_kni.ko")
        rte_kni.write_bytes(rename_module(igb_uio.read_bytes(), "igb_uio", "rte_kni"))
        found.append(Kernel(name, path, {"igb_uio": igb_uio, "rte_kni": rte_kni}))
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
    """Copy the kernel's modules to modules_dir/<release>/dpdk/, as a finished build leaves them."""
    dpdk = modules_dir / (release or kernel.release) / "dpdk"
    dpdk.mkdir(parents=True, exist_ok=True)
    for module in modules:
        shutil.copy(kernel.modules[module], dpdk / f"{module}.ko")
    return dpdk


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


STAND_IN = """#!/bin/sh
# Stand-in for Juniper's dpdk_build.sh (see tests/modules/conftest.py). Usage: builder ROOT
set -eu
root=$1
kver=$(uname -r)
if [ "$kver" != "${{KERNEL_VERSION:-}}" ]; then
  echo "uname -r says $kver but KERNEL_VERSION is ${{KERNEL_VERSION:-unset}}" >&2
  exit 3
fi
if [ ! -e "$root/usr/lib/modules/$kver/modules.dep" ]; then
  echo "no modules tree at $root/usr/lib/modules/$kver" >&2
  exit 4
fi
echo "$kver" >> '{record}'
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -R '{source}'/. "$work/"
make -s -C "$root/usr/src/kernels/$kver/" M="$work" MODULE_CFLAGS=-fno-PIE modules
out=$root/usr/lib/modules/$kver/dpdk
mkdir -p "$out"
cp "$work/igb_uio.ko" "$out/igb_uio.ko"
'{python}' -c 'import sys; d = open(sys.argv[1], "rb").read(); open(sys.argv[2], "wb").write(d.replace(b"name=igb_uio\\0", b"name=rte_kni\\0", 1))' "$out/igb_uio.ko" "$out/rte_kni.ko"
"""


@pytest.fixture
def volume(tmp_path: Path, kernels: list[Kernel]) -> Volume:
    """A volume with both kernels' trees laid out (as cssr-init does) and no modules built yet."""
    path, root = tmp_path / "volume", tmp_path / "root"
    for kernel in kernels:
        tree = path / "modules" / kernel.release
        (tree / "kernel" / "drivers" / "uio").mkdir(parents=True)
        (tree / "modules.dep").write_text("kernel/drivers/uio/uio.ko:\n")
        (tree / "build").symlink_to(f"/usr/src/kernels/{kernel.release}")  # RHEL's link, dangling here
        (path / "kernels").mkdir(parents=True, exist_ok=True)
        (path / "kernels" / kernel.release).symlink_to(kernel.headers)
    root.mkdir()
    record = tmp_path / "builds.txt"
    builder = tmp_path / "dpdk_build.sh"
    builder.write_text(STAND_IN.format(record=record, source=_igb_uio_source(), python=sys.executable))
    builder.chmod(0o755)
    return Volume(path, root, builder, record, kernels)
