"""Shared fixtures: the simulated OpenShift, a client bound to it, the CLI run as a Task runs it."""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from cssr_tasks import cli
from cssr_tasks.cluster import Cluster, RetrySettings
from cssr_tasks.log import Log
from cssr_tasks.sim import SimulatedCluster

from support import REPO, crd_dir, require_tool  # noqa: F401  (re-exported for older imports)


@pytest.fixture(autouse=True)
def _no_retry_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry paths run at full speed in tests; the attempt counts stay real."""
    monkeypatch.setenv("CSSR_RETRY_WAIT", "0")


@pytest.fixture
def sim() -> Iterator[SimulatedCluster]:
    with SimulatedCluster.with_default_cluster() as simulated:
        yield simulated


@pytest.fixture
def empty_sim() -> Iterator[SimulatedCluster]:
    with SimulatedCluster() as simulated:
        yield simulated


class LogCapture(Log):
    def __init__(self) -> None:
        self.buffer = io.StringIO()
        super().__init__("test", self.buffer, verbose=True)

    @property
    def text(self) -> str:
        return self.buffer.getvalue()


@pytest.fixture
def log() -> LogCapture:
    return LogCapture()


@pytest.fixture
def cluster(sim: SimulatedCluster, log: LogCapture) -> Cluster:
    return Cluster.at(sim.url, log=log, retry=RetrySettings(attempts=3, wait_initial=0))


@dataclass
class CliRun:
    code: int
    results: dict[str, str]
    out: str
    err: str


@pytest.fixture
def run_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """Run `cssr-tasks <argv>` in-process with exactly the environment a Task step would have."""

    def run(argv: list[str], env: Mapping[str, str] | None = None, *, sim: SimulatedCluster | None = None) -> CliRun:
        results_dir = tmp_path / f"results-{len(list(tmp_path.iterdir()))}"
        environ = {"CSSR_RETRY_WAIT": "0", **(env or {})}
        args = list(argv) + ["--results-dir", str(results_dir)]
        if sim is not None:
            args += ["--kubeconfig", str(sim.write_kubeconfig(tmp_path / "kubeconfig"))]
        code = cli.main(args, environ)
        captured = capsys.readouterr()
        results = {p.name: p.read_text() for p in results_dir.iterdir()} if results_dir.is_dir() else {}
        return CliRun(code, results, captured.out, captured.err)

    return run
