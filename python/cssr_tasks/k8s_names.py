"""Kubernetes' rules for names and labels, as the API server enforces them.

From k8s.io/apimachinery/pkg/util/validation/validation.go: a DNS-1123 label (IsDNS1123Label) is
at most 63 characters, DNS1123LabelMaxLength (namespaces, and names that become host names or
label values); a DNS-1123 subdomain (IsDNS1123Subdomain), labels joined by dots, at most 253,
DNS1123SubdomainMaxLength (most objects: Secrets, MachineConfigPools, custom resources). A label
key (IsQualifiedName) is an optional subdomain prefix and `/`, then a name of at most 63
characters (qualifiedNameMaxLength) of letters, digits, `-`, `_` and `.`, starting and ending with
a letter or digit; a label value (IsValidLabelValue) is empty or such a name.

A value is checked here before it reaches a manifest, a request or an error message, so that a
bad one is refused with its param's name instead of by the API server after other writes.
"""

from __future__ import annotations

import re

DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_SUBDOMAIN = rf"{DNS_LABEL}(\.{DNS_LABEL})*"
LABEL_MAX, SUBDOMAIN_MAX = 63, 253
QUALIFIED_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
QUALIFIED_NAME_MAX = 63


def name_problem(value: str, *, subdomain: bool = False, max_length: int | None = None) -> str:
    """What keeps `value` from being a DNS-1123 label (or subdomain), as a phrase; "" when it is one.
    `max_length` narrows the limit for objects whose names end up in labels (Tekton's 63)."""
    kind = "DNS-1123 subdomain" if subdomain else "DNS-1123 label"
    limit = max_length or (SUBDOMAIN_MAX if subdomain else LABEL_MAX)
    if len(value) > limit:
        return f"is not valid: {len(value)} characters long, and a {kind} here has at most {limit}"
    if not re.fullmatch(DNS_SUBDOMAIN if subdomain else DNS_LABEL, value):
        allowed = "lowercase letters, digits, - and ." if subdomain else "lowercase letters, digits and -"
        return f"is not valid: a {kind} is {allowed}, starting and ending with a letter or digit"
    return ""


def label_key_problem(key: str) -> str:
    """What keeps `key` from being a label key, as a phrase; "" when it is one."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or name_problem(prefix, subdomain=True)):
        return (f"has the prefix {prefix[:30]!r}, which is not a DNS-1123 subdomain of at most {SUBDOMAIN_MAX} "
                "characters")
    if len(name) > QUALIFIED_NAME_MAX or not re.fullmatch(QUALIFIED_NAME, name):
        return (f"has the name {name[:30]!r}: at most {QUALIFIED_NAME_MAX} letters, digits, -, _ and ., "
                "starting and ending with a letter or digit")
    return ""


def label_value_problem(value: str) -> str:
    """What keeps `value` from being a label value, as a phrase; "" when it is one (empty is one)."""
    if value and (len(value) > QUALIFIED_NAME_MAX or not re.fullmatch(QUALIFIED_NAME, value)):
        return (f"is not a label value: empty, or at most {QUALIFIED_NAME_MAX} letters, digits, -, _ and ., "
                "starting and ending with a letter or digit")
    return ""
