"""Checks of built kernel modules, shared by verify-kmods and build-kmods.

A module file passes when it exists (`.ko` or `.ko.xz`), is an ELF relocatable object for the
kernel's architecture, names itself in `.modinfo`, carries a vermagic whose first word is the
kernel release and, when required, ends in an appended signature.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import kernels as kernel_versions
from .elf import ET_REL, ElfError, Module, expected_arch, read_module
from .params import Reader, shown

DEFAULT_MODULES = ("igb_uio", "rte_kni")
SUFFIXES = (".ko", ".ko.xz")
# The in-tree module igb_uio needs (its symbols __uio_register_device, uio_event_notify, ...): it must be
# in the kernel's own tree, built as a module (modules.dep) or into the kernel (modules.builtin).
IN_TREE = "uio"
_MODULE_SUFFIX = re.compile(r"\.ko(\.(xz|zst|gz))?$")
KERNEL_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._+~-]*"
# `uname -r` is at most __NEW_UTS_LEN (64) characters (include/uapi/linux/utsname.h): no kernel is longer.
KERNEL_MAX = 64
# A module's name fills MODULE_NAME_LEN (64 - sizeof(unsigned long)) bytes with its NUL (include/linux/module.h):
# 55 characters on 64-bit kernels. A leading - would read as an option of modprobe.
MODULE_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_-]{0,54}"


@dataclass(frozen=True)
class Check:
    """The verdict on one module file of one kernel."""

    kernel: str
    module: str
    path: Path  # the file read, or the plain .ko path when none exists
    problems: tuple[str, ...] = ()
    found: Module | None = None
    missing: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def status(self) -> str:
        if self.missing:
            return "missing"
        if self.found is None:
            return "unreadable"
        if self.problems:
            return "mismatch"
        return "ok, signed" if self.found.signature else "ok"

    def describe(self) -> str:
        return f"{self.path}: {'; '.join(self.problems)}"


def read_kernels(read: Reader) -> tuple[str, ...]:
    """The `kernels` param: a JSON array of kernel releases (shared with build-kmods)."""
    hint = 'a JSON array of kernel versions such as ["5.14.0-427.40.1.el9_4.x86_64"]'
    value = read.json("kernels", None, kind=list, required=True, hint=hint)
    if value is None:
        return ()
    bad = [k for k in value if not isinstance(k, str) or len(kernel_versions.normalize(k)) > KERNEL_MAX
           or not re.fullmatch(KERNEL_PATTERN, kernel_versions.normalize(k))]
    if bad:
        listed = repr(bad) if len(repr(bad)) <= 100 else f"{repr(bad)[:100]}... ({len(bad)} of them)"
        read.fail(f"param kernels has invalid kernel versions {listed}: a kernel release (uname -r) is at most "
                  f"{KERNEL_MAX} letters, digits and . _ + ~ -; {hint}")
        return ()
    if not value:
        read.fail(f"param kernels is an empty array; {hint}")
    return tuple(kernel_versions.kernel_set(value))


def read_modules(read: Reader) -> tuple[str, ...]:
    """The `modules` param: module names separated by commas (shared with build-kmods)."""
    raw = read.string("modules", ",".join(DEFAULT_MODULES))
    names = tuple(dict.fromkeys(n.strip().removesuffix(".ko") for n in raw.split(",") if n.strip()))
    if not names or any(not re.fullmatch(MODULE_PATTERN, n) for n in names):
        read.fail(f"param modules={shown(raw)} is not valid; give module names separated by commas, such as "
                  "igb_uio,rte_kni (letters, digits, _ and -, not first, at most 55 characters each)")
    return names


def read_modules_dir(read: Reader, default: str) -> str:
    """The `modules-dir` param (shared with build-kmods): given, never empty."""
    return read_folder(read, "modules-dir", default,
                       given_empty="give the modules volume's folder, such as /workspace/modules/modules")


def read_folder(read: Reader, name: str, default: str, *, given_empty: str = "") -> str:
    """An absolute path without white space (kmod-build.sh reads it from a plan line), by Reader.path's rule.

    With `given_empty`, a value given but empty is refused with that hint instead of meaning the default:
    a folder this step writes into must be named, never the host's own (an empty modules-dir once put
    the build lock and staging in /usr/lib/modules).
    """
    given = read.raw(name)
    if given_empty and given is not None and not given.strip():
        read.fail(f"param {name} is empty; {given_empty}")
        return default
    hint = "an absolute path without spaces"
    value = read.path(name, default, hint=hint)
    if value and (not value.startswith("/") or any(c.isspace() for c in value)):
        read.fail(f"param {name}={shown(value)} is not valid; {hint}")
        return default
    return value


def module_file(directory: Path, module: str) -> Path | None:
    for suffix in SUFFIXES:
        path = directory / f"{module}{suffix}"
        if path.is_file():
            return path
    return None


def check_module(path: Path, kernel: str, module: str, *, require_signature: bool = False) -> Check:
    """Read one file and compare it with what kernel `kernel` loads as module `module`."""
    try:
        found = read_module(path)
    except ElfError as e:
        message = str(e)
        if message.startswith(str(path)):
            message = message[len(str(path)):].lstrip(": ")
        return Check(kernel, module, path, (message,))
    problems = []
    if found.e_type != ET_REL:
        problems.append(f"is an ELF {found.type_name} file, not a relocatable object (ET_REL)")
    arch = expected_arch(kernel)
    if arch and (found.machine, found.bits, found.endian) != (arch.machine, arch.bits, arch.endian):
        problems.append(f"is {found.machine_name} ELF{found.bits} {found.endian}-endian, "
                        f"kernel {kernel} needs {arch.describe()}")
    vermagic = found.vermagic
    if vermagic is None:
        problems.append("has no vermagic in its .modinfo section" if found.modinfo else "has no .modinfo section")
    elif (vermagic.split() or [""])[0] != kernel:
        problems.append(f"has vermagic {vermagic.strip()!r}, which is for kernel {(vermagic.split() or ['?'])[0]}, "
                        f"not {kernel}")
    name = found.info("name")
    if name is not None and name != module.replace("-", "_"):
        problems.append(f"is module {name!r} (.modinfo name), not {module}")
    if require_signature and found.signature is None:
        problems.append("is not signed (no '~Module signature appended~' trailer); signing is required")
    elif require_signature and found.signature and found.signature.id_type != "PKCS#7":
        problems.append(f"has a {found.signature.id_type} signature; the kernel accepts PKCS#7 signatures only")
    return Check(kernel, module, path, tuple(problems), found)


def verify_dir(directory: str | Path, kernel: str, modules: Sequence[str], *,
               require_signature: bool = False) -> list[Check]:
    """Check every module of one kernel in `directory` (a `<kver>/dpdk` folder, or a staging copy of one)."""
    directory = Path(directory)
    checks = []
    for module in modules:
        path = module_file(directory, module)
        if path is None:
            checks.append(Check(kernel, module, directory / f"{module}.ko", (_missing(directory, module),),
                                missing=True))
        else:
            checks.append(check_module(path, kernel, module, require_signature=require_signature))
    return checks


def verify_tree(modules_dir: str | Path, kernel: str, modules: Sequence[str], *,
                require_signature: bool = False) -> list[Check]:
    """Check `<modules_dir>/<kernel>/dpdk/<module>.ko[.xz]` for every module."""
    return verify_dir(Path(modules_dir) / kernel / "dpdk", kernel, modules, require_signature=require_signature)


def _missing(directory: Path, module: str) -> str:
    looked = " or ".join(f"{module}{s}" for s in SUFFIXES)
    if not directory.is_dir():
        parent = directory.parent
        if not parent.is_dir():
            return f"missing: no {looked}, and no kernel directory {parent} (was the kernel tree laid out?)"
        return f"missing: no {looked}, and no directory {directory}"
    present = sorted(p.name for p in directory.iterdir())
    shown = ", ".join(present[:6]) + (f" and {len(present) - 6} more" if len(present) > 6 else "")
    return f"missing: no {looked}; the directory holds {shown or 'nothing'}"


def read_modules_dep(tree: str | Path) -> dict[str, str] | None:
    """`<tree>/modules.dep` as module name -> path in the tree; None when the tree has no modules.dep.

    Built-in modules (`modules.builtin`) are included with their path: for a dependency check they are there.
    """
    tree = Path(tree)
    try:
        lines = (tree / "modules.dep").read_text(errors="replace").splitlines()
    except OSError:
        return None
    try:
        lines += [f"{line}:" for line in (tree / "modules.builtin").read_text(errors="replace").splitlines()]
    except OSError:
        pass
    found: dict[str, str] = {}
    for line in lines:
        path = line.partition(":")[0].strip()
        if path:
            found.setdefault(_MODULE_SUFFIX.sub("", path.rsplit("/", 1)[-1]).replace("-", "_"), path)
    return found


def dep_problems(deps: dict[str, str] | None, modules: Sequence[str], kernel: str) -> list[str]:
    """What keeps `modprobe <module>` from resolving each DPDK module of `kernel`, from its modules.dep."""
    if deps is None:
        return [f"kernel {kernel} has no modules.dep (was the kernel tree laid out?)"]
    problems = []
    unlisted = [m for m in modules if deps.get(m.replace("-", "_"), "").rsplit("/", 1)[0] != "dpdk"]
    if unlisted:
        problems.append(f"modules.dep of kernel {kernel} does not list {', '.join(f'dpdk/{m}.ko' for m in unlisted)} "
                        "(depmod has not run since they were built)")
    if IN_TREE not in deps:
        problems.append(f"kernel {kernel}'s tree has no {IN_TREE} module (neither in modules.dep nor in "
                        f"modules.builtin), which igb_uio needs; lay out the kernel's full modules tree")
    return problems
