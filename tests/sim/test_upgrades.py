"""The simulated Machine Config Operator rollout (cssr_tasks.sim.upgrades) that the watcher's
tests and benchmark drive: nodes change kernel one at a time, the pool's counts and conditions
follow, and a config that keeps osImageURL and kernelType keeps every node's kernel."""

from __future__ import annotations

from cssr_tasks.sim import fixtures as fx
from cssr_tasks.sim.upgrades import CURRENT, MCO_API, STATE, Upgrades, os_image_url

K416, K417, RT417 = fx.RELEASES["4.16"][1], fx.RELEASES["4.17"][1], fx.RELEASES["4.17"][2]


def kernels_of(mco: Upgrades, pool: str) -> list[str]:
    return [mco.node(n)["status"]["nodeInfo"]["kernelVersion"] for n in mco.members[pool]]


def test_a_rollout_reboots_one_node_at_a_time(empty_sim):
    mco = Upgrades(empty_sim)
    old = mco.add_pool("worker", 3)
    target = mco.render("worker", release="4.17")
    config = empty_sim.get(MCO_API, "MachineConfig", target)
    assert config["spec"]["osImageURL"] == os_image_url("4.17") != os_image_url("4.16")
    seen = []
    for step in mco.roll("worker", target):
        pool = mco.pool("worker")
        seen.append((step, kernels_of(mco, "worker"), pool["status"]["updatedMachineCount"]))
        assert pool["spec"]["configuration"]["name"] == target
    assert [s[1].count(K417) for s in seen] == [0, 1, 2, 3, 3]
    assert [s[2] for s in seen] == [0, 1, 2, 3, 3]
    pool = mco.pool("worker")
    assert pool["status"]["configuration"]["name"] == target != old
    assert {c["type"]: c["status"] for c in pool["status"]["conditions"]}["Updated"] == "True"
    assert all(mco.node(n)["metadata"]["annotations"][CURRENT] == target for n in mco.members["worker"])
    assert all(mco.node(n)["metadata"]["annotations"][STATE] == "Done" for n in mco.members["worker"])


def test_flaps_look_settled_for_a_moment(empty_sim):
    mco = Upgrades(empty_sim)
    mco.add_pool("worker", 2)
    target = mco.render("worker", release="4.17")
    updated = []
    for step in mco.roll("worker", target, flaps=True):
        conditions = {c["type"]: c["status"] for c in mco.pool("worker")["status"]["conditions"]}
        updated.append((step.split(": ", 1)[1], conditions["Updated"], conditions["Degraded"]))
    assert ("conditions flapped to Updated", "True", "False") in updated
    assert ("conditions flapped to Degraded", "False", "True") in updated
    assert updated[-1] == ("settled again", "True", "False")


def test_chrony_keeps_the_kernel_and_realtime_changes_it(empty_sim):
    mco = Upgrades(empty_sim)
    mco.add_pool("worker-cnf", 2, roles=("worker",), prefix="cnf")
    assert mco.node("cnf-0")["metadata"]["labels"]["node-role.kubernetes.io/worker"] == ""
    chrony = mco.render("worker-cnf", files=("/etc/chrony.conf",))
    mco.upgrade("worker-cnf", chrony)
    assert kernels_of(mco, "worker-cnf") == [K416, K416]
    realtime = mco.render("worker-cnf", release="4.17", kernel_type="realtime")
    assert empty_sim.get(MCO_API, "MachineConfig", realtime)["spec"]["kernelType"] == "realtime"
    mco.upgrade("worker-cnf", realtime)
    assert kernels_of(mco, "worker-cnf") == [RT417, RT417]
