"""build-init-image and the cssr-init image, end to end with real tools.

The Task file runs step by step (taskrun.py): prepare in-process, the build step's own script
with buildah (vfs, chroot) and the real buildah-build.sh, then verify; against a real registry
with htpasswd auth, FROM fake Driver Toolkit images for two kernels. A second run builds nothing.
The pushed image's entrypoint then runs with `buildah run --isolation chroot` for each kernel, a
kernel it lacks, twice, concurrently, and over a directory another tool made first. Params
validation and the Containerfile are covered without tools.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cssr_tasks import build_init_image, kernels, verify_image
from cssr_tasks.errors import ConfigError
from cssr_tasks.registry import ImageRef, Registry, load_credentials
from cssr_tasks.sim import fixtures as fx
from cssr_tasks.sim.images import Buildah, RegistryServer, Seed, inspect_config

from .conftest import KERNELS
from .taskrun import TaskRun, load_task, python_step, run_task
from support import require_tool

K416, K417 = KERNELS
RT416 = fx.RELEASES["4.16"][2]
DIGEST = "sha256:" + "a" * 64


def task_params(registry: RegistryServer, seed: Seed, kernel_list: list[str] = KERNELS, **extra: str) -> dict[str, str]:
    return {
        "kernel-versions": json.dumps(kernel_list),
        "kernel-set-id": kernels.kernel_set_id(kernel_list),
        "dtk-images": json.dumps({k: seed.dtk_images[k] for k in kernel_list}),
        "image-repository": f"{registry.host}/cssr-deploy/cssr-init",
        "base-image": seed.base_image,
        "tls-verify": "false",
        **extra,
    }


def step_env(params: dict[str, str], **extra: str) -> dict[str, str]:
    """PARAM_* variables as the Task's stepTemplate sets them, plus extra variables."""
    return {"PARAM_" + k.upper().replace("-", "_"): v for k, v in params.items()} | extra


def overrides(store: Buildah, home: Path) -> dict[str, str]:
    """What differs from a pod: a private buildah store, and a HOME that is not /tekton/home."""
    return {**store.env_for_build_script(), "HOME": str(home)}


def settle(registry: RegistryServer) -> None:
    """The registry logs a request after answering it: wait until its log stops growing."""
    size = -1
    while size != registry.log_size():
        size = registry.log_size()
        time.sleep(0.2)


@dataclass
class Build:
    run: TaskRun
    writes: list[str]
    workspace: Path
    params: dict[str, str]


@pytest.fixture(scope="module")
def first_build(auth_registry: RegistryServer, seeded: Seed, docker_config_dir: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Build:
    root = tmp_path_factory.mktemp("first-build")
    params = task_params(auth_registry, seeded)
    mark = auth_registry.log_size()
    run = run_task(params, {"source": root / "workspace", "dockerconfig": docker_config_dir}, root / "results",
                   overrides(Buildah(root / "store" / "root", root / "store" / "runroot"), root / "home"))
    settle(auth_registry)
    assert run.ok, run.log
    return Build(run, auth_registry.writes_since(mark), root / "workspace", params)


# -- build, push, verify, and the cached re-run --------------------------------------------


def test_first_run_builds_pushes_and_reads_the_digest_back(first_build, auth_registry, docker_config_dir):
    results = first_build.run.results
    set_id = kernels.kernel_set_id(KERNELS)
    assert results["build-needed"] == "true"
    assert results["built"] == "true"
    assert results["image-url"] == f"{auth_registry.host}/cssr-deploy/cssr-init:{set_id}"
    pushed = (first_build.workspace / "cssr-init" / ".pushed-digest").read_text().strip()
    assert results["image-digest"] == pushed
    # Tekton Chains' type hints, in the form Chains joins them (IMAGE_URL@IMAGE_DIGEST, the tag dropped)
    assert (results["IMAGE_URL"], results["IMAGE_DIGEST"]) == (results["image-url"], pushed)
    assert ImageRef.parse(f"{results['IMAGE_URL']}@{results['IMAGE_DIGEST']}").digest == pushed
    assert any(w.startswith(f"PUT /v2/cssr-deploy/cssr-init/manifests/{set_id}") for w in first_build.writes)
    # read back independently of the Task
    ref = ImageRef.parse(results["image-url"])
    login = load_credentials(str(docker_config_dir / ".dockerconfigjson"), auth_registry.host)
    with Registry(ref.registry, credentials=login, tls_verify=False) as registry:
        assert registry.manifest_digest(ref) == pushed
    assert "building" in first_build.run.step("build").out and "pushed" in first_build.run.step("build").out
    assert "not in the registry: build needed" in first_build.run.step("prepare").err


def test_second_run_builds_nothing(first_build, auth_registry, docker_config_dir, tmp_path):
    mark = auth_registry.log_size()
    store = Buildah(tmp_path / "store" / "root", tmp_path / "store" / "runroot")
    run = run_task(first_build.params, {"source": first_build.workspace, "dockerconfig": docker_config_dir},
                   tmp_path / "results", overrides(store, tmp_path / "home"))
    settle(auth_registry)
    assert run.ok, run.log
    assert run.results["build-needed"] == "false"
    assert run.results["built"] == "false"
    assert run.results["image-digest"] == first_build.run.results["image-digest"]
    # set, and empty: Tekton Chains signs and attests the image once, for the run that built it
    assert (run.results["IMAGE_URL"], run.results["IMAGE_DIGEST"]) == ("", "")
    assert "is in the registry already; nothing to build" in run.step("build").out
    assert not store.root.exists(), "buildah ran although nothing was to be built"
    assert auth_registry.writes_since(mark) == []
    reads = auth_registry.requests_since(mark)
    assert reads and all(r.split()[0] in ("GET", "HEAD") for r in reads)
    assert not (first_build.workspace / "cssr-init" / ".pushed-digest").exists()


def test_check_init_image_finds_what_the_build_pushed(first_build, auth_registry, docker_config_dir, tmp_path):
    """The Pipeline's guard applies the build's own rule: after the first build, the image exists."""
    env = step_env({k: first_build.params[k] for k in ("kernel-versions", "kernel-set-id", "image-repository",
                                                        "tls-verify")},
                   WORKSPACE_DOCKERCONFIG_PATH=str(docker_config_dir))
    code, _, err = python_step(["check-init-image"], env, tmp_path / "results")
    assert code == 0, err
    found = {p.name: p.read_text() for p in (tmp_path / "results").iterdir()}
    built = first_build.run.results
    assert found == {"exists": "true", "image-url": built["image-url"], "image-digest": built["image-digest"]}


def test_a_tag_holding_another_kernel_set_is_rebuilt(first_build, auth_registry, seeded, docker_config_dir,
                                                     tmp_path):
    """The tag exists but its labels name other kernels (pushed by hand, say): prepare asks for a build."""
    params = task_params(auth_registry, seeded, [K416])
    # the first build's image (both kernels), under the tag of the set of K416 alone
    source = ImageRef.parse(first_build.run.results["image-url"])
    _copy_tag(docker_config_dir, source, source.with_tag(params["kernel-set-id"]))
    env = step_env(params, PARAM_CONTEXT_DIR=str(tmp_path / "ctx"), WORKSPACE_DOCKERCONFIG_PATH=str(docker_config_dir))
    code, _, err = python_step(["build-init-image"], env, tmp_path / "results")
    assert code == 0, err
    assert (tmp_path / "results" / "build-needed").read_text() == "true"
    assert "not this kernel set: build needed, over it" in err


def test_the_pushed_image_holds_every_kernel_and_its_labels(first_build, pulled):
    config = pulled.config
    assert config["Entrypoint"] == ["/bin/sh", build_init_image.IMAGE_ENTRYPOINT]
    assert f"CSSR_VOLUME={build_init_image.VOLUME}" in config["Env"]
    labels = config["Labels"]
    assert labels[build_init_image.LABEL_SET_ID] == kernels.kernel_set_id(KERNELS)
    assert labels[build_init_image.LABEL_KERNELS] == " ".join(KERNELS)
    assert labels["name"] == "cssr-init"
    with pulled.rootfs() as rootfs:
        assert sorted(p.name for p in (rootfs / "usr/src/kernels").iterdir()) == KERNELS
        assert sorted(p.name for p in (rootfs / "lib/modules").iterdir()) == KERNELS
        for kernel in KERNELS:
            assert os.readlink(rootfs / "lib/modules" / kernel / "build") == f"/usr/src/kernels/{kernel}"
            assert (rootfs / "usr/src/kernels" / kernel / "Makefile").is_file()
        assert (rootfs / build_init_image.IMAGE_ENTRYPOINT.lstrip("/")).read_text() == (
            Path(build_init_image.__file__).parent / "files" / build_init_image.ENTRYPOINT).read_text()


# -- the entrypoint, run from the pushed image ----------------------------------------------


@dataclass
class Pulled:
    store: Buildah
    image: str
    config: dict

    def run_in_image(self, *command: str, volume: Path | None = None, env: dict[str, str] | None = None,
                     read_only: bool = False) -> subprocess.CompletedProcess[str]:
        container = self.store("from", "--pull=false", self.image).stdout.strip().splitlines()[-1]
        try:
            args = ["run", "--isolation", "chroot"]
            if volume is not None:
                args += ["-v", f"{volume}:{build_init_image.VOLUME}" + (":ro" if read_only else "")]
            for key, value in (env or {}).items():
                args += ["-e", f"{key}={value}"]
            return self.store(*args, container, "--", *command, check=False)
        finally:
            self.store("rm", container)

    @contextlib.contextmanager
    def rootfs(self) -> Iterator[Path]:
        container = self.store("from", "--pull=false", self.image).stdout.strip().splitlines()[-1]
        try:
            yield Path(self.store("mount", container).stdout.strip())
        finally:
            self.store("umount", container)
            self.store("rm", container)

    def entrypoint(self, volume: Path, kernel: str | None = None, **kwargs: object) -> subprocess.CompletedProcess[str]:
        env = {"CSSR_KERNEL": kernel} if kernel else {}
        return self.run_in_image(*self.config["Entrypoint"], volume=volume, env=env, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def pulled(first_build, docker_config_dir, tmp_path_factory) -> Pulled:
    """The pushed image, pulled into a store of its own."""
    root = tmp_path_factory.mktemp("pulled")
    store = Buildah(root / "root", root / "runroot")
    image = first_build.run.results["image-url"]
    store("pull", "--tls-verify=false", "--authfile", str(docker_config_dir / ".dockerconfigjson"), f"docker://{image}")
    return Pulled(store, image, inspect_config(store, image))


def own_lines(stderr: str) -> list[str]:
    """The entrypoint's stderr, without the lines buildah run adds about the exit status."""
    return [line for line in stderr.strip().splitlines()
            if not re.match(r"(subprocess exited with status|Error: exit status) \d+$", line)]


def layout(volume: Path) -> dict[str, list[str]]:
    return {sub: sorted(p.name for p in (volume / sub).iterdir()) for sub in ("modules", "kernels")
            if (volume / sub).is_dir()}


@pytest.mark.parametrize("kernel", KERNELS, ids=["running-4.16", "target-4.17"])
def test_entrypoint_copies_the_trees_of_its_kernel(pulled, tmp_path, kernel):
    run = pulled.entrypoint(tmp_path, kernel)
    assert run.returncode == 0, run.stderr
    assert layout(tmp_path) == {"modules": [kernel], "kernels": [kernel]}
    modules, devel = tmp_path / "modules" / kernel, tmp_path / "kernels" / kernel
    assert (modules / "modules.dep").read_text() == "kernel/drivers/uio/uio.ko:\n"
    assert (modules / "kernel" / "drivers" / "uio" / "uio.ko").is_file()  # the in-tree uio igb_uio needs
    assert os.readlink(modules / "build") == f"/usr/src/kernels/{kernel}"
    assert f'"{kernel}"' in (devel / "include" / "generated" / "utsrelease.h").read_text()
    assert (devel / "Makefile").is_file() and (devel / ".config").is_file()
    assert oct(modules.stat().st_mode & 0o777) == "0o755"
    assert f"copied /lib/modules/{kernel} to {build_init_image.VOLUME}/modules/{kernel}" in run.stdout
    assert f"kernel {kernel} ready" in run.stdout


def test_entrypoint_run_twice_copies_nothing_the_second_time(pulled, tmp_path):
    assert pulled.entrypoint(tmp_path, K416).returncode == 0
    makefile = tmp_path / "kernels" / K416 / "Makefile"
    before = makefile.stat().st_mtime_ns
    again = pulled.entrypoint(tmp_path, K416)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("is complete; kept") == 2
    assert "copied" not in again.stdout
    assert makefile.stat().st_mtime_ns == before


def test_entrypoint_adds_a_second_kernel_beside_the_first(pulled, tmp_path):
    for kernel in KERNELS:
        assert pulled.entrypoint(tmp_path, kernel).returncode == 0
    assert layout(tmp_path) == {"modules": sorted(KERNELS), "kernels": sorted(KERNELS)}


def test_entrypoint_runs_concurrently_without_clobbering(pulled, tmp_path):
    """Pods on several nodes share one volume: exactly one copy lands, the others keep it."""
    containers = [pulled.store("from", "--pull=false", pulled.image).stdout.strip().splitlines()[-1]
                  for _ in range(4)]
    try:
        procs = [subprocess.Popen(["buildah", *pulled.store.global_flags, "run", "--isolation", "chroot",
                                   "-v", f"{tmp_path}:{build_init_image.VOLUME}", "-e", f"CSSR_KERNEL={K417}", c,
                                   "--", *pulled.config["Entrypoint"]],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in containers]
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        pulled.store("rm", *containers)
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    text = "".join(out for out, _ in outputs)
    assert text.count(f"copied /lib/modules/{K417}") == 1
    assert text.count(f"copied /usr/src/kernels/{K417}") == 1
    assert layout(tmp_path) == {"modules": [K417], "kernels": [K417]}, "a temporary copy was left behind"
    assert (tmp_path / "modules" / K417 / "modules.dep").is_file()


def test_entrypoint_completes_a_directory_another_tool_made_first(pulled, tmp_path):
    """A module build that ran before cssr-init left <kver>/dpdk/: it is kept, and the trees are added."""
    dpdk = tmp_path / "modules" / K416 / "dpdk"
    dpdk.mkdir(parents=True)
    (dpdk / "igb_uio.ko").write_bytes(b"\x7fELF module")
    run = pulled.entrypoint(tmp_path, K416)
    assert run.returncode == 0, run.stderr
    assert f"completed {build_init_image.VOLUME}/modules/{K416}" in run.stdout
    assert (dpdk / "igb_uio.ko").read_bytes() == b"\x7fELF module"
    assert (tmp_path / "modules" / K416 / "modules.dep").is_file()
    assert pulled.entrypoint(tmp_path, K416).stdout.count("kept") == 2


@pytest.mark.parametrize("kernel", [None, RT416], ids=["uname-r-of-this-machine", "realtime-not-in-set"])
def test_entrypoint_fails_in_one_line_for_a_kernel_it_lacks(pulled, tmp_path, kernel):
    run = pulled.entrypoint(tmp_path, kernel)
    wanted = kernel or os.uname().release
    assert run.returncode == 1
    lines = own_lines(run.stderr)
    assert len(lines) == 1, run.stderr
    assert f"kernel {wanted} is not in this image, which holds {K416}, {K417}" in lines[0]
    assert "re-run the cssr-deploy pipeline" in lines[0]
    assert layout(tmp_path) == {}


def test_entrypoint_on_a_read_only_volume_fails_in_one_line(pulled, tmp_path):
    run = pulled.entrypoint(tmp_path, K416, read_only=True)
    assert run.returncode == 1
    assert len(own_lines(run.stderr)) == 1, run.stderr
    assert f"could not create {build_init_image.VOLUME}/modules" in run.stderr
    assert "mount the modules volume" in run.stderr


# -- errors a user may meet, through the Task --------------------------------------------------


@pytest.mark.parametrize(("login", "expected"), [
    ("none", "401 Unauthorized to an anonymous client (the docker config has no login for it)"),
    ("wrong-password", "401 Unauthorized to the login pipeline from"),
], ids=["no-login", "wrong-password"])
def test_registry_login_problems_stop_at_prepare_with_one_clear_line(auth_registry, seeded, tmp_path, login,
                                                                     expected):
    config_dir = tmp_path / "dockerconfig"
    if login == "none":
        config_dir.mkdir()
        (config_dir / "config.json").write_text('{"auths": {"quay.io": {"auth": "dTpw"}}}')
    else:
        auth_registry.docker_config(config_dir, password="wrong")
    run = run_task(task_params(auth_registry, seeded), {"source": tmp_path / "ws", "dockerconfig": config_dir},
                   tmp_path / "results", {"HOME": str(tmp_path)})
    assert [s.name for s in run.steps] == ["prepare"]
    prepare = run.step("prepare")
    assert prepare.code == 1
    error = [line for line in prepare.err.splitlines() if "error:" in line]
    assert len(error) == 1
    assert f"registry {auth_registry.host} answered {expected}" in error[0]
    assert "check the docker config for a login" in error[0]


def test_unreachable_registry_stops_at_prepare(seeded, tmp_path, open_registry, monkeypatch):
    monkeypatch.setenv("CSSR_RETRY_ATTEMPTS", "2")  # the step's process environment, as in a pod
    params = task_params(open_registry, seeded)
    params["image-repository"] = "127.0.0.1:9/cssr-deploy/cssr-init"  # discard port: nothing listens
    run = run_task(params, {"source": tmp_path / "ws"}, tmp_path / "results", {"HOME": str(tmp_path)})
    prepare = run.step("prepare")
    assert prepare.code == 1 and len(run.steps) == 1
    assert "attempt 1/2" in prepare.err and "attempt 2/2" not in prepare.err
    assert "cannot reach registry 127.0.0.1:9 ([Errno 111] Connection refused)" in prepare.err


def test_anonymous_registry_needs_no_docker_config(open_registry, seeded, tmp_path, log):
    """An open registry: prepare and verify work with no docker config anywhere."""
    env = step_env(task_params(open_registry, seeded), PARAM_CONTEXT_DIR=str(tmp_path / "ctx"), HOME=str(tmp_path))
    result = build_init_image.run(build_init_image.Params.from_env(env), log=log)
    assert result.build_needed is True
    assert result.image_url.startswith(f"{open_registry.host}/cssr-deploy/cssr-init:")


# -- without tools: params and the Containerfile ---------------------------------------------


def env_of(**params: str) -> dict[str, str]:
    base = {"kernel_versions": json.dumps([K416]), "kernel_set_id": kernels.kernel_set_id([K416]),
            "dtk_images": json.dumps({K416: f"quay.io/openshift-release-dev/ocp-v4.0-art-dev@{DIGEST}"}),
            "tls_verify": "false"}
    base.update(params)
    return {f"PARAM_{k.upper()}": v for k, v in base.items()}


def test_params_parse_what_detect_kernel_gives(tmp_path):
    env = env_of(context_dir="ctx")
    env["WORKSPACE_SOURCE_PATH"] = str(tmp_path)
    params = build_init_image.Params.from_env(env)
    assert params.kernel_versions == [K416]
    assert params.context_dir == str(tmp_path / "ctx")
    assert params.image_repository == build_init_image.DEFAULT_REPOSITORY
    assert params.tls_verify is False
    assert params.docker_config == ""


@pytest.mark.parametrize(("params", "message"), [
    ({"kernel_set_id": "0123456789ab"}, "kernel-set-id=0123456789ab is not the id of kernel-versions"),
    ({"dtk_images": "{}"}, f"no Driver Toolkit image for kernel {K416} in dtk-images"),
    ({"kernel_versions": json.dumps([K416, K417]), "kernel_set_id": kernels.kernel_set_id([K416, K417])},
     f"no Driver Toolkit image for kernel {K417}"),
    ({"kernel_versions": "[5.14"}, "param kernel-versions is not valid JSON"),
    ({"kernel_versions": "[]"}, "param kernel-versions is empty"),
    ({"kernel_versions": '["../../etc"]'}, "not kernel versions"),
    ({"image_repository": "quay.io/example/cssr-init:v1"}, "must be a repository without tag or digest"),
    ({"image_repository": "Quay.io/Example"}, "repository 'Example' must be lowercase"),
    ({"dtk_images": json.dumps({K416: "not a reference"})}, f"param dtk-images[{K416}]"),
    ({"tls_verify": "/no/such/ca.pem"}, "neither true, false nor the path of an existing CA bundle file"),
    ({"docker_config": "/no/such/config.json"}, "docker config /no/such/config.json does not exist"),
], ids=["mismatched-set-id", "no-dtk", "no-dtk-for-upgrade-target", "bad-json", "empty-set", "path-in-kernel",
        "tagged-repository", "uppercase-repository", "bad-dtk-pullspec", "missing-ca", "missing-docker-config"])
def test_bad_params_fail_naming_the_param_and_the_fix(params, message):
    with pytest.raises(ConfigError, match="invalid params") as caught:
        build_init_image.Params.from_env(env_of(**params))
    assert message in str(caught.value)


def test_a_missing_dtk_names_the_kernel_and_the_fix():
    with pytest.raises(ConfigError) as caught:
        build_init_image.Params.from_env(env_of(dtk_images="{}"))
    assert "oc get is driver-toolkit -n openshift" in str(caught.value)


def test_context_dir_must_stay_inside_the_workspace(tmp_path):
    env = env_of(context_dir="../elsewhere")
    env["WORKSPACE_SOURCE_PATH"] = str(tmp_path)
    with pytest.raises(ConfigError, match="must be a relative path inside the source workspace"):
        build_init_image.Params.from_env(env)


def test_containerfile_has_one_stage_per_dtk_image_and_every_kernel():
    """The realtime kernel comes from the same Driver Toolkit as its release's kernel: one stage."""
    kernel_list = sorted([K416, RT416, K417])
    dtk416, dtk417 = fx.dtk_pullspec(fx.RELEASES["4.16"][0]), fx.dtk_pullspec(fx.RELEASES["4.17"][0])
    params = build_init_image.Params(
        kernel_versions=kernel_list, kernel_set_id=kernels.kernel_set_id(kernel_list),
        dtk_images={K416: dtk416, RT416: dtk416, K417: dtk417}, base_image="registry.example/ubi:9")
    text = build_init_image.containerfile(params)
    froms = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert froms == [f"FROM {dtk416} AS dtk0", f"FROM {dtk417} AS dtk1", "FROM registry.example/ubi:9"]
    for kernel, stage in ((K416, "dtk0"), (RT416, "dtk0"), (K417, "dtk1")):
        assert f"COPY --from={stage} /usr/src/kernels/{kernel} /usr/src/kernels/{kernel}\n" in text
        assert f"COPY --from={stage} /lib/modules/{kernel} /lib/modules/{kernel}\n" in text
    assert f'{build_init_image.LABEL_KERNELS}="{" ".join(kernel_list)}"' in text
    assert 'ENTRYPOINT ["/bin/sh", "/usr/local/bin/cssr-init"]' in text


def test_prepare_writes_the_context_and_drops_a_stale_digest(tmp_path):
    context = tmp_path / "ctx"
    context.mkdir()
    (context / build_init_image.DIGEST_FILE).write_text(DIGEST)
    params = build_init_image.Params.from_env(env_of(context_dir=str(context)))
    build_init_image.write_context(context, params)
    assert not (context / build_init_image.DIGEST_FILE).exists()
    assert sorted(p.name for p in context.iterdir()) == [".authfile", ".tls-verify", "Containerfile", "buildah-build.sh",
                                                         "cssr-init-entrypoint.sh"]
    assert os.access(context / "buildah-build.sh", os.X_OK)
    assert (context / ".tls-verify").read_text() == "false"


@pytest.mark.parametrize(("value", "written"), [
    ("True", "true"), ("yes", "true"), ("1", "true"), ("FALSE", "false"), ("off", "false"), ("0", "false"),
    ("ca.pem", "{cwd}/ca.pem"),
], ids=["True", "yes", "1", "FALSE", "off", "0", "relative-ca"])
def test_tls_verify_is_parsed_once_and_the_script_takes_what_python_decided(tmp_path, monkeypatch, value, written):
    """One rule: `True` was a CA bundle path to the script, and true to Python. Now the script reads Python's
    decision, and refuses anything but true, false or an absolute path."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    context = tmp_path / "ctx"
    params = build_init_image.Params.from_env(env_of(context_dir=str(context), tls_verify=value))
    build_init_image.write_context(context, params)
    assert (context / ".tls-verify").read_text() == written.format(cwd=tmp_path)


def test_the_script_refuses_a_tls_setting_it_did_not_get_from_python(tmp_path):
    context = tmp_path / "ctx"
    context.mkdir()
    script = Path(build_init_image.__file__).parent / "files" / build_init_image.BUILD_SCRIPT
    env = {"PATH": "/usr/bin:/bin", "CONTEXT_DIR": str(context), "IMAGE": "reg.example/ns/cssr-init:abcdef012345"}
    missing = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, check=False)
    assert missing.returncode == 2
    assert "run the prepare step (cssr-tasks build-init-image) first" in missing.stderr
    (context / ".tls-verify").write_text("True")
    odd = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, check=False)
    assert odd.returncode == 2
    assert "holds 'True', not true, false or an absolute CA bundle path" in odd.stderr


@pytest.mark.parametrize("case", ["holds-other-files", "is-a-file", "symlink-out", "workspace-itself"])
def test_context_dir_is_checked_before_any_write(tmp_path, case):
    """build-init-image wrote its context into any directory: now a directory of other files is refused first."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "hostname").write_text("precious\n")
    value = {"holds-other-files": "cfg", "is-a-file": "file", "symlink-out": "link", "workspace-itself": "."}[case]
    (workspace / "cfg").mkdir()
    (workspace / "cfg" / "settings.yaml").write_text("user data\n")
    (workspace / "file").write_text("x")
    (workspace / "link").symlink_to(outside)
    env = env_of(context_dir=value)
    env["WORKSPACE_SOURCE_PATH"] = str(workspace)
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    with pytest.raises(ConfigError, match="param context-dir"):
        build_init_image.Params.from_env(env)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
    shell = env_of(context_dir=str(outside))  # from a shell, any path, but still not over other files
    with pytest.raises(ConfigError, match=r"holds other files \(hostname\)"):
        build_init_image.Params.from_env(shell)


def test_build_script_hands_tls_and_login_to_buildah(tmp_path):
    """The argument plumbing of buildah-build.sh for a CA bundle and a login file (the real runs use false)."""
    recorder = tmp_path / "bin" / "buildah"
    recorder.parent.mkdir()
    recorder.write_text(
        '#!/bin/sh\n'
        'printf "%s\\n" "$@" >> "$RECORD"; echo ---- >> "$RECORD"\n'
        'prev=; for a in "$@"; do [ "$prev" = --cert-dir ] && ls "$a" >> "$RECORD.certs"; prev=$a; done\n'
        'case " $* " in *" push "*) echo "$DIGEST" > "$CONTEXT_DIR/.pushed-digest" ;; esac\n')
    recorder.chmod(0o755)
    context = tmp_path / "context dir"
    (tmp_path / "ca bundle.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "dockerconfig").mkdir()
    (tmp_path / "dockerconfig" / ".dockerconfigjson").write_text("{}")
    prepared = env_of(context_dir=str(context), tls_verify=str(tmp_path / "ca bundle.pem"))
    prepared["WORKSPACE_DOCKERCONFIG_PATH"] = str(tmp_path / "dockerconfig")
    build_init_image.write_context(context, build_init_image.Params.from_env(prepared))
    script = context / build_init_image.BUILD_SCRIPT
    env = {"PATH": f"{recorder.parent}:/usr/bin:/bin", "RECORD": str(tmp_path / "record"), "DIGEST": DIGEST,
           "CONTEXT_DIR": str(context), "IMAGE": "reg.example/ns/cssr-init:abcdef012345",
           "PARAM_TLS_VERIFY": "ignored", "STORAGE_ROOT": str(tmp_path / "s r")}
    done = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    bud, push = (block.strip().splitlines() for block in (tmp_path / "record").read_text().split("----")[:2])
    assert bud[:6] == ["--storage-driver", "vfs", "--root", str(tmp_path / "s r"), "bud", "--tls-verify=true"]
    cert_dir = bud[bud.index("--cert-dir") + 1]
    assert push[push.index("--cert-dir") + 1] == cert_dir
    assert (tmp_path / "record.certs").read_text().split() == ["ca.crt", "ca.crt"]
    assert not Path(cert_dir).exists(), "the temporary cert dir outlived the script"
    for args in (bud, push):
        assert args[args.index("--authfile") + 1] == str(tmp_path / "dockerconfig" / ".dockerconfigjson")
    assert bud[-5:] == ["-f", str(context / "Containerfile"), "-t", "reg.example/ns/cssr-init:abcdef012345",
                        str(context)]
    assert push[-2:] == ["reg.example/ns/cssr-init:abcdef012345", "docker://reg.example/ns/cssr-init:abcdef012345"]
    assert f"pushed reg.example/ns/cssr-init:abcdef012345@{DIGEST}" in done.stdout


def test_build_and_verify_agree_on_names():
    """Task modules do not import each other; these names are their contract."""
    assert verify_image.LABEL_SET_ID == build_init_image.LABEL_SET_ID
    assert verify_image.DIGEST_FILE == build_init_image.DIGEST_FILE
    assert verify_image.DEFAULT_REPOSITORY == build_init_image.DEFAULT_REPOSITORY
    script = (Path(build_init_image.__file__).parent / "files" / "buildah-build.sh").read_text()
    assert f"$CONTEXT_DIR/{build_init_image.DIGEST_FILE}" in script
    steps = {s["name"]: s for s in load_task()["spec"]["steps"]}
    assert "buildah-build.sh" in steps["build"]["script"]


# -- helpers -------------------------------------------------------------------------------


def _copy_tag(docker_config_dir: Path, source: ImageRef, target: ImageRef) -> None:
    require_tool("skopeo")
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--authfile",
                    str(docker_config_dir / ".dockerconfigjson"), f"docker://{source}", f"docker://{target}"],
                   check=True, capture_output=True)
