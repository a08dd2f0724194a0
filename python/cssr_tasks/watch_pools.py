"""Watch MachineConfigPools and the nodes' kernels; tell the EventListener when a kernel changes.

Tekton Triggers cannot watch Kubernetes objects, so this long-running command does, and POSTs
one event per kernel change to the cssr-deploy EventListener:

- `pool-updating`: a selected pool's target rendered MachineConfig differs from its current one
  in `spec.osImageURL` or `spec.kernelType`, so its nodes are about to reboot into another
  kernel. Sent before the first node reboots, so that the modules exist in time.
- `kernel-changed`: the pool has settled and its nodes run a kernel that the last deployment
  (ConfigMap cssr-deploy-state) did not cover.

A MachineConfig change that keeps the kernel (chrony, the pipeline's own hugepages) sends
nothing. Decisions are level-triggered and pure (`decide`); around them, the I/O lists and
watches with resourceVersion resume, relists on 410 Gone, POSTs with the suite's retry policy and
records each accepted event in a ConfigMap, so that a restart neither re-sends nor loses one.
docs/tasks/watch-pools.md describes the contract.
"""

from __future__ import annotations

import json
import re
import signal
import threading
from collections.abc import Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import requests

from . import results
from .cluster import Cluster, RetrySettings, error_for, retry_after_seconds, retrying
from .errors import ApiError, ConfigError, CssrError, one_line
from .log import Log
from .pool_events import Event
from .pool_watcher import Stats, Watcher
from .watch_health import Health
from .watch_params import (
    DEFAULT_SECRET_FILE,
    EVENT_ID_LABEL,
    EVENTLISTENER,
    KEY_LABEL,
    MCO_API,
    SECRET_KEY,
    SECRET_NAME,
    TEKTON_API,
    TOKEN_HEADER,
    Params,
)
from .watch_state import StateStore, create_secret

# The command's parts live in watch_params (params, names), pool_watcher (the loop), watch_state
# (what it writes), watch_health (probes), watch_metrics (/metrics) and pool_events (the decisions);
# callers keep importing them from here.
__all__ = ["DEFAULT_SECRET_FILE", "EVENTLISTENER", "EVENT_ID_LABEL", "KEY_LABEL", "MCO_API", "SECRET_KEY",
           "SECRET_NAME", "TEKTON_API", "TOKEN_HEADER", "EventListener", "Health", "Params", "StateStore", "Stats",
           "Watcher", "create_secret", "main", "serve"]


# -- delivery -------------------------------------------------------------------------------


class EventListener:
    """POSTs events with the shared-secret header; only a 202 counts as accepted."""

    def __init__(self, url: str, secret_file: str, *, retry: RetrySettings, log: Log, timeout: float = 10) -> None:
        self.url = url
        self.secret_file = Path(secret_file)
        self.retry = retry
        self.log = log
        self.timeout = timeout
        self.session = requests.Session()

    def token(self) -> str:
        # Read at every send, so that a rotated Secret is picked up without a restart.
        try:
            token = self.secret_file.read_text().strip()
        except OSError as e:
            raise ConfigError(f"could not read the trigger secret from {self.secret_file}: {e.strerror}; mount "
                              f"the Secret {SECRET_NAME} there (see docs/tasks/watch-pools.md)") from e
        if not token:
            raise ConfigError(f"could not read the trigger secret from {self.secret_file}: the file is empty; "
                              f"recreate the Secret {SECRET_NAME}")
        if not re.fullmatch(r"[\x21-\x7e]+", token):
            raise ConfigError(f"the trigger secret in {self.secret_file} holds characters an HTTP header cannot "
                              f"carry; recreate the Secret {SECRET_NAME} (cssr-tasks watch-pools create-secret)")
        return token

    def send(self, event: Event) -> str:
        """The eventID the EventListener answered with."""
        what = f"deliver {event.type} for pool {event.pool} to {self.url}"
        for attempt in retrying(self.retry, self.log, what):
            with attempt:
                return self._post(event.body(), what)
        raise AssertionError("unreachable")  # pragma: no cover

    def _post(self, body: dict[str, Any], what: str) -> str:
        headers = {TOKEN_HEADER: self.token(), "Content-Type": "application/json"}
        try:
            # Never follow a redirect: requests would carry the token header to whatever host the
            # answer names (it drops only Authorization across hosts).
            response = self.session.post(self.url, data=json.dumps(body), headers=headers, timeout=self.timeout,
                                         allow_redirects=False)
        except requests.RequestException as e:
            raise ApiError(f"could not {what}: cannot reach it ({type(e).__name__}); check that the EventListener "
                           f"el-{EVENTLISTENER} runs", status=0) from e
        with closing(response):
            if response.is_redirect or 300 <= response.status_code < 400:
                raise ApiError(f"could not {what}: it answered {response.status_code} with a redirect to "
                               f"{response.headers.get('Location', '(no Location)')[:200]}; the trigger token is "
                               "never sent across a redirect: set eventlistener-url to the EventListener itself",
                               status=response.status_code)
            if response.status_code != 202:
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                hint = "; check the secret and the EventListener" if response.status_code < 500 else ""
                raise error_for(response.status_code, f"could not {what}: {response.status_code} "
                                                      f"{response.text[:200]}{hint}", retry_after)
            try:
                return str(response.json().get("eventID") or "")
            except ValueError:
                return ""

    def close(self) -> None:
        self.session.close()


# -- command line ---------------------------------------------------------------------------


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    from . import cli

    parser = cli.Parser(prog="cssr-tasks watch-pools", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("action", nargs="?", default="run", choices=("run", "create-secret"),
                        help="run the watcher (default), or create the shared Secret with a random token")
    cli.common_arguments(parser)  # --results-dir is checked and unused: this command has no results
    parser.add_argument("--rotate", action="store_true", help="create-secret: replace an existing token")
    dests = cli.param_arguments(parser, Params)
    args = parser.parse_args(argv)
    log = Log("watch-pools", verbose=args.verbose or environ.get("PARAM_VERBOSE", "").lower() == "true")
    env = cli.environment_with_flags(environ, args, dests)
    try:
        if args.results_dir:
            results.check_dir(args.results_dir)
        retry = RetrySettings.from_env(environ)
        params = Params.from_env(env)
        with cli.connected(args, environ, log) as cluster:
            if args.action == "create-secret":
                create_secret(cluster, params.namespace, log, rotate=args.rotate)
                return 0
            return serve(params, cluster=cluster, log=log, retry=retry)
    except CssrError as e:
        log.info(f"error: {one_line(e)}")
        return e.exit_code


def serve(params: Params, *, cluster: Cluster, log: Log, retry: RetrySettings) -> int:
    sender = EventListener(params.url, params.secret_file, retry=retry, log=log)
    sender.token()  # fail at start, not at the first kernel change
    watcher = Watcher(params, cluster=cluster, log=log, sender=sender)
    try:
        health = Health(watcher, params.health_port, metrics=watcher.metrics.exposition).start()
    except OSError as e:
        sender.close()
        raise ConfigError(f"could not serve the health endpoint on port {params.health_port}: {e.strerror}; "
                          "set health-port to a free port") from e
    log.info(f"health endpoint on port {health.port} (/healthz, /readyz, /metrics)")
    if threading.current_thread() is threading.main_thread():
        def terminate(*_: object) -> None:
            watcher.stopping.set()
            watcher.dirty.set()

        signal.signal(signal.SIGTERM, terminate)
    try:
        watcher.run()
    finally:
        watcher.stop()
        health.stop()
        sender.close()
    return 0

