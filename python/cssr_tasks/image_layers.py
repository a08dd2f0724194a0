"""One file out of an image layer's tar stream, read only as far as the file.

A layer is a tar stream, gzip-compressed in the images OpenShift ships (xz and bzip2 read the
same way). Reading stops at the file: the Driver Toolkit's release file sits in its last, small
layer, and the multi-gigabyte kernel layers below it are never fetched. A later layer deletes a
file of the layers below with a whiteout (`.wh.<name>`, or `.wh..wh..opq` for a whole folder),
as the OCI image spec defines; the caller stops searching lower layers when it sees one.
"""

from __future__ import annotations

import tarfile
import zlib
from dataclasses import dataclass
from typing import Protocol


class Readable(Protocol):
    def read(self, size: int = -1) -> bytes: ...


class LayerError(Exception):
    """The layer is not a tar stream this reader understands, or the file is too big."""


@dataclass(frozen=True)
class Found:
    data: bytes | None  # the file's content when the layer holds it
    deleted: bool = False  # the layer deletes it (a whiteout): lower layers' copies do not count


def find(stream: Readable, path: str, *, limit: int = 1 << 20) -> Found:
    """The regular file `path` (relative, such as etc/driver-toolkit-release.json) in the layer `stream`."""
    wanted = path.strip("/")
    whiteouts = whiteouts_of(wanted)
    deleted = False
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:  # type: ignore[call-overload]
            for member in tar:
                name = _clean(member.name)
                if name == wanted and member.isfile():
                    if member.size > limit:
                        raise LayerError(f"holds {wanted} of {member.size} bytes, more than the {limit} read here")
                    content = tar.extractfile(member)
                    return Found(content.read() if content else b"")
                deleted = deleted or name in whiteouts
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise LayerError(f"is not a readable tar stream ({e})") from e
    return Found(None, deleted)


def whiteouts_of(path: str) -> set[str]:
    """The tar names by which a layer deletes `path`: its whiteout, an ancestor's, an opaque ancestor."""
    parts = path.split("/")
    found = {"/".join([*parts[:i], ".wh." + parts[i]]) for i in range(len(parts))}
    found |= {"/".join([*parts[:i], ".wh..wh..opq"]) for i in range(len(parts))}
    return found


def _clean(name: str) -> str:
    while name.startswith(("./", "/")):
        name = name[2:] if name.startswith("./") else name[1:]
    return name
