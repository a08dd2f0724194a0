"""The one door to container registries: the v2 API over `requests`, as buildah and skopeo speak it.

Only this module imports `requests` for registries. It parses image references, finds the
credentials of a registry in a docker config file (the form Tekton mounts), follows whichever
challenge the registry answers with (Bearer token, as the OpenShift internal registry and quay.io
do, or Basic, as an htpasswd registry does), retries through the suite's one policy, and maps
every failure onto our own errors with a message that names the registry and the fix.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests
import urllib3

from .cluster import RetrySettings, error_for, retrying
from .errors import ApiError, ConfigError
from .log import Log

T = TypeVar("T")

# Accept every manifest type buildah, podman and docker push; a registry that stores an OCI
# manifest answers 404 to a client that does not accept OCI.
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)

DOCKER_HUB = "docker.io"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
                   r"|\[[0-9A-Fa-f:]+\])(?::\d{1,5})?")
_TAG = re.compile(r"\w[\w.-]{0,127}")
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}")
_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')


@dataclass(frozen=True)
class ImageRef:
    """`registry/repository[:tag][@digest]`, as buildah and podman read it."""

    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        rest = text.strip()
        problem = _reference_problem(rest)
        if problem:
            raise ConfigError(f"image reference {text!r} is not valid: {problem}; "
                              "use registry/namespace/name[:tag][@sha256:<digest>]")
        digest = ""
        if "@" in rest:
            rest, digest = rest.split("@", 1)
        tag = ""
        if rest.rfind(":") > rest.rfind("/"):
            rest, tag = rest.rsplit(":", 1)
        first, _, remainder = rest.partition("/")
        if remainder and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
            return cls(first, remainder, tag, digest)
        return cls(DOCKER_HUB, rest if "/" in rest else f"library/{rest}", tag, digest)

    def with_tag(self, tag: str) -> ImageRef:
        return ImageRef(self.registry, self.repository, tag, "")

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What the manifest endpoint is asked for: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def _reference_problem(text: str) -> str:
    if not text or any(c.isspace() for c in text):
        return "it is empty or holds whitespace"
    rest, _, digest = text.partition("@")
    if digest and not _DIGEST.fullmatch(digest):
        return f"digest {digest!r} is not algorithm:hex"
    if rest.rfind(":") > rest.rfind("/"):
        rest, tag = rest.rsplit(":", 1)
        if not _TAG.fullmatch(tag):
            return f"tag {tag!r} is not valid"
    first, _, remainder = rest.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        if not _HOST.fullmatch(first):
            return f"registry {first!r} is not host[:port]"
        rest = remainder
    if not _REPOSITORY.fullmatch(rest):
        return f"repository {rest!r} must be lowercase path components ([a-z0-9] separated by . _ - /)"
    return ""


# -- TLS and credentials ----------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    source: str = ""


def find_docker_config(explicit: str, environ: Mapping[str, str]) -> str:
    """The docker config to read: the one named, else the dockerconfig workspace, else the usual places.

    Tekton writes the ServiceAccount's registry secrets to $HOME/.docker/config.json; a bound
    `dockerconfig` workspace (a secret of type kubernetes.io/dockerconfigjson) holds
    `.dockerconfigjson` or `config.json`. Returns "" when there is none (anonymous access).
    """
    if explicit:
        return str(_config_in(Path(explicit), required=True))
    workspace = environ.get("WORKSPACE_DOCKERCONFIG_PATH", "")
    if workspace:
        return str(_config_in(Path(workspace), required=True))
    candidates = []
    if environ.get("DOCKER_CONFIG"):
        candidates.append(Path(environ["DOCKER_CONFIG"]) / "config.json")
    if environ.get("REGISTRY_AUTH_FILE"):
        candidates.append(Path(environ["REGISTRY_AUTH_FILE"]))
    if environ.get("HOME"):
        candidates.append(Path(environ["HOME"]) / ".docker" / "config.json")
    return next((str(p) for p in candidates if p.is_file()), "")


def _config_in(path: Path, *, required: bool) -> Path | None:
    if path.is_file():
        return path
    if path.is_dir():
        for name in ("config.json", ".dockerconfigjson", ".dockercfg"):
            if (path / name).is_file():
                return path / name
        if required:
            raise ConfigError(f"docker config directory {path} holds no config.json, .dockerconfigjson or "
                              ".dockercfg; bind the dockerconfig workspace to a kubernetes.io/dockerconfigjson secret")
        return None
    if required:
        raise ConfigError(f"docker config {path} does not exist; give the path of a config.json or of the "
                          "directory holding it")
    return None


def load_credentials(config_path: str, registry: str) -> Credentials | None:
    """The login for `registry` (host[:port]) in a docker config file, or None."""
    if not config_path:
        return None
    try:
        data = json.loads(Path(config_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"could not read docker config {config_path}: {e}; it must be a docker config.json") from e
    if not isinstance(data, dict):
        raise ConfigError(f"could not read docker config {config_path}: it is not a JSON object")
    # config.json nests logins under "auths"; the older .dockercfg is the bare map.
    auths = data.get("auths", data if "auths" not in data and "credsStore" not in data else {})
    if not isinstance(auths, dict):
        raise ConfigError(f"could not read docker config {config_path}: auths is not an object")
    wanted = _HUB_ALIASES if registry in _HUB_ALIASES else {registry}
    for key, entry in auths.items():
        if _auth_key_host(key) in wanted and isinstance(entry, dict):
            return _decode_entry(entry, config_path, key)
    return None


def _auth_key_host(key: str) -> str:
    """`https://quay.io/v1/`, `quay.io`, `quay.io/org` -> `quay.io`."""
    key = re.sub(r"^[a-z]+://", "", key.strip())
    return key.split("/", 1)[0]


def _decode_entry(entry: dict[str, Any], config_path: str, key: str) -> Credentials | None:
    username, password = str(entry.get("username") or ""), str(entry.get("password") or "")
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(str(entry["auth"]), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as e:
            raise ConfigError(f"could not read docker config {config_path}: the auth of {key} is not base64 "
                              "of user:password") from e
        username, _, password = decoded.partition(":")
    if not username and not password:
        return None
    return Credentials(username, password, config_path)


# -- the client -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    data: dict[str, Any]
    digest: str
    media_type: str


class _Authorization(requests.auth.AuthBase):
    """Sets one Authorization header; passing it as `auth` also keeps ~/.netrc out of the way."""

    def __init__(self, value: str) -> None:
        self.value = value

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self.value
        return request


class _TLSFailure(Exception):
    pass


class Registry:
    """One registry host, spoken to over the v2 API; use as a context manager."""

    def __init__(self, host: str, *, credentials: Credentials | None = None, tls_verify: bool | str = True,
                 log: Log | None = None, retry: RetrySettings | None = None, timeout: float = 30.0) -> None:
        self.host = host
        self.api_host = "registry-1.docker.io" if host in _HUB_ALIASES else host
        self.credentials = credentials
        self.verify = tls_verify
        self.log = log or Log("registry")
        self.retry = retry or RetrySettings.from_env(os.environ)
        self.timeout = timeout
        self.session = requests.Session()
        self._scheme = "https"
        self._tokens: dict[str, str] = {}
        self._basic: str | None = None

    @classmethod
    def for_image(cls, ref: ImageRef, *, docker_config: str, tls_verify: bool | str, log: Log,
                  retry: RetrySettings | None = None) -> Registry:
        credentials = load_credentials(docker_config, ref.registry)
        if credentials:
            log.info(f"registry {ref.registry}: login {credentials.username or '(token)'} from {docker_config}")
        else:
            log.info(f"registry {ref.registry}: no login in {docker_config or 'any docker config'}; anonymous")
        if tls_verify is False:
            log.info(f"registry {ref.registry}: TLS verification is off (tls-verify=false)")
        return cls(ref.registry, credentials=credentials, tls_verify=tls_verify, log=log, retry=retry)

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    # -- what the tasks ask ---------------------------------------------------------------

    def manifest_digest(self, ref: ImageRef) -> str | None:
        """The digest the registry serves for `ref`, from Docker-Content-Digest; None when absent."""
        what = f"look up {ref} in registry {self.host}"

        def once() -> str | None:
            response = self._exchange("HEAD", _manifest_path(ref), ref, what, accept=MANIFEST_TYPES)
            with response:
                if response.status_code == 404:
                    return None
                self._raise_for(response, what)
                digest = response.headers.get("Docker-Content-Digest", "")
            if _DIGEST.fullmatch(digest):
                return digest
            # Some registries leave the header off HEAD answers: the digest is the body's sha256.
            manifest = self._get_manifest(ref, what)
            return manifest.digest if manifest else None

        return self._with_retries(what, once)

    def manifest(self, ref: ImageRef) -> Manifest | None:
        what = f"read the manifest of {ref} from registry {self.host}"
        return self._with_retries(what, lambda: self._get_manifest(ref, what))

    def labels(self, ref: ImageRef) -> dict[str, str] | None:
        """The image's config labels; None when the image is absent or is a multi-arch index."""
        manifest = self.manifest(ref)
        if manifest is None or manifest.media_type in INDEX_TYPES:
            return None
        config = manifest.data.get("config") or {}
        digest = str(config.get("digest") or "")
        if not _DIGEST.fullmatch(digest):
            raise ApiError(f"could not read the config of {ref}: its manifest names no config blob", status=200)
        what = f"read the config of {ref} from registry {self.host}"

        def once() -> dict[str, Any]:
            response = self._exchange("GET", f"/v2/{ref.repository}/blobs/{digest}", ref, what)
            with response:
                self._raise_for(response, what)
                return _json_object(response, what)

        blob = self._with_retries(what, once)
        labels = (blob.get("config") or {}).get("Labels") or {}
        return {str(k): str(v) for k, v in labels.items()}

    # -- one exchange ---------------------------------------------------------------------

    def _get_manifest(self, ref: ImageRef, what: str) -> Manifest | None:
        response = self._exchange("GET", _manifest_path(ref), ref, what, accept=MANIFEST_TYPES)
        with response:
            if response.status_code == 404:
                return None
            self._raise_for(response, what)
            body = response.content
            data = _json_object(response, what)
            digest = response.headers.get("Docker-Content-Digest", "")
        if not _DIGEST.fullmatch(digest):
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
        media_type = str(data.get("mediaType") or response.headers.get("Content-Type", "").split(";")[0])
        return Manifest(data, digest, media_type)

    def _with_retries(self, what: str, once: Callable[[], T]) -> T:
        for attempt in retrying(self.retry, self.log, what):
            with attempt:
                return once()
        raise AssertionError("unreachable")  # pragma: no cover

    def _exchange(self, method: str, path: str, ref: ImageRef, what: str,
                  accept: tuple[str, ...] = ()) -> requests.Response:
        """One request, answering the registry's 401 challenge once."""
        scope = f"repository:{ref.repository}:pull"
        headers = {"Accept": ", ".join(accept)} if accept else {}
        response = self._api(method, path, headers, self._authorization(scope), what)
        if response.status_code != 401:
            return response
        if not self._answer(response.headers.get("WWW-Authenticate", ""), scope, what):
            return response  # nothing new to try: the caller reports the 401
        response.close()
        return self._api(method, path, headers, self._authorization(scope), what)

    def _authorization(self, scope: str) -> _Authorization | None:
        if scope in self._tokens:
            return _Authorization(f"Bearer {self._tokens[scope]}")
        return _Authorization(self._basic) if self._basic else None

    def _answer(self, challenge: str, scope: str, what: str) -> bool:
        """Act on a WWW-Authenticate challenge; False when there is nothing new to try."""
        scheme, _, rest = challenge.strip().partition(" ")
        params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
                  for m in _CHALLENGE_PARAM.finditer(rest)}
        if scheme.lower() == "bearer":
            if scope in self._tokens:
                return False
            self._tokens[scope] = self._token(params, scope, what)
            return True
        if scheme.lower() == "basic" and self.credentials and not self._basic:
            pair = f"{self.credentials.username}:{self.credentials.password}".encode()
            self._basic = "Basic " + base64.b64encode(pair).decode()
            return True
        return False

    def _token(self, params: Mapping[str, str], scope: str, what: str) -> str:
        realm = params.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise ApiError(f"could not {what}: registry {self.host} asked for a token without a usable realm "
                           f"({realm!r})", status=401)
        query = {"scope": params.get("scope") or scope}
        if params.get("service"):
            query["service"] = params["service"]
        auth = (self.credentials.username, self.credentials.password) if self.credentials else None
        response = self._send("GET", realm, what, params=query, auth=auth)
        with response:
            if response.status_code in (401, 403):
                raise error_for(401, f"could not {what}: the token service {realm} of registry {self.host} refused "
                                     f"{self._who()}; {self._fix()}")
            self._raise_for(response, f"get a token for {query['scope']} from {realm}")
            data = _json_object(response, f"get a token from {realm}")
        token = data.get("token") or data.get("access_token")
        if not isinstance(token, str) or not token:
            raise ApiError(f"could not {what}: the token service {realm} answered without a token", status=200)
        return token

    def _api(self, method: str, path: str, headers: dict[str, str], auth: _Authorization | None,
             what: str) -> requests.Response:
        # tls-verify=false also means "may be plain HTTP", as buildah and podman read it.
        may_fall_back = self.verify is False and self._scheme == "https"
        try:
            return self._send(method, f"{self._scheme}://{self.api_host}{path}", what, headers=headers, auth=auth,
                              tls_failure_ok=may_fall_back)
        except (_TLSFailure, ApiError) as e:
            if not may_fall_back:
                raise
            self.log.debug(f"registry {self.host}: no HTTPS ({e}); trying plain HTTP")
        self._scheme = "http"
        return self._send(method, f"http://{self.api_host}{path}", what, headers=headers, auth=auth)

    def _send(self, method: str, url: str, what: str, *, tls_failure_ok: bool = False,
              **kwargs: Any) -> requests.Response:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                return self.session.request(method, url, verify=self.verify, timeout=self.timeout,
                                            allow_redirects=True, **kwargs)
        except requests.exceptions.SSLError as e:
            if tls_failure_ok:
                raise _TLSFailure(_short(e)) from e
            raise ConfigError(f"could not {what}: the TLS handshake with registry {self.host} failed ({_short(e)}); "
                              "give tls-verify the path of the CA bundle that signs its certificate, or set "
                              "tls-verify=false for a registry that serves plain HTTP") from e
        except (requests.ConnectionError, requests.Timeout) as e:
            raise ApiError(f"could not {what}: cannot reach registry {self.host} ({_short(e)}); check the image "
                           "repository's host and port, the network, and a proxy if there is one", status=0) from e
        except requests.RequestException as e:
            raise ApiError(f"could not {what}: {_short(e)}", status=0) from e

    # -- errors ---------------------------------------------------------------------------

    def _raise_for(self, response: requests.Response, what: str) -> None:
        status = response.status_code
        if status < 400:
            return
        detail = _registry_message(response)
        if status == 401:
            message = (f"could not {what}: registry {self.host} answered 401 Unauthorized to {self._who()}; "
                       f"{self._fix()}")
        elif status == 403:
            message = (f"could not {what}: registry {self.host} denied {self._who()} ({detail or '403 Forbidden'}); "
                       "check that this login may pull and push the repository")
        elif status == 429 or status >= 500:
            message = (f"could not {what}: registry {self.host} answered {status} {response.reason}"
                       f"{': ' + detail if detail else ''}; retry later, or check the registry's health")
        else:
            message = f"could not {what}: registry {self.host} answered {status} {response.reason}" + (
                f": {detail}" if detail else "")
        raise error_for(status, message, _retry_after(response.headers.get("Retry-After")))

    def _who(self) -> str:
        if self.credentials:
            return f"the login {self.credentials.username or '(token)'} from {self.credentials.source}"
        return "an anonymous client (the docker config has no login for it)"

    def _fix(self) -> str:
        return (f"check the docker config for a login to {self.host} with push rights: the dockerconfig workspace "
                "or docker-config param, else the ServiceAccount's registry secret that Tekton writes to "
                "$HOME/.docker/config.json")


def _manifest_path(ref: ImageRef) -> str:
    return f"/v2/{ref.repository}/manifests/{ref.reference}"


def _json_object(response: requests.Response, what: str) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError as e:
        raise ApiError(f"could not {what}: the registry answered with something that is not JSON",
                       status=response.status_code) from e
    if not isinstance(data, dict):
        raise ApiError(f"could not {what}: the registry answered with JSON that is not an object",
                       status=response.status_code)
    return data


def _registry_message(response: requests.Response) -> str:
    """The first message of a registry error body: {"errors": [{"code", "message"}]}."""
    try:
        errors = response.json().get("errors") or []
        first = errors[0]
        return f"{first.get('code', '')} {first.get('message', '')}".strip()[:200]
    except (ValueError, AttributeError, IndexError, TypeError):
        return response.text[:200].strip() if response.text else ""


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _short(error: BaseException) -> str:
    """The reason inside a requests/urllib3 error chain, such as `[Errno 111] Connection refused`."""
    text = str(error)
    errno = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    if errno:
        return errno.group(0).strip()
    for marker in ("Caused by ", "Max retries exceeded"):
        if marker in text:
            text = text.split(marker, 1)[-1]
    return text.strip(" ()'\"")[:200]
