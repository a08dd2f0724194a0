"""verify-image through the CLI, as the Task's verify step runs it, against pytest-httpserver.

The digest comes from the registry; `built` from the digest buildah-build.sh leaves after a push;
a missing tag, a tag holding another kernel set, a registry error and bad params each end the
step with one line and the right exit code. The real-registry path runs in test_build_init_image.
"""

from __future__ import annotations

import pytest

from cssr_tasks import verify_image
from cssr_tasks.registry import OCI_MANIFEST

SET_ID = "abcdef012345"
DIGEST = "sha256:" + "d" * 64
CONFIG_DIGEST = "sha256:" + "c" * 64
MANIFEST_PATH = f"/v2/cssr-deploy/cssr-init/manifests/{SET_ID}"


def serve_image(httpserver, set_id: str = SET_ID, digest: str = DIGEST) -> None:
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"digest": CONFIG_DIGEST}}
    httpserver.expect_request(MANIFEST_PATH).respond_with_json(manifest, headers={"Docker-Content-Digest": digest})
    httpserver.expect_request(f"/v2/cssr-deploy/cssr-init/blobs/{CONFIG_DIGEST}").respond_with_json(
        {"config": {"Labels": {verify_image.LABEL_SET_ID: set_id}}})


@pytest.fixture
def env(httpserver, tmp_path):
    return {
        "PARAM_IMAGE_REPOSITORY": f"localhost:{httpserver.port}/cssr-deploy/cssr-init",
        "PARAM_KERNEL_SET_ID": SET_ID,
        "PARAM_CONTEXT_DIR": "cssr-init",
        "PARAM_TLS_VERIFY": "false",
        "WORKSPACE_SOURCE_PATH": str(tmp_path),
        "HOME": str(tmp_path),
    }


def test_after_a_push_the_registry_digest_is_the_result(httpserver, env, tmp_path, run_cli):
    serve_image(httpserver)
    (tmp_path / "cssr-init").mkdir()
    (tmp_path / "cssr-init" / verify_image.DIGEST_FILE).write_text(DIGEST + "\n")
    run = run_cli(["verify-image"], env)
    assert run.code == 0, run.err
    url = f"localhost:{httpserver.port}/cssr-deploy/cssr-init:{SET_ID}"
    assert run.results == {"image-url": url, "image-digest": DIGEST, "built": "true",
                           "IMAGE_URL": url, "IMAGE_DIGEST": DIGEST}
    assert "built and pushed by this run" in run.err


def test_without_a_push_built_is_false(httpserver, env, run_cli):
    serve_image(httpserver)
    run = run_cli(["verify-image"], env)
    assert run.code == 0, run.err
    assert run.results["built"] == "false"
    assert run.results["image-digest"] == DIGEST
    # Tekton Chains signs only what a run pushed: the type hints are set, and empty.
    assert (run.results["IMAGE_URL"], run.results["IMAGE_DIGEST"]) == ("", "")
    assert "already in the registry; nothing built" in run.err


def test_a_concurrent_push_of_the_same_set_is_logged_not_failed(httpserver, env, tmp_path, run_cli):
    serve_image(httpserver)
    (tmp_path / "cssr-init").mkdir()
    (tmp_path / "cssr-init" / verify_image.DIGEST_FILE).write_text("sha256:" + "e" * 64)
    run = run_cli(["verify-image"], env)
    assert run.code == 0, run.err
    assert run.results["image-digest"] == DIGEST
    # Chains signs what this run made: the manifest it pushed, which the registry keeps by digest.
    assert run.results["IMAGE_DIGEST"] == "sha256:" + "e" * 64
    assert "another run pushed the same kernel set meanwhile" in run.err


def test_a_missing_tag_fails_naming_the_push(httpserver, env, tmp_path, run_cli):
    httpserver.expect_request(MANIFEST_PATH).respond_with_json({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)
    (tmp_path / "cssr-init").mkdir()
    (tmp_path / "cssr-init" / verify_image.DIGEST_FILE).write_text(DIGEST)
    run = run_cli(["verify-image"], env)
    assert run.code == 1
    assert run.results == {}
    assert f"the registry has no such tag although this run pushed {DIGEST}" in run.err


def test_a_tag_holding_another_kernel_set_fails(httpserver, env, run_cli):
    serve_image(httpserver, set_id="000000000000")
    run = run_cli(["verify-image"], env)
    assert run.code == 1
    assert f"its label {verify_image.LABEL_SET_ID} is '000000000000', not {SET_ID}" in run.err


def test_a_registry_error_is_one_line_and_exit_1(httpserver, env, run_cli, monkeypatch):
    monkeypatch.setenv("CSSR_RETRY_ATTEMPTS", "2")
    httpserver.expect_request(MANIFEST_PATH).respond_with_data("", status=503)
    run = run_cli(["verify-image"], env)
    assert run.code == 1
    errors = [line for line in run.err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "answered 503 SERVICE UNAVAILABLE; retry later" in errors[0]
    assert "Traceback" not in run.err
    assert len(httpserver.log) == 2


@pytest.mark.parametrize(("change", "message"), [
    ({"PARAM_KERNEL_SET_ID": ""}, "param kernel-set-id is required"),
    ({"PARAM_IMAGE_REPOSITORY": "quay.io/a/b:tag"}, "must be a repository without tag or digest"),
    ({"PARAM_CONTEXT_DIR": "/abs"}, "must be a relative path inside the source workspace"),
    ({"PARAM_DOCKER_CONFIG": "/nope"}, "docker config /nope does not exist"),
], ids=["no-set-id", "tagged-repository", "absolute-context", "missing-docker-config"])
def test_bad_params_exit_2(env, run_cli, change, message):
    run = run_cli(["verify-image"], env | change)
    assert run.code == 2
    assert message in run.err


def test_flags_win_over_the_environment(httpserver, env, run_cli):
    other = "111111111111"
    httpserver.expect_request(f"/v2/cssr-deploy/cssr-init/manifests/{other}").respond_with_json(
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"digest": CONFIG_DIGEST}},
        headers={"Docker-Content-Digest": DIGEST})
    httpserver.expect_request(f"/v2/cssr-deploy/cssr-init/blobs/{CONFIG_DIGEST}").respond_with_json(
        {"config": {"Labels": {verify_image.LABEL_SET_ID: other}}})
    run = run_cli(["verify-image", "--kernel-set-id", other], env)
    assert run.code == 0, run.err
    assert run.results["image-url"].endswith(f":{other}")
