"""cssr_tasks.registry: image references, docker config logins, and the v2 client's flows and errors.

HTTP behaviour runs against pytest-httpserver (a Bearer token flow as the OpenShift internal
registry and quay.io answer it, 500, 429, 403, odd bodies) and against the real registry of the
image tests for Basic auth; every failure ends in one of our errors with a message naming the
registry and the fix, never in a requests or urllib3 exception.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from werkzeug import Request, Response

from cssr_tasks.cluster import RetrySettings
from cssr_tasks.errors import ApiError, ConfigError, CssrError, Forbidden, NotFound
from cssr_tasks.registry import (
    DOCKER_MANIFEST,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    Credentials,
    ImageRef,
    Registry,
    find_docker_config,
    load_credentials,
    logins,
)
from cssr_tasks.sim.images import RegistryServer, free_port

from .conftest import PASSWORD, USER

DIGEST = "sha256:" + "b" * 64
CONFIG_DIGEST = "sha256:" + "c" * 64
RETRY = RetrySettings(attempts=3, wait_initial=0)


# -- image references ----------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("image-registry.openshift-image-registry.svc:5000/cssr/cssr-init",
     ("image-registry.openshift-image-registry.svc:5000", "cssr/cssr-init", "", "")),
    ("quay.io/openshift-release-dev/ocp-v4.0-art-dev@" + DIGEST,
     ("quay.io", "openshift-release-dev/ocp-v4.0-art-dev", "", DIGEST)),
    ("registry.access.redhat.com/ubi9/ubi-micro:9.8-1786321990@" + DIGEST,
     ("registry.access.redhat.com", "ubi9/ubi-micro", "9.8-1786321990", DIGEST)),
    ("127.0.0.1:5000/ns/name:v1", ("127.0.0.1:5000", "ns/name", "v1", "")),
    ("localhost/cssr-init:abc", ("localhost", "cssr-init", "abc", "")),
    ("busybox", ("docker.io", "library/busybox", "", "")),
    ("example/app:1.0", ("docker.io", "example/app", "1.0", "")),
], ids=["internal-registry", "dtk-by-digest", "tag-and-digest", "ip-port", "localhost", "hub-official", "hub-user"])
def test_image_references_parse_as_buildah_reads_them(text, expected):
    ref = ImageRef.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == expected
    assert ImageRef.parse(str(ref)) == ref


@pytest.mark.parametrize(("text", "problem"), [
    ("", "empty"),
    ("quay.io/Org/App", "must be lowercase"),
    ("quay.io/org/app:bad tag", "whitespace"),
    ("quay.io/org/app@sha256:xyz", "digest"),
    ("quay.io/org/app:-x", "tag '-x' is not valid"),
    ("bad_host:99999999/x", "registry"),
], ids=["empty", "uppercase", "space", "bad-digest", "bad-tag", "bad-port"])
def test_bad_image_references_are_config_errors(text, problem):
    with pytest.raises(ConfigError, match="is not valid") as caught:
        ImageRef.parse(text)
    assert problem in str(caught.value)


def test_with_tag_drops_the_digest():
    ref = ImageRef.parse("quay.io/a/b:1@" + DIGEST).with_tag("abcdef012345")
    assert str(ref) == "quay.io/a/b:abcdef012345"
    assert ref.reference == "abcdef012345"


# -- TLS and docker config -------------------------------------------------------------------


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(("auths", "registry", "expected"), [
    ({"auths": {"quay.io": {"auth": b64("robot:tok:en")}}}, "quay.io", ("robot", "tok:en")),
    ({"auths": {"https://quay.io/v1/": {"auth": b64("u:p")}}}, "quay.io", ("u", "p")),
    ({"auths": {"reg.example:5000": {"username": "u", "password": "p"}}}, "reg.example:5000", ("u", "p")),
    ({"auths": {"reg.example:5000": {"auth": b64("u:p")}}}, "reg.example", None),
    ({"auths": {"reg.example": {"auth": b64("u:p")}}}, "reg.example:5000", None),
    ({"auths": {"https://index.docker.io/v1/": {"auth": b64("hub:p")}}}, "docker.io", ("hub", "p")),
    ({"image-registry.openshift-image-registry.svc:5000": {"auth": b64("serviceaccount:eyJ")}},
     "image-registry.openshift-image-registry.svc:5000", ("serviceaccount", "eyJ")),
    ({"auths": {"quay.io/org/repo": {"auth": b64("u:p")}}}, "quay.io", ("u", "p")),
    ({"auths": {"quay.io": {"auth": ""}}}, "quay.io", None),
], ids=["auth-base64", "url-key", "username-password", "port-must-match", "port-must-match-2", "docker-hub",
        "legacy-dockercfg", "repository-key", "empty-entry"])
def test_logins_are_matched_by_host_and_port(tmp_path, auths, registry, expected):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(auths))
    found = load_credentials(str(path), registry)
    assert (found and (found.username, found.password)) == (expected or None)
    if found:
        assert found.source == str(path)
        assert "password" not in repr(found)


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "could not read docker config"),
    ('{"auths": {"quay.io": {"auth": "%%%"}}}', "is not base64 of user:password"),
    ('{"auths": []}', "auths is not an object"),
], ids=["not-json", "bad-base64", "auths-not-object"])
def test_broken_docker_config_is_a_config_error(tmp_path, content, message):
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_credentials(str(path), "quay.io")


def test_docker_config_is_found_where_tekton_puts_it(tmp_path):
    workspace, explicit, home = tmp_path / "ws", tmp_path / "explicit", tmp_path / "home"
    for directory, name in ((workspace, ".dockerconfigjson"), (explicit, "config.json"),
                            (home / ".docker", "config.json")):
        directory.mkdir(parents=True)
        (directory / name).write_text("{}")
    env = {"WORKSPACE_DOCKERCONFIG_PATH": str(workspace), "HOME": str(home)}
    assert find_docker_config(str(explicit), env) == str(explicit / "config.json")
    assert find_docker_config("", env) == str(workspace / ".dockerconfigjson")
    assert find_docker_config("", {"WORKSPACE_DOCKERCONFIG_PATH": "", "HOME": str(home)}) == str(
        home / ".docker" / "config.json")
    assert find_docker_config("", {"HOME": str(tmp_path / "nobody")}) == ""
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no config.json, .dockerconfigjson or .dockercfg"):
        find_docker_config("", {"WORKSPACE_DOCKERCONFIG_PATH": str(tmp_path / "empty")})


# -- the v2 client against pytest-httpserver ----------------------------------------------------


def client(httpserver, log, credentials: Credentials | None = None, tls_verify: bool | str = False) -> Registry:
    return Registry(f"localhost:{httpserver.port}", credentials=credentials, tls_verify=tls_verify, log=log,
                    retry=RETRY)


def ref_on(httpserver, reference: str = ":abcdef012345") -> ImageRef:
    return ImageRef.parse(f"localhost:{httpserver.port}/cssr-deploy/cssr-init{reference}")


def test_bearer_challenge_flow_as_the_openshift_registry_answers(httpserver, log):
    """401 with a Bearer challenge -> token from the realm with the login as Basic -> retry with the token."""
    realm = httpserver.url_for("/openshift/token")
    seen: list[Request] = []

    def manifests(request: Request) -> Response:
        seen.append(request)
        if request.headers.get("Authorization") != "Bearer tok-123":
            challenge = (f'Bearer realm="{realm}",service="image-registry",'
                         'scope="repository:cssr-deploy/cssr-init:pull"')
            return Response(status=401, headers={"WWW-Authenticate": challenge})
        return Response(status=200, headers={"Docker-Content-Digest": DIGEST, "Content-Type": OCI_MANIFEST})

    def token(request: Request) -> Response:
        seen.append(request)
        return Response(json.dumps({"token": "tok-123", "expires_in": 300}), content_type="application/json")

    httpserver.expect_request("/v2/cssr-deploy/cssr-init/manifests/abcdef012345").respond_with_handler(manifests)
    httpserver.expect_request("/openshift/token").respond_with_handler(token)
    with client(httpserver, log, Credentials("serviceaccount", "sa-token", "config.json")) as registry:
        assert registry.manifest_digest(ref_on(httpserver)) == DIGEST
        assert registry.manifest_digest(ref_on(httpserver)) == DIGEST  # the token is reused
    first, token_request, retried, reused = seen
    assert first.method == "HEAD" and "Authorization" not in first.headers
    assert set(first.headers["Accept"].split(", ")) == set(MANIFEST_TYPES)
    assert token_request.args.to_dict() == {"scope": "repository:cssr-deploy/cssr-init:pull", "service": "image-registry"}
    assert token_request.headers["Authorization"] == "Basic " + b64("serviceaccount:sa-token")
    assert retried.headers["Authorization"] == reused.headers["Authorization"] == "Bearer tok-123"


def test_anonymous_bearer_token_for_a_public_repository(httpserver, log):
    realm = httpserver.url_for("/token")

    def manifests(request: Request) -> Response:
        if request.headers.get("Authorization") != "Bearer anon":
            return Response(status=401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="quay.io"'})
        return Response(status=404)

    httpserver.expect_request("/v2/cssr-deploy/cssr-init/manifests/abcdef012345").respond_with_handler(manifests)
    httpserver.expect_request("/token").respond_with_json({"access_token": "anon"})
    with client(httpserver, log) as registry:
        assert registry.manifest_digest(ref_on(httpserver)) is None
    token_request = httpserver.log[1][0]
    assert "Authorization" not in token_request.headers
    assert token_request.args["scope"] == "repository:cssr-deploy/cssr-init:pull"


def test_token_service_refusing_the_login_is_a_clear_401(httpserver, log):
    realm = httpserver.url_for("/token")
    httpserver.expect_request("/v2/cssr-deploy/cssr-init/manifests/abcdef012345").respond_with_response(
        Response(status=401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="s"'}))
    httpserver.expect_request("/token").respond_with_data("no", status=401)
    with client(httpserver, log, Credentials("me", "bad", "/ws/.dockerconfigjson")) as registry, \
            pytest.raises(Forbidden) as caught:
        registry.manifest_digest(ref_on(httpserver))
    assert caught.value.status == 401
    message = str(caught.value)
    assert f"the token service {realm} of registry localhost:{httpserver.port} refused the login me from " \
           "/ws/.dockerconfigjson" in message
    assert "check the docker config for a login" in message


def test_500_is_retried_then_reported_in_one_line(httpserver, log):
    httpserver.expect_request("/v2/cssr-deploy/cssr-init/manifests/abcdef012345").respond_with_json(
        {"errors": [{"code": "UNKNOWN", "message": "storage backend unavailable"}]}, status=500)
    with client(httpserver, log) as registry, pytest.raises(ApiError) as caught:
        registry.manifest_digest(ref_on(httpserver))
    assert caught.value.status == 500
    assert len(httpserver.log) == RETRY.attempts
    assert str(caught.value) == (
        f"could not look up localhost:{httpserver.port}/cssr-deploy/cssr-init:abcdef012345 in registry "
        f"localhost:{httpserver.port}: registry localhost:{httpserver.port} answered 500 INTERNAL SERVER ERROR; "
        "retry later, or check the registry's health")
    assert "attempt 1/3" in log.text and "attempt 2/3" in log.text


def test_429_honours_retry_after_and_then_succeeds(httpserver, log):
    path = "/v2/cssr-deploy/cssr-init/manifests/abcdef012345"
    httpserver.expect_ordered_request(path).respond_with_response(
        Response(status=429, headers={"Retry-After": "0"}))
    httpserver.expect_ordered_request(path).respond_with_response(
        Response(status=200, headers={"Docker-Content-Digest": DIGEST}))
    with client(httpserver, log) as registry:
        assert registry.manifest_digest(ref_on(httpserver)) == DIGEST
    assert "attempt 1/3" in log.text and "429" in log.text


def test_403_names_the_login_and_is_not_retried(httpserver, log):
    httpserver.expect_request("/v2/cssr-deploy/cssr-init/manifests/abcdef012345").respond_with_json(
        {"errors": [{"code": "DENIED", "message": "requested access to the resource is denied"}]}, status=403)
    with client(httpserver, log, Credentials("u", "p", "cfg.json")) as registry, pytest.raises(Forbidden) as caught:
        registry.manifest(ref_on(httpserver))  # a GET: HEAD answers carry no error body
    assert len(httpserver.log) == 1
    assert "denied the login u from cfg.json (DENIED requested access to the resource is denied)" in str(caught.value)


def test_head_without_digest_header_falls_back_to_the_body_hash(httpserver, log):
    body = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                       "config": {"digest": CONFIG_DIGEST}}).encode()
    httpserver.expect_request("/v2/cssr-deploy/cssr-init/manifests/abcdef012345", method="HEAD").respond_with_data(
        b"", status=200)
    httpserver.expect_request("/v2/cssr-deploy/cssr-init/manifests/abcdef012345", method="GET").respond_with_data(
        body, status=200, content_type=DOCKER_MANIFEST)
    with client(httpserver, log) as registry:
        assert registry.manifest_digest(ref_on(httpserver)) == "sha256:" + hashlib.sha256(body).hexdigest()


def test_labels_come_from_the_config_blob(httpserver, log):
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"digest": CONFIG_DIGEST}}
    httpserver.expect_request("/v2/cssr-deploy/cssr-init/manifests/abcdef012345").respond_with_json(
        manifest, headers={"Docker-Content-Digest": DIGEST})
    httpserver.expect_request(f"/v2/cssr-deploy/cssr-init/blobs/{CONFIG_DIGEST}").respond_with_json(
        {"config": {"Labels": {"cssr-deploy.kernel-set-id": "abcdef012345"}}})
    with client(httpserver, log) as registry:
        assert registry.labels(ref_on(httpserver)) == {"cssr-deploy.kernel-set-id": "abcdef012345"}
        manifest_read = registry.manifest(ref_on(httpserver))
    assert manifest_read is not None and manifest_read.digest == DIGEST


def test_an_index_has_no_labels_to_read(httpserver, log):
    httpserver.expect_request("/v2/cssr-deploy/cssr-init/manifests/abcdef012345").respond_with_json(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
    with client(httpserver, log) as registry:
        assert registry.labels(ref_on(httpserver)) is None


@pytest.mark.parametrize("body", [b"<html>proxy error</html>", b"[1, 2]"], ids=["not-json", "not-an-object"])
def test_odd_bodies_become_api_errors(httpserver, log, body):
    httpserver.expect_request("/v2/cssr-deploy/cssr-init/manifests/abcdef012345").respond_with_data(body)
    with client(httpserver, log) as registry, pytest.raises(ApiError, match="answered with"):
        registry.manifest(ref_on(httpserver))


def test_tls_verification_against_a_plain_http_registry_says_what_to_set(httpserver, log):
    with client(httpserver, log, tls_verify=True) as registry, pytest.raises(ConfigError) as caught:
        registry.manifest_digest(ref_on(httpserver))
    assert f"the TLS handshake with registry localhost:{httpserver.port} failed" in str(caught.value)
    assert "set tls-verify=false for a registry that serves plain HTTP" in str(caught.value)


def test_unreachable_registry_is_retried_then_reported(log):
    port = free_port()
    with Registry(f"127.0.0.1:{port}", tls_verify=True, log=log, retry=RETRY) as registry, \
            pytest.raises(ApiError) as caught:
        registry.manifest_digest(ImageRef.parse(f"127.0.0.1:{port}/a/b:c"))
    assert caught.value.status == 0
    assert f"cannot reach registry 127.0.0.1:{port} ([Errno 111] Connection refused)" in str(caught.value)
    assert log.text.count("failed: could not look up") == RETRY.attempts - 1


# -- Basic auth on the real registry -----------------------------------------------------------


def test_basic_auth_on_the_real_registry(auth_registry: RegistryServer, seeded, log):
    base = ImageRef.parse(seeded.base_image)
    login = Credentials(USER, PASSWORD, "test")
    with Registry(auth_registry.host, credentials=login, tls_verify=False, log=log, retry=RETRY) as registry:
        assert registry.manifest_digest(base) == base.digest
        assert registry.manifest_digest(base.with_tag("no-such-tag")) is None
    with Registry(auth_registry.host, tls_verify=False, log=log, retry=RETRY) as anonymous, \
            pytest.raises(Forbidden, match="answered 401 Unauthorized to an anonymous client"):
        anonymous.manifest_digest(base)
    wrong = Credentials(USER, "wrong", "/ws/config.json")
    with Registry(auth_registry.host, credentials=wrong, tls_verify=False, log=log, retry=RETRY) as registry, \
            pytest.raises(CssrError, match="to the login pipeline from /ws/config.json"):
        registry.manifest_digest(base)


def test_docker_config_of_the_fixture_is_what_buildah_reads(auth_registry: RegistryServer, tmp_path: Path):
    path = auth_registry.docker_config(tmp_path)
    assert load_credentials(str(path), auth_registry.host) == Credentials(USER, PASSWORD, str(path))


# -- redirects, logins of the cluster registry, files in layers ----------------------------------


def test_a_redirect_to_another_host_carries_no_credential(httpserver, log):
    """Blob GETs are redirected to storage (S3, a CDN): the login stays with the registry's own origin."""
    from pytest_httpserver import HTTPServer

    storage = HTTPServer(host="127.0.0.1", port=0)  # another origin: another port
    storage.start()
    try:
        storage.expect_request("/bucket/manifest").respond_with_data(
            json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"digest": CONFIG_DIGEST}}),
            content_type=OCI_MANIFEST)
        httpserver.expect_request("/v2/cssr-deploy/cssr-init/manifests/abcdef012345").respond_with_response(
            Response(status=307, headers={"Location": storage.url_for("/bucket/manifest")}))
        with client(httpserver, log, Credentials("u", "p", "cfg")) as registry:
            registry._basic = "Basic " + b64("u:p")  # a login already answered a challenge
            assert registry.manifest(ref_on(httpserver)) is not None
        assert httpserver.log[0][0].headers.get("Authorization") == "Basic " + b64("u:p")
        assert "Authorization" not in storage.log[0][0].headers
    finally:
        storage.clear()
        storage.stop()


def test_a_redirect_loop_ends_in_one_clear_error(httpserver, log):
    path = "/v2/cssr-deploy/cssr-init/manifests/abcdef012345"
    httpserver.expect_request(path).respond_with_response(Response(status=302, headers={"Location": path}))
    with client(httpserver, log) as registry, pytest.raises(ApiError, match="redirected more than 5 times"):
        registry.manifest(ref_on(httpserver))


def test_the_token_goes_only_to_the_cluster_registry(tmp_path):
    token = tmp_path / "token"
    token.write_text("eyJ-token\n")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {"quay.io": {"auth": b64("robot:pw")},
                                            "image-registry.openshift-image-registry.svc:5000": {
                                                "auth": b64("u:old-dockercfg")}}}))
    internal = logins("image-registry.openshift-image-registry.svc:5000", str(config), token_file=str(token))
    assert [(c.username, c.password) for c in internal] == [("serviceaccount", "eyJ-token"), ("u", "old-dockercfg")]
    assert [(c.username, c.password) for c in logins("quay.io", str(config), token_file=str(token))] == [
        ("robot", "pw")]
    assert logins("127.0.0.1:5000", "", internal=True, token_file=str(tmp_path / "none")) == []


def test_a_refused_token_falls_back_to_the_docker_config_on_the_real_registry(auth_registry: RegistryServer, seeded,
                                                                              log):
    """The cluster registry's logins: the token first; when the registry refuses it, the docker config's."""
    base = ImageRef.parse(seeded.base_image)
    token = Credentials("serviceaccount", "expired-token", "the service account token /t")
    config = Credentials(USER, PASSWORD, "/ws/config.json")
    with Registry(auth_registry.host, credentials=[token, config], tls_verify=False, log=log,
                  retry=RETRY) as registry:
        assert registry.manifest_digest(base) == base.digest
        assert registry.credentials == config
    assert "login serviceaccount from the service account token /t: the registry refused it; trying the next" \
           in log.text
    with Registry(auth_registry.host, credentials=[token], tls_verify=False, log=log, retry=RETRY) as registry, \
            pytest.raises(Forbidden, match="to the login serviceaccount from the service account token /t"):
        registry.manifest_digest(base)


def test_the_token_login_on_the_real_registry(auth_registry: RegistryServer, seeded, log, tmp_path, monkeypatch):
    """Registry.for_image with the pod's token (the htpasswd registry stands in for the cluster's: the
    token is the password) and no docker config at all."""
    token = tmp_path / "token"
    token.write_text(PASSWORD)
    monkeypatch.setattr("cssr_tasks.registry_refs.TOKEN_USER", USER)  # htpasswd checks the user; OpenShift does not
    monkeypatch.setenv("CSSR_SA_TOKEN_FILE", str(token))
    base = ImageRef.parse(seeded.base_image)
    with Registry.for_image(base, docker_config="", tls_verify=False, log=log, internal=True) as registry:
        assert registry.manifest_digest(base) == base.digest
    assert f"login {USER} from the service account token {token}" in log.text


def test_a_file_is_read_from_an_earlier_layer_and_a_whiteout_hides_it(open_registry: RegistryServer, tmp_path, log):
    """The last layer is read first; the file is looked for below it only when that layer lacks it."""
    from cssr_tasks.sim import oci
    from cssr_tasks.sim.images import release_layer

    lower = release_layer(tmp_path / "lower", "5.14.0-1.el9.x86_64")
    upper = tmp_path / "upper" / "usr"
    upper.mkdir(parents=True)
    (upper / "payload.bin").write_bytes(b"x" * 1000)
    hidden = tmp_path / "hidden" / "etc"
    hidden.mkdir(parents=True)
    (hidden / ".wh.driver-toolkit-release.json").write_text("")
    found_ref = ImageRef.parse(f"{open_registry.host}/t/dtk@"
                               + oci.push_rootfs(lower, f"{open_registry.host}/t/dtk:a", {}, top=upper.parent))
    hidden_ref = ImageRef.parse(f"{open_registry.host}/t/dtk@"
                                + oci.push_rootfs(lower, f"{open_registry.host}/t/dtk:b", {}, top=hidden.parent))
    with Registry(open_registry.host, tls_verify=False, log=log, retry=RETRY) as registry:
        found = registry.read_file(found_ref, "/etc/driver-toolkit-release.json")
        assert found is not None and (found.layer, found.layers) == (0, 2)
        assert json.loads(found.data)["KERNEL_VERSION"] == "5.14.0-1.el9.x86_64"
        assert registry.read_file(hidden_ref, "/etc/driver-toolkit-release.json") is None
        with pytest.raises(NotFound, match="has no such image"):
            registry.read_file(found_ref.with_tag("missing"), "/etc/driver-toolkit-release.json")
