"""How one step runs on this machine, without containers.

- an image that is the tasks image (written as `$(params.tasks-image)`, or any image naming
  cssr-tasks): its `cssr-tasks <command>` runs as `python -m cssr_tasks <command>` from this
  interpreter, with `--results-dir` pointing at the task's results folder; a script runs with
  this interpreter's bin folder first on PATH;
- a buildah image: its script runs with the local bash (its command with the local
  buildah) when `buildah` is on PATH;
- any image named in `--image-command IMAGE=LOCAL-COMMAND`: LOCAL-COMMAND runs instead of
  the container. A script step gives it the script's file, then the step's args; a command
  step gives it the step's command and args, in order; a step with only args, the args.
- anything else cannot run here: the run stops before it starts, naming the image.

Steps get a clean environment: PATH, a few locale and tool settings, CSSR_* settings, the
step's own env, and KUBECONFIG. `/tekton/results` and `/tekton/home` in a step's strings
point at the task's folders under the run directory. A step's volumeMounts (emptyDir, secret,
configMap volumes) are bind-mounted over their mountPath in a private mount namespace
(`unshare --mount`, as root), so that, as in a pod, a step writing to /usr/lib/modules writes
into its volume and never into this machine's folder.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TextIO

TASKS_IMAGE_PARAM = "$(params.tasks-image)"
TEKTON_PREAMBLE = "#!/bin/sh\nset -e\n"  # what Tekton puts before a script without a shebang (pkg/pod/script.go)
PASSTHROUGH = ("LANG", "LC_ALL", "TZ", "TMPDIR", "REGISTRY_AUTH_FILE", "no_proxy", "NO_PROXY")
PASSTHROUGH_PREFIXES = ("CSSR_", "CONTAINERS_", "BUILDAH_")
# cssr-tasks commands that are not Task steps: they take no --results-dir
_NOT_TASK_COMMANDS = {"pipeline", "watch-pools", "sim"}


@dataclass(frozen=True)
class StepSpec:
    """A step after stepTemplate merging and variable substitution."""

    name: str
    image: str
    raw_image: str
    command: list[str] | None
    args: list[str]
    script: str | None
    env: dict[str, str]
    working_dir: str | None
    timeout: float | None
    on_error: str
    line: int
    mounts: tuple[tuple[str, str, bool, str], ...] = ()  # (volume, mountPath, readOnly, subPath)


@dataclass(frozen=True)
class Mount:
    source: Path  # the volume's folder under the run directory
    target: str  # the step's mountPath
    read_only: bool


# Bind each volume's folder over its mountPath in a private mount namespace, then run the step.
# Arguments: (source target ro|rw)... -- argv
_MOUNT = """
while [ "$1" != "--" ]; do
  mkdir -p "$2" && mount --bind "$1" "$2" || exit 125
  if [ "$3" = ro ]; then mount -o remount,bind,ro "$2" || exit 125; fi
  shift 3
done
shift
exec "$@"
"""


def can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None


def with_mounts(argv: list[str], mounts: list[Mount]) -> list[str]:
    """argv run with the volumes mounted where the step expects them, as a pod would see them."""
    if not mounts:
        return argv
    triples = [part for m in mounts for part in (str(m.source), m.target, "ro" if m.read_only else "rw")]
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", _MOUNT, "mount-volumes",
            *triples, "--", *argv]


@dataclass(frozen=True)
class Runner:
    kind: str  # "tasks image", "buildah", "--image-command"
    local_command: tuple[str, ...] = ()


def repository(image: str) -> str:
    """The image without its tag or digest."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.split(":", 1)[0]


def runner_for(step: StepSpec, image_commands: Mapping[str, str]) -> Runner | str:
    """How the step runs here, or why it cannot (a sentence naming the image)."""
    for key in (step.image, repository(step.image)):
        if key in image_commands:
            return Runner("--image-command", tuple(shlex.split(image_commands[key])))
    if step.raw_image.strip() == TASKS_IMAGE_PARAM or "cssr-tasks" in step.image:
        return Runner("tasks image")
    if "buildah" in repository(step.image).rsplit("/", 1)[-1] or "/buildah/" in step.image:
        if shutil.which("buildah") is None:
            return (f"image {step.image} is a buildah image, and buildah is not installed here; install it "
                    f"(scripts/install-system-deps) or pass --image-command {repository(step.image)}=LOCAL-COMMAND")
        return Runner("buildah")
    return (f"image {step.image} has no local equivalent; pass --image-command "
            f"{repository(step.image)}=LOCAL-COMMAND (see docs/pipeline-run-locally.md)")


@dataclass
class StepRun:
    exit_code: int
    duration: float
    timed_out: bool = False
    error: str = ""


@dataclass
class Launcher:
    """Runs the steps of one task attempt, in folders under the run directory."""

    results_dir: Path
    home: Path
    scripts_dir: Path
    work_dir: Path
    environ: Mapping[str, str]
    kubeconfig: Path | None
    out: TextIO
    task_name: str
    extra_env: dict[str, str] = field(default_factory=dict)
    # folders in which a missing workingDir is created, as Tekton creates one under /workspace
    creatable: tuple[Path, ...] = ()
    # pod paths a step's strings may name -> the folder that stands for them here (longest wins); the
    # Tekton folders every step has are added by tekton_folders()
    paths: dict[str, str] = field(default_factory=dict)

    def tekton_folders(self, run_dir: Path, steps_dir: Path, overrides: Mapping[str, str]) -> None:
        """/tekton/results, /tekton/home, /tekton/run, /tekton/steps and /workspace, as in every Tekton step.

        A volumeMount or workspace over one of them wins (`overrides`), as in a pod.
        """
        self.paths = {"/tekton/results": str(self.results_dir), "/tekton/home": str(self.home),
                      "/tekton/run": str(run_dir), "/tekton/steps": str(steps_dir), "/workspace": str(self.work_dir),
                      **overrides}

    def tekton_paths(self, text: str) -> str:
        paths = self.paths or {"/tekton/results": str(self.results_dir), "/tekton/home": str(self.home)}
        pattern = "|".join(re.escape(p) for p in sorted(paths, key=len, reverse=True))
        return re.sub(rf"(?<![\w./-])({pattern})(?![\w.-])", lambda m: paths[m.group(1)], text)

    def argv(self, step: StepSpec, runner: Runner) -> list[str]:
        command = [self.tekton_paths(c) for c in step.command or []]
        args = [self.tekton_paths(a) for a in step.args]
        # a local command in place of an image gets the script as Tekton writes it: without a shebang,
        # `#!/bin/sh` and `set -e` come first
        script = self._script_file(step, runner.kind == "--image-command") if step.script is not None else None
        if runner.kind == "--image-command":
            if script is not None:
                return [*runner.local_command, str(script), *args]
            return [*runner.local_command, *command, *args]
        if script is not None:  # as in Tekton, args reach a script as $1, $2, ...
            if step.script is not None and step.script.startswith("#!"):
                return [str(script), *args]
            return ["bash", "-e", str(script), *args]
        if runner.kind == "tasks image" and (not command or command[0] == "cssr-tasks"):
            rest = command[1:] + args if command else args
            argv = [sys.executable, "-m", "cssr_tasks", *rest]
            if rest and rest[0] not in _NOT_TASK_COMMANDS and "--results-dir" not in rest:
                argv += ["--results-dir", str(self.results_dir)]
            return argv
        return [*command, *args]

    def _script_file(self, step: StepSpec, preamble: bool = False) -> Path:
        self.scripts_dir.mkdir(parents=True, exist_ok=True)
        path = self.scripts_dir / f"{step.name}.sh"
        script = self.tekton_paths(step.script or "")
        if preamble and not script.startswith("#!"):
            script = TEKTON_PREAMBLE + script
        path.write_text(script, encoding="utf-8")
        path.chmod(0o755)
        return path

    def env(self, step: StepSpec, runner: Runner) -> dict[str, str]:
        env = {k: v for k, v in self.environ.items() if k in PASSTHROUGH or k.startswith(PASSTHROUGH_PREFIXES)}
        bin_dir = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join([bin_dir, self.environ.get("PATH", os.defpath)])
        env["HOME"] = str(self.home)
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        if runner.kind == "--image-command":
            env.update({"CSSR_STEP_IMAGE": step.image, "CSSR_STEP_NAME": step.name,
                        "CSSR_TASK_NAME": self.task_name, "CSSR_TASK_RESULTS": str(self.results_dir)})
        env.update(self.extra_env)
        env.update({k: self.tekton_paths(v) for k, v in step.env.items()})
        return env

    def run(self, step: StepSpec, runner: Runner, timeout: float | None, mounts: list[Mount] | None = None
            ) -> StepRun:
        argv = with_mounts(self.argv(step, runner), mounts or [])
        created = _missing_folders([m.target for m in mounts or []])
        try:
            return self._run(argv, step, runner, timeout)
        finally:
            for folder in reversed(created):  # mount points made for the step leave no trace here
                with contextlib.suppress(OSError):
                    folder.rmdir()

    def _run(self, argv: list[str], step: StepSpec, runner: Runner, timeout: float | None) -> StepRun:
        cwd = Path(self.tekton_paths(step.working_dir)) if step.working_dir else self.work_dir
        if not cwd.is_dir() and any(cwd.resolve().is_relative_to(root) for root in self.creatable):
            cwd.mkdir(parents=True, exist_ok=True)
        if not cwd.is_dir():
            return StepRun(1, 0.0, error=f"could not start: workingDir {cwd} does not exist here")
        start = time.monotonic()
        try:
            process = subprocess.Popen(argv, cwd=cwd, env=self.env(step, runner), stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            return StepRun(127, 0.0, error=f"could not start {argv[0]}: {e.strerror}")
        assert process.stdout is not None
        pump = threading.Thread(target=self._pump, args=(process.stdout,), daemon=True)
        pump.start()
        timed_out = False
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop(process)
        except BaseException:
            _stop(process)
            raise
        finally:
            pump.join(5)
            process.stdout.close()
        return StepRun(process.returncode if not timed_out else 124, time.monotonic() - start, timed_out)

    def _pump(self, stream: IO[bytes]) -> None:
        try:
            for raw in iter(stream.readline, b""):
                self.out.write("    " + raw.decode("utf-8", "replace").rstrip("\n") + "\n")
                self.out.flush()
        except (ValueError, OSError):  # the stream was closed after a timeout
            pass


def _missing_folders(targets: list[str]) -> list[Path]:
    """The folders `mkdir -p` will create for these mount points, parents first."""
    missing: list[Path] = []
    for target in targets:
        path = Path(target)
        chain = []
        while not path.exists() and path != path.parent:
            chain.append(path)
            path = path.parent
        missing += [p for p in reversed(chain) if p not in missing]
    return missing


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End the step's own process group (the step and whatever it started), politely first."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
