"""Stage C's images, read back from the local registry the node pulls from (no node needed).

Tekton's images must hold a static binary where Tekton v1.15.0's pod builder runs it
(pkg/pod/pod.go, workingdir_init.go); the shell image must run the place-scripts init container's
script (pkg/pod/script.go) with the entrypoint the prepare container copies; the tasks image must
run `cssr-tasks`; and a second build must build and push nothing.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import socket
import struct
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from e2e.harness import image_build, images, registry, standins, tasks_image, tekton, world_c  # noqa: E402
from e2e.harness.layout import Layout  # noqa: E402

from cssr_tasks.errors import ApiError  # noqa: E402
from cssr_tasks.sim import ssr  # noqa: E402
from cssr_tasks.ssr_api import Credentials, SsrApi  # noqa: E402

TEKTON_BINARIES = ("entrypoint", "nop", "sidecarlogresults", "workingdirinit")
PT_INTERP = 3


@pytest.fixture(scope="session")
def layout() -> Layout:
    ok, answer = registry.probe()
    if not ok:
        pytest.fail(f"no registry at http://{registry.ADDRESS}/v2/ ({answer[:200]}); start it with `make e2e` "
                    "or `python -m e2e.harness up`", pytrace=False)
    return Layout()


def config_of(ref: str) -> dict[str, Any]:
    repository, tag = image_build.split(ref)
    document = registry.image_config(repository, tag)
    assert document is not None, f"{ref} is not in the registry"
    return document


def layer_file(ref: str, path: str) -> tuple[tarfile.TarInfo, bytes] | None:
    """The entry at `path` of the image's layers (from the last layer that has it), and its bytes."""
    repository, tag = image_build.split(ref)
    found = registry.manifest(repository, tag)
    assert found is not None, f"{ref} is not in the registry"
    member = None
    for layer in found[1]["layers"]:
        raw = registry.blob(repository, layer["digest"])
        data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            for entry in archive.getmembers():
                if entry.name.lstrip("./") == path.lstrip("/"):
                    extracted = archive.extractfile(entry)
                    member = (entry, extracted.read() if extracted else b"")
    return member


def program_header_types(elf: bytes) -> list[int]:
    """The p_type of each program header of a 64-bit little-endian ELF."""
    assert elf[:4] == b"\x7fELF", "not an ELF file"
    assert elf[4] == 2 and elf[5] == 1, "not a 64-bit little-endian ELF"
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    return [struct.unpack_from("<I", elf, phoff + i * phentsize)[0] for i in range(phnum)]


@pytest.mark.parametrize("name", TEKTON_BINARIES)
def test_tekton_image_runs_a_static_binary_where_the_pod_builder_looks(layout: Layout, name: str) -> None:
    ref = images.tekton_ref(name)
    entrypoint = config_of(ref)["config"]["Entrypoint"]
    assert entrypoint == [f"/ko-app/{name}"], entrypoint
    found = layer_file(ref, entrypoint[0])
    assert found is not None and found[0].isfile(), f"{ref} has no file {entrypoint[0]}"
    assert found[0].mode & 0o111, f"{entrypoint[0]} in {ref} is not executable"
    types = program_header_types(found[1])
    assert types, "no program headers"
    assert PT_INTERP not in types, f"{entrypoint[0]} in {ref} is dynamically linked"


def test_every_image_the_controller_names_is_served_but_the_windows_shell(layout: Layout) -> None:
    argv, _ = tekton.commands(layout)["tekton-controller"]
    named = dict(flag.split("=", 1) for flag in argv if flag.split("=", 1)[0].endswith("-image")
                 or flag.startswith("-shell-image-win="))
    assert set(named) == {f"-{n}-image" for n in (*TEKTON_BINARIES, "shell")} | {"-shell-image-win"}
    for flag, ref in named.items():
        found = registry.manifest(*image_build.split(ref))
        if flag == "-shell-image-win":
            assert found is None, "shell-win is a name only: no Windows node pulls it here"
        else:
            assert found is not None, f"{flag}={ref} is not in the registry"


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """A buildah store of the test's own: images come from the registry, not the harness's store."""
    root = tmp_path_factory.mktemp("buildah")
    base = ["buildah", "--root", str(root / "root"), "--runroot", str(root / "run"), "--storage-driver", "vfs"]
    yield base
    subprocess.run([*base, "rm", "--all"], capture_output=True, check=False)
    subprocess.run(["rm", "-rf", str(root)], check=False)


def run(store: list[str], ref: str, argv: list[str], *volumes: str) -> subprocess.CompletedProcess[str]:
    container = subprocess.run([*store, "from", "--tls-verify=false", ref], capture_output=True, text=True,
                               check=True).stdout.strip()
    mounts = [arg for volume in volumes for arg in ("--volume", volume)]
    return subprocess.run([*store, "run", "--isolation", "chroot", *mounts, container, "--", *argv],
                          capture_output=True, text=True, check=False, timeout=120)


def test_shell_image_places_a_script_as_tektons_place_scripts_does(layout: Layout, store: list[str],
                                                                  tmp_path: Path) -> None:
    """prepare (entrypoint image) copies the entrypoint into /tekton/bin; place-scripts (shell image)
    writes the base64 script with the heredoc shape of pkg/pod/script.go and decodes it with it."""
    tekton_bin, scripts, steps = (tmp_path / d for d in ("bin", "scripts", "steps"))
    for folder in (tekton_bin, scripts, steps):
        folder.mkdir()
    prepare = run(store, images.tekton_ref("entrypoint"),
                  ["/ko-app/entrypoint", "init", "/ko-app/entrypoint", "/tekton/bin/entrypoint", "step-one"],
                  f"{tekton_bin}:/tekton/bin", f"{steps}:/tekton/steps")
    assert prepare.returncode == 0, prepare.stderr
    assert (tekton_bin / "entrypoint").stat().st_mode & 0o111
    script = "#!/bin/sh\necho placed $((6 * 7))\n"
    encoded = base64.b64encode(script.encode()).decode()
    place = (f'scriptfile="/tekton/scripts/script-0-abcde"\ntouch ${{scriptfile}} && chmod +x ${{scriptfile}}\n'
             f"cat > ${{scriptfile}} << '_EOF_'\n{encoded}\n_EOF_\n"
             '/tekton/bin/entrypoint decode-script "${scriptfile}"\n')
    placed = run(store, images.tekton_ref("shell"), ["sh", "-c", place],
                 f"{tekton_bin}:/tekton/bin", f"{scripts}:/tekton/scripts")
    assert placed.returncode == 0, placed.stderr
    assert (scripts / "script-0-abcde").read_text() == script
    ran = run(store, images.tekton_ref("shell"), ["/tekton/scripts/script-0-abcde"], f"{scripts}:/tekton/scripts")
    assert ran.stdout.strip() == "placed 42", ran.stderr


def test_tasks_image_runs_cssr_tasks(layout: Layout, store: list[str]) -> None:
    ref = tasks_image.tasks_ref()
    config = config_of(ref)["config"]
    assert config["Entrypoint"] == ["cssr-tasks"] and config["User"] == "1001"
    helped = run(store, ref, ["cssr-tasks", "--help"])
    assert helped.returncode == 0, helped.stderr
    for task in ("detect-kernel", "build-kmods", "apply-manifests"):
        assert task in helped.stdout + helped.stderr, f"`cssr-tasks --help` in {ref} does not list {task}"
    python = run(store, ref, ["python", "-c", "import sys, kubernetes; print(sys.version_info[:2])"])
    assert python.stdout.strip() == "(3, 11)", python.stderr
    # build-kmods' commit step runs a bare `depmod` (depmod.py): it must be on the image's PATH,
    # which is where /usr/sbin/depmod of Debian's and UBI's kmod package is found
    depmod = run(store, ref, ["sh", "-c", "command -v depmod && depmod -V"])
    assert depmod.returncode == 0 and "kmod" in depmod.stdout, f"depmod not on the PATH of {ref}: {depmod.stderr}"


def test_kmod_builder_standin_builds_igb_uio_for_the_kernel_uname_names(layout: Layout, store: list[str]) -> None:
    """As the build-kmods Task runs it: ROOT/usr/src/kernels/<kver> a kernel tree (the image's own
    Debian headers here), ROOT/usr/lib/modules/<kver> with a modules.dep, a uname that answers
    <kver> and KERNEL_VERSION (kmod-build.sh's shim); the builder's ROOT as its argument."""
    ref = standins.kmod_builder_ref()
    assert config_of(ref)["config"]["Labels"]["org.cssr-deploy.stand-in"].startswith("Juniper kmod-builder")
    kernel = world_c.kernel()
    script = (f"set -e; K={kernel}; mkdir -p /r/usr/lib/modules/$K /r/usr/src/kernels /shim\n"
              "touch /r/usr/lib/modules/$K/modules.dep; ln -s /usr/src/linux-headers-$K /r/usr/src/kernels/$K\n"
              'printf "#!/bin/sh\\necho $K\\n" > /shim/uname; chmod +x /shim/uname\n'
              f"PATH=/shim:$PATH KERNEL_VERSION=$K {standins.BUILDER} /r\n"
              "for m in igb_uio rte_kni; do /usr/sbin/modinfo -F name /r/usr/lib/modules/$K/dpdk/$m.ko; "
              "/usr/sbin/modinfo -F vermagic /r/usr/lib/modules/$K/dpdk/$m.ko; done\n")
    built = run(store, ref, ["sh", "-c", script])
    assert built.returncode == 0, built.stdout[-1500:] + built.stderr[-1500:]
    lines = built.stdout.strip().splitlines()[-4:]
    assert [lines[0], lines[2]] == ["igb_uio", "rte_kni"], built.stdout
    assert all(line.split()[0] == kernel for line in (lines[1], lines[3])), built.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_router_standin_serves_the_fake_ssr_api_to_the_suites_client(layout: Layout, store: list[str]) -> None:
    """The stand-in's main process answers the smoke test's own client (cssr_tasks.ssr_api) over
    HTTPS (chroot isolation shares the host's network); its 128T service script acts only on a PID
    1 that is the stand-in."""
    ref = standins.router_ref()
    config = config_of(ref)["config"]
    assert config["Labels"]["org.cssr-deploy.stand-in"].startswith("Juniper cSSR router")
    port = free_port()
    container = subprocess.run([*store, "from", "--tls-verify=false", ref], capture_output=True, text=True,
                               check=True).stdout.strip()
    server = subprocess.Popen([*store, "run", "--isolation", "chroot", "--env", f"SSR_API_PORT={port}", container,
                               "--", *config["Entrypoint"]],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with SsrApi(f"https://127.0.0.1:{port}", pod="standin-router", verify=False, timeout=5.0) as api:
            deadline = time.monotonic() + 60
            while True:
                try:
                    api.login(Credentials(ssr.USERNAME, ssr.PASSWORD))
                    break
                except ApiError:
                    assert server.poll() is None and time.monotonic() < deadline, server.stdout and server.stdout.read()
                    time.sleep(0.5)
            processes = api.processes()
            assert processes and {p.status for p in processes} == {"RUNNING"}, processes
            assert api.version()
        # Never `stop` here: chroot isolation shares the host's PID namespace, whose PID 1 is init.
        refused = run(store, ref, ["service", "128T", "status"])
        assert refused.returncode == 1 and "PID 1 is not the stand-in SSR API" in refused.stderr, refused
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=30)
    assert "fake SSR API on https://0.0.0.0:" in out, out


def test_router_standin_stops_on_the_statefulsets_prestop_hook(layout: Layout, store: list[str],
                                                               tmp_path: Path) -> None:
    """Under runc, as the node runs it (its own PID namespace): `service 128T stop`, the
    StatefulSet's preStop command, ends the stand-in's main process and with it the container."""
    ref = standins.router_ref()
    entrypoint = config_of(ref)["config"]["Entrypoint"]
    container = subprocess.run([*store, "from", "--tls-verify=false", ref], capture_output=True, text=True,
                               check=True).stdout.strip()
    # vfs: the "mount" is the container's own folder, nothing is mounted.
    rootfs = subprocess.run([*store, "mount", container], capture_output=True, text=True, check=True).stdout.strip()
    bundle, state = tmp_path / "bundle", tmp_path / "runc"
    bundle.mkdir()
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["root"] = {"path": rootfs, "readonly": False}
    spec["process"].update(args=entrypoint, terminal=False, env=[*spec["process"]["env"], "SSR_API_PORT=8443"])
    (bundle / "config.json").write_text(json.dumps(spec))
    name = f"standin-router-{tmp_path.name}"[:60]
    runc = ["runc", "--root", str(state)]
    router = subprocess.Popen([*runc, "run", "--bundle", str(bundle), name], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([*runc, "exec", name, "service", "128T", "status"], capture_output=True,
                             check=False).returncode != 0:
            assert router.poll() is None and time.monotonic() < deadline, router.stdout and router.stdout.read()
            time.sleep(0.5)
        subprocess.run([*runc, "exec", name, "service", "128T", "stop"], check=True, timeout=30)
        out, _ = router.communicate(timeout=30)
    finally:
        if router.poll() is None:
            subprocess.run([*runc, "kill", name, "KILL"], check=False)
            router.wait(timeout=30)
        subprocess.run([*runc, "delete", "--force", name], capture_output=True, check=False)
    assert router.returncode == 0, out
    assert out.strip().splitlines()[-1] == "ssr stand-in: stopped", out


def test_a_second_build_builds_and_pushes_nothing(layout: Layout) -> None:
    """A first `images.up` brings the registry up to date (a no-op right after the harness's `up`,
    unless a source changed since); a second one reads labels and builds and pushes nothing."""
    first = images.up(layout)
    refs = [*(images.tekton_ref(n) for n in (*TEKTON_BINARIES, "shell")), tasks_image.tasks_ref(),
            standins.kmod_builder_ref(), standins.router_ref()]
    before = {ref: registry.manifest(*image_build.split(ref)) for ref in refs}
    again = images.up(layout)
    assert set(again) == set(first)
    built = [name for name, step in again.items() if name != "registry" and (step["built"] or step["pushed"])]
    assert built == [], f"a second build made or pushed {built}"
    assert again["registry"]["reused"], "the registry was restarted"
    after = {ref: registry.manifest(*image_build.split(ref)) for ref in refs}
    assert None not in after.values()
    assert json.dumps(after, sort_keys=True) == json.dumps(before, sort_keys=True)
