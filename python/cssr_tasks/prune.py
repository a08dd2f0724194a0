"""Remove what no longer applies after a good run: old kernels' trees and modules, old cssr-init tags.

Every upgrade adds a kernel's trees (`<kernel-tree-dir>/kernels/<kver>`) and modules
(`<modules-dir>/<kver>`, with `dpdk/` and modules.dep) to the modules volume, and a cssr-init image
(`<image-repository>:<kernel-set-id>`) to the registry. This keeps the last `keep-kernel-sets` good
kernel sets and removes the rest, under these rules:

- a kernel is kept when any node runs it (read now, from every node), when it is in this run's set
  (which holds the upgrade target), or in one of the last N good sets; and also when its folders
  show activity after the oldest of those N sets was proven good, or within `min-age` seconds: a run
  in flight may be laying it out or using it;
- a tag is removed only when its image's labels say it is the cssr-init image of that kernel set (a
  tag anyone else pushed is never touched), it is not of a kept set, its image is older than
  `min-age`, and no kept tag names the same digest (a DELETE by digest takes every tag on it);
- nothing is removed while a build holds the volume's build lock (build_lock.py): the lock is
  taken without waiting, and when a build holds it this run removes nothing and says so;
- a registry that refuses deletes (405: docker-registry without REGISTRY_STORAGE_DELETE_ENABLED=true;
  401/403: a login without delete rights) is reported and the rest goes on.

The good sets: report records the last one in ConfigMap `cssr-deploy-state` (kernel-set-id,
kernel-versions, time); this command keeps the history of them in the same ConfigMap under its own
key, `kernel-set-history`, written with its own field manager, so that report's server-side apply
keeps it. With dry-run it removes nothing and writes nothing, and says what it would remove.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import init_image, kernels
from .build_lock import BuildLock, host
from .cluster import Cluster
from .errors import ApiError, CssrError, WaitTimeout
from .init_image import DEFAULT_REPOSITORY, LABEL_SET_ID
from .log import Log
from .params import Reader
from .registry import INTERNAL_REGISTRIES, ImageRef, Registry
from .registry_refs import read_docker_config

NEEDS_CLUSTER = True
STATE_CONFIGMAP = "cssr-deploy-state"
HISTORY_KEY = "kernel-set-history"
FIELD_MANAGER = "cssr-prune"
HISTORY_LIMIT = 20  # entries kept in the ConfigMap: enough for any keep-kernel-sets a user raises to later
MAX_KEEP = HISTORY_LIMIT
MARK = ".cssr-init-complete"  # cssr-init's mark of a complete copy (files/cssr-init-entrypoint.sh)
PRUNING = ".cssr-prune."  # `.<kver>.cssr-prune.<host>.<pid>`: a folder moved aside, then removed
# A kernel version starts with its numbers: lost+found, the lock and the staging folder never match.
_KERNEL_DIR = re.compile(r"[0-9]+\.[0-9]+[A-Za-z0-9._+~-]*")
_FRACTION = re.compile(r"(\.\d{6})\d+")
_SET_ID = re.compile(r"[0-9a-f]{12}")


@dataclass(frozen=True)
class Params:
    namespace: str = field(default="", metadata={"help": "where ConfigMap cssr-deploy-state is kept"})
    kernel_versions: list[str] = field(default_factory=list, metadata={
        "help": "JSON array: this good run's kernel set (detect-kernel's kernel-versions)"})
    kernel_set_id: str = field(default="", metadata={"help": "this good run's kernel-set-id"})
    keep_kernel_sets: int = field(default=2, metadata={"help": "how many of the last good kernel sets to keep"})
    min_age: float = field(default=86400.0, metadata={
        "help": "seconds: a kernel folder or image younger than this is kept (a run in flight may use it)"})
    modules_dir: str = "/workspace/modules/modules"
    kernel_tree_dir: str = "/workspace/modules"
    stale_after: int = 600
    image_repository: str = DEFAULT_REPOSITORY
    docker_config: str = field(default="", metadata={
        "help": "docker config.json, or a directory holding config.json or .dockerconfigjson"})
    tls_verify: bool | str = field(default=True, metadata={"help": "true, false, or the path of a CA bundle"})
    dry_run: bool = field(default=False, metadata={"help": "say what would be removed; remove and write nothing"})

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Params:
        read = Reader(environ)
        kernel_list, set_id = init_image.read_kernel_set(read)
        params = cls(
            namespace=read.name("namespace", required=True, hint="pass $(context.pipelineRun.namespace)"),
            kernel_versions=kernel_list,
            kernel_set_id=set_id,
            keep_kernel_sets=read.integer("keep-kernel-sets", 2, minimum=1, maximum=MAX_KEEP),
            min_age=read.seconds("min-age", 86400.0),
            modules_dir=read.path("modules-dir", cls.modules_dir),
            kernel_tree_dir=read.path("kernel-tree-dir", cls.kernel_tree_dir),
            stale_after=read.integer("stale-after", cls.stale_after, minimum=1),
            image_repository=read.image("image-repository", DEFAULT_REPOSITORY, bare=True,
                                        hint="the tags are kernel-set-ids"),
            docker_config=read_docker_config(read, environ),
            tls_verify=read.tls_verify(),
            dry_run=read.boolean("dry-run", False),
        )
        for name, value in (("modules-dir", params.modules_dir), ("kernel-tree-dir", params.kernel_tree_dir)):
            if value and not value.startswith("/"):
                read.fail(f"param {name}={value!r} must be an absolute path, such as /workspace/modules")
        read.done()
        return params


@dataclass(frozen=True)
class Result:
    removed_kernels: list[str]
    removed_tags: list[str]


@dataclass(frozen=True)
class KernelSet:
    """A good kernel set and when it was first proven good (UTC, whole seconds)."""

    set_id: str
    kernels: tuple[str, ...]
    time: str

    def as_json(self) -> dict[str, Any]:
        return {"kernel-set-id": self.set_id, "kernel-versions": list(self.kernels), "time": self.time}


def run(params: Params, *, cluster: Cluster, log: Log) -> Result:
    start = time.monotonic()
    mode = "dry run: nothing is removed or written" if params.dry_run else "removing"
    log.info(f"keeping the last {params.keep_kernel_sets} good kernel set(s), the nodes' kernels and this run's "
             f"set {params.kernel_set_id} ({', '.join(params.kernel_versions)}); {mode}")
    state = _state(cluster, params)
    history = update_history(state, KernelSet(params.kernel_set_id, tuple(params.kernel_versions), _now()))
    if not params.dry_run:
        _record(cluster, params, history, state, log)
    kept = history[: params.keep_kernel_sets]
    for entry in kept:
        log.info(f"good kernel set {entry.set_id} (since {entry.time}): {', '.join(entry.kernels)}")
    running = _running_kernels(cluster, log)
    cutoff = min(_epoch(kept[-1].time), time.time() - params.min_age)
    keep_kernels = set(params.kernel_versions) | {k for e in kept for k in e.kernels} | (running or set())
    keep_tags = {params.kernel_set_id} | {e.set_id for e in kept}

    lock = None
    if not params.dry_run:
        lock = BuildLock(Path(params.modules_dir), f"prune-{host()}-{os.getpid()}", "process", timeout=0,
                         stale_after=params.stale_after, log=log)
        try:
            lock.acquire()
        except WaitTimeout as e:
            held = str(e).split("held by ", 1)[-1].split("; wait for", 1)[0]
            log.info(f"a build holds the volume's build lock ({held}): nothing is pruned now; the next good run "
                     "prunes")
            return Result(removed_kernels=[], removed_tags=[])
    try:
        removed = _prune_volume(params, running, keep_kernels, cutoff, log)
        tags = _prune_registry(params, keep_tags, cutoff, log)
    finally:
        if lock is not None:
            lock.release()
    verb = "would remove" if params.dry_run else "removed"
    log.info(f"{verb} {len(removed)} kernel(s) and {len(tags)} tag(s) in {time.monotonic() - start:.1f}s")
    return Result(removed_kernels=removed, removed_tags=tags)


# -- the good kernel sets ----------------------------------------------------------------------------


def update_history(state: Mapping[str, str], current: KernelSet) -> list[KernelSet]:
    """Newest first, one entry per set: this run's set, report's last good set, then the recorded history.

    A set proven good again moves to the front. Its time is the one recorded here, else report's, else now:
    never a later one, so that a run that changes nothing writes nothing.
    """
    recorded = _history(state.get(HISTORY_KEY, ""))
    reported = _reported(state)
    order = [current] + ([reported] if reported else []) + recorded
    first_time: dict[str, str] = {}
    for entry in [*recorded, *([reported] if reported else []), current]:
        first_time.setdefault(entry.set_id, entry.time)
    result: list[KernelSet] = []
    for entry in order:
        if all(e.set_id != entry.set_id for e in result):
            result.append(KernelSet(entry.set_id, entry.kernels, first_time.get(entry.set_id, entry.time)))
    return result[:HISTORY_LIMIT]


def _history(text: str) -> list[KernelSet]:
    """The recorded history; entries that do not parse (edited by hand) are left out."""
    try:
        items = json.loads(text) if text else []
    except ValueError:
        return []
    found = []
    for item in items if isinstance(items, list) else []:
        entry = _entry(item.get("kernel-set-id"), item.get("kernel-versions"), item.get("time")) \
            if isinstance(item, dict) else None
        if entry:
            found.append(entry)
    return found


def _reported(state: Mapping[str, str]) -> KernelSet | None:
    try:
        versions = json.loads(state.get("kernel-versions") or "null")
    except ValueError:
        return None
    return _entry(state.get("kernel-set-id"), versions, state.get("time"))


def _entry(set_id: Any, versions: Any, when: Any) -> KernelSet | None:
    """A KernelSet when the id is the id of the versions and the time reads as UTC, else None."""
    if not isinstance(set_id, str) or not isinstance(versions, list) or not isinstance(when, str):
        return None
    if not all(isinstance(v, str) for v in versions) or kernels.kernel_set_id(versions) != set_id:
        return None
    try:
        _epoch(when)
    except ValueError:
        return None
    return KernelSet(set_id, tuple(kernels.kernel_set(versions)), when)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(when: str) -> float:
    return datetime.strptime(when, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def _state(cluster: Cluster, params: Params) -> dict[str, str]:
    try:
        configmap = cluster.get_or_none("v1", "configmaps", STATE_CONFIGMAP, params.namespace)
    except ApiError as e:
        raise CssrError(f"could not read ConfigMap {params.namespace}/{STATE_CONFIGMAP}: {e}; without the good "
                        "kernel sets nothing can be pruned safely") from e
    return {str(k): str(v) for k, v in ((configmap or {}).get("data") or {}).items()}


def _record(cluster: Cluster, params: Params, history: list[KernelSet], state: Mapping[str, str],
            log: Log) -> None:
    text = json.dumps([e.as_json() for e in history], separators=(",", ":"))
    if state.get(HISTORY_KEY) == text:
        return
    configmap = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": STATE_CONFIGMAP, "namespace": params.namespace,
                     "labels": {"app.kubernetes.io/name": "cssr-deploy",
                                "app.kubernetes.io/managed-by": "cssr-deploy"}},
        "data": {HISTORY_KEY: text},
    }
    try:
        cluster.apply(configmap, field_manager=FIELD_MANAGER)
    except ApiError as e:
        raise CssrError(f"could not record the good kernel sets in ConfigMap {params.namespace}/{STATE_CONFIGMAP}: "
                        f"{e}") from e
    log.info(f"recorded {len(history)} good kernel set(s) in ConfigMap {params.namespace}/{STATE_CONFIGMAP} "
             f"(key {HISTORY_KEY})")


def _running_kernels(cluster: Cluster, log: Log) -> set[str] | None:
    """The kernel of every node; None when a node reports none (then no kernel may be removed)."""
    found: dict[str, list[str]] = {}
    for node in cluster.list("v1", "nodes"):
        name = str(node["metadata"]["name"])
        kernel = kernels.normalize(str(((node.get("status") or {}).get("nodeInfo") or {}).get("kernelVersion") or ""))
        if not kernel:
            log.warn(f"node {name} reports no kernel version: no kernel is removed from the volume this time")
            return None
        found.setdefault(kernel, []).append(name)
    for kernel, names in sorted(found.items()):
        log.info(f"kernel {kernel} runs on {len(names)} node(s): kept")
    return set(found)


# -- the modules volume ----------------------------------------------------------------------------


def _prune_volume(params: Params, running: set[str] | None, keep: set[str], cutoff: float, log: Log) -> list[str]:
    folders = (Path(params.modules_dir), Path(params.kernel_tree_dir) / "kernels")
    if not params.dry_run:
        for parent in folders:
            _remove_leftovers(parent, log)
    if running is None:
        return []
    present = sorted({p.name for parent in folders for p in _entries(parent)
                      if p.is_dir() and not p.is_symlink() and _KERNEL_DIR.fullmatch(p.name)},
                     key=kernels.version_key)
    removed = []
    for kernel in present:
        paths = [parent / kernel for parent in folders if (parent / kernel).is_dir()]
        if kernel in keep:
            continue
        touched = max(_activity(p) for p in paths)
        if touched >= cutoff:
            log.info(f"kernel {kernel}: in no kept set and run by no node, but its folders changed at "
                     f"{_shown(touched)}, after {_shown(cutoff)}: kept (a run in flight may use it)")
            continue
        size = sum(_size(p) for p in paths)
        if params.dry_run:
            log.info(f"kernel {kernel}: would remove {', '.join(map(str, paths))} ({_mib(size)})")
        else:
            for path in paths:
                _remove(path)
            log.info(f"kernel {kernel}: removed {', '.join(map(str, paths))} ({_mib(size)} freed)")
        removed.append(kernel)
    kept = [k for k in present if k not in removed]
    log.info(f"the volume keeps the folders of {len(kept)} kernel(s): {', '.join(kept) or 'none'}")
    return removed


def _entries(parent: Path) -> list[Path]:
    try:
        return list(parent.iterdir())
    except FileNotFoundError:
        return []
    except OSError as e:
        raise CssrError(f"could not read {parent}: {e.strerror}; mount the modules volume") from None


def _activity(path: Path) -> float:
    """The latest change seen in a kernel's folder: the folder, cssr-init's mark, the built modules."""
    times = []
    for candidate in (path, path / MARK, path / "dpdk", path / "modules.dep"):
        try:
            times.append(candidate.lstat().st_mtime)
        except OSError:
            continue
    return max(times)


def _remove(path: Path) -> None:
    """Move the folder aside in one rename, so that no reader ever sees half of it, then delete it."""
    aside = path.with_name(f".{path.name}{PRUNING}{host()}.{os.getpid()}")
    try:
        os.rename(path, aside)
        shutil.rmtree(aside)
    except OSError as e:
        raise CssrError(f"could not remove {path}: {e.strerror}; the modules volume must be writable by this "
                        "step's user") from None


def _remove_leftovers(parent: Path, log: Log) -> None:
    """Folders an earlier prune moved aside and could not finish removing (killed): we hold the lock."""
    for entry in _entries(parent):
        if entry.name.startswith(".") and PRUNING in entry.name and entry.is_dir() and not entry.is_symlink():
            log.info(f"removing {entry}, left by an earlier prune")
            shutil.rmtree(entry, ignore_errors=True)


def _size(path: Path) -> int:
    total = 0
    for root, dirs, files in os.walk(path):
        for name in files + dirs:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


# -- the registry ----------------------------------------------------------------------------------


def _prune_registry(params: Params, keep: set[str], cutoff: float, log: Log) -> list[str]:
    repository = ImageRef.parse(params.image_repository)
    removed: list[str] = []
    try:
        with Registry.for_image(repository, docker_config=params.docker_config, tls_verify=params.tls_verify,
                                log=log, internal=repository.registry in INTERNAL_REGISTRIES) as registry:
            _prune_tags(registry, repository, keep, cutoff, dry_run=params.dry_run, log=log, removed=removed)
    except ApiError as e:
        log.warn(f"{e}; the other tags stay until the next good run")
    return removed


def _prune_tags(registry: Registry, repository: ImageRef, keep: set[str], cutoff: float, *, dry_run: bool,
                log: Log, removed: list[str]) -> None:
    """Delete the tags that no longer apply, appending each to `removed` as it goes."""
    tags = registry.tags(repository)
    ours = sorted(t for t in tags if _SET_ID.fullmatch(t))
    log.info(f"{repository.name}: {len(tags)} tag(s), {len(ours)} named like a kernel-set-id")
    kept_digests = {d for t in sorted(keep & set(tags)) if (d := registry.manifest_digest(repository.with_tag(t)))}
    for tag in ours:
        if tag in keep:
            log.info(f"tag {tag}: a kept kernel set")
            continue
        ref = repository.with_tag(tag)
        config = registry.config(ref) or {}
        labels = (config.get("config") or {}).get("Labels") or {}
        if labels.get(LABEL_SET_ID) != tag:
            log.info(f"tag {tag}: its image is not labelled {LABEL_SET_ID}={tag}: not a cssr-init image of ours; kept")
            continue
        created = _created(config)
        if created is None or created >= cutoff:
            log.info(f"tag {tag}: built {_shown(created) if created else 'at an unknown time'}, after "
                     f"{_shown(cutoff)}: kept (a run in flight may use it)")
            continue
        digest = registry.manifest_digest(ref)
        if not digest:
            continue
        if digest in kept_digests:
            log.info(f"tag {tag}: names the same image ({digest}) as a kept tag; a delete by digest would take both: "
                     "kept")
            continue
        if dry_run:
            log.info(f"tag {tag}: would delete {repository.name}@{digest}")
            removed.append(tag)
            continue
        try:
            registry.delete_manifest(ImageRef(repository.registry, repository.repository, "", digest))
        except ApiError as e:
            if e.status in (400, 401, 403, 405):
                log.warn(_refused(e, registry.host, repository))
                break
            raise
        log.info(f"tag {tag}: deleted {repository.name}@{digest}")
        removed.append(tag)


def _refused(error: ApiError, host: str, repository: ImageRef) -> str:
    if error.status == 405:
        why = ("it does not allow deletes (405): docker-registry needs REGISTRY_STORAGE_DELETE_ENABLED=true (storage "
               "delete enabled in its config); then run its garbage-collect to free the blobs")
    elif error.status in (401, 403):
        why = f"the login may not delete in {repository.repository} ({error.status})"
    else:
        why = f"it refused the delete ({error.status})"
    internal = (f"; on OpenShift's internal registry remove the tags with `oc tag -d {repository.repository}:<tag>` "
                "(the image pruner frees the storage)") if host in INTERNAL_REGISTRIES else ""
    return f"registry {host}: {why}: no tag removed{internal}"


def _created(config: Mapping[str, Any]) -> float | None:
    """The image's build time: buildah writes RFC 3339 with nanoseconds, which datetime reads to microseconds."""
    text = _FRACTION.sub(r"\1", str(config.get("created") or "")).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text).timestamp() if text else None
    except ValueError:
        return None


def _shown(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"

