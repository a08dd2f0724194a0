"""Kernel modules without Juniper's images: Debian's headers as other kernels, and a stand-in builder.

Juniper's `kmod-builder` image is not public. What stands in for it, in the module tests and in
`make demo`:

- **Kernel trees.** Debian's `linux-headers-<kver>-amd64` is a real kbuild tree. A copy whose
  release string is rewritten (`include/generated/utsrelease.h`, `.kernelvariables`) makes kbuild
  stamp another vermagic, so one set of headers plays any kernel: a second Debian-like kernel in
  the tests, the RHEL kernels of the simulated cluster in the demo. Its links become absolute, so
  the copy still finds Debian's common headers and kbuild scripts wherever it is copied.
- **The builder.** `igb_uio.ko` from `dpdk-kmods-dkms`'s source, built with `make -C <headers>
  M=<copy> MODULE_CFLAGS=-fno-PIE modules`; `rte_kni` is not packaged in Debian, so its stand-in is
  igb_uio with the `.modinfo` name rewritten (same length, same vermagic). The stand-in builder
  script plays `dpdk_build.sh ROOT`: it reads ROOT/usr/src/kernels/$(uname -r), needs
  ROOT/usr/lib/modules/$(uname -r), writes ROOT/usr/lib/modules/$(uname -r)/dpdk/{igb_uio,rte_kni}.ko,
  checks that `uname -r` agrees with KERNEL_VERSION (kmod-build.sh's shim and variable), and
  records each kernel it built.
- **The in-tree uio.** igb_uio needs the kernel's own `uio` module, and `linux-headers` carries no
  `.ko`: `build_uio` compiles a module named uio that exports uio's API (`__uio_register_device`,
  `uio_unregister_device`, `uio_event_notify`, with the prototypes of `<linux/uio_driver.h>`) and
  does nothing else. depmod resolves igb_uio's undefined symbols against it, as against the real one.
- **Without headers** (no linux-headers, dpdk-kmods, make or gcc), the builder writes synthetic
  modules instead: minimal ELF relocatables whose `.modinfo` names the module and the kernel's
  vermagic, which is all the verification reads.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import elf, kernels

SOURCE_GLOB = "usr/src/dpdk-kmods-*"
HEADERS_GLOB = "usr/src/linux-headers-*-amd64"
MODULES = ("igb_uio", "rte_kni")
# What a synthetic module's .modinfo holds, after name=: the fields `modinfo igb_uio` shows on RHEL 9.
_MODINFO = "license=GPL\0depends=uio\0retpoline=Y\0vermagic={kernel} SMP preempt mod_unload modversions \0"


def debian_headers() -> Path | None:
    """The newest installed non-realtime `linux-headers-*-amd64` tree, or None."""
    # The glob also matches realtime trees (linux-headers-6.1.0-57-rt-amd64, which the e2e world
    # installs), and by string order "-rt-amd64" would come last; "-9-" would follow "-10-".
    found = [p for p in Path("/").glob(HEADERS_GLOB) if not release_of(p).endswith("-rt-amd64")]
    return max(found, key=lambda p: kernels.version_key(release_of(p))) if found else None


def igb_uio_source() -> Path | None:
    """The dpdk-kmods source folder holding igb_uio.c, or None."""
    found = [p for p in sorted(Path("/").glob(SOURCE_GLOB)) if (p / "igb_uio.c").is_file()]
    return found[-1] if found else None


def missing_for_real_builds() -> list[str]:
    """What a real igb_uio build lacks here (package or tool names); empty when it can run."""
    missing = [t for t in ("make", "gcc") if shutil.which(t) is None]
    if debian_headers() is None:
        missing.append("linux-headers-amd64")
    if igb_uio_source() is None:
        missing.append("dpdk-kmods-dkms")
    return missing


def release_of(headers: Path) -> str:
    return headers.name.removeprefix("linux-headers-")


def headers_for_release(headers: Path, release: str, target: Path) -> Path:
    """A copy of Debian's arch headers at `target` announcing `release`: kbuild stamps it as vermagic."""
    shutil.copytree(headers, target, symlinks=True)
    for link in [p for p in target.iterdir() if p.is_symlink()]:
        resolved = (headers / link.name).resolve()
        link.unlink()
        link.symlink_to(resolved)
    old = release_of(headers)
    for name in ("include/generated/utsrelease.h", ".kernelvariables"):
        path = target / name
        path.write_text(path.read_text().replace(old, release))
    return target


def build_igb_uio(headers: Path, source: Path, work: Path) -> Path:
    """igb_uio.ko built against `headers` in a copy of `source` at `work`."""
    shutil.copytree(source, work)
    run = subprocess.run(["make", "-C", str(headers), f"M={work}", "MODULE_CFLAGS=-fno-PIE", "modules"],
                         capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise RuntimeError(f"could not build igb_uio against {headers}:\n{run.stdout}{run.stderr}")
    return work / "igb_uio.ko"


_UIO_SOURCE = """// Stand-in for drivers/uio/uio.c (cssr_tasks.sim.kmod_standin): uio's exported API, no driver.
#include <linux/module.h>
#include <linux/uio_driver.h>
int __uio_register_device(struct module *owner, struct device *parent, struct uio_info *info) { return -ENODEV; }
EXPORT_SYMBOL_GPL(__uio_register_device);
int __devm_uio_register_device(struct module *owner, struct device *parent, struct uio_info *info) { return -ENODEV; }
EXPORT_SYMBOL_GPL(__devm_uio_register_device);
void uio_unregister_device(struct uio_info *info) { }
EXPORT_SYMBOL_GPL(uio_unregister_device);
void uio_event_notify(struct uio_info *info) { }
EXPORT_SYMBOL_GPL(uio_event_notify);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("stand-in for the in-tree uio module");
"""


def build_uio(headers: Path, work: Path) -> Path:
    """uio.ko (the stand-in above) built against `headers` in `work`."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "uio.c").write_text(_UIO_SOURCE)
    (work / "Kbuild").write_text("obj-m := uio.o\n")
    run = subprocess.run(["make", "-C", str(headers), f"M={work}", "MODULE_CFLAGS=-fno-PIE", "modules"],
                         capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise RuntimeError(f"could not build the uio stand-in against {headers}:\n{run.stdout}{run.stderr}")
    return work / "uio.ko"


def rename_module(data: bytes, old: str, new: str) -> bytes:
    """The module with its `.modinfo` name rewritten (names of the same length)."""
    needle = f"name={old}\0".encode()
    if len(old) != len(new) or needle not in data:
        raise ValueError(f"cannot rename module {old} to {new}")
    return data.replace(needle, f"name={new}\0".encode(), 1)


def make_elf(*, bits: int = 64, endian: str = "<", e_type: int = elf.ET_REL, machine: int = 62,
             modinfo: bytes | None = b"", extended_count: bool = False) -> bytes:
    """A minimal ELF: a null section, .modinfo (unless None), .shstrtab; section headers at the end."""
    names = b"\0.shstrtab\0" + (b".modinfo\0" if modinfo is not None else b"")
    sections = [(0, 0, b"")]  # (name offset, type, contents)
    if modinfo is not None:
        sections.append((names.index(b".modinfo"), 1, modinfo))
    sections.append((names.index(b".shstrtab"), 3, names))
    ehsize = 52 if bits == 32 else 64
    body, offsets = b"", []
    for _, _, contents in sections:
        offsets.append(ehsize + len(body))
        body += contents
    shoff = ehsize + len(body)
    shdr = struct.Struct(endian + ("IIIIIIIIII" if bits == 32 else "IIQQQQIIQQ"))
    shnum, shstrndx = len(sections), len(sections) - 1
    headers = b""
    for index, ((name, kind, contents), offset) in enumerate(zip(sections, offsets, strict=True)):
        size, link = len(contents), 0
        if index == 0 and extended_count:  # what a file with more than 0xff00 sections does
            size, link = shnum, shstrndx
        headers += shdr.pack(name, kind, 0, 0, offset, size, link, 0, 1, 0)
    ident = elf.ELF_MAGIC + bytes([1 if bits == 32 else 2, 1 if endian == "<" else 2, 1]) + bytes(9)
    header = struct.Struct(endian + ("HHIIIIIHHHHHH" if bits == 32 else "HHIQQQIHHHHHH")).pack(
        e_type, machine, 1, 0, 0, shoff, 0, ehsize, 0, 0, shdr.size,
        0 if extended_count else shnum, elf.SHN_XINDEX if extended_count else shstrndx)
    return ident + header + body + headers


def synthetic_module(name: str, kernel: str) -> bytes:
    """An x86-64 relocatable whose .modinfo names `name` and kernel's vermagic: no code, nothing to load."""
    return make_elf(modinfo=(f"name={name}\0" + _MODINFO.format(kernel=kernel)).encode())


_BUILDER = """#!/bin/sh
# Stand-in for Juniper's dpdk_build.sh (cssr_tasks.sim.kmod_standin). Usage: builder ROOT
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
out=$root/usr/lib/modules/$kver/dpdk
mkdir -p "$out"
{build}
"""
_REAL_BUILD = """work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -R '{source}'/. "$work/"
make -s -C "$root/usr/src/kernels/$kver/" M="$work" MODULE_CFLAGS=-fno-PIE modules
cp "$work/igb_uio.ko" "$out/igb_uio.ko"
'{python}' -c 'import sys; data = open(sys.argv[1], "rb").read()
open(sys.argv[2], "wb").write(data.replace(b"name=igb_uio\\0", b"name=rte_kni\\0", 1))' \\
  "$out/igb_uio.ko" "$out/rte_kni.ko"
"""
_SYNTHETIC_BUILD = """echo "stand-in builder: no kernel headers here; writing synthetic modules for $kver"
'{python}' -m cssr_tasks.sim.kmod_standin synthetic "$out" "$kver" igb_uio rte_kni
"""


def builder_script(*, record: Path | str, source: Path | str | None, python: str = sys.executable) -> str:
    """The stand-in builder script: a real igb_uio build from `source`, or synthetic modules (None).
    `python` is the interpreter it records the build with: this process's, or an image's own."""
    build = _REAL_BUILD.format(source=source, python=python) if source else _SYNTHETIC_BUILD.format(python=python)
    return _BUILDER.format(record=record, build=build)


def write_builder(path: Path, *, record: Path, source: Path | None) -> Path:
    """The stand-in builder script at `path`, run on this machine."""
    path.write_text(builder_script(record=record, source=source))
    path.chmod(0o755)
    return path


def main(argv: Sequence[str]) -> int:
    """`python -m cssr_tasks.sim.kmod_standin synthetic OUT KERNEL MODULE...`: what the stand-in runs."""
    if len(argv) < 4 or argv[0] != "synthetic":
        print("usage: python -m cssr_tasks.sim.kmod_standin synthetic OUT KERNEL MODULE...", file=sys.stderr)
        return 2
    out, kernel = Path(argv[1]), argv[2]
    out.mkdir(parents=True, exist_ok=True)
    for name in argv[3:]:
        (out / f"{name}.ko").write_bytes(synthetic_module(name, kernel))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
