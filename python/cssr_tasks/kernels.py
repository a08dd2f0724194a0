"""Kernel versions as OpenShift reports them, and the kernel set that names our builds.

Shared by detect-kernel, the image and module builds and the pool watcher, so that every
component agrees on what "the same kernel" and "the same set" mean.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

# KMM's own pattern for the RHCOS version inside nodeInfo.osImage, widened to the
# multi-digit build suffix and the RHEL-numbered versions of newer releases (9.6.20250121-0).
_RHCOS = re.compile(r"\d+\.\d+\.\d+-\d+")
_REALTIME = re.compile(r"(\+rt$|[.-]rt\d)")


def normalize(kernel: str) -> str:
    """Strip whitespace and the bare trailing `+` some kubelets report (KMM does the same)."""
    kernel = kernel.strip()
    while kernel.endswith("+"):
        kernel = kernel[:-1]
    return kernel


def is_realtime(kernel: str) -> bool:
    """`…rt14.47.el9_2.x86_64` (RHEL <= 9.2) and `….el9_4.x86_64+rt` (RHEL >= 9.3) are both realtime."""
    return bool(_REALTIME.search(kernel))


def version_key(kernel: str) -> tuple[tuple[int, int | str], ...]:
    """Order kernels as versions, not strings: 5.14.0-427 sorts after 5.14.0-70."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.findall(r"\d+|[A-Za-z_]+", kernel))


def kernel_set(kernels: Iterable[str]) -> list[str]:
    return sorted({normalize(k) for k in kernels if normalize(k)})


def kernel_set_id(kernels: Iterable[str]) -> str:
    """The first 12 hex digits of sha256 over the sorted, unique versions joined by newlines."""
    return hashlib.sha256("\n".join(kernel_set(kernels)).encode()).hexdigest()[:12]


def rhcos_version(os_image: str) -> str | None:
    match = _RHCOS.search(os_image or "")
    return match.group(0) if match else None


def primary(counts: dict[str, int]) -> str:
    """The kernel most nodes run; a tie goes to the higher version."""
    return max(counts, key=lambda k: (counts[k], version_key(k)))
