"""buildah's registry logins: the pod's service account token for the cluster registry, the docker config for the rest.

The prepare step of tasks/cssr-build-init-image.yaml writes one login file into the pod's memory
volume, the build step hands it to buildah (--authfile) for bud's pulls and the push, and the
verify step removes it. Against the real htpasswd registry of the image tests, which stands in for
the cluster registry: it takes any user with the right password, so a token file holding the
password is a token it accepts (the user name is set to the htpasswd user, as OpenShift ignores it).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from cssr_tasks import build_init_image, kernels, registry_refs
from cssr_tasks.registry_refs import INTERNAL_REGISTRIES, Credentials, buildah_auths
from cssr_tasks.sim.images import Buildah, RegistryServer, Seed

from .conftest import KERNELS, PASSWORD, USER
from .taskrun import load_task, python_step, run_task

INTERNAL = "image-registry.openshift-image-registry.svc:5000"
TOKEN = Credentials("serviceaccount", "eyJ-token", "the service account token /t")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def docker_config(path: Path, auths: dict[str, str]) -> str:
    path.write_text(json.dumps({"auths": {host: {"auth": b64(pair)} for host, pair in auths.items()}}))
    return str(path)


# -- the rule, on files ---------------------------------------------------------------------


def test_the_token_replaces_the_docker_config_only_for_the_cluster_registry(tmp_path):
    config = docker_config(tmp_path / "config.json", {"quay.io": "robot:pw", f"https://{INTERNAL}/v1/": "u:old",
                                                      "127.0.0.1:5000": "me:pw"})
    auths = buildah_auths(config, TOKEN)
    token_entry = {"auth": b64("serviceaccount:eyJ-token")}
    assert {host: auths[host] for host in INTERNAL_REGISTRIES} == dict.fromkeys(INTERNAL_REGISTRIES, token_entry)
    assert f"https://{INTERNAL}/v1/" not in auths, "the docker config's login for the cluster registry is replaced"
    assert auths["quay.io"] == {"auth": b64("robot:pw")}
    assert auths["127.0.0.1:5000"] == {"auth": b64("me:pw")}
    assert len(auths) == len(INTERNAL_REGISTRIES) + 2


def test_a_registry_that_refused_the_token_keeps_the_docker_config_login(tmp_path):
    config = docker_config(tmp_path / "config.json", {INTERNAL: "u:from-config"})
    auths = buildah_auths(config, TOKEN, refused={INTERNAL})
    assert auths[INTERNAL] == {"auth": b64("u:from-config")}
    other = next(iter(INTERNAL_REGISTRIES - {INTERNAL}))
    assert auths[other] == {"auth": b64("serviceaccount:eyJ-token")}


def test_without_a_token_the_docker_config_is_taken_as_it_is(tmp_path):
    config = docker_config(tmp_path / ".dockercfg", {})
    (tmp_path / ".dockercfg").write_text(json.dumps({INTERNAL: {"auth": b64("u:legacy")}}))  # the bare old format
    assert buildah_auths(config, None) == {INTERNAL: {"auth": b64("u:legacy")}}
    assert buildah_auths("", None) == {}


# -- the Task, against the real registry --------------------------------------------------------


@pytest.fixture
def cluster_registry(auth_registry: RegistryServer, monkeypatch, tmp_path) -> Path:
    """The htpasswd registry plays the cluster's: its host counts as internal, the pod has a token for it, and a
    memory volume for the login file. Returns the login folder."""
    monkeypatch.setattr(registry_refs, "INTERNAL_REGISTRIES", INTERNAL_REGISTRIES | {auth_registry.host})
    monkeypatch.setattr(registry_refs, "TOKEN_USER", USER)  # htpasswd checks the user; OpenShift does not
    folder = tmp_path / "registry-auth"
    folder.mkdir()
    monkeypatch.setenv(registry_refs.AUTH_DIR_ENV, str(folder))
    return folder


def with_token(monkeypatch, path: Path, token: str) -> None:
    path.write_text(token + "\n")
    monkeypatch.setenv("CSSR_SA_TOKEN_FILE", str(path))


def task_params(registry: RegistryServer, seed: Seed, repository: str) -> dict[str, str]:
    return {"kernel-versions": json.dumps(KERNELS), "kernel-set-id": kernels.kernel_set_id(KERNELS),
            "dtk-images": json.dumps({k: seed.dtk_images[k] for k in KERNELS}),
            "image-repository": f"{registry.host}/{repository}", "base-image": seed.base_image, "tls-verify": "false"}


def run_until_verify(params: dict[str, str], root: Path, dockerconfig: Path | None):
    """prepare and build, as the Task runs them; verify is run by the test, after it read the login file."""
    task = load_task()
    task["spec"]["steps"] = [s for s in task["spec"]["steps"] if s["name"] != "verify"]
    store = Buildah(root / "store" / "root", root / "store" / "runroot")
    return run_task(params, {"source": root / "workspace", "dockerconfig": dockerconfig}, root / "results",
                    {**store.env_for_build_script(), "HOME": str(root / "home")}, task=task)


def verify(params: dict[str, str], root: Path, dockerconfig: Path | None) -> tuple[int, str]:
    env = {"PARAM_" + k.upper().replace("-", "_"): params[k] for k in ("kernel-set-id", "image-repository",
                                                                      "tls-verify")}
    env |= {"PARAM_CONTEXT_DIR": "cssr-init", "WORKSPACE_SOURCE_PATH": str(root / "workspace"),
            "HOME": str(root / "home")}
    if dockerconfig:
        env["WORKSPACE_DOCKERCONFIG_PATH"] = str(dockerconfig)
    code, _, err = python_step(["verify-image"], env, root / "results")
    return code, err


def login_file(folder: Path) -> dict[str, dict[str, str]]:
    path = folder / registry_refs.AUTH_FILE
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    return dict(json.loads(path.read_text())["auths"])


def test_buildah_pushes_with_the_token_when_the_docker_config_login_is_stale(
        auth_registry, seeded, cluster_registry, monkeypatch, tmp_path):
    """The docker config's password is wrong: only the token (first, as for the Python client) lets the push in."""
    with_token(monkeypatch, tmp_path / "token", PASSWORD)
    stale = tmp_path / "dockerconfig"
    auth_registry.docker_config(stale, name=".dockerconfigjson", password="stale")
    config = json.loads((stale / ".dockerconfigjson").read_text())
    config["auths"]["quay.io"] = {"auth": b64("robot:pw")}
    (stale / ".dockerconfigjson").write_text(json.dumps(config))
    params = task_params(auth_registry, seeded, "cssr-deploy/login-token")
    mark = auth_registry.log_size()
    run = run_until_verify(params, tmp_path, stale)
    auth_registry.settle()
    assert run.ok, run.log

    auths = login_file(cluster_registry)
    token_entry = {"auth": b64(f"{USER}:{PASSWORD}")}
    assert auths[auth_registry.host] == token_entry
    assert auths["quay.io"] == {"auth": b64("robot:pw")}, "other registries keep the docker config's login"
    assert {h for h, entry in auths.items() if entry == token_entry} == registry_refs.INTERNAL_REGISTRIES
    context = tmp_path / "workspace" / "cssr-init"
    assert (context / build_init_image.AUTHFILE_FILE).read_text() == str(cluster_registry / registry_refs.AUTH_FILE)
    set_id = params["kernel-set-id"]
    assert any(w.startswith(f"PUT /v2/cssr-deploy/login-token/manifests/{set_id}") for w in
               auth_registry.writes_since(mark))
    assert "buildah logs in with the service account token for" in run.step("prepare").err

    code, err = verify(params, tmp_path, stale)
    assert code == 0, err
    assert not (cluster_registry / registry_refs.AUTH_FILE).exists(), "the token outlived the build"


def test_a_refused_token_leaves_buildah_the_docker_config_login(
        auth_registry, seeded, cluster_registry, monkeypatch, tmp_path):
    """The registry refuses the token (expired, say): prepare's own request fell back to the docker config, and
    buildah gets that login for the registry, as the Python client did."""
    with_token(monkeypatch, tmp_path / "token", "expired-token")
    auth_registry.docker_config(tmp_path / "dockerconfig", name=".dockerconfigjson")
    params = task_params(auth_registry, seeded, "cssr-deploy/login-fallback")
    mark = auth_registry.log_size()
    run = run_until_verify(params, tmp_path, tmp_path / "dockerconfig")
    auth_registry.settle()
    assert run.ok, run.log
    auths = login_file(cluster_registry)
    assert auths[auth_registry.host] == {"auth": b64(f"{USER}:{PASSWORD}")}
    assert f"{auth_registry.host} refused the service account token" in run.step("prepare").err
    assert any(w.startswith("PUT /v2/cssr-deploy/login-fallback/manifests/") for w in auth_registry.writes_since(mark))


def test_outside_a_build_pod_no_login_file_is_written(auth_registry, seeded, monkeypatch, tmp_path,
                                                      docker_config_dir):
    """No memory volume (a run from a shell): the token stays off the disk, buildah gets the docker config."""
    with_token(monkeypatch, tmp_path / "token", PASSWORD)
    monkeypatch.setattr(registry_refs, "INTERNAL_REGISTRIES", INTERNAL_REGISTRIES | {auth_registry.host})
    monkeypatch.setattr(registry_refs, "TOKEN_USER", USER)
    monkeypatch.setenv(registry_refs.AUTH_DIR_ENV, str(tmp_path / "no-such-folder"))
    env = {"PARAM_" + k.upper().replace("-", "_"): v
           for k, v in task_params(auth_registry, seeded, "cssr-deploy/login-shell").items()}
    env |= {"PARAM_CONTEXT_DIR": str(tmp_path / "ctx"), "WORKSPACE_DOCKERCONFIG_PATH": str(docker_config_dir)}
    code, _, err = python_step(["build-init-image"], env, tmp_path / "results")
    assert code == 0, err
    assert (tmp_path / "ctx" / build_init_image.AUTHFILE_FILE).read_text() == str(
        docker_config_dir / ".dockerconfigjson")
    assert "buildah logs in with the docker config only" in err
    assert sorted(p.name for p in tmp_path.rglob("*.json")) == [], "a login file was written"
