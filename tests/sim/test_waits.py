"""cssr_tasks.waits against the simulated cluster with injected faults.

Covers: a wait rides out more transient errors (503) than one call's retry policy absorbs, with
one request per attempt and a progress line per failed check; it ends at its own deadline with
the last error; a refusal (403) ends it at once; the deadline bounds the number of checks.
"""

from __future__ import annotations

import pytest

from cssr_tasks.cluster import Cluster, RetrySettings
from cssr_tasks.errors import Forbidden, WaitTimeout
from cssr_tasks.waits import Clock, NotYet, wait_until

PODS = "/api/v1/namespaces/default/pods"


def pod_count(cluster: Cluster) -> int:
    return len(cluster.list("v1", "pods", namespace="default"))


def requests_to(sim, path: str) -> int:
    return sum(1 for r in sim.requests if r.path == path)


@pytest.mark.parametrize("failures", [0, 3, 6, 10], ids=["none", "within-one-call", "six", "ten"])
def test_wait_rides_out_503s_beyond_one_calls_retries(sim, cluster, log, failures):
    # cluster's retry policy makes 3 attempts per call: six 503s used to end the wait after its writes
    sim.fail("GET", PODS, 503, times=failures)
    slept: list[float] = []
    found = wait_until(lambda: pod_count(cluster), clock=Clock(60), interval=0.5, log=log, sleep=slept.append)
    assert found == 0
    assert requests_to(sim, PODS) == failures + 1  # one request per attempt, no more
    checks = -(-(failures + 1) // 3)  # a check is one call of up to 3 attempts
    assert len(slept) == checks - 1
    assert log.text.count("transient API error, still waiting: could not list pods.v1 in default: 503") == checks - 1


def test_wait_ends_at_its_deadline_with_the_last_transient_error(sim, log):
    cluster = Cluster.at(sim.url, log=log, retry=RetrySettings(attempts=2, wait_initial=0))
    sim.fail("GET", PODS, 503, times=1000)
    with pytest.raises(WaitTimeout) as e:
        wait_until(lambda: pod_count(cluster), clock=Clock(0.3), interval=0.1, log=log)
    assert str(e.value).startswith("could not list pods.v1 in default: 503 injected 503; the API kept failing until "
                                   "the 0.3s wait ran out")
    assert 2 <= requests_to(sim, PODS) <= 2 * 6  # bounded by the deadline: about 0.3s / 0.1s checks


def test_a_refusal_ends_the_wait_at_once(sim, cluster, log):
    sim.fail("GET", PODS, 403, times=1)
    with pytest.raises(Forbidden):
        wait_until(lambda: pod_count(cluster), clock=Clock(60), interval=0, log=log)
    assert requests_to(sim, PODS) == 1


def test_not_yet_then_done_and_the_timeout_message(log):
    states = iter(["starting", "starting", "up"])

    def check() -> str:
        state = next(states)
        if state != "up":
            raise NotYet(f"router {state}", what="router up", reason=f"it is {state}", hint="wait longer")
        return state

    assert wait_until(check, clock=Clock(60), interval=0, log=log) == "up"
    assert log.text.count("router starting; 0s of 60s") == 2

    def never() -> None:
        raise NotYet("router starting", what="router up", reason="it is starting", hint="raise timeout")

    with pytest.raises(WaitTimeout, match=r"^could not see router up within 0s: it is starting; raise timeout$"):
        wait_until(never, clock=Clock(0), interval=0, log=log)
