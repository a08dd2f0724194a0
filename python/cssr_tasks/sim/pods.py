"""The kubelet's part for the simulated DaemonSet's pods: their init containers, run on this machine.

    workloads.daemonsets.runner = pods.ContainerRunner(workdir, image_commands, os.environ)

Each init container runs as the local executor runs a Task's step (tekton/steps.py: the tasks image
as this interpreter's `cssr-tasks`, other images through `--image-command` mappings), with the
pod's volumes bind-mounted at their mountPaths in a private mount namespace: a hostPath is a folder
per node, `<workdir>/nodes/<node>/<path>` (so that two nodes never share a /mnt/cssr), an emptyDir
a folder per pod. `command: [/bin/sh, -c]` with the script as the first arg becomes a script step
(the next arg is $0, as `sh -c` takes it). After each container, its termination message is read
from terminationMessagePath (at most 4096 bytes), or, with FallbackToLogsOnError and a failure, the
log's last 80 lines (at most 2048 bytes), as the kubelet does (k8s.io/api core/v1 Container,
terminationMessagePath and terminationMessagePolicy). Needs root, as the executor's mounts do.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..tekton import steps

MESSAGE_BYTES = 4096
FALLBACK_LINES, FALLBACK_BYTES = 80, 2048


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ContainerRunner:
    def __init__(self, workdir: Path, image_commands: Mapping[str, str], environ: Mapping[str, str]) -> None:
        self.workdir = workdir
        self.image_commands = dict(image_commands)
        self.environ = dict(environ)

    def node_path(self, node: str, path: str) -> Path:
        """Where node `node`'s folder `path` (a hostPath) is on this machine."""
        return self.workdir / "nodes" / node / path.lstrip("/")

    def __call__(self, pod: dict[str, Any], update: Callable[[dict[str, Any]], None]) -> bool:
        spec, name = pod["spec"], pod["metadata"]["name"]
        pod_dir = self.workdir / "pods" / name
        volumes = self._volumes(spec, pod_dir)
        for container in spec.get("initContainers") or []:
            cname = container["name"]
            started = _now()
            update({"name": cname, "state": {"running": {"startedAt": started}}})
            mounts = [steps.Mount(volumes[m["name"]] / m.get("subPath", ""), m["mountPath"], bool(m.get("readOnly")))
                      for m in container.get("volumeMounts") or []]
            step = _step(container)
            runner = steps.runner_for(step, self.image_commands)
            out = io.StringIO()
            if isinstance(runner, str):
                code, log = 128, runner
            else:
                launcher = steps.Launcher(
                    results_dir=pod_dir / "results" / cname, home=pod_dir / "home", scripts_dir=pod_dir / "scripts",
                    work_dir=pod_dir / "work", environ=self.environ, kubeconfig=None, out=out, task_name=name,
                    extra_env={"CSSR_STEP_MOUNTS": " ".join(m.target for m in mounts)})
                for folder in (launcher.home, launcher.work_dir):
                    folder.mkdir(parents=True, exist_ok=True)
                run = launcher.run(step, runner, None, mounts)
                code = run.exit_code
                log = "\n".join(line[4:] for line in out.getvalue().splitlines()) + (
                    f"\n{run.error}" if run.error else "")
            message = _message(container, mounts, code, log)
            (pod_dir / f"{cname}.log").write_text(log)
            terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error", "message": message,
                          "startedAt": started, "finishedAt": _now()}
            if code != 0:  # the kubelet would restart it with a back-off; here it stays failed
                update({"name": cname, "log": log, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {"terminated": terminated}, "restartCount": 1})
                return False
            update({"name": cname, "log": log, "ready": True, "state": {"terminated": terminated}})
        return True

    def _volumes(self, spec: dict[str, Any], pod_dir: Path) -> dict[str, Path]:
        node = spec["nodeName"]
        found = {}
        for volume in spec.get("volumes") or []:
            if "hostPath" in volume:
                path = self.node_path(node, volume["hostPath"]["path"])
            elif "emptyDir" in volume:
                path = pod_dir / "volumes" / volume["name"]
            else:
                raise ValueError(f"volume {volume['name']}: only hostPath and emptyDir run here")
            path.mkdir(parents=True, exist_ok=True)
            found[volume["name"]] = path
        return found


def _step(container: dict[str, Any]) -> steps.StepSpec:
    argv = [*(container.get("command") or []), *(container.get("args") or [])]
    script = None
    command: list[str] | None = container.get("command")
    args = list(container.get("args") or [])
    if argv[:2] in (["/bin/sh", "-c"], ["sh", "-c"]) and len(argv) > 2:
        script, command, args = "#!/bin/sh\n" + argv[2], None, argv[4:]
    env = {e["name"]: str(e.get("value", "")) for e in container.get("env") or []}
    return steps.StepSpec(name=container["name"], image=container["image"], raw_image=container["image"],
                          command=command, args=args, script=script, env=env, working_dir=None, timeout=None,
                          on_error="stopAndFail", line=0)


def _message(container: dict[str, Any], mounts: list[steps.Mount], code: int, log: str) -> str:
    path = container.get("terminationMessagePath") or "/dev/termination-log"
    text = ""
    for mount in sorted(mounts, key=lambda m: len(m.target), reverse=True):
        if path == mount.target or path.startswith(mount.target.rstrip("/") + "/"):
            file = mount.source / path[len(mount.target):].lstrip("/")
            text = file.read_bytes()[:MESSAGE_BYTES].decode(errors="replace") if file.is_file() else ""
            break
    if not text and code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
        text = "\n".join(log.splitlines()[-FALLBACK_LINES:])[-FALLBACK_BYTES:]
    return text


class Scripted:
    """A stand-in kubelet for tests without images: each init container ends with the exit code and termination
    message given for its name (0 and "" for the others), in order, as ContainerRunner reports them."""

    def __init__(self, messages: Mapping[str, str] | None = None, *, fail: Mapping[str, str] | None = None) -> None:
        self.messages = dict(messages or {})
        self.fail = dict(fail or {})  # container -> its log, for a container that exits 1
        self.pods: list[str] = []  # the pods it ran, in order

    def __call__(self, pod: dict[str, Any], update: Callable[[dict[str, Any]], None]) -> bool:
        self.pods.append(pod["metadata"]["name"])
        for container in pod["spec"].get("initContainers") or []:
            name = container["name"]
            if name in self.fail:
                log = self.fail[name]
                terminated = {"exitCode": 1, "reason": "Error", "message": _message(container, [], 1, log),
                              "startedAt": _now(), "finishedAt": _now()}
                update({"name": name, "log": log, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {"terminated": terminated}, "restartCount": 1})
                return False
            update({"name": name, "ready": True, "state": {"terminated": {
                "exitCode": 0, "reason": "Completed", "message": self.messages.get(name, ""), "startedAt": _now(),
                "finishedAt": _now()}}})
        return True
