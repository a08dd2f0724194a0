"""Stage D's kernels: each RHCOS release's Driver Toolkit stand-in, read back from the registry, holds
the real Debian kbuild trees of its kernel and realtime kernel and names them in its release file;
the kmod-builder stand-in builds igb_uio against each of those trees as build-kmods lays them out;
and detect-kernel's own code finds the upgrade's target kernels through the ImageStream's `latest`.
"""

from __future__ import annotations

import gzip
import io
import json
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from e2e.harness import image_build, kernel_trees, registry, standins, world_c, world_d  # noqa: E402
from e2e.harness.layout import Layout  # noqa: E402
from test_images import layer_file, run, store  # noqa: E402, F401 (store: a fixture)

from cssr_tasks import detect_kernel, elf  # noqa: E402
from cssr_tasks.driver_toolkit import RELEASE_FILE, ReleaseReader  # noqa: E402
from cssr_tasks.log import Log  # noqa: E402

KERNELS = kernel_trees.kernels()
RELEASE_OF = {k: r for r, pair in kernel_trees.releases().items() for k in pair}


@pytest.fixture(scope="session")
def dtk_images(layout: Layout) -> dict[str, dict[str, Any]]:
    """world_d.images: built and pushed here unless the registry has them already (Stage D's step)."""
    return world_d.images(layout)


def test_releases_pair_each_rhcos_version_with_installed_debian_trees() -> None:
    releases = world_d.releases()
    assert set(releases) == {"4.16", "4.17"}
    assert releases["4.17"][1:] == (world_c.kernel(), "6.1.0-57-rt-amd64"), "Stage C's nodes run 4.17's kernel"
    assert releases["4.16"][1] == "6.1.0-56-amd64"
    for release, (rhcos, kernel, rt_kernel) in releases.items():
        assert rhcos.startswith(release.replace(".", "") + ".")
        for k in (kernel, rt_kernel):
            # the tree's own idea of its release: what kbuild stamps as vermagic
            uts = (kernel_trees.headers(k) / "include" / "generated" / "utsrelease.h").read_text()
            assert f'"{k}"' in uts, uts


@pytest.mark.parametrize("release", sorted(kernel_trees.releases()))
def test_dtk_standin_holds_both_trees_and_names_them(dtk_images: dict[str, dict[str, Any]], release: str) -> None:
    rhcos, kernel, rt_kernel = world_d.releases()[release]
    ref = world_c.dtk_ref(release)
    assert ref.endswith(f":{rhcos}")
    repository, tag = image_build.split(ref)
    digest, manifest = registry.manifest(repository, tag) or ("", {})
    assert digest == dtk_images[release]["digest"]
    # the release file alone in the last layer, as the real image's build writes it
    assert members(repository, manifest["layers"][-1]["digest"]) == [RELEASE_FILE.lstrip("/")]
    found = layer_file(ref, RELEASE_FILE)
    assert found is not None, f"{ref} has no {RELEASE_FILE}"
    content = json.loads(found[1])
    assert (content["KERNEL_VERSION"], content["RT_KERNEL_VERSION"]) == (kernel, rt_kernel), content
    for k in (kernel, rt_kernel):
        uts = layer_file(ref, f"usr/src/kernels/{k}/include/generated/utsrelease.h")
        assert uts is not None and f'"{k}"' in uts[1].decode(), f"{ref} has no kbuild tree of {k}"
        depmod = layer_file(ref, f"usr/lib/modules/{k}/modules.dep")
        assert depmod is not None and b"kernel/drivers/uio/uio.ko" in depmod[1]
        uio = layer_file(ref, f"usr/lib/modules/{k}/kernel/drivers/uio/uio.ko")
        assert uio is not None and elf.parse_module(uio[1]).vermagic.split()[0] == k


def members(repository: str, layer: str) -> list[str]:
    raw = registry.blob(repository, layer)
    data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return [m.name.lstrip("./") for m in archive.getmembers() if not m.isdir()]


def unpack(ref: str, prefixes: tuple[str, ...], target: Path) -> None:
    """The image's entries under `prefixes`, layer by layer, into `target` (links kept as they are)."""
    repository, tag = image_build.split(ref)
    _, manifest = registry.manifest(repository, tag) or ("", {})
    for layer in manifest["layers"]:
        raw = registry.blob(repository, layer["digest"])
        data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            wanted = [m for m in archive.getmembers() if m.name.lstrip("./").startswith(prefixes)]
            # "tar": the trees' links are absolute (into -common and kbuild), which "data" refuses
            archive.extractall(target, members=wanted, filter="tar")


@pytest.mark.parametrize("kernel", KERNELS)
def test_kmod_builder_builds_igb_uio_against_the_dtk_tree(dtk_images: dict[str, dict[str, Any]],
                                                          store: list[str], tmp_path: Path, kernel: str) -> None:  # noqa: F811
    """As build-kmods lays it out: the Driver Toolkit's trees of the kernel at ROOT, the stand-in
    builder run with ROOT, a uname and KERNEL_VERSION that name the kernel. The DTK tree's links
    point into -common and kbuild: they must resolve in the kmod-builder image."""
    root = tmp_path / "r"
    unpack(world_c.dtk_ref(RELEASE_OF[kernel]), (f"usr/src/kernels/{kernel}/", f"usr/lib/modules/{kernel}/"), root)
    assert (root / "usr" / "lib" / "modules" / kernel / "modules.dep").is_file()
    script = ("set -e; mkdir -p /shim\n"
              f'printf "#!/bin/sh\\necho {kernel}\\n" > /shim/uname; chmod +x /shim/uname\n'
              f"PATH=/shim:$PATH KERNEL_VERSION={kernel} {standins.BUILDER} /r\n")
    built = run(store, standins.kmod_builder_ref(), ["sh", "-c", script], f"{root}:/r")
    assert built.returncode == 0, built.stdout[-1500:] + built.stderr[-1500:]
    for name in ("igb_uio", "rte_kni"):
        module = elf.read_module(root / "usr" / "lib" / "modules" / kernel / "dpdk" / f"{name}.ko")
        vermagic = (module.vermagic or "").split()
        assert module.info("name") == name and vermagic[0] == kernel, module.modinfo
        # the realtime tree is really PREEMPT_RT's (include/linux/vermagic.h), the other is not
        assert ("preempt_rt" in vermagic) == kernel.endswith("-rt-amd64"), vermagic


def test_detect_kernel_finds_the_upgrade_target_through_latest(dtk_images: dict[str, dict[str, Any]]) -> None:
    """Nodes on 4.16, `latest` moved to 4.17: detect-kernel's upgrade_targets reads the 4.17 stand-in's
    release file from the registry (the suite's registry client, a blob GET) and adds both kernels."""
    releases = world_d.releases()
    digests = {release: step["digest"] for release, step in dtk_images.items()}
    stream = world_d.driver_toolkit(digests, latest="4.17")[0]
    tags = {t["name"] for t in stream["spec"]["tags"]}
    assert tags == {releases["4.16"][0], releases["4.17"][0], "latest"}
    reader = ReleaseReader(Log("e2e"), tls_verify=False)
    running = {releases["4.16"][1]: releases["4.16"][0]}
    targets = detect_kernel.upgrade_targets(stream, running, reader, Log("e2e"), realtime=True, internal=False,
                                            architectures=["amd64"])
    assert targets == {releases["4.17"][1]: releases["4.17"][0], releases["4.17"][2]: releases["4.17"][0]}
    assert reader.reads == 1
    settled = world_d.driver_toolkit(digests, latest="4.16")[0]
    assert detect_kernel.upgrade_targets(settled, running, reader, Log("e2e"), realtime=False, internal=False,
                                         architectures=["amd64"]) == {}
