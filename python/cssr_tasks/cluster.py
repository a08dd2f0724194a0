"""The one door to the Kubernetes API.

Only this module imports `kubernetes`. It speaks plain dicts over `ApiClient.call_api`, which
starts in a third of the time of the generated API classes (every step is a fresh process),
and it owns the retry policy, pagination, server-side apply and the mapping of every HTTP or
connection failure onto our own errors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlencode

import tenacity
import urllib3
import yaml
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from .errors import ApiError, ConfigError, Conflict, CssrError, Forbidden, NotFound
from .log import Log
from .params import Reader

FIELD_MANAGER = "cssr-deploy"

# kind -> (plural, namespaced). Anything we render or read is listed; an unknown kind is a
# programming error, caught by the tests that apply every rendered object.
KINDS: dict[str, tuple[str, bool]] = {
    "Namespace": ("namespaces", False),
    "Node": ("nodes", False),
    "ClusterRole": ("clusterroles", False),
    "ClusterRoleBinding": ("clusterrolebindings", False),
    "CustomResourceDefinition": ("customresourcedefinitions", False),
    "MachineConfig": ("machineconfigs", False),
    "MachineConfigPool": ("machineconfigpools", False),
    "PerformanceProfile": ("performanceprofiles", False),
    "SecurityContextConstraints": ("securitycontextconstraints", False),
    "ClusterVersion": ("clusterversions", False),
    "Image": ("images", False),
    "PersistentVolume": ("persistentvolumes", False),
    "ServiceAccount": ("serviceaccounts", True),
    "Secret": ("secrets", True),
    "ConfigMap": ("configmaps", True),
    "Role": ("roles", True),
    "RoleBinding": ("rolebindings", True),
    "PersistentVolumeClaim": ("persistentvolumeclaims", True),
    "Pod": ("pods", True),
    "Service": ("services", True),
    "StatefulSet": ("statefulsets", True),
    "DaemonSet": ("daemonsets", True),
    "Deployment": ("deployments", True),
    "ControllerRevision": ("controllerrevisions", True),
    "NetworkPolicy": ("networkpolicies", True),
    "ImageStream": ("imagestreams", True),
    "ImageStreamTag": ("imagestreamtags", True),
    "BuildConfig": ("buildconfigs", True),
    "SriovNetworkNodePolicy": ("sriovnetworknodepolicies", True),
    "SriovNetwork": ("sriovnetworks", True),
    "SriovNetworkNodeState": ("sriovnetworknodestates", True),
    "NetworkAttachmentDefinition": ("network-attachment-definitions", True),
    "Task": ("tasks", True),
    "Pipeline": ("pipelines", True),
    "PipelineRun": ("pipelineruns", True),
    "TaskRun": ("taskruns", True),
    "EventListener": ("eventlisteners", True),
    "TriggerBinding": ("triggerbindings", True),
    "TriggerTemplate": ("triggertemplates", True),
    "Route": ("routes", True),
}


@dataclass(frozen=True)
class RetrySettings:
    """How hard we try before a transient failure becomes the step's error."""

    attempts: int = 5
    wait_initial: float = 0.5
    wait_max: float = 8.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> RetrySettings:
        # Tests set CSSR_RETRY_WAIT=0 so that retry paths cost no time.
        read = Reader(environ, settings=True)
        attempts = read.integer("CSSR_RETRY_ATTEMPTS", cls.attempts, minimum=1, maximum=100)
        wait = read.seconds("CSSR_RETRY_WAIT", cls.wait_initial, maximum=600)
        wait_max = read.seconds("CSSR_RETRY_WAIT_MAX", cls.wait_max, maximum=3600)
        read.done()
        return cls(attempts=attempts, wait_initial=wait, wait_max=max(wait, wait_max) if wait else 0.0)


def is_retryable(error: BaseException) -> bool:
    return isinstance(error, ApiError) and (error.status in {0, 429} or error.status >= 500)


class _RetryAfterOrBackoff(tenacity.wait.wait_base):
    """Exponential backoff that honours a server's Retry-After, within the configured cap."""

    def __init__(self, settings: RetrySettings) -> None:
        self.settings = settings
        self.backoff = tenacity.wait_exponential(multiplier=settings.wait_initial, max=settings.wait_max)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        if not self.settings.wait_initial:
            return 0.0
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return float(min(retry_after, self.settings.wait_max))
        return float(self.backoff(retry_state))


def retrying(settings: RetrySettings, log: Log, what: str) -> tenacity.Retrying:
    """The suite's one retry policy: connection errors, timeouts, 429 and 5xx, bounded and logged."""

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.info(f"attempt {state.attempt_number}/{settings.attempts} to {what} failed: {error}; "
                 f"retrying in {wait:.1f}s")

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_retryable),
        stop=tenacity.stop_after_attempt(max(1, settings.attempts)),
        wait=_RetryAfterOrBackoff(settings),
        before_sleep=before_sleep,
        reraise=True,
    )


def error_for(status: int, message: str, retry_after: float | None = None) -> ApiError:
    """Map an HTTP status onto our error hierarchy (the only place that does)."""
    cls: type[ApiError] = {404: NotFound, 409: Conflict, 403: Forbidden, 401: Forbidden}.get(status, ApiError)
    error = cls(message, status=status)
    error.retry_after = retry_after  # type: ignore[attr-defined]
    return error


def resource_path(api_version: str, plural: str, *, namespace: str | None = None,
                  name: str | None = None, subresource: str | None = None) -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = base + (f"/namespaces/{quote(namespace)}" if namespace else "") + f"/{plural}"
    if name:
        path += f"/{quote(name)}"
    if subresource:
        path += f"/{subresource}"
    return path


def kind_info(kind: str) -> tuple[str, bool]:
    try:
        return KINDS[kind]
    except KeyError:
        raise CssrError(f"kind {kind} is unknown to cssr_tasks.cluster.KINDS; add it there") from None


def describe(api_version: str, plural: str, name: str | None, namespace: str | None) -> str:
    where = f"{namespace}/" if namespace else ""
    return f"{plural}.{api_version} {where}{name}" if name else f"{plural}.{api_version}" + (
        f" in {namespace}" if namespace else "")


class Cluster:
    """A Kubernetes API endpoint, spoken to in dicts."""

    def __init__(self, api_client: k8s_client.ApiClient, *, log: Log | None = None,
                 retry: RetrySettings | None = None) -> None:
        self.api = api_client
        self.log = log or Log("cluster")
        self.retry = retry or RetrySettings.from_env(os.environ)

    @classmethod
    def connect(cls, kubeconfig: str | None = None, *, log: Log | None = None,
                retry: RetrySettings | None = None, verify_tls: bool = True) -> Cluster:
        """From a kubeconfig file, else `$KUBECONFIG`, else the pod's in-cluster account."""
        cfg = k8s_client.Configuration()
        path = kubeconfig or os.environ.get("KUBECONFIG")
        try:
            if path:
                k8s_config.load_kube_config(config_file=path, client_configuration=cfg)  # type: ignore[no-untyped-call]
            else:
                k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        except (k8s_config.ConfigException, OSError, ValueError, TypeError, yaml.YAMLError) as e:
            source = f"kubeconfig {path}" if path else "the in-cluster service account"
            raise ConfigError(f"could not load {source}: {e}; pass --kubeconfig or set KUBECONFIG") from e
        return cls.from_configuration(cfg, log=log, retry=retry, verify_tls=verify_tls)

    @classmethod
    def at(cls, host: str, *, log: Log | None = None, retry: RetrySettings | None = None) -> Cluster:
        """An unauthenticated endpoint, such as the simulated cluster."""
        cfg = k8s_client.Configuration()
        cfg.host = host.rstrip("/")
        return cls.from_configuration(cfg, log=log, retry=retry)

    @classmethod
    def from_configuration(cls, cfg: k8s_client.Configuration, *, log: Log | None = None,
                           retry: RetrySettings | None = None, verify_tls: bool = True) -> Cluster:
        # Our tenacity policy is the only retry layer; urllib3's own retries would hide
        # failures from the log and multiply the attempts.
        cfg.retries = urllib3.Retry(total=0, redirect=0, raise_on_status=False)
        if not verify_tls:
            cfg.verify_ssl = False
        return cls(k8s_client.ApiClient(cfg), log=log, retry=retry)

    @property
    def host(self) -> str:
        return str(self.api.configuration.host)

    # -- raw requests ---------------------------------------------------------------------

    def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                body: Any = None, content_type: str | None = None, what: str = "",
                timeout: float | tuple[float, float] | None = 30, text: bool = False) -> Any:
        """One API call with the retry policy; returns the decoded JSON body (or the text)."""
        what = what or f"{method} {path}"
        for attempt in retrying(self.retry, self.log, what):
            with attempt:
                return self._request_once(method, path, query=query, body=body,
                                          content_type=content_type, what=what, timeout=timeout, text=text)
        raise AssertionError("unreachable")  # pragma: no cover

    def read_text(self, path: str, *, query: Mapping[str, Any] | None = None, what: str = "") -> str:
        """GET an endpoint that answers text, such as pods/<name>/log."""
        return str(self.request("GET", path, query=query, what=what, text=True))

    def _send(self, method: str, path: str, *, query: Mapping[str, Any] | None, body: Any,
              content_type: str | None, what: str, timeout: Any, stream: bool = False) -> Any:
        url = self.host + path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        elif body is not None:
            headers["Content-Type"] = "application/json"
        self.api.update_params_for_auth(headers, None, ["BearerToken"], path, method, body)
        try:
            if stream:
                return self.api.rest_client.pool_manager.request(
                    method, url, headers=headers, preload_content=False, timeout=_timeout(timeout))
            return self.api.call_api(method, url, header_params=headers, body=body, _request_timeout=timeout)
        except (urllib3.exceptions.HTTPError, k8s_client.ApiException, OSError) as e:
            raise ApiError(f"could not {what}: cannot reach {self.host} ({_short(e)}); "
                           "check the API URL, the network and the credentials", status=0) from e

    def _request_once(self, method: str, path: str, *, query: Mapping[str, Any] | None, body: Any,
                      content_type: str | None, what: str, timeout: Any, text: bool = False) -> Any:
        response = self._send(method, path, query=query, body=body, content_type=content_type,
                              what=what, timeout=timeout)
        data = response.read()
        status = int(response.status)
        if status >= 400:
            raise error_for(status, f"could not {what}: {status} {_status_message(data)}",
                            retry_after_seconds(response.getheader("Retry-After")))
        if text:
            return data.decode("utf-8", "replace")
        if not data:
            return {}
        try:
            return json.loads(data)
        except ValueError as e:
            raise ApiError(f"could not {what}: the API answered with something that is not JSON",
                           status=status) from e

    # -- typed verbs ----------------------------------------------------------------------

    def get(self, api_version: str, plural: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        path = resource_path(api_version, plural, namespace=namespace, name=name)
        result: dict[str, Any] = self.request("GET", path, what=f"get {describe(api_version, plural, name, namespace)}")
        return result

    def get_or_none(self, api_version: str, plural: str, name: str,
                    namespace: str | None = None) -> dict[str, Any] | None:
        try:
            return self.get(api_version, plural, name, namespace)
        except NotFound:
            return None

    def list(self, api_version: str, plural: str, *, namespace: str | None = None,
             label_selector: str | None = None, field_selector: str | None = None,
             page_size: int = 500) -> list[dict[str, Any]]:
        """Every object, fetched page by page (limit/continue) so large clusters stay cheap."""
        items: list[dict[str, Any]] = []
        token: str | None = None
        path = resource_path(api_version, plural, namespace=namespace)
        what = f"list {describe(api_version, plural, None, namespace)}"
        while True:
            query = {"limit": page_size, "continue": token, "labelSelector": label_selector or None,
                     "fieldSelector": field_selector or None}
            page = self.request("GET", path, query=query, what=what)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        api_version, plural, name, namespace = _identity(obj)
        path = resource_path(api_version, plural, namespace=namespace)
        result: dict[str, Any] = self.request(
            "POST", path, body=dict(obj), what=f"create {describe(api_version, plural, name, namespace)}")
        return result

    def apply(self, obj: Mapping[str, Any], *, field_manager: str = FIELD_MANAGER, force: bool = True,
              dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply: create or update only the fields we own."""
        api_version, plural, name, namespace = _identity(obj)
        path = resource_path(api_version, plural, namespace=namespace, name=name)
        query = {"fieldManager": field_manager, "force": "true" if force else None,
                 "dryRun": "All" if dry_run else None}
        result: dict[str, Any] = self.request(
            "PATCH", path, query=query, body=dict(obj), content_type="application/apply-patch+yaml",
            what=f"apply {describe(api_version, plural, name, namespace)}")
        return result

    def patch(self, api_version: str, plural: str, name: str, patch: Any, *, namespace: str | None = None,
              subresource: str | None = None, patch_type: str = "merge") -> dict[str, Any]:
        content_type = {"merge": "application/merge-patch+json", "json": "application/json-patch+json",
                        "strategic": "application/strategic-merge-patch+json"}[patch_type]
        path = resource_path(api_version, plural, namespace=namespace, name=name, subresource=subresource)
        result: dict[str, Any] = self.request(
            "PATCH", path, body=patch, content_type=content_type,
            what=f"patch {describe(api_version, plural, name, namespace)}")
        return result

    def replace(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """PUT: optimistic concurrency through metadata.resourceVersion (409 when stale)."""
        api_version, plural, name, namespace = _identity(obj)
        path = resource_path(api_version, plural, namespace=namespace, name=name)
        result: dict[str, Any] = self.request(
            "PUT", path, body=dict(obj), what=f"replace {describe(api_version, plural, name, namespace)}")
        return result

    def delete(self, api_version: str, plural: str, name: str, namespace: str | None = None) -> None:
        path = resource_path(api_version, plural, namespace=namespace, name=name)
        try:
            self.request("DELETE", path, what=f"delete {describe(api_version, plural, name, namespace)}")
        except NotFound:
            pass

    def watch(self, api_version: str, plural: str, *, resource_version: str | None = None,
              namespace: str | None = None, label_selector: str | None = None,
              timeout_seconds: int = 300) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield (type, object) events; a 410 Gone raises ApiError(status=410) for a relist."""
        path = resource_path(api_version, plural, namespace=namespace)
        what = f"watch {describe(api_version, plural, None, namespace)}"
        query = {"watch": "true", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                 "labelSelector": label_selector, "timeoutSeconds": timeout_seconds}
        response = self._send("GET", path, query=query, body=None, content_type=None, what=what,
                              timeout=(10, timeout_seconds + 10), stream=True)
        try:
            if response.status >= 400:
                data = response.read()
                raise error_for(response.status, f"could not {what}: {response.status} {_status_message(data)}")
            buffer = b""
            try:
                for chunk in response.stream(4096, decode_content=True):
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        if line.strip():
                            event = json.loads(line)
                            if event.get("type") == "ERROR":
                                obj = event.get("object") or {}
                                raise error_for(int(obj.get("code") or 500),
                                                f"could not {what}: {obj.get('message', 'watch error')}")
                            yield event["type"], event["object"]
            except (urllib3.exceptions.HTTPError, OSError) as e:
                raise ApiError(f"could not {what}: the stream broke ({_short(e)})", status=0) from e
        finally:
            response.release_conn()


def _identity(obj: Mapping[str, Any]) -> tuple[str, str, str, str | None]:
    kind = obj.get("kind", "")
    plural, namespaced = kind_info(kind)
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace") if namespaced else None
    if namespaced and not namespace:
        raise CssrError(f"{kind} {meta.get('name')} has no metadata.namespace")
    return obj.get("apiVersion", ""), plural, meta.get("name", ""), namespace


def _timeout(timeout: Any) -> urllib3.Timeout:
    if isinstance(timeout, tuple):
        return urllib3.Timeout(connect=timeout[0], read=timeout[1])
    return urllib3.Timeout(total=timeout)


def _status_message(data: bytes) -> str:
    try:
        status = json.loads(data)
        return str(status.get("message") or status.get("reason") or "")[:300]
    except (ValueError, AttributeError):
        return data[:200].decode("utf-8", "replace")


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header in seconds, by RFC 9110 section 10.2.3: delay-seconds (ASCII digits) or an
    HTTP-date; None for anything else. float() would take "nan", "inf" and "-1", which time.sleep refuses
    with a traceback, and min() with the cap keeps a NaN. The registry client reads the header here too."""
    text = (value or "").strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return float(int(text)) if len(text) <= 12 else 1e12  # the retry policy's cap applies afterwards
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    from datetime import datetime
    if when.tzinfo is None:  # "-0000": a time in UTC whose source zone is unknown (RFC 5322)
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _short(error: BaseException) -> str:
    text = str(error)
    reason = getattr(error, "reason", None)
    if reason is not None and isinstance(error, urllib3.exceptions.MaxRetryError):
        text = str(reason)
    return text[:200]
