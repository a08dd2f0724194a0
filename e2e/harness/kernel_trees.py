"""The kernels of the e2e world: real Debian kbuild trees, pinned in e2e/kernels.txt.

One line per RHCOS release of cssr_tasks.sim.fixtures.RELEASES: the release, its kernel and its
realtime kernel, each the release of an installed `linux-headers-<kernel>` (scripts/install-e2e-deps
reads the same file and installs them). Nothing here fakes a kernel release: every kernel a stand-in
node reports or a Driver Toolkit stand-in names is a tree kbuild really builds against.
"""

from __future__ import annotations

from pathlib import Path

from .image_build import ImageError
from .layout import E2E

KERNELS_FILE = E2E / "kernels.txt"
HEADERS = Path("/usr/src")


def releases() -> dict[str, tuple[str, str]]:
    """{RHCOS release ("4.17"): (kernel, realtime kernel)}, in the file's order."""
    found: dict[str, tuple[str, str]] = {}
    for number, line in enumerate(KERNELS_FILE.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 3:
            raise ImageError(f"{KERNELS_FILE}:{number}: want `release kernel realtime-kernel`, got {line!r}")
        found[fields[0]] = (fields[1], fields[2])
    return found


def kernels() -> list[str]:
    """Every kernel of the world, standard and realtime."""
    return [k for pair in releases().values() for k in pair]


def headers(kernel: str) -> Path:
    """The installed kbuild tree of `kernel`; one line naming the fix when it is not installed."""
    tree = HEADERS / f"linux-headers-{kernel}"
    if not (tree / "Makefile").is_file():
        raise ImageError(f"no kernel tree {tree} (e2e/kernels.txt names {kernel}); "
                         "run scripts/install-e2e-deps as root")
    return tree
