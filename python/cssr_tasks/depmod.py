"""modules.dep for a kernel tree on the modules volume, so that `modprobe igb_uio` in the router finds the module.

depmod runs against a scratch view of the tree: a folder of links to every entry of
`<modules-dir>/<kver>` except the index files depmod writes. depmod follows the links to read
the modules and writes its new index files into the view, never into the live tree. Only when it
succeeded and its modules.dep lists every DPDK module (and the in-tree uio they need) are the
new files renamed over the live ones, one rename(2) each: a reader sees the old file or the new.
The caller holds the volume's build lock, so no two runs write the same tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from .durable import fsync
from .errors import CssrError
from .kmod_checks import dep_problems, read_modules_dep
from .log import Log

# What depmod writes (kmod's depmod.c, depmod_output): everything else in the tree is its input.
OUTPUTS = ("modules.dep", "modules.dep.bin", "modules.alias", "modules.alias.bin", "modules.softdep",
           "modules.weakdep", "modules.symbols", "modules.symbols.bin", "modules.builtin.bin",
           "modules.builtin.alias.bin", "modules.devname")


def update(modules_dir: Path, kernel: str, modules: Sequence[str], *, scratch: Path, system_map: Path | None,
           log: Log) -> float:
    """Regenerate the index files of `<modules_dir>/<kernel>`; returns the seconds depmod took."""
    tree = modules_dir / kernel
    if not tree.is_dir():
        raise CssrError(f"could not run depmod for kernel {kernel}: no kernel tree {tree}; lay out the kernel "
                        "trees first (the layout step)")
    view = scratch / "lib" / "modules" / kernel
    shutil.rmtree(scratch, ignore_errors=True)
    view.mkdir(parents=True)
    # kmod built with its module directory under /usr (kmod 31 and later can be) looks there instead
    (scratch / "usr" / "lib").mkdir(parents=True)
    (scratch / "usr" / "lib" / "modules").symlink_to("../../lib/modules")
    for entry in tree.iterdir():
        if entry.name not in OUTPUTS:
            (view / entry.name).symlink_to(entry.absolute())
    argv = ["depmod", "-b", str(scratch)]
    if system_map is not None:
        argv += ["-e", "-F", str(system_map)]
    argv.append(kernel)
    start = time.monotonic()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, errors="replace", check=False)
    except OSError as e:
        raise CssrError(f"could not run depmod: {e.strerror}; the step's image needs kmod's depmod") from None
    took = time.monotonic() - start
    for line in (done.stderr + done.stdout).splitlines():
        if line.strip() and "could not open modules." not in line:  # a tree without modules.order is fine
            log.info(f"  depmod | {line}")
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()
        raise CssrError(f"could not run depmod for kernel {kernel}: it exited with {done.returncode}"
                        f"{': ' + detail[-1] if detail else ''}; the live index files were kept")
    problems = dep_problems(read_modules_dep(view), modules, kernel)
    if problems:
        raise CssrError(f"could not index the modules of kernel {kernel}: after depmod, " + "; ".join(problems)
                        + "; the live index files were kept")
    made = sorted(p for p in view.iterdir() if p.is_file() and not p.is_symlink())
    for path in made:
        fsync(path)
    for path in made:
        os.replace(path, tree / path.name)
    fsync(tree)
    shutil.rmtree(scratch, ignore_errors=True)
    log.info(f"kernel {kernel}: depmod{' with ' + str(system_map) if system_map else ''} took {took:.2f}s; "
             f"{tree / 'modules.dep'} lists {', '.join(modules)} and uio")
    return took
