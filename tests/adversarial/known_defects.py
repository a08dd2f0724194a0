"""Defects the adversarial suite found in commands other helpers are fixing (issue 14 point 5).

Each (command, param) here runs as xfail(strict=True): a fix makes it pass, which fails the run
until the entry is removed. Run `pytest tests/adversarial -k "<command>:<param>" --runxfail` to
see every failing value and what went wrong. Temporary: the list must end empty.
"""

from __future__ import annotations

OPEN: set[tuple[str, str]] = {
    ("preflight", "node-selector"),
    ("preflight", "hugepages-request"),
    ("preflight", "pf-names"),
    ("preflight", "resource-name"),
    ("preflight", "image-repository"),
    ("render", "namespace"),
    ("render", "replicas"),
    ("render", "node-selector"),
    ("render", "pool"),
    ("render", "allow-control-plane"),
    ("render", "router-image"),
    ("render", "kmod-builder-image"),
    ("render", "init-image"),
    ("render", "init-image-digest"),
    ("render", "images-namespace"),
    ("render", "network-mode"),
    ("render", "networks"),
    ("render", "pf-names"),
    ("render", "num-vfs"),
    ("render", "resource-name"),
    ("render", "device-type"),
    ("render", "hugepages-size"),
    ("render", "hugepages-count"),
    ("render", "hugepages-request"),
    ("render", "hugepages-method"),
    ("render", "kernel-args"),
    ("render", "allow-kernel-args"),
    ("render", "cpu-reserved"),
    ("render", "cpu-isolated"),
    ("render", "cpu"),
    ("render", "memory"),
    ("render", "modules-storage-class"),
    ("render", "modules-size"),
    ("render", "data-storage-class"),
    ("render", "data-size"),
    ("render", "modules"),  # a param new in render: it fails as render's others do (render has no --results-dir)
    ("apply-manifests", "node-selector"),
    ("apply-manifests", "images-namespace"),
    ("apply-manifests", "pf-names"),
    ("apply-manifests", "kernel-args"),
    ("apply-manifests", "allow-kernel-args"),
    ("apply-manifests", "cpu-reserved"),
    ("apply-manifests", "cpu-isolated"),
    ("apply-manifests", "modules-storage-class"),
    ("apply-manifests", "data-storage-class"),
    ("apply-manifests", "gate-timeout"),
    ("apply-manifests", "rollout-timeout"),
    ("apply-manifests", "poll-interval"),
}
