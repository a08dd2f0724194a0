"""Image references and the logins for their registries: no network, only names and files.

`ImageRef` parses a reference as buildah and podman read it. The login of a registry comes from
a docker config file (the form Tekton mounts) and, for the cluster's own registry, from the pod's
service account token: OpenShift is removing the service account's dockercfg secret (API-1798),
and Tekton's credential initialisation reads only the secrets that `.secrets` lists, so the token
the kubelet mounts in every pod is the login that is always there. The client in registry.py tries
the logins in the order `logins` gives them.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .params import Reader

DOCKER_HUB = "docker.io"
HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
                   r"|\[[0-9A-Fa-f:]+\])(?::\d{1,5})?")
_TAG = re.compile(r"\w[\w.-]{0,127}")
DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}")


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
    if digest and not DIGEST.fullmatch(digest):
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


# -- credentials -------------------------------------------------------------------------------


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


def read_docker_config(read: Reader, environ: Mapping[str, str]) -> str:
    """The docker-config param, resolved as find_docker_config does; a problem is the param's."""
    try:
        return find_docker_config(read.path("docker-config"), environ)
    except ConfigError as e:
        read.fail(f"param docker-config: {e}")
        return ""


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
    auths = read_auths(config_path)
    wanted = HUB_ALIASES if registry in HUB_ALIASES else {registry}
    for key, entry in auths.items():
        if _auth_key_host(key) in wanted and isinstance(entry, dict):
            return _decode_entry(entry, config_path, key)
    return None


def read_auths(config_path: str) -> dict[str, Any]:
    """The logins of a docker config file, key -> entry, as the file holds them."""
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
    return auths


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



# -- the cluster's own registry ---------------------------------------------------------------

# The OpenShift internal registry as pods name it; a route to it is an ordinary registry.
INTERNAL_REGISTRIES = frozenset({"image-registry.openshift-image-registry.svc:5000",
                                 "image-registry.openshift-image-registry.svc.cluster.local:5000"})
SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
# The registry ignores the user name of a token login; `oc registry login` sends this one.
TOKEN_USER = "serviceaccount"


def logins(registry: str, docker_config: str, *, internal: bool = False,
           token_file: str = SERVICE_ACCOUNT_TOKEN) -> list[Credentials]:
    """The logins to try for `registry`, in order.

    For the cluster's registry (a known internal name, or `internal` when the caller knows it, as
    the ImageStream's dockerImageRepository tells detect-kernel), the service account token comes
    first and the docker config's login is the fallback. The token never goes to another registry:
    it is the pod's cluster credential.
    """
    found = []
    if internal or registry in INTERNAL_REGISTRIES:
        token = service_account_token(token_file)
        if token:
            found.append(token)
    config = load_credentials(docker_config, registry)
    if config:
        found.append(config)
    return found


def service_account_token(path: str = SERVICE_ACCOUNT_TOKEN) -> Credentials | None:
    """The pod's service account token as a login, or None when the pod has none mounted."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"could not read the service account token {path}: {e}; check the pod's "
                          "automountServiceAccountToken") from e
    return Credentials(TOKEN_USER, token, f"the service account token {path}") if token else None


# -- one login file for buildah ---------------------------------------------------------------

# The build pod's memory-backed emptyDir (tasks/cssr-build-init-image.yaml) for the login file that
# buildah reads: the token must not land on a workspace, which is a disk that outlives the pod.
AUTH_DIR = "/var/run/cssr-registry-auth"
AUTH_DIR_ENV = "CSSR_AUTH_DIR"  # overrides AUTH_DIR (tests; a build pod always has the volume)
AUTH_FILE = "auth.json"


def auth_dir(environ: Mapping[str, str]) -> Path | None:
    """The folder for the login file, or None where there is none (a run from a shell)."""
    path = Path(environ.get(AUTH_DIR_ENV) or AUTH_DIR)
    return path if path.is_dir() else None


def buildah_auths(docker_config: str, token: Credentials | None, *, refused: Iterable[str] = ()) -> dict[str, Any]:
    """The logins buildah gets (--authfile): the docker config's, with the pod's token for the cluster registry.

    The same rule as `logins`, in the one login per registry a file can hold: for each internal
    registry name the token replaces the docker config's login, unless the registry refused the
    token (`refused`: the hosts where the prepare step's own request fell back to the docker
    config). The token never goes to another registry.
    """
    auths = dict(read_auths(docker_config)) if docker_config else {}
    if token is None:
        return auths
    basic = base64.b64encode(f"{token.username}:{token.password}".encode()).decode()
    for host in sorted(INTERNAL_REGISTRIES - set(refused)):
        for key in [k for k in auths if _auth_key_host(k) == host]:
            del auths[key]
        auths[host] = {"auth": basic}
    return auths
