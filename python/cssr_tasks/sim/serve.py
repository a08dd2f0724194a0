"""`cssr-tasks sim`: serve the simulated OpenShift until stopped, and print a kubeconfig for it.

    cssr-tasks sim [--kubeconfig-out PATH] [--sim-fixture MODULE:FUNCTION]...

The cluster is the one `--simulated` and `make demo` use (three workers, their pools, the
Driver Toolkit ImageStream), plus what each `--sim-fixture` hook adds (for example
`cssr_tasks.sim.operators:install` for the operators' CRDs and SR-IOV node states). Point any
command at it from another shell, as at a real cluster:

    cssr-tasks sim --kubeconfig-out /tmp/sim.kubeconfig &
    cssr-tasks detect-kernel --kubeconfig /tmp/sim.kubeconfig

The first line on stdout is `KUBECONFIG=<path>`; Ctrl-C or SIGTERM stops it and removes a
kubeconfig it wrote in a folder of its own.
"""

from __future__ import annotations

import signal
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from .. import cli, results
from ..log import Log
from ..pipeline import simulated_cluster


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    parser = cli.Parser(prog="cssr-tasks sim", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--kubeconfig-out", type=Path, metavar="PATH",
                        help="where to write the kubeconfig (default: a new temporary folder)")
    parser.add_argument("--sim-fixture", action="append", default=[], metavar="MODULE:FUNCTION",
                        help="call FUNCTION(sim) on the started cluster, to preload objects or add controllers")
    parser.add_argument("--verbose", action="store_true", help="log debug lines")
    args = parser.parse_args(list(argv))
    log = Log("sim", verbose=args.verbose)
    kubeconfig = args.kubeconfig_out
    if kubeconfig is not None:
        if kubeconfig.is_dir():
            kubeconfig = kubeconfig / "kubeconfig"
        results.check_dir(kubeconfig.parent)  # a folder we may write, checked before the cluster starts
    sim = simulated_cluster(args.sim_fixture)
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    with tempfile.TemporaryDirectory(prefix="cssr-sim-") as own_dir:
        try:
            path = sim.write_kubeconfig(kubeconfig or Path(own_dir) / "kubeconfig")
            print(f"KUBECONFIG={path}", flush=True)
            log.info(f"serving the simulated OpenShift at {sim.url}; stop with Ctrl-C")
            while not stop.wait(0.5):
                pass
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            sim.stop()
    log.info("stopped")
    return 0

