"""The registry client reads Retry-After by the cluster client's rule (tests/sim/test_retry_after.py)."""

from __future__ import annotations

import pytest
from werkzeug import Response

from .test_registry import DIGEST, client, ref_on


@pytest.mark.parametrize("header", ["nan", "inf", "-1", "1e999"])
def test_a_hostile_retry_after_is_the_backoffs_wait(httpserver, log, header):
    path = "/v2/cssr-deploy/cssr-init/manifests/abcdef012345"
    httpserver.expect_ordered_request(path).respond_with_response(Response(status=429, headers={"Retry-After": header}))
    httpserver.expect_ordered_request(path).respond_with_response(
        Response(status=200, headers={"Docker-Content-Digest": DIGEST}))
    with client(httpserver, log) as registry:
        assert registry.manifest_digest(ref_on(httpserver)) == DIGEST
    assert "attempt 1/3" in log.text
