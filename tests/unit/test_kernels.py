"""Kernel version handling shared by every component: normalizing, realtime, ordering, set ids."""

from __future__ import annotations

import hashlib

import pytest

from cssr_tasks import kernels


@pytest.mark.parametrize(("raw", "expected"), [
    ("5.14.0-427.40.1.el9_4.x86_64+", "5.14.0-427.40.1.el9_4.x86_64"),
    (" 5.14.0-427.40.1.el9_4.x86_64\n", "5.14.0-427.40.1.el9_4.x86_64"),
    ("5.14.0-427.40.1.el9_4.x86_64+rt", "5.14.0-427.40.1.el9_4.x86_64+rt"),
], ids=["trailing-plus", "whitespace", "rt-suffix-kept"])
def test_normalize(raw, expected):
    assert kernels.normalize(raw) == expected


@pytest.mark.parametrize(("kernel", "realtime"), [
    ("5.14.0-284.rt14.347.el9_2.x86_64", True),
    ("5.14.0-427.40.1.el9_4.x86_64+rt", True),
    ("4.18.0-305.rt7.72.el8.x86_64", True),
    ("5.14.0-427.40.1.el9_4.x86_64", False),
    ("5.14.0-570.start.el9_6.x86_64", False),
], ids=["rhel92-infix", "rhel94-suffix", "rhel8", "standard", "rt-lookalike"])
def test_is_realtime(kernel, realtime):
    assert kernels.is_realtime(kernel) is realtime


def test_versions_order_numerically():
    assert kernels.version_key("5.14.0-427.el9") > kernels.version_key("5.14.0-70.el9")


def test_set_id_is_order_and_duplicate_independent():
    a, b = "5.14.0-427.40.1.el9_4.x86_64", "5.14.0-427.44.1.el9_4.x86_64"
    expected = hashlib.sha256(f"{a}\n{b}".encode()).hexdigest()[:12]
    assert kernels.kernel_set_id([b, a, a + "+"]) == expected
    assert kernels.kernel_set_id([a]) != expected


@pytest.mark.parametrize(("os_image", "version"), [
    ("Red Hat Enterprise Linux CoreOS 411.86.202210072320-0 (Ootpa)", "411.86.202210072320-0"),
    ("Red Hat Enterprise Linux CoreOS 9.6.20250121-0 (Plow)", "9.6.20250121-0"),
    ("Debian GNU/Linux 12 (bookworm)", None),
], ids=["rhcos-4.11", "rhel-numbered", "not-rhcos"])
def test_rhcos_version(os_image, version):
    assert kernels.rhcos_version(os_image) == version


def test_primary_prefers_majority_then_higher_version():
    assert kernels.primary({"5.14.0-70": 3, "5.14.0-427": 1}) == "5.14.0-70"
    assert kernels.primary({"5.14.0-70": 2, "5.14.0-427": 2}) == "5.14.0-427"
