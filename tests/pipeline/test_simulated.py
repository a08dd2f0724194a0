"""The executor running the suite's real Tasks (preflight, detect-kernel, report) against the simulated OpenShift.

Steps on the tasks image run `cssr-tasks <command>` as subprocesses with a kubeconfig for the
simulator; the run is mirrored as a PipelineRun and TaskRuns, which the report task reads.
"""

from __future__ import annotations

import io
import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from cssr_tasks import cli, kernels, pipeline
from cssr_tasks.sim import fixtures as fx
from cssr_tasks.sim import operators
from cssr_tasks.tekton import steps
from cssr_tasks.tekton.run import Options

REPO = Path(__file__).resolve().parents[2]
MINI = textwrap.dedent("""\
    apiVersion: tekton.dev/v1
    kind: Pipeline
    metadata:
      name: mini
    spec:
      params:
        - name: image-repository
          default: ""
      results:
        - name: kernel-set-id
          value: $(tasks.detect-kernel.results.kernel-set-id)
      tasks:
        - name: preflight
          taskRef: {name: cssr-preflight}
          params:
            - {name: image-repository, value: $(params.image-repository)}
        - name: detect-kernel
          runAfter: [preflight]
          taskRef: {name: cssr-detect-kernel}
      finally:
        - name: report
          taskRef: {name: cssr-report}
          params:
            - {name: pipeline-run, value: $(context.pipelineRun.name)}
            - {name: namespace, value: $(context.pipelineRun.namespace)}
            - {name: aggregate-status, value: $(tasks.status)}
            - name: task-statuses
              value: '{"preflight":"$(tasks.preflight.status)","detect-kernel":"$(tasks.detect-kernel.status)"}'
    """)


@pytest.fixture
def mini(tmp_path: Path) -> Path:
    path = tmp_path / "mini.yaml"
    path.write_text(MINI)
    return path


def options(path: Path, name: str, **kwargs: object) -> Options:
    environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CSSR_RETRY_WAIT": "0"}
    return Options(file=path, tasks_dirs=[REPO / "tasks"], name=name, environ=environ, **kwargs)  # type: ignore[arg-type]


def test_real_tasks_run_and_the_report_records_the_kernel_set_once(sim, mini, tmp_path):
    operators.install(sim)
    out = io.StringIO()
    outcome = pipeline.execute(options(mini, "first", results_dir=tmp_path / "results"), sim=sim, out=out)
    text = out.getvalue()
    assert outcome.exit_code == 0, text
    assert outcome.status == "Succeeded"
    kernel = fx.RELEASES["4.16"][1]
    set_id = kernels.kernel_set_id([kernel])
    assert outcome.results == {"kernel-set-id": set_id}
    assert (tmp_path / "results" / "kernel-set-id").read_text() == set_id
    assert "[preflight] PASS  MachineConfigPool worker: settled" in text
    assert "recorded kernel set " + set_id in text

    taskruns = {t["metadata"]["labels"]["tekton.dev/pipelineTask"]: t
                for t in sim.objects("tekton.dev/v1", "TaskRun", "cssr")}
    assert set(taskruns) == {"preflight", "detect-kernel", "report"}
    detect = taskruns["detect-kernel"]
    assert detect["metadata"]["name"] == "first-detect-kernel"
    assert detect["metadata"]["labels"]["tekton.dev/pipelineRun"] == "first"
    assert detect["status"]["conditions"][0]["status"] == "True"
    assert {"name": "kernel-set-id", "type": "string", "value": set_id} in detect["status"]["results"]
    assert detect["status"]["startTime"] <= detect["status"]["completionTime"]
    run = sim.get("tekton.dev/v1", "PipelineRun", "first", "cssr")
    assert run is not None and run["status"]["conditions"][0]["reason"] == "Succeeded"

    state = sim.get("v1", "ConfigMap", "cssr-deploy-state", "cssr")
    assert state is not None
    assert state["data"]["kernel-set-id"] == set_id
    assert json.loads(state["data"]["kernel-versions"]) == [kernel]
    assert state["data"]["pipeline-run"] == "first"

    sim.clear_requests()
    again = pipeline.execute(options(mini, "second"), sim=sim, out=io.StringIO())
    assert again.status == "Succeeded"
    assert sim.writes() == []  # the steps only read; the kernel set was already recorded
    assert sim.get("v1", "ConfigMap", "cssr-deploy-state", "cssr")["data"]["pipeline-run"] == "first"


def test_a_failed_preflight_skips_the_rest_and_the_report_records_nothing(sim, mini):
    operators.install(sim)
    sim.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition",
               "sriovnetworknodepolicies.sriovnetwork.openshift.io")
    out = io.StringIO()
    outcome = pipeline.execute(options(mini, "broken"), sim=sim, out=out)
    text = out.getvalue()
    assert outcome.exit_code == 1
    assert [(t.name, t.status) for t in outcome.tasks] == [
        ("preflight", "Failed"), ("detect-kernel", "Skipped"), ("report", "Succeeded")]
    assert "FAIL  CRD sriovnetworknodepolicies.sriovnetwork.openshift.io: not installed" in text
    assert "PipelineRun broken: Failed (failed: preflight" in text
    assert "the last good kernel set is unchanged: none recorded yet" in text
    assert sim.get("v1", "ConfigMap", "cssr-deploy-state", "cssr") is None
    assert "pipeline result kernel-set-id is not emitted" in text


def test_the_cli_starts_its_own_simulated_cluster_with_fixture_hooks(mini, capsys):
    argv = ["pipeline", "run", str(mini), "--tasks-dir", str(REPO / "tasks"), "--simulated",
            "--sim-fixture", "cssr_tasks.sim.operators:install", "--name", "cli"]
    code = cli.main(argv, {"PATH": os.environ.get("PATH", ""), "CSSR_RETRY_WAIT": "0"})
    out = capsys.readouterr().out
    assert code == 0, out
    assert "cluster: the simulated OpenShift at http://127.0.0.1:" in out
    assert "PipelineRun cli Succeeded" in out


def test_a_bad_fixture_hook_is_a_config_error(mini, capsys):
    code = cli.main(["pipeline", "run", str(mini), "--simulated", "--sim-fixture", "cssr_tasks.sim.operators:nope"],
                    {})
    assert code == 2
    assert "cssr_tasks.sim.operators has no function nope" in capsys.readouterr().err


def test_tasks_image_steps_use_this_interpreter(sim, tmp_path):
    """A cssr-tasks step runs with the executor's own Python, whatever `python3` on PATH is."""
    doc = textwrap.dedent("""\
        apiVersion: tekton.dev/v1
        kind: Pipeline
        metadata: {name: which}
        spec:
          tasks:
            - name: t
              taskSpec:
                params:
                  - {name: tasks-image, default: "quay.io/example/cssr-tasks:0.1.0"}
                results: [{name: python}]
                steps:
                  - name: which
                    image: $(params.tasks-image)
                    script: |
                      #!/usr/bin/env python3
                      import sys
                      open("$(results.python.path)", "w").write(sys.executable)
        """)
    path = tmp_path / "which.yaml"
    path.write_text(doc)
    outcome = pipeline.execute(options(path, "which"), sim=sim, out=io.StringIO())
    assert outcome.exit_code == 0
    assert Path(outcome.task("t").results["python"]).parent == Path(sys.executable).parent


SECRETS = textwrap.dedent("""\
    apiVersion: tekton.dev/v1
    kind: Pipeline
    metadata: {name: secrets}
    spec:
      tasks:
        - name: t
          taskSpec:
            params: [{name: secret-name, default: ssr-credentials}]
            results: [{name: seen}]
            volumes:
              - name: creds
                secret: {secretName: $(params.secret-name)}
              - name: absent
                secret: {secretName: nothing-here, optional: true}
              - name: settings
                configMap: {name: settings, items: [{key: mode, path: conf/mode}]}
            steps:
              - name: show
                image: docker.io/library/bash:5.2
                env:
                  - name: PASSWORD
                    valueFrom: {secretKeyRef: {name: ssr-credentials, key: password}}
                  - name: MODE
                    valueFrom: {configMapKeyRef: {name: settings, key: mode}}
                  - name: NAMESPACE
                    valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
                volumeMounts:
                  - {name: creds, mountPath: /var/run/cssr/creds, readOnly: true}
                  - {name: absent, mountPath: /var/run/cssr/absent}
                  - {name: settings, mountPath: /var/run/cssr/settings}
                script: |
                  printf '%s ' "$PASSWORD" "$MODE" "$NAMESPACE" > $(results.seen.path)
                  if [ -d /var/run/cssr/creds ]; then
                    printf '%s ' "$(cat /var/run/cssr/creds/username)" "$(ls /var/run/cssr/absent | wc -l)" \\
                      "$(cat /var/run/cssr/settings/conf/mode)" >> $(results.seen.path)
                  fi
    """)


def test_secrets_and_config_maps_reach_env_and_volumes_as_in_a_pod(sim, tmp_path):
    sim.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ssr-credentials", "namespace": "cssr"},
             "data": {"username": "YWRtaW4=", "password": "czNjcmV0"}})
    sim.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "cssr"},
             "data": {"mode": "macvlan", "other": "x"}})
    path = tmp_path / "secrets.yaml"
    path.write_text(SECRETS)
    bash = {"docker.io/library/bash": "bash"}
    existed = Path("/var/run/cssr").exists()
    outcome = pipeline.execute(options(path, "s", image_commands=bash), sim=sim, out=io.StringIO())
    assert outcome.exit_code == 0
    assert Path("/var/run/cssr").exists() == existed  # mount points made for the step are gone
    seen = outcome.task("t").results["seen"]
    if steps.can_mount():
        assert seen == "s3cret macvlan cssr admin 0 macvlan "
    else:
        assert seen.startswith("s3cret macvlan cssr ")

    sim.delete("v1", "Secret", "ssr-credentials", "cssr")
    out = io.StringIO()
    failed = pipeline.execute(options(path, "s2", image_commands=bash), sim=sim, out=out)
    assert failed.exit_code == 1
    assert "could not read Secret cssr/ssr-credentials for a step: it does not exist" in out.getvalue()
