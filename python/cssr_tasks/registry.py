"""The one door to container registries: the v2 API over `requests`, as buildah and skopeo speak it.

Only this module imports `requests` for registries. It follows whichever challenge the registry
answers with (Bearer token, as the OpenShift internal registry and quay.io do, or Basic, as an
htpasswd registry does), trying the logins registry_refs.logins gives in order; follows manifest
lists to one architecture's image; reads one file out of an image's layers, streaming each layer
only as far as the file; retries through the suite's one policy; and maps every failure onto our
own errors with a message that names the registry and the fix. Redirects are followed by hand,
so that no credential ever goes to another host (a blob's redirect to S3 or a CDN gets none).
registry_manifests.py reads the manifests it fetches; registry_errors.py words its failures.
"""

from __future__ import annotations

import base64
import functools
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from . import image_layers
from .cluster import RetrySettings, error_for, retry_after_seconds, retrying
from .errors import ApiError, ConfigError
from .log import Log
from .registry_errors import login_fix, refusal, short, who
from .registry_manifests import (  # re-exported (__all__): the tasks and tests import them from here
    DOCKER_LIST,
    DOCKER_MANIFEST,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    FileInImage,
    Manifest,
    config_digest,
    labels_of,
    layers_of,
    platform_image,
)
from .registry_refs import (  # re-exported (__all__): the tasks import references through this door
    DIGEST,
    DOCKER_HUB,
    HUB_ALIASES,
    INTERNAL_REGISTRIES,
    SERVICE_ACCOUNT_TOKEN,
    Credentials,
    ImageRef,
    find_docker_config,
    load_credentials,
    logins,
)

__all__ = ["DIGEST", "DOCKER_HUB", "DOCKER_LIST", "DOCKER_MANIFEST", "INDEX_TYPES", "INTERNAL_REGISTRIES",
           "MANIFEST_TYPES", "OCI_INDEX", "OCI_MANIFEST", "SERVICE_ACCOUNT_TOKEN", "Credentials", "FileInImage",
           "ImageRef", "Manifest", "Registry", "Traffic", "find_docker_config", "load_credentials", "logins"]
T = TypeVar("T")

_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
# Overrides the token path (tests; a pod always has the kubelet's).
TOKEN_FILE_ENV = "CSSR_SA_TOKEN_FILE"


# -- the client -------------------------------------------------------------------------------


@dataclass
class Traffic:
    """What this client asked of registries: requests sent (redirects included) and body bytes read."""

    requests: int = 0
    bytes: int = 0


class _Authorization(requests.auth.AuthBase):
    """Sets one Authorization header, or none; passing it as `auth` also keeps ~/.netrc out of the way."""

    def __init__(self, value: str | None) -> None:
        self.value = value

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.value is None:
            request.headers.pop("Authorization", None)
        else:
            request.headers["Authorization"] = self.value
        return request


_NO_AUTH = _Authorization(None)


class _TLSFailure(Exception):
    pass


class Registry:
    """One registry host, spoken to over the v2 API; use as a context manager."""

    def __init__(self, host: str, *, credentials: Credentials | Sequence[Credentials] | None = None,
                 tls_verify: bool | str = True, log: Log | None = None, retry: RetrySettings | None = None,
                 timeout: float = 30.0) -> None:
        self.host = host
        self.api_host = "registry-1.docker.io" if host in HUB_ALIASES else host
        # Tried in order: a login the registry refuses gives way to the next (the token, then the docker config).
        self.logins = [credentials] if isinstance(credentials, Credentials) else list(credentials or [])
        self._login = 0
        self.verify = tls_verify
        self.traffic = Traffic()
        self.log = log or Log("registry")
        self.retry = retry or RetrySettings.from_env(os.environ)
        self.timeout = timeout
        self.session = requests.Session()
        self._scheme = "https"
        self._tokens: dict[str, str] = {}
        self._basic: str | None = None

    @classmethod
    def for_image(cls, ref: ImageRef, *, docker_config: str, tls_verify: bool | str, log: Log,
                  retry: RetrySettings | None = None, internal: bool = False) -> Registry:
        """A client for `ref`'s registry with its logins; `internal`: it is the cluster's registry."""
        found = logins(ref.registry, docker_config, internal=internal,
                       token_file=os.environ.get(TOKEN_FILE_ENV) or SERVICE_ACCOUNT_TOKEN)
        if found:
            tried = ", then ".join(f"{c.username or '(token)'} from {c.source}" for c in found)
            log.info(f"registry {ref.registry}: login {tried}")
        else:
            log.info(f"registry {ref.registry}: no login in {docker_config or 'any docker config'}; anonymous")
        if tls_verify is False:
            log.info(f"registry {ref.registry}: TLS verification is off (tls-verify=false)")
        return cls(ref.registry, credentials=found, tls_verify=tls_verify, log=log, retry=retry)

    @property
    def credentials(self) -> Credentials | None:
        """The login in use: the first, or the one a refusal moved on to."""
        return self.logins[self._login] if self.logins else None

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
            if DIGEST.fullmatch(digest):
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
        blob = self.config(ref)
        return None if blob is None else labels_of(blob)

    def config(self, ref: ImageRef) -> dict[str, Any] | None:
        """The image's config blob (labels, created); None when the image is absent or is a multi-arch index."""
        manifest = self.manifest(ref)
        if manifest is None or manifest.is_index:
            return None
        digest = config_digest(ref, manifest)
        what = f"read the config of {ref} from registry {self.host}"

        def once() -> dict[str, Any]:
            response = self._exchange("GET", f"/v2/{ref.repository}/blobs/{digest}", ref, what)
            with response:
                self._raise_for(response, what)
                return _json_object(response, what)

        return self._with_retries(what, once)

    def tags(self, repository: ImageRef) -> list[str]:
        """Every tag of the repository (the v2 tags list, page by page through its Link header); [] when none."""
        what = f"list the tags of {repository.name} in registry {self.host}"
        path: str | None = f"/v2/{repository.repository}/tags/list?n=1000"
        found: list[str] = []
        while path:
            def once(page: str = path) -> tuple[list[str], str | None]:
                response = self._exchange("GET", page, repository, what)
                with response:
                    if response.status_code == 404:
                        return [], None
                    self._raise_for(response, what)
                    tags = _json_object(response, what).get("tags") or []
                    following = response.links.get("next", {}).get("url")
                return [str(t) for t in tags], following

            page_tags, following = self._with_retries(what, once)
            found += page_tags
            path = following if following and following.startswith(f"/v2/{repository.repository}/tags/list") \
                else None
        return found

    def delete_manifest(self, ref: ImageRef) -> bool:
        """DELETE the manifest `ref` names by digest (every tag on it goes with it); False when already gone.

        A registry that does not allow deletes answers 405 (docker-registry without
        REGISTRY_STORAGE_DELETE_ENABLED=true): that is an ApiError with status 405, for the caller to report.
        """
        if not ref.digest:
            raise ConfigError(f"could not delete {ref}: a manifest is deleted by digest, and this reference has none")
        what = f"delete {ref} from registry {self.host}"

        def once() -> bool:
            response = self._exchange("DELETE", _manifest_path(ref), ref, what, action="delete")
            with response:
                if response.status_code == 404:
                    return False
                self._raise_for(response, what)
            return True

        return self._with_retries(what, once)

    def platform_manifest(self, ref: ImageRef, architecture: str) -> tuple[ImageRef, Manifest] | None:
        """The image of `ref` for linux/`architecture`: a manifest list or OCI index is followed to it."""
        manifest = self.manifest(ref)
        if manifest is None or not manifest.is_index:
            return (ref, manifest) if manifest else None
        child = platform_image(ref, manifest, architecture)
        found = self.manifest(child)
        if found is None or found.is_index:
            raise ApiError(f"could not read {child}: the manifest list of {ref} names it, but registry {self.host} "
                           "serves no image manifest for it", status=404)
        return child, found

    def read_file(self, ref: ImageRef, path: str, *, architecture: str = "amd64",
                  limit: int = 1 << 20) -> FileInImage | None:
        """The file `path` of the image, read from its layers through blob GETs, never a pull.

        The last layer first (the one a final COPY or RUN writes), then the earlier ones; each
        layer's tar stream is read only until the file shows, and a whiteout of it in a later
        layer ends the search. None when no layer holds it; NotFound when the image is absent.
        """
        resolved = self.platform_manifest(ref, architecture)
        if resolved is None:
            raise error_for(404, f"could not read {path} from {ref}: registry {self.host} has no such image")
        image, manifest = resolved
        layers = layers_of(manifest)
        wanted = path.strip("/")
        for index in range(len(layers) - 1, -1, -1):
            what = f"read layer {index + 1}/{len(layers)} of {image} from registry {self.host}"
            data, deleted = self._with_retries(what, functools.partial(
                self._search_layer, image, layers[index], wanted, limit=limit, what=what))
            if data is not None:
                self.log.debug(f"{wanted} found in layer {index + 1}/{len(layers)} of {image}")
                return FileInImage(data, image, index, len(layers))
            if deleted:
                break
        return None

    def _search_layer(self, image: ImageRef, layer: dict[str, Any], wanted: str, *, limit: int,
                      what: str) -> tuple[bytes | None, bool]:
        """(the file's bytes, None) when this layer holds it; (None, whether the layer deletes it)."""
        digest, media_type = str(layer.get("digest") or ""), str(layer.get("mediaType") or "")
        if not DIGEST.fullmatch(digest):
            raise ApiError(f"could not {what}: the manifest names a layer without a digest", status=200)
        if "zstd" in media_type:
            self.log.warn(f"layer {digest} of {image} is zstd-compressed, which this client does not read; skipped")
            return None, False
        response = self._exchange("GET", f"/v2/{image.repository}/blobs/{digest}", image, what, stream=True)
        with response:
            self._raise_for(response, what)
            try:
                found = image_layers.find(_Counted(response.raw, self.traffic), wanted, limit=limit)
            except (urllib3.exceptions.HTTPError, requests.RequestException) as e:
                raise ApiError(f"could not {what}: the transfer broke off ({short(e)})", status=0) from e
            except image_layers.LayerError as e:
                raise ApiError(f"could not {what}: layer {digest} {e}", status=200) from e
        return found.data, found.deleted

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
        return Manifest.received(body, data, digest, response.headers.get("Content-Type", ""))

    def _with_retries(self, what: str, once: Callable[[], T]) -> T:
        for attempt in retrying(self.retry, self.log, what):
            with attempt:
                return once()
        raise AssertionError("unreachable")  # pragma: no cover

    def _exchange(self, method: str, path: str, ref: ImageRef, what: str,
                  accept: tuple[str, ...] = (), *, stream: bool = False, action: str = "pull") -> requests.Response:
        """One request, answering the registry's 401 challenges while there is a login left to try."""
        scope = f"repository:{ref.repository}:{action}"
        headers = {"Accept": ", ".join(accept)} if accept else {}
        response = self._api(method, path, headers, self._authorization(scope), what, stream=stream)
        for _ in range(len(self.logins) + 1):
            if response.status_code != 401:
                return response
            if not self._answer(response.headers.get("WWW-Authenticate", ""), scope, what):
                return response  # nothing new to try: the caller reports the 401
            response.close()
            response = self._api(method, path, headers, self._authorization(scope), what, stream=stream)
        return response

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
                # The token of this login does not open the repository: the next login may.
                if not self._next_login("its token was refused"):
                    return False
                del self._tokens[scope]
            self._tokens[scope] = self._token(params, scope, what)
            return True
        if scheme.lower() == "basic" and self.credentials:
            if self._basic and not self._next_login("the registry refused it"):
                return False
            login = self.credentials
            self._basic = "Basic " + base64.b64encode(f"{login.username}:{login.password}".encode()).decode()
            return True
        return False

    def _next_login(self, why: str) -> bool:
        if self._login + 1 >= len(self.logins):
            return False
        self.log.info(f"registry {self.host}: login {self.credentials.username if self.credentials else ''} from "
                      f"{self.credentials.source if self.credentials else ''}: {why}; trying the next login")
        self._login += 1
        return True

    def _token(self, params: Mapping[str, str], scope: str, what: str) -> str:
        realm = params.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise ApiError(f"could not {what}: registry {self.host} asked for a token without a usable realm "
                           f"({realm!r})", status=401)
        query = {"scope": params.get("scope") or scope}
        if params.get("service"):
            query["service"] = params["service"]
        while True:
            login = self.credentials
            auth = requests.auth.HTTPBasicAuth(login.username, login.password) if login else _NO_AUTH
            response = self._send("GET", realm, what, params=query, auth=auth)
            with response:
                if response.status_code in (401, 403):
                    if self._next_login(f"the token service {realm} refused it"):
                        continue
                    raise error_for(401, f"could not {what}: the token service {realm} of registry {self.host} "
                                         f"refused {who(self.credentials)}; {login_fix(self.host)}")
                self._raise_for(response, f"get a token for {query['scope']} from {realm}")
                data = _json_object(response, f"get a token from {realm}")
            break
        token = data.get("token") or data.get("access_token")
        if not isinstance(token, str) or not token:
            raise ApiError(f"could not {what}: the token service {realm} answered without a token", status=200)
        return token

    def _api(self, method: str, path: str, headers: dict[str, str], auth: _Authorization | None,
             what: str, *, stream: bool = False) -> requests.Response:
        # tls-verify=false also means "may be plain HTTP", as buildah and podman read it.
        may_fall_back = self.verify is False and self._scheme == "https"
        try:
            return self._send(method, f"{self._scheme}://{self.api_host}{path}", what, headers=headers,
                              auth=auth or _NO_AUTH, tls_failure_ok=may_fall_back, stream=stream)
        except (_TLSFailure, ApiError) as e:
            if not may_fall_back:
                raise
            self.log.debug(f"registry {self.host}: no HTTPS ({e}); trying plain HTTP")
        self._scheme = "http"
        return self._send(method, f"http://{self.api_host}{path}", what, headers=headers, auth=auth or _NO_AUTH,
                          stream=stream)

    def _send(self, method: str, url: str, what: str, *, auth: requests.auth.AuthBase,
              params: Mapping[str, str] | None = None, tls_failure_ok: bool = False, stream: bool = False,
              headers: Mapping[str, str] | None = None) -> requests.Response:
        """One request and its redirects, followed by hand: the credentials go to the first URL's origin
        (scheme, host and port) only, never to storage or another host a registry redirects to."""
        origin = _origin(url)
        for _ in range(MAX_REDIRECTS + 1):
            response = self._once(method, url, what, auth=auth if _origin(url) == origin else _NO_AUTH,
                                  params=params, headers=headers, stream=stream, tls_failure_ok=tls_failure_ok)
            location = response.headers.get("Location")
            if response.status_code not in _REDIRECTS or not location:
                return response
            response.close()
            url, params = urljoin(response.url, location), None  # the query is in the first URL now
            method = "GET" if response.status_code == 303 else method
            self.log.debug(f"registry {self.host}: redirected to {_origin(url)}")
        raise ApiError(f"could not {what}: registry {self.host} redirected more than {MAX_REDIRECTS} times",
                       status=200)

    def _once(self, method: str, url: str, what: str, *, tls_failure_ok: bool, stream: bool,
              **kwargs: Any) -> requests.Response:
        self.traffic.requests += 1
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                response = self.session.request(method, url, verify=self.verify, timeout=self.timeout,
                                                allow_redirects=False, stream=stream, **kwargs)
            if not stream:
                self.traffic.bytes += len(response.content)
            return response
        except requests.exceptions.SSLError as e:
            if tls_failure_ok:
                raise _TLSFailure(short(e)) from e
            raise ConfigError(f"could not {what}: the TLS handshake with registry {self.host} failed ({short(e)}); "
                              "give tls-verify the path of the CA bundle that signs its certificate, or set "
                              "tls-verify=false for a registry that serves plain HTTP") from e
        except (requests.ConnectionError, requests.Timeout) as e:
            raise ApiError(f"could not {what}: cannot reach registry {self.host} ({short(e)}); check the image "
                           "repository's host and port, the network, and a proxy if there is one", status=0) from e
        except requests.RequestException as e:
            raise ApiError(f"could not {what}: {short(e)}", status=0) from e

    # -- errors ---------------------------------------------------------------------------

    def _raise_for(self, response: requests.Response, what: str) -> None:
        status = response.status_code
        if status < 400:
            return
        message = refusal(what, self.host, status, reason=response.reason, detail=_registry_message(response),
                          login=self.credentials)
        raise error_for(status, message, retry_after_seconds(response.headers.get("Retry-After")))


def _manifest_path(ref: ImageRef) -> str:
    return f"/v2/{ref.repository}/manifests/{ref.reference}"


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(parts.scheme)


class _Counted:
    """A read-only stream that adds what is read to the client's traffic."""

    def __init__(self, raw: Any, traffic: Traffic) -> None:
        self.raw = raw
        self.traffic = traffic

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.raw.read(size)
        self.traffic.bytes += len(data)
        return data


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
