"""The smoke test's world for the tests: the simulated cluster with a deployed router, and its fake SSR API.

Pod cssr-0 of StatefulSet cssr/cssr on a macvlan network (net1) and an SR-IOV network (net2),
its credentials as the Task mounts them, and the router's API over HTTPS on 127.0.0.1 with a
self-signed certificate. The fixtures that build it are in conftest.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cssr_tasks import smoke_test
from cssr_tasks.cluster import Cluster
from cssr_tasks.sim import SimulatedCluster
from cssr_tasks.sim import router as simrouter
from cssr_tasks.sim.router import Net
from cssr_tasks.sim.ssr import ROUTER, FakeSsr

NS = "cssr"
MACVLAN = Net("ens6f0np0-macvlan", "net1", ips=("192.168.10.1/24",))
SRIOV = Net("sriov-b", "net2", ips=("192.168.20.1/24",), pci="0000:19:00.4", resource="openshift.io/ens6f1np1")
NETS = [MACVLAN, SRIOV]


@dataclass
class World:
    sim: SimulatedCluster
    ssr: FakeSsr
    credentials: Path
    sts: dict[str, Any]

    def env(self, **params: str) -> dict[str, str]:
        env = {"PARAM_NAMESPACE": NS, "PARAM_STATEFULSET": "cssr", "PARAM_API_PORT": str(self.ssr.port),
               "PARAM_CREDENTIALS_DIR": str(self.credentials), "PARAM_TIMEOUT": "0", "PARAM_INTERVAL": "0.1",
               "PARAM_ROUTER_NAME": ROUTER}
        env.update({f"PARAM_{k.upper()}": v for k, v in params.items()})
        return env

    def params(self, **params: str) -> smoke_test.Params:
        return smoke_test.Params.from_env(self.env(**params))

    def pod(self, index: int = 0, nets: list[Net] | None = None, **kwargs: Any) -> dict[str, Any]:
        return self.sim.put(simrouter.router_pod(self.sts, index, NETS if nets is None else nets, **kwargs))


def run(world: World, cluster: Cluster, log: Any, **params: str) -> smoke_test.Result:
    return smoke_test.run(world.params(**params), cluster=cluster, log=log)
