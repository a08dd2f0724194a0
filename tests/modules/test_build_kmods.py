"""build-kmods with real modules: a stand-in builder (real `make` against Debian's headers) run per kernel.

Covers: a build per kernel lacking modules, seen through the uname shim and KERNEL_VERSION, into
a private view, verified and renamed into place; no builder at all over verified modules; two
concurrent processes leaving one good copy with one build per kernel; stale locks and leftover
staging taken over, live leases waited for; builder failures and bad output named and never
installed; the PoC layout (builder writing into the live tree); signing; the Task's two halves.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from modsupport import Kernel, Volume, install, modprobe_plan

from cssr_tasks import build_kmods
from cssr_tasks.elf import read_module
from cssr_tasks.verify_kmods import verify_tree

from support import require_tool

pytestmark = [pytest.mark.tools, pytest.mark.slow]

MODULES = ("igb_uio", "rte_kni")


def assert_verified(volume: Volume, *, signed: bool = False, only: Kernel | None = None) -> None:
    for kernel in [only] if only else volume.kernels:
        checks = verify_tree(volume.modules_dir, kernel.release, MODULES, require_signature=signed)
        assert all(c.ok for c in checks), [c.describe() for c in checks if not c.ok]


def assert_no_leftovers(volume: Volume) -> None:
    assert list((volume.modules_dir / build_kmods.STAGING).iterdir()) == []
    assert (volume.modules_dir / build_kmods.LOCK_FILE).read_bytes() == b""
    assert not (volume.root / "usr/lib/modules").exists() or list((volume.root / "usr/lib/modules").iterdir()) == []
    assert not (volume.root / "usr/src/kernels").exists() or list((volume.root / "usr/src/kernels").iterdir()) == []


def test_builds_every_kernel_through_a_private_view(volume, run_cli, tmp_path):
    run = run_cli(["build-kmods", *volume.args()])
    assert run.code == 0, run.err
    releases = [k.release for k in volume.kernels]
    assert json.loads(run.results["built-kernels"]) == sorted(releases)
    assert sorted(volume.builds()) == sorted(releases)  # the stand-in checked uname -r == KERNEL_VERSION
    assert_verified(volume)
    for kernel in volume.kernels:
        # the tree keeps what cssr-init laid out: dpdk/ was added, and depmod's index files rewritten
        tree = volume.modules_dir / kernel.release
        assert sorted(p.name for p in tree.iterdir() if not p.name.startswith("modules.")) == \
            ["build", "dpdk", "kernel"]
        assert read_module(tree / "dpdk/rte_kni.ko").info("name") == "rte_kni"
        # depmod resolved igb_uio's undefined uio symbols against the tree's uio.ko
        dep = (tree / "modules.dep").read_text().splitlines()
        assert "dpdk/igb_uio.ko: kernel/drivers/uio/uio.ko" in dep
        assert "dpdk/rte_kni.ko: kernel/drivers/uio/uio.ko" in dep
        assert modprobe_plan(volume.modules_dir, kernel.release, "igb_uio", tmp_path / f"base-{kernel.release}") \
            == ["kernel/drivers/uio/uio.ko", "dpdk/igb_uio.ko"]
    assert_no_leftovers(volume)
    assert "renamed into" in run.err
    assert re.search(r"kernel \S+: depmod took \d+\.\d\ds; \S+/modules.dep lists igb_uio, rte_kni and uio", run.err)


def test_verified_modules_start_no_builder(volume, run_cli):
    for kernel in volume.kernels:
        install(kernel, volume.modules_dir)
    before = {p: p.stat().st_mtime_ns for p in volume.modules_dir.glob("*/dpdk/*.ko")}
    run = run_cli(["build-kmods", *volume.args()])
    assert run.code == 0, run.err
    assert json.loads(run.results["built-kernels"]) == []
    assert volume.builds() == []
    assert {p: p.stat().st_mtime_ns for p in volume.modules_dir.glob("*/dpdk/*.ko")} == before
    assert "modules verified (igb_uio.ko, rte_kni.ko); no build" in run.err


def test_only_the_kernel_lacking_modules_is_built(volume, run_cli):
    first, second = volume.kernels
    install(first, volume.modules_dir)
    install(second, volume.modules_dir, modules=("igb_uio",))  # rte_kni missing: the whole kernel is rebuilt
    run = run_cli(["build-kmods", *volume.args()])
    assert run.code == 0, run.err
    assert volume.builds() == [second.release]
    assert json.loads(run.results["built-kernels"]) == [second.release]
    assert_verified(volume)


def test_modules_of_another_kernel_are_replaced(volume, run_cli):
    first, second = volume.kernels
    install(second, volume.modules_dir, release=first.release)  # wrong vermagic under the first kernel
    install(second, volume.modules_dir)
    run = run_cli(["build-kmods", *volume.args()])
    assert run.code == 0, run.err
    assert volume.builds() == [first.release]
    assert f"which is for kernel {second.release}, not {first.release}" in run.err
    assert_verified(volume)


def test_two_concurrent_builders_leave_one_good_copy_and_build_each_kernel_once(volume, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(build_kmods.__file__).parents[1])}
    procs = [subprocess.Popen([sys.executable, "-m", "cssr_tasks", "build-kmods", *volume.args(),
                               "--results-dir", str(tmp_path / f"results-{i}")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert sorted(volume.builds()) == sorted(k.release for k in volume.kernels)
    built = sorted(json.loads((tmp_path / f"results-{i}/built-kernels").read_text()) for i in range(2))
    assert built == [[], sorted(k.release for k in volume.kernels)]
    assert any("waiting up to 60s for the build lock" in err for _, err in outputs)
    assert_verified(volume)
    assert sorted(p.name for p in (volume.modules_dir / volume.kernels[0].release / "dpdk").iterdir()) == \
        ["igb_uio.ko", "rte_kni.ko"]
    assert_no_leftovers(volume)


def test_a_dead_builders_lock_and_staging_are_taken_over(volume, run_cli):
    staging = volume.modules_dir / build_kmods.STAGING / "deadhost-4242"
    (staging / volume.kernels[0].release).mkdir(parents=True)
    (staging / volume.kernels[0].release / "igb_uio.ko").write_bytes(b"half a module")
    (volume.modules_dir / build_kmods.LOCK_FILE).write_text(json.dumps(
        {"owner": "deadhost-4242", "host": "deadhost", "pid": 4242, "since": time.time(), "span": "process"}))
    run = run_cli(["build-kmods", *volume.args(volume.kernels[0])])
    assert run.code == 0, run.err
    assert "taking over the build lock from deadhost-4242 (pid 4242 on deadhost" in run.err
    assert "its process is gone" in run.err
    assert f"removing leftover staging {staging}" in run.err
    assert_verified(volume, only=volume.kernels[0])
    assert_no_leftovers(volume)


def lease(volume: Volume, owner: str, *, age: float) -> None:
    (volume.modules_dir / build_kmods.LOCK_FILE).write_text(json.dumps(
        {"owner": owner, "host": owner, "pid": 1, "since": time.time() - age, "span": "task"}))


def test_a_live_task_lease_is_waited_for_until_lock_timeout(volume, run_cli):
    lease(volume, "cssr-deploy-run-build-kmods-pod", age=5)
    start = time.monotonic()
    run = run_cli(["build-kmods", *volume.args(lock_timeout="1")])
    assert run.code == 1
    assert time.monotonic() - start >= 1
    assert "could not take the build lock" in run.err
    assert "held by cssr-deploy-run-build-kmods-pod (pid 1 on cssr-deploy-run-build-kmods-pod, task lease" in run.err
    assert volume.builds() == []


def test_a_task_lease_with_a_recent_heartbeat_is_not_stale(volume, run_cli):
    lease(volume, "busy-pod", age=3600)
    heartbeat = volume.modules_dir / build_kmods.STAGING / "busy-pod" / "heartbeat"
    heartbeat.parent.mkdir(parents=True)
    heartbeat.touch()
    run = run_cli(["build-kmods", *volume.args(lock_timeout="0", stale_after="600")])
    assert run.code == 1
    assert "could not take the build lock" in run.err
    assert heartbeat.exists()


def test_a_silent_task_lease_is_taken_over_after_stale_after(volume, run_cli):
    lease(volume, "gone-pod", age=120)
    run = run_cli(["build-kmods", *volume.args(volume.kernels[0], stale_after="60")])
    assert run.code == 0, run.err
    assert "taking over the build lock from gone-pod" in run.err
    assert "no sign of life for 120s (stale-after is 60s)" in run.err
    assert_verified(volume, only=volume.kernels[0])


def test_a_failing_builder_is_named_and_installs_nothing(volume, run_cli):
    run = run_cli(["build-kmods", *volume.args(volume.kernels[0], builder_command="sh -c 'exit 7'")])
    assert run.code == 1
    assert f"could not build modules for 1 kernel(s): kernel {volume.kernels[0].release}: " \
           "the builder exited with status 7" in run.err
    assert not (volume.modules_dir / volume.kernels[0].release / "dpdk").exists()
    assert_no_leftovers(volume)


def test_a_kernel_whose_trees_are_not_laid_out_is_named(volume, run_cli):
    kernel = volume.kernels[0]
    (volume.path / "kernels" / kernel.release).unlink()
    run = run_cli(["build-kmods", *volume.args(kernel)])
    assert run.code == 1
    assert f"kernel {kernel.release}: no kernel tree {volume.path}/kernels/{kernel.release}; lay out the kernel " \
           "trees first" in run.err
    assert volume.builds() == []
    assert_no_leftovers(volume)  # the half-made view of the modules tree is gone too


def test_bad_builder_output_is_refused_and_the_live_copy_kept(volume, run_cli, tmp_path):
    first, second = volume.kernels
    install(first, volume.modules_dir, modules=("igb_uio",))  # incomplete: needs a build
    # a builder that writes the other kernel's modules: its vermagic is wrong
    wrong = tmp_path / "wrong.sh"
    wrong.write_text(f"#!/bin/sh\nout=$1/usr/lib/modules/$(uname -r)/dpdk\nmkdir -p $out\n"
                     f"cp {second.modules['igb_uio']} {second.modules['rte_kni']} $out/\n")
    wrong.chmod(0o755)
    run = run_cli(["build-kmods", *volume.args(first, builder_command=f"{wrong} {volume.root}")])
    assert run.code == 1
    assert "the builder's output" in run.err and "failed verification" in run.err
    assert f"igb_uio.ko: has vermagic '{second.release} SMP" in run.err
    assert f"which is for kernel {second.release}, not {first.release}" in run.err
    live = volume.modules_dir / first.release / "dpdk"
    assert sorted(p.name for p in live.iterdir()) == ["igb_uio.ko"]
    assert read_module(live / "igb_uio.ko").sha256 == read_module(first.modules["igb_uio"]).sha256
    assert_no_leftovers(volume)


def test_poc_layout_builder_writes_live_and_output_is_moved_through_staging(volume, run_cli):
    """No kernel-tree-dir: the trees sit at the builder's own paths, as with the PoC's subPath mounts."""
    kernel = volume.kernels[0]
    lib_modules = volume.root / "usr/lib/modules"
    lib_modules.mkdir(parents=True)
    (lib_modules / kernel.release).symlink_to(volume.modules_dir / kernel.release)
    (volume.root / "usr/src").mkdir()
    (volume.root / "usr/src/kernels").symlink_to(volume.path / "kernels")
    run = run_cli(["build-kmods", *volume.args(kernel, kernel_tree_dir="", modules_dir=str(lib_modules))])
    assert run.code == 0, run.err
    assert "the builder writes into the live tree" in run.err
    assert volume.builds() == [kernel.release]
    checks = verify_tree(lib_modules, kernel.release, MODULES)
    assert all(c.ok for c in checks), [c.describe() for c in checks]
    assert (volume.modules_dir / kernel.release / "dpdk" / "igb_uio.ko").is_file()


def test_signing_signs_with_the_trees_sign_file_and_rebuilds_unsigned_modules(volume, run_cli, signing_key):
    kernel = volume.kernels[0]
    install(kernel, volume.modules_dir)  # verified, but unsigned
    run = run_cli(["build-kmods", *volume.args(kernel, signing_secret_dir=str(signing_key))])
    assert run.code == 0, run.err
    assert volume.builds() == [kernel.release]
    assert "signing modules with key.pem and cert.der" in run.err
    assert_verified(volume, signed=True, only=kernel)
    signature = read_module(volume.modules_dir / kernel.release / "dpdk/igb_uio.ko").signature
    assert signature is not None and signature.id_type == "PKCS#7"
    again = run_cli(["build-kmods", *volume.args(kernel, signing_secret_dir=str(signing_key))])
    assert again.code == 0 and json.loads(again.results["built-kernels"]) == []


def test_an_unbound_signing_workspace_means_no_signing(volume, run_cli, tmp_path):
    run = run_cli(["build-kmods", *volume.args(volume.kernels[0], signing_secret_dir=str(tmp_path / "absent"))])
    assert run.code == 0, run.err
    assert "modules are not signed" in run.err
    assert read_module(volume.modules_dir / volume.kernels[0].release / "dpdk/igb_uio.ko").signature is None


def test_a_signing_folder_without_a_certificate_is_a_config_error(volume, run_cli, tmp_path):
    folder = tmp_path / "secret"
    folder.mkdir()
    (folder / "key.pem").write_text("not really")
    run = run_cli(["build-kmods", *volume.args(signing_secret_dir=str(folder))])
    assert run.code == 2
    assert "it holds key.pem; it needs a private key (key.pem or key) and a certificate" in run.err


def test_the_tasks_two_halves_around_the_kmod_builder_step(volume, run_cli):
    """prepare (tasks image) -> kmod-build.sh (kmod-builder image, no Python) -> commit (tasks image)."""
    prepared = run_cli(["build-kmods", "prepare", *volume.args(volume.kernels[0])])
    assert prepared.code == 0, prepared.err
    plan_dir = volume.modules_dir / build_kmods.STAGING / socket.gethostname()
    lock = json.loads((volume.modules_dir / build_kmods.LOCK_FILE).read_text())
    assert (lock["owner"], lock["span"]) == (socket.gethostname(), "task")
    # another builder meanwhile waits for the lease, though no process holds the flock
    other = run_cli(["build-kmods", *volume.args(volume.kernels[0], lock_timeout="0")])
    assert other.code == 1 and "task lease" in other.err
    step = subprocess.run(["sh", str(plan_dir / "kmod-build.sh"), str(plan_dir)], capture_output=True, text=True,
                          check=False)
    assert step.returncode == 0, step.stdout + step.stderr
    assert (plan_dir / "heartbeat").exists()
    committed = run_cli(["build-kmods", "commit", *volume.args(volume.kernels[0])])
    assert committed.code == 0, committed.err
    assert json.loads(committed.results["built-kernels"]) == [volume.kernels[0].release]
    assert_verified(volume, only=volume.kernels[0])
    assert_no_leftovers(volume)


def test_commit_after_a_takeover_fails_clearly(volume, run_cli):
    assert run_cli(["build-kmods", "prepare", *volume.args(volume.kernels[0])]).code == 0
    lease(volume, "impatient-pod", age=0)
    committed = run_cli(["build-kmods", "commit", *volume.args(volume.kernels[0])])
    assert committed.code == 1
    assert "its build lease is held by impatient-pod" in committed.err
    assert "run the Task again" in committed.err


def test_a_volume_that_is_not_a_folder_is_one_clear_line(volume, run_cli, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    run = run_cli(["build-kmods", *volume.args(modules_dir=str(not_a_folder))])
    assert run.code == 1
    assert f"could not open the build lock {not_a_folder}/.cssr-build.lock: " in run.err
    assert "; the modules volume must be mounted and writable" in run.err
    assert "Traceback" not in run.err and "internal error" not in run.err


@pytest.mark.parametrize(("flags", "expected"), [
    ({"builder_command": "'unclosed"}, """param builder-command="'unclosed" is not valid shell words (No closing quotation)"""),
    ({"builder_output": "/out/dpdk"}, "with {kernel} as one of its path components"),
    ({"builder_output": "/out/{kernal}"}, "has the field {kernal}, which is not a plain template field"),
    ({"builder_output": "/out/{kernel.foo}"}, "has the field {kernel.foo}, which is not a plain template field"),
    ({"builder_output": "/out/{kernel[x]}"}, "has the field {kernel[x]}, which is not a plain template field"),
    ({"builder_output": "/out/{kernel:>2000000000}"}, "has the field {kernel:>2000000000}, which is not a plain"),
    ({"builder_output": "/out/{kernel!r}"}, "has the field {kernel!r}, which is not a plain template field"),
    ({"builder_output": "/out/{kernel"}, "is not a valid template (expected '}' before end of string)"),
    ({"builder_output": "{modules_dir}/../kernels/{kernel}"}, "has a .. component"),
    ({"builder_output": "out/{kernel}"}, "must be an absolute path"),
    ({"modules_dir": ""}, "param modules-dir is empty; give the modules volume's folder"),
    ({"modules_dir": "relative/modules"}, "param modules-dir='relative/modules' is not valid"),
    ({"kernels": "5.14.0-1"}, "param kernels is not valid JSON"),
    ({"kernels": '["bad kernel"]'}, "param kernels has invalid kernel versions"),
    ({"modules": "igb uio"}, "param modules='igb uio' is not valid"),
    ({"builder_root": "relative"}, "param builder-root='relative' is not valid"),
    # issue 14 point 5: no path param leaves its folder, none reaches a command as an option or a shell fragment
    ({"modules_dir": "/tmp/../usr/lib/modules"}, "param modules-dir='/tmp/../usr/lib/modules' has a .. component"),
    ({"builder_root": "/etc/../etc"}, "param builder-root='/etc/../etc' has a .. component"),
    ({"kernel_tree_dir": "/workspace/../etc"}, "param kernel-tree-dir='/workspace/../etc' has a .. component"),
    ({"signing_secret_dir": "$(touch /tmp/x)"}, "param signing-secret-dir='$(touch /tmp/x)' holds '$' '(' ')'"),
    ({"signing_secret_dir": "-1"}, "param signing-secret-dir='-1' has a component that starts with - or ~"),
    ({"builder_command": "-1 /src"}, "param builder-command names the program '-1', which has a component that"),
    ({"builder_command": "$(touch /tmp/x)"}, "param builder-command names the program '$(touch', which holds"),
    ({"builder_command": '["/usr/bin/dpdk_build.sh"]'}, "param builder-command names the program '[/usr/bin/"),
    ({"kernels": '["' + "5" * 65 + '"]'}, "a kernel release (uname -r) is at most 64 letters, digits"),
    ({"modules": "igb_uio,-rte_kni"}, "param modules='igb_uio,-rte_kni' is not valid"),
    ({"modules": "a" * 56}, "at most 55 characters each"),
], ids=["unparsable-command", "output-without-kernel", "output-typo", "output-attribute", "output-index",
        "output-huge-width", "output-conversion", "output-unclosed", "output-up", "output-relative", "empty-modules-dir", "relative-modules-dir",
        "kernels-not-json", "kernel-with-space", "module-with-space", "relative-root", "modules-dir-up",
        "root-up", "tree-dir-up", "signing-dir-shell", "signing-dir-option", "command-option", "command-shell",
        "command-json", "kernel-too-long", "module-option", "module-too-long"])
def test_bad_params_are_config_errors(volume, run_cli, flags, expected):
    """One line, exit 2, and nothing written: not the lock or staging in /usr/lib/modules (the default
    modules-dir, which an empty value used to fall back to), nor in the working directory."""
    default_lock = Path("/usr/lib/modules") / build_kmods.LOCK_FILE
    existed = default_lock.exists()
    run = run_cli(["build-kmods", *volume.args(**flags)])
    assert run.code == 2
    assert expected in run.err
    assert len(run.err.strip().splitlines()) == 1 and "Traceback" not in run.err
    assert volume.builds() == []
    assert default_lock.exists() == existed
    assert not Path("relative").exists()


FAKE_CSSR_INIT = """#!/bin/sh
# cssr-init's contract: lay out the trees of $CSSR_KERNEL under $CSSR_VOLUME (modules/ and kernels/)
set -eu
echo "$CSSR_KERNEL" >> "$CSSR_VOLUME/../layouts.txt"
mkdir -p "$CSSR_VOLUME/modules/$CSSR_KERNEL" "$CSSR_VOLUME/kernels"
touch "$CSSR_VOLUME/modules/$CSSR_KERNEL/modules.dep"
mkdir -p "$CSSR_VOLUME/modules/$CSSR_KERNEL/kernel/drivers/uio"
cp "$(cat "$CSSR_VOLUME/../uio-$CSSR_KERNEL")" "$CSSR_VOLUME/modules/$CSSR_KERNEL/kernel/drivers/uio/uio.ko"
[ -e "$CSSR_VOLUME/kernels/$CSSR_KERNEL" ] || ln -s "$(cat "$CSSR_VOLUME/../headers-$CSSR_KERNEL")" \
  "$CSSR_VOLUME/kernels/$CSSR_KERNEL"
"""


def test_the_tasks_steps_in_order_as_the_pod_runs_them(volume, tmp_path):
    """tasks/cssr-build-kmods.yaml: each step's script or command, with the env Tekton would give it."""
    task = yaml.safe_load((Path(__file__).parents[2] / "tasks/cssr-build-kmods.yaml").read_text())["spec"]
    fresh = tmp_path / "fresh-volume"  # nothing laid out: the layout step does it
    fresh.mkdir()
    for kernel in volume.kernels:
        (tmp_path / f"headers-{kernel.release}").write_text(str(kernel.headers))
        (tmp_path / f"uio-{kernel.release}").write_text(str(kernel.uio))
    bin_dir = tmp_path / "image-bin"
    bin_dir.mkdir()
    (bin_dir / "cssr-init").write_text(FAKE_CSSR_INIT)
    (bin_dir / "cssr-init").chmod(0o755)
    params = {p["name"]: p.get("default", "") for p in task["params"]}
    params.update({
        "kernels": json.dumps([k.release for k in volume.kernels]), "modules-dir": str(fresh / "modules"),
        "kernel-tree-dir": str(fresh), "builder-root": str(volume.root),  # the step's emptyDirs
        "builder-command": f"{volume.builder} {volume.root}", "signing-secret-dir": str(tmp_path / "unbound"),
    })
    # Tekton's substitutions: the params, and $(workspaces.<name>.bound): the optional signing-key is not bound
    bound = {"modules": "true", "signing-key": "false"}

    def substituted(entries: list[dict[str, str]]) -> dict[str, str]:
        return {e["name"]: re.sub(r"\$\(workspaces\.([-a-z]+)\.bound\)", lambda m: bound[m.group(1)],
                                  re.sub(r"\$\(params\.([-a-z]+)\)", lambda m: params[m.group(1)], e["value"]))
                for e in entries}

    env = substituted(task["stepTemplate"]["env"])
    env.update(PATH=f"{bin_dir}:{os.environ['PATH']}", HOME=str(tmp_path),
               PYTHONPATH=str(Path(build_kmods.__file__).parents[1]))
    results = tmp_path / "tekton-results"
    for step in task["steps"]:
        if "script" in step:
            argv = ["sh", "-c", step["script"]]
        else:
            argv = [sys.executable, "-m", "cssr_tasks", *step["command"][1:], "--results-dir", str(results)]
            argv = [a if a != "/tmp/cssr-prepare-results" else str(tmp_path / "prepare-results") for a in argv]
        done = subprocess.run(argv, env={**env, **substituted(step.get("env") or [])}, capture_output=True,
                              text=True, check=False)
        assert done.returncode == 0, f"step {step['name']}: {done.stdout}{done.stderr}"
    releases = sorted(k.release for k in volume.kernels)
    assert sorted((tmp_path / "layouts.txt").read_text().split()) == releases
    assert sorted(volume.builds()) == releases
    assert json.loads((results / "built-kernels").read_text()) == releases
    assert sorted(json.loads((results / "modules").read_text())) == releases
    assert not (tmp_path / "prepare-results" / "modules").exists()


PIPELINE = """apiVersion: tekton.dev/v1
kind: Pipeline
metadata:
  name: build-kmods-only
spec:
  params:
    - {name: kernels, type: string}
    - {name: builder-command, type: string}
  workspaces:
    - name: modules
  tasks:
    - name: build-kmods
      taskRef: {name: cssr-build-kmods}
      params:
        - {name: kernels, value: $(params.kernels)}
        - {name: builder-command, value: $(params.builder-command)}
        - {name: init-image, value: example.com/cssr-init:0123456789ab}
      workspaces:
        - {name: modules, workspace: modules}
"""


def test_the_task_through_the_local_executor_with_the_builders_real_paths(volume, tmp_path):
    """`cssr-tasks pipeline run` mounts the build step's emptyDirs over /usr/lib/modules and /usr/src/kernels, as a
    pod does: the stand-in builder works at the PoC's fixed paths, and its output never reaches the volume directly."""
    if os.geteuid() != 0:
        pytest.skip("the local executor mounts step volumes only as root")
    require_tool("unshare", "mount")
    repo = Path(__file__).parents[2]
    workspace = tmp_path / "workspace"
    for kernel in volume.kernels:
        (tmp_path / f"headers-{kernel.release}").write_text(str(kernel.headers))
        (tmp_path / f"uio-{kernel.release}").write_text(str(kernel.uio))
    bin_dir = tmp_path / "image-bin"
    bin_dir.mkdir()
    (bin_dir / "cssr-init").write_text(FAKE_CSSR_INIT.replace("$CSSR_VOLUME/../", f"{tmp_path}/"))
    (bin_dir / "cssr-init").chmod(0o755)
    (tmp_path / "pipeline.yaml").write_text(PIPELINE)
    releases = sorted(k.release for k in volume.kernels)

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cssr_tasks", "pipeline", "run", str(tmp_path / "pipeline.yaml"),
             "--tasks-dir", str(repo / "tasks"), "-p", f"kernels={json.dumps(releases)}",
             "-p", f"builder-command={volume.builder} /", "-w", f"modules={workspace}",
             "--image-command", "example.com/cssr-init=sh",
             "--image-command", "quay.io/juniper-128t/kmod-builder-51=sh", "--run-dir", str(tmp_path / "run")],
            env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                 "PYTHONPATH": str(Path(build_kmods.__file__).parents[1])},
            capture_output=True, text=True, check=False, cwd=repo)

    first = run()
    assert first.returncode == 0, first.stdout + first.stderr
    assert sorted(volume.builds()) == releases
    for release in releases:
        checks = verify_tree(workspace / "modules", release, MODULES)
        assert all(c.ok for c in checks), [c.describe() for c in checks]
    assert not Path("/usr/lib/modules", releases[1]).exists()  # the view lived in the step's emptyDir
    second = run()
    assert second.returncode == 0, second.stdout + second.stderr
    assert sorted(volume.builds()) == releases  # no builder the second time
    assert "built nothing: every kernel's modules were verified" in second.stdout + second.stderr
