"""Reading kernel modules (`.ko`, `.ko.xz`) in pure Python: ELF header, `.modinfo`, appended signature.

No `modinfo` binary and no libelf: the tasks image has neither, and a reader that trusts no
offset can say exactly what is wrong with a truncated or foreign file. Every problem raises
`ElfError` naming the file; a `struct.error` never escapes.

Layout of a signed module (scripts/sign-file): the ELF object, then the PKCS#7 signature, then
a 12-byte `struct module_signature` whose last field is the signature's length (big-endian),
then the 28-byte magic `~Module signature appended~\\n`.
"""

from __future__ import annotations

import hashlib
import lzma
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CssrError

ELF_MAGIC = b"\x7fELF"
XZ_MAGIC = b"\xfd7zXZ\x00"
SIGNATURE_MAGIC = b"~Module signature appended~\n"
ET_REL = 1
SHT_NOBITS = 8
SHN_XINDEX = 0xFFFF
PKEY_ID_PKCS7 = 2

ET_NAMES = {0: "ET_NONE", 1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}
MACHINES = {
    3: "Intel 80386", 20: "PowerPC", 21: "PowerPC64", 22: "IBM S/390", 40: "ARM", 62: "x86-64",
    183: "AArch64", 243: "RISC-V", 258: "LoongArch",
}
_SIG_ID_TYPES = {0: "PGP", 1: "X.509", 2: "PKCS#7"}


class ElfError(CssrError):
    """The file is not a readable kernel module; the message names the file and what was found."""


@dataclass(frozen=True)
class Arch:
    """What a module for a kernel of this architecture must be."""

    name: str
    machine: int
    bits: int
    endian: str  # "little" or "big"

    def describe(self) -> str:
        return f"{MACHINES[self.machine]} ELF{self.bits} {self.endian}-endian"


# The kernel release ends in its architecture: RHEL `….el9_4.x86_64`, `….x86_64+rt`, `….aarch64+64k`;
# Debian `6.1.0-56-amd64`.
_ARCHES = {
    "x86_64": Arch("x86_64", 62, 64, "little"), "amd64": Arch("x86_64", 62, 64, "little"),
    "aarch64": Arch("aarch64", 183, 64, "little"), "arm64": Arch("aarch64", 183, 64, "little"),
    "ppc64le": Arch("ppc64le", 21, 64, "little"), "s390x": Arch("s390x", 22, 64, "big"),
}
_ARCH_SUFFIX = re.compile(r"[.-](" + "|".join(_ARCHES) + r")(\+[A-Za-z0-9_]+)?$")


def expected_arch(kernel: str) -> Arch | None:
    """The architecture named by the kernel release's suffix, or None when it names none we know."""
    match = _ARCH_SUFFIX.search(kernel)
    return _ARCHES[match.group(1)] if match else None


@dataclass(frozen=True)
class Signature:
    id_type: str
    signature_bytes: int
    total_bytes: int  # everything appended after the ELF object, magic included


@dataclass(frozen=True)
class Module:
    path: str
    size: int  # bytes on disk (compressed size for .ko.xz)
    sha256: str  # of the file on disk
    compressed: bool
    bits: int
    endian: str
    e_type: int
    machine: int
    modinfo: dict[str, list[str]] = field(default_factory=dict)
    signature: Signature | None = None

    @property
    def machine_name(self) -> str:
        return MACHINES.get(self.machine, f"machine {self.machine}")

    @property
    def type_name(self) -> str:
        return ET_NAMES.get(self.e_type, f"type {self.e_type}")

    def info(self, key: str) -> str | None:
        """The first `.modinfo` value of `key` (vermagic, name, depends, …), or None."""
        values = self.modinfo.get(key)
        return values[0] if values else None

    @property
    def vermagic(self) -> str | None:
        return self.info("vermagic")


def read_module(path: str | Path) -> Module:
    """Read a `.ko` or `.ko.xz` file; raises ElfError naming the file when it is not a readable module."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise ElfError(f"could not read {name}: {e.strerror or e}") from None
    return parse_module(raw, name)


def parse_module(raw: bytes, name: str = "<bytes>") -> Module:
    data, compressed = _decompress(raw, name)
    elf = _Elf(data, name)
    modinfo = _parse_modinfo(elf.section(".modinfo")) if elf.has_section(".modinfo") else {}
    return Module(
        path=name, size=len(raw), sha256=hashlib.sha256(raw).hexdigest(), compressed=compressed,
        bits=elf.bits, endian=elf.endian, e_type=elf.e_type, machine=elf.machine,
        modinfo=modinfo, signature=_signature(data, name),
    )


def strip_signature(data: bytes, name: str = "<bytes>") -> bytes:
    """The module without its appended signature (unchanged when it has none)."""
    signature = _signature(data, name)
    return data[:len(data) - signature.total_bytes] if signature else data


def _decompress(raw: bytes, name: str) -> tuple[bytes, bool]:
    if not raw.startswith(XZ_MAGIC):
        return raw, False
    try:
        return lzma.decompress(raw, format=lzma.FORMAT_XZ), True
    except (lzma.LZMAError, EOFError) as e:
        raise ElfError(f"{name}: xz data is corrupt or truncated ({e})") from None


class _Elf:
    """The section table of an ELF file, with every offset checked against the data."""

    def __init__(self, data: bytes, name: str) -> None:
        self.data, self.name = data, name
        if len(data) < 16 or not data.startswith(ELF_MAGIC):
            found = repr(data[:8]) if data else "an empty file"
            raise ElfError(f"{name} is not an ELF file (starts with {found})")
        ei_class, ei_data = data[4], data[5]
        if ei_class not in (1, 2) or ei_data not in (1, 2):
            raise ElfError(f"{name}: bad ELF identification (class {ei_class}, data encoding {ei_data})")
        self.bits = 32 if ei_class == 1 else 64
        self.endian = "little" if ei_data == 1 else "big"
        e = "<" if ei_data == 1 else ">"
        # e_type, e_machine, e_version, e_entry, e_phoff, e_shoff, e_flags, e_ehsize, e_phentsize,
        # e_phnum, e_shentsize, e_shnum, e_shstrndx
        header = struct.Struct(e + ("HHIIIIIHHHHHH" if self.bits == 32 else "HHIQQQIHHHHHH"))
        fields = self._unpack(header, 16, "ELF header")
        self.e_type, self.machine = fields[0], fields[1]
        shoff, shentsize, shnum, shstrndx = fields[5], fields[10], fields[11], fields[12]
        self._shdr = struct.Struct(e + ("IIIIIIIIII" if self.bits == 32 else "IIQQQQIIQQ"))
        if shoff == 0:
            raise ElfError(f"{name}: ELF file has no section table")
        if shentsize < self._shdr.size:
            raise ElfError(f"{name}: section header size {shentsize} is too small for ELF{self.bits}")
        self._shoff, self._shentsize = shoff, shentsize
        if shnum == 0 or shstrndx == SHN_XINDEX:  # more than 0xff00 sections: real values live in section 0
            first = self._header(0)
            shnum = shnum or first[5]
            shstrndx = first[6] if shstrndx == SHN_XINDEX else shstrndx
        if shoff + shnum * shentsize > len(data):
            raise ElfError(f"{name} is truncated: its {shnum} section headers end at byte "
                           f"{shoff + shnum * shentsize}, the file has {len(data)} bytes")
        if shstrndx >= shnum:
            raise ElfError(f"{name}: section name table index {shstrndx} is out of range ({shnum} sections)")
        self.sections: dict[str, tuple[int, int, int]] = {}
        names = self._contents(self._header(shstrndx), "section name table")
        for index in range(shnum):
            sh = self._header(index)
            self.sections.setdefault(_cstring(names, sh[0]), (sh[1], sh[4], sh[5]))

    def _unpack(self, layout: struct.Struct, offset: int, what: str) -> tuple[int, ...]:
        if offset + layout.size > len(self.data):
            raise ElfError(f"{self.name} is truncated: the {what} needs bytes {offset}..{offset + layout.size}, "
                           f"the file has {len(self.data)}")
        return layout.unpack_from(self.data, offset)

    def _header(self, index: int) -> tuple[int, ...]:
        # name, type, flags, addr, offset, size, link, info, addralign, entsize
        return self._unpack(self._shdr, self._shoff + index * self._shentsize, f"section header {index}")

    def _contents(self, sh: tuple[int, ...], what: str) -> bytes:
        sh_type, offset, size = sh[1], sh[4], sh[5]
        if sh_type == SHT_NOBITS:
            return b""
        if offset + size > len(self.data):
            raise ElfError(f"{self.name} is truncated: {what} ends at byte {offset + size}, "
                           f"the file has {len(self.data)}")
        return self.data[offset:offset + size]

    def has_section(self, name: str) -> bool:
        return name in self.sections

    def section(self, name: str) -> bytes:
        sh_type, offset, size = self.sections[name]
        return self._contents((0, sh_type, 0, 0, offset, size), f"section {name}")


def _cstring(table: bytes, offset: int) -> str:
    end = table.find(b"\0", offset)
    return table[offset:end if end >= 0 else len(table)].decode("utf-8", "replace")


def _parse_modinfo(section: bytes) -> dict[str, list[str]]:
    info: dict[str, list[str]] = {}
    for entry in section.split(b"\0"):
        key, sep, value = entry.decode("utf-8", "replace").partition("=")
        if sep and key:
            info.setdefault(key, []).append(value)
    return info


def _signature(data: bytes, name: str) -> Signature | None:
    if not data.endswith(SIGNATURE_MAGIC):
        return None
    end = len(data) - len(SIGNATURE_MAGIC)
    if end < 12:
        raise ElfError(f"{name}: signature trailer present but the signature header is truncated")
    _algo, _hash, id_type, signer_len, key_id_len, sig_len = struct.unpack_from(">BBBBB3xI", data, end - 12)
    total = 12 + len(SIGNATURE_MAGIC) + signer_len + key_id_len + sig_len
    if sig_len == 0 or total > len(data):
        raise ElfError(f"{name}: signature trailer present but its header is corrupt "
                       f"(signature length {sig_len}, file {len(data)} bytes)")
    return Signature(_SIG_ID_TYPES.get(id_type, f"type {id_type}"), sig_len, total)
