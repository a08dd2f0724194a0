"""`cssr-tasks <command>`: environment and flags -> Params -> run -> Tekton results -> exit code.

Every Task step runs one of these commands. A task module provides `Params` (with
`from_env`), `Result`, `run(params, *, cluster, log)` and `NEEDS_CLUSTER`; a module whose
command has another shape (a long-running watcher, the local pipeline executor) provides
`main(argv)` instead. Modules are imported only when their command runs, so that a step pays
only for what it uses.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

from . import results
from .errors import ConfigError, CssrError, one_line
from .log import Log
from .params import env_name, param_name

COMMANDS: dict[str, str] = {
    "preflight": "cssr_tasks.preflight",
    "detect-kernel": "cssr_tasks.detect_kernel",
    "check-init-image": "cssr_tasks.check_init_image",
    "build-init-image": "cssr_tasks.build_init_image",
    "verify-image": "cssr_tasks.verify_image",
    "build-kmods": "cssr_tasks.build_kmods",
    "build-kmods-nodes": "cssr_tasks.build_kmods_nodes",
    "verify-kmods": "cssr_tasks.verify_kmods",
    "render": "cssr_tasks.render",
    "apply-manifests": "cssr_tasks.apply_manifests",
    "apply": "cssr_tasks.apply_manifests",  # the short name users type; same module as the Task's
    "smoke-test": "cssr_tasks.smoke_test",
    "report": "cssr_tasks.report",
    "prune": "cssr_tasks.prune",
    "watch-pools": "cssr_tasks.watch_pools",
    "pipeline": "cssr_tasks.pipeline",
    "sim": "cssr_tasks.sim.serve",
}


def load(command: str) -> ModuleType:
    return importlib.import_module(COMMANDS[command])


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as the suite reports bad input: one line, exit 2."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message}; see {self.prog} --help")


def common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, else the in-cluster account)")
    parser.add_argument("--simulated", action="store_true",
                        help="run against an embedded simulated OpenShift cluster (demo and tests)")
    parser.add_argument("--results-dir", type=Path,
                        help="where Tekton results are written (default: /tekton/results when it exists)")
    parser.add_argument("--verbose", action="store_true", help="log debug lines")


def param_arguments(parser: argparse.ArgumentParser, params_cls: type) -> dict[str, str]:
    """One `--<param>` option per Params field; returns {dest: param name}."""
    dests: dict[str, str] = {}
    for field in dataclasses.fields(params_cls):
        if field.name == "verbose":
            continue
        name = field.metadata.get("param", param_name(field.name))
        dest = "param__" + field.name
        parser.add_argument(f"--{name}", dest=dest, metavar="VALUE",
                            help=field.metadata.get("help") or f"overrides ${env_name(name)}")
        dests[dest] = name
    return dests


def environment_with_flags(environ: Mapping[str, str], args: argparse.Namespace,
                           dests: Mapping[str, str]) -> dict[str, str]:
    """A command-line option wins over the environment."""
    merged = dict(environ)
    for dest, name in dests.items():
        value = getattr(args, dest)
        if value is not None:
            merged[env_name(name)] = value
    return merged


@contextmanager
def connected(args: argparse.Namespace, environ: Mapping[str, str], log: Log) -> Iterator[Any]:
    """The cluster the flags name: --simulated starts an embedded one, stopped on the way out."""
    from .cluster import Cluster, RetrySettings

    retry = RetrySettings.from_env(environ)
    if not args.simulated:
        yield Cluster.connect(args.kubeconfig, log=log, retry=retry)
        return
    from .sim import SimulatedCluster

    with SimulatedCluster.with_default_cluster() as sim:
        log.info(f"using the embedded simulated OpenShift at {sim.url}")
        yield Cluster.at(sim.url, log=log, retry=retry)


def run_task(command: str, module: ModuleType, argv: Sequence[str], environ: Mapping[str, str], *,
             run: Callable[..., Any] | None = None) -> int:
    """The generic adapter; `run` replaces `module.run` for a command with phases (build-kmods)."""
    parser = Parser(prog=f"cssr-tasks {command}", description=(module.__doc__ or "").strip())
    common_arguments(parser)
    dests = param_arguments(parser, module.Params)
    args = parser.parse_args(argv)
    log = Log(command, verbose=args.verbose or environ.get("PARAM_VERBOSE", "").lower() == "true")
    results_dir = args.results_dir or results.default_results_dir()
    try:
        if results_dir:
            results.check_dir(results_dir)
        params = module.Params.from_env(environment_with_flags(environ, args, dests))
        needs_cluster = getattr(module, "NEEDS_CLUSTER", True)
        if callable(needs_cluster):  # a command that needs the cluster for some params only
            needs_cluster = needs_cluster(params)
        if needs_cluster:
            with connected(args, environ, log) as cluster:
                result = (run or module.run)(params, cluster=cluster, log=log)
        else:
            result = (run or module.run)(params, cluster=None, log=log)
        values = results.write(results_dir, result) if results_dir else results.as_dict(result)
    except CssrError as e:
        log.info(f"error: {one_line(e)}")
        return e.exit_code
    for name, value in values.items():
        if len(value.encode()) > results.RESULT_WARN_BYTES:
            log.warn(f"result {name} is {len(value.encode())} bytes; Tekton results should stay small")
        print(f"{name}: {value}")
    return 0


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if environ is None else environ
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: cssr-tasks <command> [options]\n\ncommands:\n  " + "\n  ".join(COMMANDS), file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    command, rest = argv[0], argv[1:]
    try:
        module = load(command)
        if hasattr(module, "main"):
            return int(module.main(rest, environ))
        return run_task(command, module, rest, environ)
    except CssrError as e:
        print(f"[{command}] error: {one_line(e)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug: say so in one line, with the traceback for the report
        traceback.print_exc()
        print(f"[{command}] internal error: {type(e).__name__}: {e}; please report this", file=sys.stderr)
        return 70


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
