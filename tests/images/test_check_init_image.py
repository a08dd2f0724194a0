"""check-init-image: the registry's answer to "does this kernel set's cssr-init image exist?", and nothing else.

tasks/cssr-check-init-image.yaml runs step by step (taskrun.py, as a TaskRun pod would) against
pytest-httpserver answering as a registry: a tag whose labels name the kernel set exists, a missing
tag or one holding other kernels does not (and gives no digest), a multi-arch index is trusted, and
the Task only ever reads. Against the real htpasswd registry of the image tests, a tag holding
another image (a Driver Toolkit image, copied by skopeo) is not the kernel set's image. That the
check agrees with what build-init-image pushed is tested in test_build_init_image.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from cssr_tasks import check_init_image, kernels
from cssr_tasks.init_image import LABEL_KERNELS, LABEL_SET_ID
from cssr_tasks.registry import OCI_INDEX, OCI_MANIFEST
from cssr_tasks.sim.images import RegistryServer, Seed

from .conftest import KERNELS, USER
from .taskrun import REPO, TaskRun, run_task
from support import require_tool

TASK = REPO / "tasks" / "cssr-check-init-image.yaml"
SET_ID = kernels.kernel_set_id(KERNELS)
DIGEST = "sha256:" + "d" * 64
CONFIG_DIGEST = "sha256:" + "c" * 64
MANIFEST_PATH = f"/v2/cssr/cssr-init/manifests/{SET_ID}"


def params(repository: str, kernel_list: list[str] = KERNELS, **extra: str) -> dict[str, str]:
    return {"kernel-versions": json.dumps(kernel_list), "kernel-set-id": kernels.kernel_set_id(kernel_list),
            "image-repository": repository, "tls-verify": "false", **extra}


def check(tmp_path: Path, values: dict[str, str], dockerconfig: Path | None = None) -> TaskRun:
    task: dict[str, Any] = yaml.safe_load(TASK.read_text())
    return run_task(values, {"dockerconfig": dockerconfig}, tmp_path / "results", {"HOME": str(tmp_path)}, task=task)


def serve_image(httpserver, labels: dict[str, str] | None, digest: str = DIGEST) -> None:
    media_type = OCI_MANIFEST if labels is not None else OCI_INDEX
    manifest = {"schemaVersion": 2, "mediaType": media_type, "config": {"digest": CONFIG_DIGEST}}
    httpserver.expect_request(MANIFEST_PATH).respond_with_json(
        manifest, headers={"Docker-Content-Digest": digest, "Content-Type": media_type})
    httpserver.expect_request(f"/v2/cssr/cssr-init/blobs/{CONFIG_DIGEST}").respond_with_json(
        {"config": {"Labels": labels or {}}})


def repository(httpserver) -> str:
    return f"localhost:{httpserver.port}/cssr/cssr-init"


def only_reads(httpserver) -> bool:
    return bool(httpserver.log) and all(request.method in ("GET", "HEAD") for request, _ in httpserver.log)


THIS_SET = {LABEL_SET_ID: SET_ID, LABEL_KERNELS: " ".join(KERNELS)}


@pytest.mark.parametrize(("labels", "exists"), [
    (THIS_SET, True),
    ({LABEL_SET_ID: SET_ID, LABEL_KERNELS: KERNELS[0]}, False),
    ({LABEL_SET_ID: "000000000000", LABEL_KERNELS: " ".join(KERNELS)}, False),
    ({"name": "something-else"}, False),
    (None, True),
], ids=["this-kernel-set", "other-kernels", "other-set-id", "no-labels", "multi-arch-index"])
def test_the_tag_exists_only_with_the_labels_of_this_kernel_set(httpserver, tmp_path, labels, exists):
    serve_image(httpserver, labels)
    run = check(tmp_path, params(repository(httpserver)))
    assert run.ok, run.log
    assert run.results == {"exists": "true" if exists else "false",
                           "image-url": f"{repository(httpserver)}:{SET_ID}",
                           "image-digest": DIGEST if exists else ""}
    assert only_reads(httpserver)
    if labels is not None and not exists:
        assert "not this kernel set: it must be built again, over it" in run.step("check").err


def test_a_missing_tag_does_not_exist_and_has_no_digest(httpserver, tmp_path):
    httpserver.expect_request(MANIFEST_PATH).respond_with_json({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)
    run = check(tmp_path, params(repository(httpserver)))
    assert run.ok, run.log
    assert run.results == {"exists": "false", "image-url": f"{repository(httpserver)}:{SET_ID}", "image-digest": ""}
    assert f"{repository(httpserver)}:{SET_ID} is not in the registry: it must be built" in run.step("check").err
    assert [request.method for request, _ in httpserver.log] == ["HEAD"]


def test_an_anonymous_client_refused_by_the_registry_is_one_line_and_exit_1(httpserver, tmp_path):
    httpserver.expect_request(MANIFEST_PATH).respond_with_data("", status=401)
    run = check(tmp_path, params(repository(httpserver)))
    step = run.step("check")
    assert step.code == 1
    errors = [line for line in step.err.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert "answered 401 Unauthorized to an anonymous client" in errors[0]
    assert "check the docker config for a login" in errors[0]
    assert run.results == {}


@pytest.mark.parametrize(("change", "message"), [
    ({"kernel-set-id": "0123456789ab"}, "kernel-set-id=0123456789ab is not the id of kernel-versions"),
    ({"kernel-versions": "[]"}, "param kernel-versions is empty"),
    ({"kernel-versions": '["../../etc"]'}, "not kernel versions"),
    ({"image-repository": "quay.io/example/cssr-init:v1"}, "must be a repository without tag or digest"),
    ({"tls-verify": "/no/such/ca.pem"}, "neither true, false nor the path of an existing CA bundle file"),
    ({"docker-config": "/no/such/config.json"}, "docker config /no/such/config.json does not exist"),
], ids=["mismatched-set-id", "empty-set", "path-in-kernel", "tagged-repository", "missing-ca", "missing-docker-config"])
def test_bad_params_exit_2_naming_the_param(httpserver, tmp_path, change, message):
    run = check(tmp_path, {**params(repository(httpserver)), **change})
    step = run.step("check")
    assert step.code == 2
    assert "invalid params" in step.err and message in step.err
    assert httpserver.log == []


def test_the_command_reads_the_shared_params(tmp_path):
    env = {"PARAM_KERNEL_VERSIONS": json.dumps(list(reversed(KERNELS))), "PARAM_KERNEL_SET_ID": SET_ID,
           "PARAM_TLS_VERIFY": "false", "HOME": str(tmp_path)}
    parsed = check_init_image.Params.from_env(env)
    assert parsed.kernel_versions == KERNELS  # sorted: the order kernel-set-id is computed in
    assert parsed.image_repository == check_init_image.DEFAULT_REPOSITORY
    assert (parsed.tls_verify, parsed.docker_config) == (False, "")


def test_a_tag_holding_another_image_in_a_real_registry_is_not_the_kernel_set(auth_registry: RegistryServer,
                                                                               seeded: Seed, docker_config_dir: Path,
                                                                               tmp_path: Path):
    """htpasswd login from the dockerconfig workspace; the tag holds a Driver Toolkit image, without our labels."""
    require_tool("skopeo")
    target = f"{auth_registry.host}/cssr/cssr-init"
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--authfile",
                    str(docker_config_dir / ".dockerconfigjson"), f"docker://{seeded.dtk_images[KERNELS[0]]}",
                    f"docker://{target}:{SET_ID}"], check=True, capture_output=True)
    mark = auth_registry.log_size()
    run = check(tmp_path, params(target), docker_config_dir)
    assert run.ok, run.log
    assert run.results["exists"] == "false" and run.results["image-digest"] == ""
    assert "holds 'no kernel label', not this kernel set" in run.step("check").err
    assert f"login {USER} from {docker_config_dir / '.dockerconfigjson'}" in run.step("check").err
    absent = check(tmp_path / "absent", params(target, [KERNELS[1]]), docker_config_dir)
    assert absent.results["exists"] == "false"
    auth_registry.settle()
    assert auth_registry.writes_since(mark) == []
