"""Schema validation of manifests: CRD schemas from .cache/crds (`make crds`, pinned in
crds/go.mod; or $CSSR_CRD_DIR) and the
Kubernetes schemas of `kubernetes-validate`. Used by the lint gate and by the render tests.

Strict mode rejects unknown fields wherever a schema lists `properties` without
`x-kubernetes-preserve-unknown-fields`, which is what catches a misspelt `scirpt:`.
"""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.37"
REPO = Path(__file__).resolve().parents[2]

# OpenShift kinds served by aggregated APIs, not CRDs: no public schema exists to validate
# them against, so they get a structural check of the fields we rely on.
STRUCTURAL: dict[tuple[str, str], list[str]] = {
    ("image.openshift.io/v1", "ImageStream"): ["metadata.name"],
    ("build.openshift.io/v1", "BuildConfig"): ["metadata.name", "spec.strategy", "spec.output"],
    ("route.openshift.io/v1", "Route"): ["metadata.name", "spec.to"],
}


def crd_dir() -> Path:
    return Path(os.environ.get("CSSR_CRD_DIR") or REPO / ".cache" / "crds")


def _strict(schema: Any) -> Any:
    """OpenAPI v3 -> JSON Schema: nullable becomes a null type, and objects with listed
    properties refuse unknown ones unless they preserve unknown fields."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        props = out["properties"]
        out["additionalProperties"] = False
        # metadata is validated by the API server's ObjectMeta, not the CRD schema
        if "metadata" in props and "apiVersion" in props:
            props["metadata"] = {"type": "object"}
    return out


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> JSON schema, for every served version of every CRD."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    root = crd_dir()
    if not root.is_dir():
        raise FileNotFoundError(f"CRD schemas not found at {root}; run `make crds` (or set CSSR_CRD_DIR)")
    for path in sorted(root.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                schema = version.get("schema", {}).get("openAPIV3Schema")
                if schema:
                    key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                    strict = _strict(copy.deepcopy(schema))
                    # The API server accepts these on every object, whether the root schema lists them or not.
                    for field, kind in (("apiVersion", "string"), ("kind", "string"), ("metadata", "object")):
                        strict.setdefault("properties", {}).setdefault(field, {"type": kind})
                    schemas[key] = strict
    return schemas


def _get(obj: dict[str, Any], dotted: str) -> Any:
    value: Any = obj
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def validate_object(obj: dict[str, Any]) -> list[str]:
    """Every problem with one manifest, as readable lines; [] when it is valid."""
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    name = (obj.get("metadata") or {}).get("name", "?")
    where = f"{kind} {name}"
    schema = crd_schemas().get((api_version, kind))
    if schema is not None:
        validator = jsonschema.Draft7Validator(schema)
        return [f"{where}: {'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
                for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.path)))]
    if (api_version, kind) in STRUCTURAL:
        return [f"{where}: {field} is required" for field in STRUCTURAL[(api_version, kind)]
                if _get(obj, field) in (None, "", {})]
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{where}: no schema for {api_version} {kind} (neither a CRD in {crd_dir()} nor a Kubernetes kind)"]
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path) or "<root>"
        return [f"{where}: {path}: {e.message}"]
    return []


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
