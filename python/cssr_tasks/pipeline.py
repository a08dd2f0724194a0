"""`cssr-tasks pipeline run`: run a Tekton Pipeline on this machine, task by task, step by step.

    cssr-tasks pipeline run [FILE] --param k=v --workspace name=DIR
        [--kubeconfig K | --simulated [--sim-fixture module:function]]
        [--image-command IMAGE=LOCAL-COMMAND] [--tasks-dir DIR]

Everything is checked before the first step starts (references, params, workspaces, how
each image runs); then tasks run in DAG order with Tekton's skip, retry and finally rules.
The exit code is 0 when the run Succeeded or Completed, 1 when a task failed, 2 when the
run could not start. See docs/pipeline-run-locally.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import importlib
import inspect
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .errors import ConfigError
from .log import Log
from .tekton.run import Executor, Options, Outcome

if TYPE_CHECKING:
    from .sim import SimulatedCluster

DEFAULT_FILE = "pipelines/cssr-deploy.yaml"
# Where --sim-fixture hooks may live: the simulator's own modules and the test suite's.
HOOK_PACKAGES = ("cssr_tasks.sim", "tests")


def simulated_cluster(fixtures: Sequence[str] = ()) -> SimulatedCluster:
    """The started cluster `--simulated` runs against: the default fixtures, then each `--sim-fixture` hook.

    A hook is `module:function`; the function gets the started SimulatedCluster and may
    `sim.load(...)` objects or append `sim.emulator.controllers`. The caller stops the cluster.
    """
    from .sim import SimulatedCluster

    hooks = [load_hook(spec) for spec in fixtures]  # a bad name fails before anything starts
    sim = SimulatedCluster.with_default_cluster().start()
    try:
        for hook in hooks:
            hook(sim)
    except BaseException:
        sim.stop()
        raise
    return sim


def load_hook(spec: str) -> Callable[[Any], None]:
    """A hook is a function of one argument (the SimulatedCluster) in cssr_tasks.sim or the tests: checked
    before the import, since importing runs a module's code, and `os:system` would be called with the cluster."""
    module_name, _, function = spec.partition(":")
    if not module_name or not function:
        raise ConfigError(f"--sim-fixture {spec!r} is not module:function; e.g. cssr_tasks.sim.operators:install")
    if not any(module_name == root or module_name.startswith(root + ".") for root in HOOK_PACKAGES):
        raise ConfigError(f"--sim-fixture {spec!r}: a hook lives in a module of {' or '.join(HOOK_PACKAGES)}; "
                          "e.g. cssr_tasks.sim.operators:install")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"could not import --sim-fixture module {module_name}: {e}; check the name") from e
    hook = getattr(module, function, None)
    if not inspect.isfunction(hook):
        raise ConfigError(f"--sim-fixture {spec}: {module_name} has no function {function}")
    if not _is_hook(hook):
        raise ConfigError(f"--sim-fixture {spec}: {function} is not a hook; a hook is `def {function}(sim: "
                          "SimulatedCluster) -> None`, like cssr_tasks.sim.operators:install")
    return hook  # type: ignore[no-any-return]


def _is_hook(function: Callable[..., Any]) -> bool:
    """One positional parameter annotated SimulatedCluster (a string under `from __future__ import annotations`),
    every other with a default: the documented hook signature, so no other function is called with the cluster."""
    parameters = list(inspect.signature(function).parameters.values())
    first, rest = (parameters[0], parameters[1:]) if parameters else (None, [])
    annotation = getattr(first, "annotation", None)
    named = annotation == "SimulatedCluster" or getattr(annotation, "__name__", "") == "SimulatedCluster"
    return (first is not None and first.kind in (first.POSITIONAL_ONLY, first.POSITIONAL_OR_KEYWORD) and named
            and all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in rest))


def _pairs(values: Sequence[str] | None, flag: str, what: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} {item!r} is not {what}")
        pairs[key] = value
    return pairs


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="cssr-tasks pipeline", description=(__doc__ or "").split("\n")[0])
    sub = top.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run", help="run a Pipeline locally", description=(__doc__ or "").strip(),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("file", nargs="?", default=DEFAULT_FILE, type=Path,
                     help=f"the Pipeline YAML (Tasks may sit in the same file) (default: {DEFAULT_FILE})")
    run.add_argument("--param", "-p", action="append", metavar="NAME=VALUE",
                     help="a pipeline param; arrays and objects as JSON, or tkn's a,b and k:v, k2:v2 forms")
    run.add_argument("--workspace", "-w", action="append", metavar="NAME=DIR",
                     help="bind a pipeline workspace to a folder (created when missing)")
    cluster = run.add_mutually_exclusive_group()
    cluster.add_argument("--kubeconfig", type=Path, help="the cluster the steps talk to (given to steps as "
                         "KUBECONFIG)")
    cluster.add_argument("--simulated", action="store_true",
                         help="start the embedded simulated OpenShift for the whole run")
    run.add_argument("--sim-fixture", action="append", metavar="MODULE:FUNCTION", default=[],
                     help="with --simulated: call FUNCTION(sim) on the started cluster before the run, "
                          "to preload objects")
    run.add_argument("--image-command", action="append", metavar="IMAGE=LOCAL-COMMAND",
                     help="run steps of IMAGE (exact, or without tag/digest) with LOCAL-COMMAND instead")
    run.add_argument("--tasks-dir", action="append", type=Path, metavar="DIR",
                     help="where Tasks named by taskRef are found (default: tasks/ beside the pipelines/ folder "
                          "of FILE, and ./tasks)")
    run.add_argument("--name", help="the PipelineRun name (default: <pipeline>-run-<random>)")
    run.add_argument("--namespace", default="cssr", help="the PipelineRun namespace (default: cssr)")
    run.add_argument("--run-dir", type=Path, help="keep task folders (results, scripts, homes) here; default: a "
                     "temporary folder, removed after the run")
    run.add_argument("--results-dir", type=Path, help="write the pipeline results here, one file each")
    run.add_argument("--dry-run", action="store_true", help="check everything and show how each step would run")
    return top


def default_tasks_dirs(file: Path) -> list[Path]:
    candidates = [file.resolve().parent.parent / "tasks", Path("tasks").resolve()]
    return [d for d in dict.fromkeys(candidates) if d.is_dir()]


def options_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Options:
    return Options(
        file=args.file, params=_pairs(args.param, "--param", "NAME=VALUE"),
        workspaces={k: Path(v) for k, v in _pairs(args.workspace, "--workspace", "NAME=DIR").items()},
        tasks_dirs=args.tasks_dir or default_tasks_dirs(args.file),
        image_commands=_pairs(args.image_command, "--image-command", "IMAGE=LOCAL-COMMAND"),
        kubeconfig=args.kubeconfig.resolve() if args.kubeconfig else None,
        namespace=args.namespace, name=args.name, run_dir=args.run_dir, results_dir=args.results_dir,
        environ=environ,
    )


def execute(options: Options, *, sim: SimulatedCluster | None = None, out: TextIO | None = None) -> Outcome:
    """Run a pipeline; with `sim`, against that simulated cluster, mirrored as PipelineRun and TaskRuns.

    Tests and benchmarks call this to run several times against one cluster and read the
    outcome and the request log; `--simulated` calls it with a fresh cluster.
    """
    out = out or sys.stdout
    executor = Executor(options, out=out)  # checks everything first: a bad pipeline costs no cluster start
    log = Log("pipeline", out)
    with contextlib.ExitStack() as stack:
        if sim is not None:
            from .tekton.record import SimRecorder

            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cssr-sim-")))
            options.kubeconfig = sim.write_kubeconfig(folder / "kubeconfig")
            executor.recorder = SimRecorder(sim)
            log.info(f"cluster: the simulated OpenShift at {sim.url} (steps get KUBECONFIG={options.kubeconfig})")
        elif options.kubeconfig is not None:
            log.info(f"cluster: kubeconfig {options.kubeconfig}")
        else:
            log.info("cluster: none given; steps get no KUBECONFIG (use --kubeconfig or --simulated)")
        if options.kubeconfig is not None:
            executor.read_data = _reader(options.kubeconfig)
        return executor.execute()
    raise AssertionError("unreachable")  # pragma: no cover


def main(argv: Sequence[str], environ: Mapping[str, str], out: TextIO | None = None) -> int:
    args = parser().parse_args(list(argv))
    out = out or sys.stdout
    if args.sim_fixture and not args.simulated:
        raise ConfigError("--sim-fixture needs --simulated")
    options = options_from(args, environ)
    if args.dry_run:
        return _dry_run(Executor(options, out=out), out)
    if not args.simulated:
        return execute(options, out=out).exit_code
    Executor(options, out=out)  # a bad pipeline fails before the cluster starts
    sim = simulated_cluster(args.sim_fixture)
    try:
        return execute(options, sim=sim, out=out).exit_code
    finally:
        sim.stop()


def _dry_run(executor: Executor, out: TextIO) -> int:
    out.write(f"pipeline {executor.pipeline.name}: every reference, param, workspace and image checks out\n")
    for line in executor.plan():
        out.write(f"  {line}\n")
    return 0


def _reader(kubeconfig: Path) -> Callable[[str, str, str], dict[str, str] | None]:
    """Reads Secrets (decoded) and ConfigMaps for env valueFrom and volumes, as the kubelet would."""
    clients: list[Any] = []

    def read(kind: str, name: str, namespace: str) -> dict[str, str] | None:
        from .cluster import Cluster

        if not clients:
            clients.append(Cluster.connect(str(kubeconfig), log=Log("pipeline")))
        plural = "secrets" if kind == "Secret" else "configmaps"
        obj = clients[0].get_or_none("v1", plural, name, namespace)
        if obj is None:
            return None
        data = {str(k): str(v) for k, v in (obj.get("data") or {}).items()}
        if kind == "Secret":
            return {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in data.items()}
        return data

    return read
