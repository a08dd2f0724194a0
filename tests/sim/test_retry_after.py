"""Retry-After, as RFC 9110 section 10.2.3 defines it (delay-seconds or an HTTP-date), read by one
function for the cluster client and the registry client: a server's "nan", "inf" or "-1" once went
through float() to time.sleep, which ends the step in a traceback."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from cssr_tasks.cluster import Cluster, RetrySettings, retry_after_seconds


@pytest.mark.parametrize(("header", "seconds"), [
    ("5", 5.0), (" 7 ", 7.0), ("0", 0.0), ("9" * 5000, 1e12),
    ("nan", None), ("NaN", None), ("inf", None), ("-1", None), ("1e999", None), ("1.5", None), ("\u0663", None),
    ("", None), (None, None), ("soon", None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
], ids=["digits", "spaces", "zero", "5000-digits", "nan", "NaN", "inf", "negative", "overflow", "fraction",
        "arabic-indic", "empty", "absent", "word", "past-date"])
def test_retry_after_is_delay_seconds_or_a_date(header, seconds):
    assert retry_after_seconds(header) == seconds


def test_a_future_date_is_the_time_until_it_even_without_a_zone():
    when = datetime.now(UTC) + timedelta(seconds=100)
    assert 95 < (retry_after_seconds(format_datetime(when, usegmt=True)) or 0) <= 100
    assert 95 < (retry_after_seconds(format_datetime(when.replace(tzinfo=None))) or 0) <= 100  # "-0000"


@pytest.mark.parametrize("header", ["nan", "inf", "-1"])
def test_the_cluster_client_rides_out_a_hostile_retry_after(sim, log, header):
    cluster = Cluster.at(sim.url, log=log, retry=RetrySettings(attempts=2, wait_initial=0.01, wait_max=0.2))
    sim.fail("GET", "/nodes", 429, times=1, headers={"Retry-After": header})
    start = time.monotonic()
    cluster.list("v1", "nodes")  # the backoff's own wait, not a ValueError from time.sleep
    assert time.monotonic() - start < 2
    assert len([r for r in sim.requests if r.resource == "nodes"]) == 2
