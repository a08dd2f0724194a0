"""A small RBAC authorizer, to replay recorded API requests against the install's Roles and bindings.

It decides as the Kubernetes RBAC authorizer does (pkg/apis/rbac/v1/evaluation_helpers.go and
plugin/pkg/auth/authorizer/rbac): a rule allows a request when its verbs, apiGroups, resources
(`resource` or `resource/subresource`) and resourceNames (empty: any name) all match; a
ClusterRoleBinding grants its rules everywhere, a RoleBinding only for requests in its own
namespace. Requests are derived from the simulator's request log with the API server's own
attributes:
- a request on a Namespace object has that namespace as its namespace (endpoints/request/
  requestinfo.go: /api/v1/namespaces/<n> sets Namespace=<n>), so a Role reaches its own Namespace;
- a server-side apply that creates also needs `create`, by name (endpoints/handlers/patch.go);
- writing a RoleBinding needs `bind` on the role it refers to, unless the writer already holds every
  permission of that role where the binding applies (registry/rbac/rolebinding/policybased, the
  escalation check); that is decided here for roles whose rules are known.

Only ClusterRoles the install binds but does not define (OpenShift's) are described here, in
PLATFORM, from OpenShift's bootstrap policy; rules of our own never come from this file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

RBAC_GROUP = "rbac.authorization.k8s.io"

# OpenShift's ClusterRoles that the install binds without defining them.
PLATFORM: dict[str, list[dict[str, Any]]] = {
    # SCC admission lets a pod use an SCC when the pod's ServiceAccount (or its creator) may `use` it.
    "system:openshift:scc:privileged": [
        {"apiGroups": ["security.openshift.io"], "resources": ["securitycontextconstraints"],
         "resourceNames": ["privileged"], "verbs": ["use"]}],
    # The internal registry authorizes a pull as get, a push as update on imagestreams/layers, and
    # the first push to a new ImageStream as create on imagestreams.
    "system:image-builder": [
        {"apiGroups": ["", "image.openshift.io"], "resources": ["imagestreams/layers"], "verbs": ["get", "update"]},
        {"apiGroups": ["", "image.openshift.io"], "resources": ["imagestreams"], "verbs": ["create"]},
        {"apiGroups": ["", "build.openshift.io"], "resources": ["builds/details"], "verbs": ["update"]},
        {"apiGroups": ["", "build.openshift.io"], "resources": ["builds"], "verbs": ["get"]},
    ],
}


@dataclass(frozen=True)
class Request:
    """The attributes the authorizer sees; `why` says where the request came from."""

    verb: str
    group: str
    resource: str  # "pods", or "pods/log" for a subresource
    namespace: str | None
    name: str | None
    why: str = field(default="", compare=False)

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else " (cluster)"
        named = f" {self.name}" if self.name else ""
        group = self.group or "core"
        return f"{self.verb} {self.resource}.{group}{named}{where}" + (f" [{self.why}]" if self.why else "")


def requests_of(records: Iterable[Any], why: str = "") -> Iterator[Request]:
    """The authorization checks behind recorded requests (cssr_tasks.sim Recorded)."""
    for r in records:
        if not r.resource:
            continue
        resource = r.resource + (f"/{r.subresource}" if r.subresource else "")
        namespace = r.name if r.resource == "namespaces" and not r.group and r.name else r.namespace
        group = r.group or ""
        yield Request(r.verb, group, resource, namespace, r.name, why)
        if r.verb == "patch" and "apply-patch" in (r.content_type or "") and r.status == 201:
            yield Request("create", group, resource, namespace, r.name, why + " (an apply that created)")
        body = r.body if isinstance(r.body, dict) else {}
        ref = body.get("roleRef") or {}
        if r.resource in ("rolebindings", "clusterrolebindings") and r.verb in ("create", "update", "patch") and ref:
            role_resource = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
            yield Request("bind", RBAC_GROUP, role_resource,
                          namespace if r.resource == "rolebindings" else None, ref.get("name"),
                          why + f" (writes a binding to {ref.get('kind')} {ref.get('name')})")


@dataclass(frozen=True)
class Atom:
    """One thing a rule allows: a verb on a resource of a group, optionally by name."""

    role: str  # "ClusterRole x" or "Role ns/x"
    verb: str
    group: str
    resource: str
    name: str | None

    def __str__(self) -> str:
        named = f" {self.name}" if self.name else ""
        return f"{self.role}: {self.verb} {self.resource}.{self.group or 'core'}{named}"


def _matches(values: list[str], wanted: str) -> bool:
    return "*" in values or wanted in values


def _resource_matches(resources: list[str], wanted: str) -> bool:
    if "*" in resources or wanted in resources:
        return True
    base, _, sub = wanted.partition("/")
    return bool(sub) and (f"*/{sub}" in resources or f"{base}/*" in resources)


def rule_allows(rule: dict[str, Any], request: Request) -> bool:
    names = rule.get("resourceNames") or []
    return (_matches(rule.get("verbs") or [], request.verb)
            and _matches(rule.get("apiGroups") or [], request.group)
            and _resource_matches(rule.get("resources") or [], request.resource)
            and (not names or request.name in names))


def atoms(role: str, rule: dict[str, Any]) -> list[Atom]:
    return [Atom(role, verb, group, resource, name)
            for verb in rule.get("verbs") or [] for group in rule.get("apiGroups") or []
            for resource in rule.get("resources") or [] for name in (rule.get("resourceNames") or [None])]


def atom_used(atom: Atom, request: Request) -> bool:
    return (atom.verb == request.verb and atom.group == request.group and atom.resource == request.resource
            and atom.name in (None, request.name))


@dataclass
class Grant:
    """A role's rules as bound to the subject: everywhere (namespace None) or in one namespace."""

    role: str
    namespace: str | None
    rules: list[dict[str, Any]]
    ours: bool  # defined by the install (its unused rules are reported), or OpenShift's

    def allows(self, request: Request) -> bool:
        if self.namespace is not None and request.namespace != self.namespace:
            return False
        return any(rule_allows(rule, request) for rule in self.rules)


@dataclass
class Authorizer:
    grants: list[Grant]
    roles: dict[tuple[str, str | None, str], list[dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def for_service_account(cls, objects: Iterable[dict[str, Any]], name: str, namespace: str) -> Authorizer:
        """What the install's bindings grant ServiceAccount namespace/name."""
        objects = list(objects)
        roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects
                 if o.get("kind") in ("Role", "ClusterRole")}
        grants = []
        for binding in objects:
            if binding.get("kind") not in ("RoleBinding", "ClusterRoleBinding"):
                continue
            if not any(s.get("kind") == "ServiceAccount" and s.get("name") == name and s.get("namespace") == namespace
                       for s in binding.get("subjects") or []):
                continue
            scope = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else None
            ref = binding["roleRef"]
            key = (ref["kind"], scope if ref["kind"] == "Role" else None, ref["name"])
            if key in roles:
                label = f"{ref['kind']} {scope + '/' if ref['kind'] == 'Role' else ''}{ref['name']}"
                grants.append(Grant(label, scope, list(roles[key].get("rules") or []), ours=True))
            elif ref["kind"] == "ClusterRole" and ref["name"] in PLATFORM:
                grants.append(Grant(f"ClusterRole {ref['name']} (OpenShift)", scope, PLATFORM[ref["name"]], ours=False))
            else:
                raise AssertionError(f"{binding['kind']} {binding['metadata']['name']} refers to {ref['kind']} "
                                     f"{ref['name']}, which neither the install nor rbac.PLATFORM defines")
        known = {key: list(o.get("rules") or []) for key, o in roles.items()}
        known.update({("ClusterRole", None, name): rules for name, rules in PLATFORM.items()})
        return cls(grants, known)

    def allowed(self, request: Request) -> bool:
        if any(grant.allows(request) for grant in self.grants):
            return True
        return request.verb == "bind" and self.holds(request)

    def holds(self, bind: Request) -> bool:
        """The escalation check: the subject holds every permission of the role, where the binding applies."""
        kind = "ClusterRole" if bind.resource == "clusterroles" else "Role"
        rules = self.roles.get((kind, bind.namespace if kind == "Role" else None, bind.name or ""))
        if rules is None:
            return False
        return all(self.allowed(Request(a.verb, a.group, a.resource, bind.namespace, a.name))
                   for rule in rules for a in atoms("", rule))

    def denied(self, requests: Iterable[Request]) -> list[str]:
        return sorted({str(r) for r in requests if not self.allowed(r)})

    def unused(self, requests: Iterable[Request]) -> list[str]:
        """Each verb x group x resource x name of our own rules that no allowed request used, and each
        binding of an OpenShift role that allowed nothing."""
        requests = [r for r in requests if self.allowed(r)]
        found = []
        for grant in self.grants:
            if not grant.ours:
                if not any(grant.allows(r) for r in requests):
                    found.append(f"{grant.role}, bound in {grant.namespace or 'the cluster'}: allows no request")
                continue
            for rule in grant.rules:
                for atom in atoms(grant.role, rule):
                    if not any(atom_used(atom, r) and grant.namespace in (None, r.namespace) for r in requests):
                        found.append(str(atom))
        return sorted(set(found))
