"""The module builder's params, checked one way wherever they are read.

build-kmods reads them to run the builder on the modules workspace; build-kmods-nodes reads them to
hand them to the cssr-modules DaemonSet's pods (modules-storage=hostpath), and must refuse what the
pods' own build-kmods would refuse before it rolls anything out.
"""

from __future__ import annotations

import os
import shlex
import string
from pathlib import Path

from .params import Reader, path_problem, shown

DEFAULT_BUILDER = "/usr/bin/dpdk_build.sh /usr/share/128technology/dpdk/src"
DEFAULT_OUTPUT = "{builder_root}/usr/lib/modules/{kernel}/dpdk"
TEMPLATE_FIELDS = ("kernel", "builder_root", "modules_dir")


def read_command(read: Reader) -> tuple[str, ...]:
    """builder-command in shell words (no shell runs them: kmod-build.sh execs the words as they are). Its
    first word names the program by Reader.path's rule, so that an option, a glob or a shell fragment
    there is refused rather than run; the arguments are the builder's own business."""
    command = read.string("builder-command", DEFAULT_BUILDER)
    try:
        argv = tuple(shlex.split(command))
    except ValueError as e:
        read.fail(f"param builder-command={shown(command)} is not valid shell words ({e})")
        return ()
    if not argv:
        read.fail("param builder-command is empty; give the builder and its arguments")
        return ()
    problem = path_problem(argv[0])
    if problem:
        read.fail(f"param builder-command names the program {shown(argv[0])}, which {problem}; give the "
                  "builder's path first, such as /usr/bin/dpdk_build.sh")
        return ()
    return argv


def output_for(template: str, kernel: str, builder_root: str, modules_dir: str, *, normalize: bool = True) -> str:
    """Where the builder leaves its modules for `kernel`, as the builder sees it."""
    path = template.format(kernel=kernel, builder_root=builder_root.rstrip("/"), modules_dir=modules_dir)
    return os.path.normpath(path) if normalize else path


def output_problem(template: str, builder_root: str, modules_dir: str) -> str:
    """Why builder-output cannot be used, as a phrase; "" when it can."""
    problem = template_problem(template)
    if problem is None:
        # kmod-build.sh empties this folder before each build: it must stay where the template says
        sample = output_for(template, "5.14.0-1.el9.x86_64", builder_root, modules_dir, normalize=False)
        if "5.14.0-1.el9.x86_64" not in Path(sample).parts:
            problem = "must name a directory per kernel, with {kernel} as one of its path components"
        elif not sample.startswith("/"):
            problem = "must be an absolute path, such as {builder_root}/usr/lib/modules/{kernel}/dpdk"
        else:
            problem = path_problem(sample)
    return problem


def template_problem(template: str) -> str | None:
    """Why `template` is not a plain str.format template of TEMPLATE_FIELDS, or None.

    Only bare fields: an attribute, an index or a format spec ({kernel.x}, {kernel[0]}, {kernel:>9999999})
    would be evaluated by str.format, which raises or allocates at will.
    """
    hint = "; use {kernel}, {builder_root} and {modules_dir}, nothing else between braces"
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
                  if name is not None]
    except ValueError as e:
        return f"is not a valid template ({e}){hint}"
    for name, spec, conversion in fields:
        if name not in TEMPLATE_FIELDS or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            return f"has the field {shown}, which is not a plain template field{hint}"
    return None
