"""Verify the DPDK kernel modules on the modules volume, for every kernel of the set.

Each `<modules-dir>/<kver>/dpdk/<module>.ko` (or `.ko.xz`) must exist, be an ELF relocatable
object for the kernel's architecture, and carry a `.modinfo` vermagic whose first word is the
kernel release; with require-signature it must also end in an appended module signature. The
files are read in Python (no modinfo binary). The kernel's `modules.dep` must list every module
(so that `modprobe igb_uio` finds it) and the in-tree `uio` they need. One row per file is logged,
and every failing file or tree is named, with what was found, in one error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import kernels as kernel_versions
from . import kmod_checks
from .deploy_params import MODULES_STORAGE
from .errors import CssrError
from .kmod_checks import DEFAULT_MODULES, Check, read_kernels, read_modules, read_modules_dir, verify_tree
from .log import Log
from .params import Reader

NEEDS_CLUSTER = False
# Tekton results share a 4 KB termination message: past this, the `modules` result sheds detail.
RESULT_BUDGET = 1024
SHA256_HEX = 16  # a prefix of the digest is enough to tell builds apart in a result


@dataclass(frozen=True)
class Params:
    modules_dir: str = "/usr/lib/modules"
    kernels: tuple[str, ...] = ()
    modules: tuple[str, ...] = DEFAULT_MODULES
    require_signature: bool = False
    modules_storage: str = "pvc"  # hostpath: the build-kmods-nodes step verifies on each node instead

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Params:
        read = Reader(environ)
        params = cls(
            modules_dir=read_modules_dir(read, cls.modules_dir),
            kernels=read_kernels(read),
            modules=read_modules(read),
            require_signature=read.boolean("require-signature", False),
            modules_storage=read.choice("modules-storage", "pvc", MODULES_STORAGE),
        )
        read.done()
        return params


@dataclass(frozen=True)
class Result:
    modules: dict[str, Any] | None  # None: not written (modules-storage=hostpath)


def run(params: Params, *, cluster: None = None, log: Log) -> Result:
    if params.modules_storage == "hostpath":
        log.info("modules-storage=hostpath: each node's pod of DaemonSet cssr-modules verifies its own copy")
        return Result(modules=None)
    checks = [c for kernel in params.kernels
              for c in verify_tree(params.modules_dir, kernel, params.modules,
                                   require_signature=params.require_signature)]
    log_table(checks, log)
    failed = [c for c in checks if not c.ok]
    if failed:
        raise CssrError(f"could not verify {len(failed)} of {len(checks)} kernel module files in "
                        f"{params.modules_dir}: " + " | ".join(c.describe() for c in failed)
                        + "; rebuild them with the cssr-build-kmods Task (cssr-tasks build-kmods)")
    trees = [p for kernel in params.kernels
             for p in kmod_checks.dep_problems(kmod_checks.read_modules_dep(Path(params.modules_dir) / kernel),
                                               params.modules, kernel)]
    if trees:
        raise CssrError(f"could not verify the module index in {params.modules_dir}: " + " | ".join(trees)
                        + "; run the cssr-build-kmods Task (cssr-tasks build-kmods), whose commit runs depmod")
    log.info(f"modules.dep of each kernel lists {', '.join(params.modules)} and the in-tree uio")
    modules, note = compact_result(checks)
    if note:
        log.info(f"result modules {note} to stay within {RESULT_BUDGET} bytes; the table above has every detail")
    log.info(f"verified {len(checks)} module file(s) for {len(params.kernels)} kernel(s)")
    return Result(modules=modules)


def log_table(checks: Sequence[Check], log: Log) -> None:
    rows = [("KERNEL", "MODULE", "STATUS", "VERMAGIC", "SIZE")]
    for c in checks:
        rows.append((c.kernel, c.path.name, c.status, (c.found.vermagic or "-").strip() if c.found else "-",
                     str(c.found.size) if c.found else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        log.info("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4])


def compact_result(checks: Iterable[Check], budget: int = RESULT_BUDGET) -> tuple[dict[str, Any], str]:
    """kernel -> module -> {sha256 (first 16 hex), vermagic, size}, shedding detail to fit `budget` bytes.

    In order: the whole record; without vermagic (its first word is the kernel, which the key says);
    the sha256 prefix alone; and last, as many kernels as fit, with `"_omitted": <count>`.
    """
    records = [(c.kernel, c.module, c.found) for c in checks if c.found is not None]

    def build(fields: tuple[str, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for kernel, module, found in records:
            full = {"sha256": found.sha256[:SHA256_HEX], "vermagic": (found.vermagic or "").strip(),
                    "size": found.size}
            out.setdefault(kernel, {})[module] = {k: full[k] for k in fields}
        return out

    def size(value: Any) -> int:
        return len(json.dumps(value, sort_keys=True, separators=(",", ":")).encode())

    for fields, note in ((("sha256", "vermagic", "size"), ""), (("sha256", "size"), "leaves out vermagic"),
                         (("sha256",), "keeps only the sha256 prefixes")):
        value = build(fields)
        if size(value) <= budget:
            return value, note
    value = build(("sha256",))
    kept: dict[str, Any] = {}
    for kernel in sorted(value, key=kernel_versions.version_key):
        trial = {**kept, kernel: value[kernel], "_omitted": len(value) - len(kept) - 1}
        if size(trial) > budget:
            break
        kept[kernel] = value[kernel]
    kept["_omitted"] = len(value) - len(kept)
    return kept, f"lists {len(kept) - 1} of {len(value)} kernels (sha256 prefixes only)"
