"""`cssr-tasks sim`: the simulated OpenShift as a server of its own, for a second shell to use."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from cssr_tasks import cli


def start(*args: str) -> tuple[subprocess.Popen[str], Path]:
    process = subprocess.Popen([sys.executable, "-m", "cssr_tasks", "sim", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert process.stdout is not None
    first = process.stdout.readline().strip()
    assert first.startswith("KUBECONFIG="), process.stderr.read() if process.stderr else first
    return process, Path(first.removeprefix("KUBECONFIG="))


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    try:
        _, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    return err


def test_it_serves_the_default_cluster_to_another_command(tmp_path, capsys):
    process, kubeconfig = start()
    try:
        server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
        assert server.startswith("http://")
        code = cli.main(["detect-kernel", "--kubeconfig", str(kubeconfig), "--results-dir", str(tmp_path / "r")],
                        {"CSSR_RETRY_WAIT": "0"})
        assert code == 0, capsys.readouterr().err
        assert (tmp_path / "r" / "kernel-versions").read_text().startswith('["5.14.0-')
    finally:
        err = stop(process)
    assert process.returncode == 0
    assert f"serving the simulated OpenShift at {server}" in err and err.rstrip().endswith("stopped")
    assert not kubeconfig.parent.exists()  # its own temporary folder is gone


def test_fixtures_and_a_named_kubeconfig(tmp_path):
    out = tmp_path / "sim.kubeconfig"
    process, kubeconfig = start("--kubeconfig-out", str(out), "--sim-fixture", "cssr_tasks.sim.operators:install")
    try:
        assert kubeconfig == out
        from cssr_tasks.cluster import Cluster

        cluster = Cluster.connect(str(out))
        crds = cluster.list("apiextensions.k8s.io/v1", "customresourcedefinitions")
        assert any(c["metadata"]["name"] == "sriovnetworknodepolicies.sriovnetwork.openshift.io" for c in crds)
    finally:
        stop(process)
    assert process.returncode == 0
    assert out.exists()  # the user's file stays


def test_bad_input_is_one_line(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    for argv, message in ((["--sim-fixture", "nope"], "--sim-fixture"), (["--kubeconfig-out", str(afile / "k")], "is a file"),
                          (["--bogus"], "unrecognized arguments: --bogus")):
        assert cli.main(["sim", *argv], {}) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err
