"""The pure-Python module reader on synthetic ELF files: classes, byte orders, types, `.modinfo`, signature, xz.

Damage of every kind (each truncation point of a file, bad identification, offsets past the
end, out-of-range indexes) must end in an ElfError naming the file, never a struct.error.
"""

from __future__ import annotations

import lzma
import re
import struct

import pytest

from cssr_tasks import elf
from cssr_tasks.elf import ElfError, expected_arch, parse_module, read_module, strip_signature
from cssr_tasks.sim import kmod_standin

MODINFO = b"license=GPL\0alias=pci:v00008086d*\0alias=pci:v000010EEd*\0depends=uio\0name=igb_uio\0" \
          b"vermagic=5.14.0-427.40.1.el9_4.x86_64 SMP preempt mod_unload modversions \0"


def make_elf(**kwargs: object) -> bytes:
    """A minimal ELF (cssr_tasks.sim.kmod_standin, also the demo's synthetic modules), with MODINFO by default."""
    return kmod_standin.make_elf(**{"modinfo": MODINFO, **kwargs})  # type: ignore[arg-type]


def sign_blob(data: bytes, signature: bytes = b"S" * 300, *, sig_len: int | None = None) -> bytes:
    trailer = struct.pack(">BBBBB3xI", 0, 0, elf.PKEY_ID_PKCS7, 0, 0, len(signature) if sig_len is None else sig_len)
    return data + signature + trailer + elf.SIGNATURE_MAGIC


@pytest.mark.parametrize(("bits", "endian", "machine", "name"), [
    (64, "<", 62, "x86-64"),
    (64, "<", 183, "AArch64"),
    (64, ">", 22, "IBM S/390"),
    (64, "<", 21, "PowerPC64"),
    (32, "<", 3, "Intel 80386"),
    (32, ">", 20, "PowerPC"),
], ids=["elf64-le-x86_64", "elf64-le-aarch64", "elf64-be-s390x", "elf64-le-ppc64le", "elf32-le-i386",
        "elf32-be-ppc"])
def test_header_and_modinfo_in_every_class_and_byte_order(bits, endian, machine, name):
    module = parse_module(make_elf(bits=bits, endian=endian, machine=machine), "m.ko")
    assert (module.bits, module.endian) == (bits, "little" if endian == "<" else "big")
    assert module.e_type == elf.ET_REL and module.type_name == "ET_REL"
    assert module.machine_name == name
    assert module.vermagic == "5.14.0-427.40.1.el9_4.x86_64 SMP preempt mod_unload modversions "
    assert module.info("name") == "igb_uio" and module.info("depends") == "uio"
    assert module.modinfo["alias"] == ["pci:v00008086d*", "pci:v000010EEd*"]
    assert module.info("signer") is None and module.signature is None and not module.compressed


def test_other_elf_types_and_unknown_machines_are_named():
    module = parse_module(make_elf(e_type=3, machine=9999), "lib.so")
    assert module.type_name == "ET_DYN"
    assert module.machine_name == "machine 9999"


def test_a_file_without_modinfo_has_none():
    module = parse_module(make_elf(modinfo=None), "plain.o")
    assert module.modinfo == {} and module.vermagic is None


def test_extended_section_count_and_name_index_are_read_from_section_zero():
    module = parse_module(make_elf(extended_count=True), "many.ko")
    assert module.info("name") == "igb_uio"


def test_every_truncation_point_gives_an_elf_error_naming_the_file():
    data = make_elf()
    for length in range(len(data)):
        with pytest.raises(ElfError, match="cut.ko"):
            parse_module(data[:length], "cut.ko")


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: b"\x7fELX" + d[4:], "bad.ko is not an ELF file (starts with b'\\x7fELX"),
    (lambda d: d[:4] + b"\x03" + d[5:], "bad.ko: bad ELF identification (class 3, data encoding 1)"),
    (lambda d: d[:5] + b"\x00" + d[6:], "bad.ko: bad ELF identification (class 2, data encoding 0)"),
    (lambda d: d[:0x28] + struct.pack("<Q", 0) + d[0x30:], "bad.ko: ELF file has no section table"),
    (lambda d: d[:0x28] + struct.pack("<Q", 10**9) + d[0x30:], "bad.ko is truncated: its 3 section headers end"),
    (lambda d: d[:0x3A] + struct.pack("<H", 8) + d[0x3C:], "bad.ko: section header size 8 is too small for ELF64"),
    (lambda d: d[:0x3E] + struct.pack("<H", 7) + d[0x40:], "bad.ko: section name table index 7 is out of range"),
], ids=["magic", "class", "byte-order", "no-section-table", "section-table-past-end", "small-entries",
        "name-index"])
def test_damaged_headers_are_named(edit, message):
    with pytest.raises(ElfError) as caught:
        parse_module(edit(make_elf()), "bad.ko")
    assert str(caught.value).startswith(message)


def test_a_section_past_the_end_is_named():
    data = bytearray(make_elf())
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    struct.pack_into("<Q", data, shoff + 64 + 32, 10**6)  # section 1 (.modinfo): sh_size
    with pytest.raises(ElfError, match=r"^bad.ko is truncated: section .modinfo ends at byte \d+, the file has"):
        parse_module(bytes(data), "bad.ko")


def test_appended_signature_is_found_and_can_be_stripped():
    data = make_elf()
    module = parse_module(sign_blob(data), "signed.ko")
    assert module.signature == elf.Signature("PKCS#7", 300, 300 + 12 + 28)
    assert module.info("name") == "igb_uio"
    assert strip_signature(sign_blob(data), "signed.ko") == data
    assert strip_signature(data, "plain.ko") == data


@pytest.mark.parametrize(("blob", "message"), [
    (sign_blob(make_elf(), sig_len=10**7), "its header is corrupt (signature length 10000000"),
    (sign_blob(make_elf(), sig_len=0), "its header is corrupt (signature length 0"),
], ids=["too-long", "empty"])
def test_a_corrupt_signature_trailer_is_named(blob, message):
    with pytest.raises(ElfError, match=re.escape(f"sig.ko: signature trailer present but {message}")):
        parse_module(blob, "sig.ko")


def test_a_trailer_without_room_for_its_header_is_named():
    with pytest.raises(ElfError, match="x.ko: signature trailer present but the signature header is truncated"):
        strip_signature(b"\0" * 4 + elf.SIGNATURE_MAGIC, "x.ko")


def test_xz_modules_are_read_through_lzma_and_sized_as_stored(tmp_path):
    raw = lzma.compress(sign_blob(make_elf()), format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)
    path = tmp_path / "igb_uio.ko.xz"
    path.write_bytes(raw)
    module = read_module(path)
    assert module.compressed and module.size == len(raw)
    assert module.vermagic is not None and module.signature is not None
    with pytest.raises(ElfError, match="igb_uio.ko.xz: xz data is corrupt or truncated"):
        parse_module(raw[: len(raw) // 2], str(path))


def test_an_unreadable_path_is_named(tmp_path):
    with pytest.raises(ElfError, match=f"could not read {tmp_path}/none.ko: No such file"):
        read_module(tmp_path / "none.ko")


@pytest.mark.parametrize(("kernel", "arch"), [
    ("5.14.0-427.40.1.el9_4.x86_64", "x86_64"),
    ("5.14.0-427.40.1.el9_4.x86_64+rt", "x86_64"),
    ("5.14.0-284.11.1.rt14.296.el9_2.x86_64", "x86_64"),
    ("5.14.0-427.40.1.el9_4.aarch64+64k", "aarch64"),
    ("4.18.0-372.26.1.el8_6.ppc64le", "ppc64le"),
    ("5.14.0-427.40.1.el9_4.s390x", "s390x"),
    ("6.1.0-56-amd64", "x86_64"),
    ("6.1.0-56-rt-arm64", "aarch64"),
    ("6.1.0-56-cloud", None),
], ids=["rhel", "rhel-rt-plus", "rhel-rt-old", "rhel-64k", "ppc64le", "s390x", "debian", "debian-arm64",
        "unknown"])
def test_expected_arch_from_the_kernel_release(kernel, arch):
    found = expected_arch(kernel)
    assert (found.name if found else None) == arch
