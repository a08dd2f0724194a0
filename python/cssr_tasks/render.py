"""Write every manifest of the deployment, offline: no cluster is contacted.

    cssr-tasks render --out manifests/ --namespace cssr-lab --network-mode sriov
    cssr-tasks render --params-file site.yaml | oc apply -f -

Params come from PARAM_<NAME> variables, then a params file (a YAML or JSON map of param name to
value), then `--<param>` options, each winning over the one before. With `--out DIR` each object is
written to its own file, numbered in apply order (`oc apply -f DIR` keeps that order); without it,
the objects go to stdout as one YAML stream. Offline, a network the params name that is not rendered
here cannot be checked: render warns, and apply-manifests refuses it unless it exists.

render takes the options every command takes (cli.common_arguments), so that a script calls any
command the same way, and reports a bad option as every command does (one line, exit 2). Being
offline, it contacts no cluster whatever --kubeconfig or --simulated say, and has no Tekton results
to write to --results-dir.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from . import cli, manifests
from .errors import ConfigError, CssrError
from .log import Log
from .params import env_name, param_name

NEEDS_CLUSTER = False
Params = manifests.Params
HEADER = "# rendered by cssr-tasks render; edit the params, not this file\n"


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    parser = cli.Parser(prog="cssr-tasks render", description=(__doc__ or "").strip(),
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params-file", type=Path, help="YAML or JSON map: param name -> value")
    parser.add_argument("--out", type=Path, help="directory for one file per object (default: stdout)")
    cli.common_arguments(parser)
    dests = cli.param_arguments(parser, Params)
    args = parser.parse_args(list(argv))
    log = Log("render", verbose=args.verbose or environ.get("PARAM_VERBOSE", "").lower() == "true")
    try:
        if args.out is not None:
            check_out(args.out)
        merged = dict(environ)
        if args.params_file is not None:
            merged.update(read_params_file(args.params_file))
        params = Params.from_env(cli.environment_with_flags(merged, args, dests))
        rendered = manifests.render(params)
        for warning in params.warnings():
            log.warn(warning)
        for namespace, name in params.foreign_networks():
            log.warn(f"network {namespace}/{name} is not rendered here, and offline it cannot be checked: it must "
                     "exist as a NetworkAttachmentDefinition (apply-manifests refuses to start without it)")
        if args.out is None:
            print("---\n".join(manifests.to_yaml(m.obj) for m in rendered), end="")
        else:
            files = write(args.out, rendered)
            log.info(f"wrote {len(files)} manifests to {args.out}")
    except CssrError as e:
        log.info(f"error: {e}")
        return e.exit_code
    return 0


def read_params_file(path: Path) -> dict[str, str]:
    """A map of param name -> value, as the PARAM_<NAME> variables a Task step would get."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"could not read params file {path}: {e}; give a YAML or JSON map of param name "
                          "to value") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"could not read params file {path}: it holds a {type(data).__name__}, not a map of "
                          "param name to value")
    known = {param_name(f) for f in Params.__dataclass_fields__}
    unknown = sorted(str(k) for k in data if str(k) not in known)
    if unknown:
        raise ConfigError(f"could not read params file {path}: unknown param(s) {', '.join(unknown)}; known: "
                          f"{', '.join(sorted(known))}")
    return {env_name(str(k)): _as_param(v) for k, v in data.items()}


def _as_param(value: Any) -> str:
    """A YAML value as the string Tekton would pass: lists and maps as JSON, booleans as true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return "" if value is None else str(value)


def check_out(out: Path) -> None:
    """--out must be a folder (or not exist yet): checked before the params, so that nothing is written."""
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"--out {out}: {existing} is a file, not a folder; name a folder for the manifests (it is "
                          "created when missing), or leave --out out to print them")


def write(out: Path, rendered: list[manifests.Manifest]) -> list[Path]:
    """One file per object, numbered in apply order; files of an earlier render are replaced."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("[0-9][0-9]-*.yaml"):
            if old.is_file() and _ours(old):  # a stale object must not be applied with the new ones
                old.unlink()
        files = []
        for i, manifest in enumerate(rendered, start=1):
            slug = re.sub(r"[^a-z0-9.-]+", "-", f"{manifest.kind}-{manifest.name}".lower())
            path = out / f"{i:02d}-{slug}.yaml"
            path.write_text(HEADER + manifests.to_yaml(manifest.obj), encoding="utf-8")
            files.append(path)
    except OSError as e:
        raise ConfigError(f"could not write the manifests to --out {out}: {e.strerror or e}; name a folder you may "
                          "write to") from e
    return files


def _ours(path: Path) -> bool:
    with path.open(encoding="utf-8", errors="replace") as f:
        return f.readline() == HEADER
