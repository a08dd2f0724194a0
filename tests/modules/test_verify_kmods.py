"""verify-kmods over real igb_uio.ko builds: the right kernel passes; every broken file is named with what was found.

Also: `.ko.xz` (compressed by the xz tool as kbuild does), the signature requirement with a
module signed by the headers' own scripts/sign-file, and the `modules` result kept small.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from modsupport import install

from cssr_tasks import kmod_checks, verify_kmods
from cssr_tasks.elf import read_module

from support import require_tool

pytestmark = pytest.mark.tools


def kernels_arg(*releases: str) -> str:
    return json.dumps(list(releases))


def test_right_kernel_passes_with_a_row_per_file_and_a_small_result(kernels, tmp_path, run_cli):
    for kernel in kernels:
        install(kernel, tmp_path)
    releases = [k.release for k in kernels]
    run = run_cli(["verify-kmods", "--modules-dir", str(tmp_path), "--kernels", kernels_arg(*releases)])
    assert run.code == 0, run.err
    result = json.loads(run.results["modules"])
    assert sorted(result) == sorted(releases)
    for kernel in kernels:
        for module, path in kernel.modules.items():
            found = read_module(path)
            assert result[kernel.release][module] == {
                "sha256": found.sha256[:16], "size": path.stat().st_size, "vermagic": found.vermagic.strip()}
    rows = [line for line in run.err.splitlines() if " ok " in line]
    assert len(rows) == 4
    assert any(kernels[0].release in r and "rte_kni.ko" in r and "SMP preempt" in r for r in rows)
    assert len(run.results["modules"]) < verify_kmods.RESULT_BUDGET


def test_default_modules_are_igb_uio_and_rte_kni(kernels, tmp_path, run_cli):
    install(kernels[0], tmp_path, modules=("igb_uio",))
    run = run_cli(["verify-kmods", "--modules-dir", str(tmp_path), "--kernels", kernels_arg(kernels[0].release)])
    assert run.code == 1
    assert f"{tmp_path}/{kernels[0].release}/dpdk/rte_kni.ko: missing: no rte_kni.ko or rte_kni.ko.xz; " \
           "the directory holds igb_uio.ko" in run.err
    ok = run_cli(["verify-kmods", "--modules-dir", str(tmp_path), "--kernels", kernels_arg(kernels[0].release),
                  "--modules", "igb_uio"])
    assert ok.code == 0, ok.err


@pytest.mark.parametrize(("args", "expected"), [
    (["--modules-dir", ""], "param modules-dir is empty; give the modules volume's folder"),
    (["--modules-dir", "/tmp/../usr/lib/modules"], "param modules-dir='/tmp/../usr/lib/modules' has a .. component"),
    (["--modules-dir", "modules"], "param modules-dir='modules' is not valid; an absolute path without spaces"),
    (["--kernels", '["' + "5" * 65 + '"]'], "a kernel release (uname -r) is at most 64 letters, digits"),
], ids=["empty-modules-dir", "modules-dir-up", "relative-modules-dir", "kernel-too-long"])
def test_bad_params_end_in_one_line(kernels, tmp_path, run_cli, args, expected):
    """An empty modules-dir no longer means the host's /usr/lib/modules (issue 14 point 5): it names the param."""
    install(kernels[0], tmp_path)
    given = dict(zip(args[::2], args[1::2], strict=True))
    run = run_cli(["verify-kmods", *[part for name, value in {"--modules-dir": str(tmp_path),
                                                              "--kernels": kernels_arg(kernels[0].release),
                                                              **given}.items() for part in (name, value)]])
    assert run.code == 2
    assert expected in run.err
    assert len(run.err.strip().splitlines()) == 1 and "Traceback" not in run.err
    assert "modules" not in run.results


def truncate_half(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def truncate_header(path):
    path.write_bytes(path.read_bytes()[:40])


def not_elf(path):
    path.write_text("#!/bin/sh\necho this is not a module\n")


def empty(path):
    path.write_bytes(b"")


@pytest.mark.parametrize(("damage", "found"), [
    (truncate_half, "is truncated: its "),
    (truncate_header, "is truncated: the ELF header needs bytes 16..64, the file has 40"),
    (not_elf, "is not an ELF file (starts with b'#!/bin/s')"),
    (empty, "is not an ELF file (starts with an empty file)"),
], ids=["truncated-section-table", "truncated-header", "not-elf", "empty"])
def test_a_damaged_file_is_named_with_what_was_found(kernels, tmp_path, run_cli, damage, found):
    kernel = kernels[0]
    dpdk = install(kernel, tmp_path)
    damage(dpdk / "rte_kni.ko")
    run = run_cli(["verify-kmods", "--modules-dir", str(tmp_path), "--kernels", kernels_arg(kernel.release)])
    assert run.code == 1
    assert f"could not verify 1 of 2 kernel module files in {tmp_path}: {dpdk / 'rte_kni.ko'}: {found}" in run.err
    assert "unreadable" in run.err
    assert "Traceback" not in run.err


def test_modules_of_another_kernel_fail_naming_file_and_vermagic(kernels, tmp_path, run_cli):
    first, second = kernels
    install(second, tmp_path, release=first.release)
    run = run_cli(["verify-kmods", "--modules-dir", str(tmp_path), "--kernels", kernels_arg(first.release)])
    assert run.code == 1
    for module in ("igb_uio", "rte_kni"):
        assert f"{tmp_path}/{first.release}/dpdk/{module}.ko: has vermagic '{second.release} SMP preempt " \
               f"mod_unload modversions', which is for kernel {second.release}, not {first.release}" in run.err
    assert "could not verify 2 of 2" in run.err
    assert "rebuild them with the cssr-build-kmods Task" in run.err


def test_a_missing_kernel_is_named(kernels, tmp_path, run_cli):
    install(kernels[0], tmp_path)
    run = run_cli(["verify-kmods", "--modules-dir", str(tmp_path),
                   "--kernels", kernels_arg(kernels[0].release, "5.14.0-427.40.1.el9_4.x86_64")])
    assert run.code == 1
    assert f"{tmp_path}/5.14.0-427.40.1.el9_4.x86_64/dpdk/igb_uio.ko: missing: no igb_uio.ko or igb_uio.ko.xz, " \
           f"and no kernel directory {tmp_path}/5.14.0-427.40.1.el9_4.x86_64 (was the kernel tree laid out?)" in run.err
    assert "could not verify 2 of 4" in run.err


def test_a_module_swapped_for_another_is_named(kernels, tmp_path, run_cli):
    dpdk = install(kernels[0], tmp_path)
    shutil.copy(dpdk / "igb_uio.ko", dpdk / "rte_kni.ko")
    run = run_cli(["verify-kmods", "--modules-dir", str(tmp_path), "--kernels", kernels_arg(kernels[0].release)])
    assert run.code == 1
    assert f"{dpdk / 'rte_kni.ko'}: is module 'igb_uio' (.modinfo name), not rte_kni" in run.err


def test_xz_compressed_modules_are_accepted(kernels, tmp_path, run_cli):
    require_tool("xz")
    dpdk = install(kernels[0], tmp_path)
    for module in ("igb_uio", "rte_kni"):
        subprocess.run(["xz", "--check=crc32", "--lzma2=dict=1MiB", str(dpdk / f"{module}.ko")], check=True)
    assert sorted(p.name for p in dpdk.iterdir()) == ["igb_uio.ko.xz", "rte_kni.ko.xz"]
    run = run_cli(["verify-kmods", "--modules-dir", str(tmp_path), "--kernels", kernels_arg(kernels[0].release)])
    assert run.code == 0, run.err
    assert "igb_uio.ko.xz" in run.err
    assert json.loads(run.results["modules"])[kernels[0].release]["igb_uio"]["size"] == \
        (dpdk / "igb_uio.ko.xz").stat().st_size


def test_a_truncated_xz_module_is_named(kernels, tmp_path, run_cli):
    require_tool("xz")
    dpdk = install(kernels[0], tmp_path)
    subprocess.run(["xz", str(dpdk / "igb_uio.ko")], check=True)
    truncate_half(dpdk / "igb_uio.ko.xz")
    run = run_cli(["verify-kmods", "--modules-dir", str(tmp_path), "--kernels", kernels_arg(kernels[0].release)])
    assert run.code == 1
    assert f"{dpdk / 'igb_uio.ko.xz'}: xz data is corrupt or truncated" in run.err


def sign(kernel, path, key):
    sign_file = kernel.headers / "scripts" / "sign-file"
    require_tool(str(sign_file))
    subprocess.run([str(sign_file), "sha256", str(key / "key.pem"), str(key / "cert.der"), str(path)], check=True)


def test_require_signature_accepts_signed_and_refuses_unsigned(kernels, tmp_path, run_cli, signing_key):
    kernel = kernels[0]
    dpdk = install(kernel, tmp_path)
    sign(kernel, dpdk / "igb_uio.ko", signing_key)
    args = ["verify-kmods", "--modules-dir", str(tmp_path), "--kernels", kernels_arg(kernel.release)]
    unsigned = run_cli(args + ["--require-signature", "true"])
    assert unsigned.code == 1
    assert f"{dpdk / 'rte_kni.ko'}: is not signed (no '~Module signature appended~' trailer); signing is " \
           "required" in unsigned.err
    assert "igb_uio.ko" not in unsigned.err.split("error:")[1]
    assert "ok, signed" in unsigned.err
    sign(kernel, dpdk / "rte_kni.ko", signing_key)
    signed = run_cli(args + ["--require-signature", "true"])
    assert signed.code == 0, signed.err
    assert run_cli(args).code == 0  # signed modules pass without the requirement too


def test_result_sheds_detail_to_stay_small(kernels, tmp_path):
    """Twelve kernels: no vermagic, then sha256 prefixes alone, then as many kernels as fit."""
    checks = []
    base = kernels[0]
    version, _abi, flavour = base.release.split("-", 2)  # Debian's release: 6.1.0-<abi>-amd64
    for i in range(12):
        release = f"{version}-{100 + i}-{flavour}"
        for module in ("igb_uio", "rte_kni"):
            found = read_module(base.modules[module])
            checks.append(kmod_checks.Check(release, module, base.modules[module], (), found))
    for count, note in ((2, ""), (6, "leaves out vermagic"), (12, "lists")):
        value, said = verify_kmods.compact_result(checks[: 2 * count])
        assert len(json.dumps(value, separators=(",", ":"))) <= verify_kmods.RESULT_BUDGET
        assert said.startswith(note)
    value, said = verify_kmods.compact_result(checks)
    assert value["_omitted"] == 12 - (len(value) - 1) > 0
    assert said == f"lists {len(value) - 1} of 12 kernels (sha256 prefixes only)"
