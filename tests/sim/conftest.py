"""Fixtures of the smoke test's world (smoke_world.py): the fake SSR API over HTTPS and a deployed router."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from smoke_world import MACVLAN, NETS, NS, SRIOV, World

from cssr_tasks.sim import SimulatedCluster
from cssr_tasks.sim import router as simrouter
from cssr_tasks.sim.ssr import PASSWORD, USERNAME, FakeSsr, self_signed_certificate, server_context

from support import require_tool


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    require_tool("openssl")
    return self_signed_certificate(tmp_path_factory.mktemp("ssr-tls"))


@pytest.fixture(scope="module")
def ssr_server(certificate: tuple[Path, Path]) -> Iterator[HTTPServer]:
    # One server for the module: stopping one takes half a second.
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=server_context(*certificate))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def ssr(ssr_server: HTTPServer) -> Iterator[FakeSsr]:
    """The API of router pod cssr-0, on 127.0.0.1 at a free port, in a fresh state."""
    ssr_server.clear()
    yield FakeSsr(ssr_server, NETS)
    ssr_server.clear()


@pytest.fixture
def world(sim: SimulatedCluster, ssr: FakeSsr, tmp_path: Path) -> World:
    """A deployed router: StatefulSet cssr/cssr, pod cssr-0 on a macvlan and an SR-IOV network, its Secret."""
    credentials = tmp_path / "ssr-credentials"
    credentials.mkdir()
    (credentials / "username").write_text(USERNAME + "\n")
    (credentials / "password").write_text(PASSWORD + "\n")
    sim.put(simrouter.macvlan_nad(MACVLAN.name, NS, "ens6f0v0"))
    sim.put(simrouter.sriov_nad(SRIOV.name, NS, SRIOV.resource))
    sts = sim.put(simrouter.statefulset("cssr", NS, NETS))
    world = World(sim, ssr, credentials, sts)
    world.pod(0)
    return world
