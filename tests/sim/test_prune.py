"""prune against the simulated OpenShift, a real modules volume (a folder) and a real registry (docker-registry).

Ten scripted upgrades (cssr_tasks.sim.upgrades) each go through two good runs, as the pool watcher
starts them: one when the pool starts updating (the set holds the running kernel and the target)
and one after the rollout (the target alone). Each run lays out its kernels' folders as cssr-init
and build-kmods do (kernels/<kver>, modules/<kver> with cssr-init's mark, dpdk/*.ko, modules.dep),
pushes its cssr-init image with the labels build-init-image writes, and prunes. The volume and the
registry must stay within N+2 kernels and N+2 tags, no kernel a node runs may go, a held build lock
must keep everything, and a dry run must change nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from cssr_tasks import cli, kernels, prune
from cssr_tasks.build_lock import BuildLock
from cssr_tasks.init_image import LABEL_KERNELS, LABEL_SET_ID
from cssr_tasks.log import Log
from cssr_tasks.sim import SimulatedCluster
from cssr_tasks.sim import fixtures as fx
from cssr_tasks.sim.images import REGISTRY_BIN, RegistryServer
from cssr_tasks.sim.upgrades import Upgrades

from support import require_tool

NS = "cssr"
REPO = "cssr/cssr-init"
DAY = 86400.0
KIB = 1024
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
# Ten releases after 4.16, each with its own kernel (4.16 and 4.17 are fixtures.RELEASES' own).
RELEASES = {f"4.{17 + i}": (f"4{17 + i}.94.2025{i:02d}01-0", f"5.14.0-{427 + 10 * i}.1.1.el9_4.x86_64",
                            f"5.14.0-{427 + 10 * i}.1.1.el9_4.x86_64+rt") for i in range(1, 11)}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """docker-registry with storage delete enabled (RegistryServer's config), no auth."""
    require_tool(REGISTRY_BIN)
    server = RegistryServer(tmp_path_factory.mktemp("prune-registry")).start()
    try:
        yield server
    finally:
        server.stop()


class World:
    """The modules volume, the registry and the cluster of one scenario, with its own clock."""

    def __init__(self, sim: SimulatedCluster, registry: RegistryServer, root: Path, repo: str) -> None:
        self.sim, self.registry, self.root, self.repo = sim, registry, root, repo
        self.volume = root / "volume"
        (self.volume / "modules").mkdir(parents=True)
        (self.volume / "kernels").mkdir()
        self.clock = time.time() - 60 * DAY  # the scenario's "now", moved on by each event
        self.laid_out: set[str] = set()
        self.pushed: set[str] = set()

    def tick(self, seconds: float = DAY) -> float:
        self.clock += seconds
        return self.clock

    def lay_out(self, kernel: str, *, when: float | None = None, payload: int = 256 * KIB) -> None:
        """What build-kmods' layout step (cssr-init) and commit step leave for one kernel."""
        stamp = self.clock if when is None else when
        for folder in (self.volume / "kernels" / kernel, self.volume / "modules" / kernel):
            if folder.exists():
                continue
            (folder / "payload").mkdir(parents=True)
            (folder / "payload" / "objects.bin").write_bytes(os.urandom(payload))
            (folder / prune.MARK).touch()
        modules = self.volume / "modules" / kernel
        if not (modules / "dpdk").exists():
            (modules / "dpdk").mkdir()
            for name in ("igb_uio", "rte_kni"):
                (modules / "dpdk" / f"{name}.ko").write_bytes(os.urandom(8 * KIB))
            (modules / "modules.dep").write_text("dpdk/igb_uio.ko: kernel/drivers/uio/uio.ko\ndpdk/rte_kni.ko:\n")
        for path in [*(self.volume / "kernels" / kernel).rglob("*"), *modules.rglob("*"),
                     self.volume / "kernels" / kernel, modules]:
            os.utime(path, (stamp, stamp), follow_symlinks=False)
        self.laid_out.add(kernel)

    def push(self, versions: list[str], *, when: float | None = None, tag: str = "", labels: bool = True) -> str:
        """The cssr-init image of a kernel set, with build-init-image's labels and buildah's created time."""
        set_id = kernels.kernel_set_id(versions)
        created = datetime.fromtimestamp(self.clock if when is None else when, UTC)
        config = json.dumps({
            "created": created.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z", "architecture": "amd64", "os": "linux",
            "config": {"Labels": {LABEL_SET_ID: set_id, LABEL_KERNELS: " ".join(versions)} if labels else {}},
            "rootfs": {"type": "layers", "diff_ids": []},
        }).encode()
        layer = os.urandom(64 * KIB)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json", "digest": self._blob(config), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": self._blob(layer),
                        "size": len(layer)}]}).encode()
        name = tag or set_id
        response = requests.put(f"http://{self.registry.host}/v2/{self.repo}/manifests/{name}", data=manifest,
                                headers={"Content-Type": OCI_MANIFEST}, timeout=30)
        assert response.status_code == 201, response.text
        self.pushed.add(name)
        return "sha256:" + hashlib.sha256(manifest).hexdigest()

    def _blob(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        start = requests.post(f"http://{self.registry.host}/v2/{self.repo}/blobs/uploads/", timeout=30)
        assert start.status_code == 202, start.text
        location = start.headers["Location"]
        url = location if location.startswith("http") else f"http://{self.registry.host}{location}"
        done = requests.put(url, params={"digest": digest}, data=data, timeout=30)
        assert done.status_code == 201, done.text
        return digest

    def tags(self) -> list[str]:
        response = requests.get(f"http://{self.registry.host}/v2/{self.repo}/tags/list", timeout=30)
        return sorted(response.json().get("tags") or []) if response.status_code == 200 else []

    def kernels_on_volume(self) -> list[str]:
        return sorted({p.name for d in ("modules", "kernels") for p in (self.volume / d).iterdir()
                       if not p.name.startswith(".")}, key=kernels.version_key)

    def volume_bytes(self) -> int:
        return sum(p.lstat().st_size for p in self.volume.rglob("*") if p.is_file())

    def node_kernels(self) -> set[str]:
        return {n["status"]["nodeInfo"]["kernelVersion"] for n in self.sim.objects("v1", "Node")}

    def env(self, versions: list[str], **extra: str) -> dict[str, str]:
        env = {"PARAM_NAMESPACE": NS, "PARAM_KERNEL_VERSIONS": json.dumps(versions),
               "PARAM_KERNEL_SET_ID": kernels.kernel_set_id(versions),
               "PARAM_MODULES_DIR": str(self.volume / "modules"), "PARAM_KERNEL_TREE_DIR": str(self.volume),
               "PARAM_IMAGE_REPOSITORY": f"{self.registry.host}/{self.repo}", "PARAM_TLS_VERIFY": "false",
               "PARAM_DOCKER_CONFIG": str(self.root / "no-config.json"), "PARAM_MIN_AGE": str(int(DAY / 2))}
        (self.root / "no-config.json").write_text('{"auths": {}}')
        return {**env, **{f"PARAM_{k.upper()}": v for k, v in extra.items()}}

    def prune(self, versions: list[str], **extra: str) -> tuple[prune.Result, str]:
        """`cssr-tasks prune` as the Task runs it; the file times and image times are the scenario's clock,
        which runs behind the wall clock, so prune's own records are always newer."""
        out, err = io.StringIO(), io.StringIO()
        results = self.root / f"results-{time.monotonic_ns()}"
        kubeconfig = self.sim.write_kubeconfig(self.root / "kubeconfig")
        env = {**self.env(versions, **extra), "CSSR_RETRY_WAIT": "0", "HOME": str(self.root)}
        with redirect_stdout(out), redirect_stderr(err):
            code = cli.main(["prune", "--kubeconfig", str(kubeconfig), "--results-dir", str(results)], env)
        assert code == 0, err.getvalue()
        result = prune.Result(json.loads((results / "removed-kernels").read_text()),
                              json.loads((results / "removed-tags").read_text()))
        return result, err.getvalue()

    def record_good(self, versions: list[str], run: str) -> None:
        """What report writes for a good run (report.py: kernel-set-id, kernel-versions, pipeline-run, time)."""
        data = {"kernel-set-id": kernels.kernel_set_id(versions),
                "kernel-versions": json.dumps(kernels.kernel_set(versions), separators=(",", ":")),
                "pipeline-run": run, "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        old = self.sim.get("v1", "ConfigMap", prune.STATE_CONFIGMAP, NS)
        merged = {**((old or {}).get("data") or {}), **data}
        self.sim.put({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": prune.STATE_CONFIGMAP, "namespace": NS}, "data": merged})


@pytest.fixture
def world(empty_sim: SimulatedCluster, registry: RegistryServer, tmp_path: Path,
          request: pytest.FixtureRequest) -> World:
    repo = f"{REPO}-{hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:8]}"  # one repository per test
    return World(empty_sim, registry, tmp_path, repo)


@pytest.fixture
def releases(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """4.16 and ten releases after it, each with a new kernel, in the fixtures' release table."""
    for release, versions in RELEASES.items():
        monkeypatch.setitem(fx.RELEASES, release, versions)
    return ["4.16", *RELEASES]


def good_run(world: World, versions: list[str], name: str, **extra: str) -> tuple[prune.Result, str]:
    world.tick(3600)
    for kernel in versions:
        world.lay_out(kernel)
    world.push(versions)
    world.record_good(versions, name)
    return world.prune(versions, **extra)


def test_ten_upgrades_keep_the_volume_and_the_registry_bounded(world, releases, capsys):
    keep = 2
    mco = Upgrades(world.sim)
    mco.add_pool("worker", 3, release="4.16")
    first = [fx.RELEASES["4.16"][1]]
    good_run(world, first, "install")
    rows = []
    started = time.monotonic()
    prunes = 0
    for i, release in enumerate(releases[1:], start=1):
        world.tick(30 * DAY / 10)
        running = sorted(world.node_kernels())
        target = fx.RELEASES[release][1]
        config = mco.render("worker", release=release)
        # the watcher's run when the pool starts updating: the running kernel and the target
        updating = sorted([*running, target])
        steps = mco.roll("worker", config)
        next(steps)
        _, text = good_run(world, updating, f"upgrade-{i}")
        prunes += 1
        assert set(updating) <= set(world.kernels_on_volume())
        for step in steps:  # mid-rollout: nodes on both kernels; every node's kernel stays
            if "node worker-1 updated" in step:
                _, text = world.prune(updating)
                prunes += 1
                assert world.node_kernels() <= set(world.kernels_on_volume()), text
        assert world.node_kernels() == {target}
        # the run after the rollout: the target alone
        _, text = good_run(world, [target], f"settled-{i}")
        prunes += 1
        on_volume = world.kernels_on_volume()
        assert target in on_volume
        assert len(on_volume) <= keep + 2, text
        assert len(world.tags()) <= keep + 2, text
        for kernel in on_volume:  # both folders or none: a kernel is never half removed
            assert (world.volume / "modules" / kernel / "dpdk").is_dir() and (world.volume / "kernels" / kernel).is_dir()
        rows.append((i, len(world.laid_out), len(on_volume), len(world.pushed), len(world.tags()),
                     world.volume_bytes()))
    seconds = (time.monotonic() - started) / prunes
    assert len(world.laid_out) == 11 and len(world.pushed) == 21  # what would pile up without prune
    assert rows[-1][2] <= keep + 2 and rows[-1][4] <= keep + 2
    with capsys.disabled():
        print(f"\nupgrade  kernels laid out  kept  tags pushed  kept  volume bytes (mean prune {seconds:.2f}s)")
        for row in rows:
            print("{:>7}  {:>16}  {:>4}  {:>11}  {:>4}  {:>12}".format(*row))


def test_a_kernel_a_node_runs_is_never_removed_even_in_no_kept_set(world):
    old, new = fx.RELEASES["4.16"][1], fx.RELEASES["4.17"][1]
    world.sim.put(fx.node("straggler", kernel=old, rhcos=fx.RELEASES["4.16"][0]))
    world.lay_out(old)
    world.tick(10 * DAY)
    good_run(world, [new], "a")
    good_run(world, [new, "5.14.0-600.el9.x86_64"], "b")
    result, text = good_run(world, ["5.14.0-600.el9.x86_64"], "c", keep_kernel_sets="1")
    assert old in world.kernels_on_volume() and old not in result.removed_kernels
    assert f"kernel {old} runs on 1 node(s): kept" in text


def test_a_node_without_a_kernel_version_keeps_every_kernel(world):
    node = fx.node("joining", kernel="", rhcos=fx.RELEASES["4.16"][0])
    world.sim.put(node)
    world.lay_out("5.14.0-1.el9.x86_64")
    world.tick(10 * DAY)
    result, text = good_run(world, ["5.14.0-2.el9.x86_64"], "a", keep_kernel_sets="1")
    assert result.removed_kernels == [] and "5.14.0-1.el9.x86_64" in world.kernels_on_volume()
    assert "node joining reports no kernel version: no kernel is removed" in text


def test_a_held_build_lock_means_nothing_is_removed(world):
    old = "5.14.0-1.el9.x86_64"
    world.lay_out(old)
    world.push([old])
    world.tick(10 * DAY)
    build = BuildLock(world.volume / "modules", "build-kmods-7", "process", timeout=0, stale_after=600, log=Log("x"))
    build.acquire()
    try:
        result, text = good_run(world, ["5.14.0-2.el9.x86_64"], "a", keep_kernel_sets="1")
    finally:
        build.release()
    assert result == prune.Result([], [])
    assert old in world.kernels_on_volume() and kernels.kernel_set_id([old]) in world.tags()
    assert "a build holds the volume's build lock (build-kmods-7 (pid" in text
    # the lock released, the next good run prunes
    result, _ = world.prune(["5.14.0-2.el9.x86_64"], keep_kernel_sets="1")
    assert result.removed_kernels == [old] and result.removed_tags == [kernels.kernel_set_id([old])]


def test_a_task_lease_between_build_kmods_steps_also_stops_it(world):
    """build-kmods' Task holds a lease across its steps with the flock dropped: still a build holding the lock."""
    world.lay_out("5.14.0-1.el9.x86_64")
    world.tick(10 * DAY)
    lease = BuildLock(world.volume / "modules", "cssr-deploy-x-build-kmods-pod", "task", timeout=0,
                      stale_after=600, log=Log("x"))
    lease.acquire()
    lease.detach()
    result, text = good_run(world, ["5.14.0-2.el9.x86_64"], "a", keep_kernel_sets="1")
    assert result.removed_kernels == [] and "5.14.0-1.el9.x86_64" in world.kernels_on_volume()
    assert "nothing is pruned now; the next good run prunes" in text


def test_dry_run_lists_and_removes_nothing_and_writes_nothing(world):
    old = "5.14.0-1.el9.x86_64"
    world.lay_out(old)
    world.push([old])
    world.tick(10 * DAY)
    world.lay_out("5.14.0-2.el9.x86_64")
    world.push(["5.14.0-2.el9.x86_64"])
    before = sorted(str(p) for p in world.volume.rglob("*"))
    tags = world.tags()
    world.sim.clear_requests()
    mark = world.registry.log_size()
    result, text = world.prune(["5.14.0-2.el9.x86_64"], keep_kernel_sets="1", dry_run="true")
    assert result == prune.Result([old], [kernels.kernel_set_id([old])])
    assert sorted(str(p) for p in world.volume.rglob("*")) == before  # not even the lock file
    assert world.tags() == tags
    assert world.sim.writes() == []
    world.registry.settle()
    assert not [r for r in world.registry.requests_since(mark) if not r.startswith(("GET", "HEAD"))]
    assert f"kernel {old}: would remove" in text and "would remove 1 kernel(s) and 1 tag(s)" in text


def test_a_young_kernel_of_a_run_in_flight_is_kept(world):
    """A run in flight laid out its target after the last good set was proven: it is in no set yet."""
    world.tick(10 * DAY)
    good_run(world, ["5.14.0-2.el9.x86_64"], "a", keep_kernel_sets="1")
    world.lay_out("5.14.0-3.el9.x86_64", when=time.time() - 60)  # another run, a minute ago
    world.push(["5.14.0-2.el9.x86_64", "5.14.0-3.el9.x86_64"], when=time.time() - 60)
    result, text = world.prune(["5.14.0-2.el9.x86_64"], keep_kernel_sets="1")
    assert result == prune.Result([], [])
    assert "5.14.0-3.el9.x86_64" in world.kernels_on_volume()
    assert "kernel 5.14.0-3.el9.x86_64: in no kept set and run by no node, but its folders changed at" in text


def test_tags_not_ours_and_tags_sharing_a_kept_digest_stay(world):
    old, new = ["5.14.0-1.el9.x86_64"], ["5.14.0-2.el9.x86_64"]
    old_id, new_id = kernels.kernel_set_id(old), kernels.kernel_set_id(new)
    world.push(old)
    world.push(old, tag="release-1")  # a user's tag
    world.push(old, labels=False, tag=kernels.kernel_set_id(["5.14.0-0.el9.x86_64"]))  # named like ours, not ours
    # the kept set's tag names the very image of the old set: a DELETE by digest would take the kept tag too
    url = f"http://{world.registry.host}/v2/{world.repo}/manifests"
    manifest = requests.get(f"{url}/{old_id}", headers={"Accept": OCI_MANIFEST}, timeout=30).content
    assert requests.put(f"{url}/{new_id}", data=manifest, headers={"Content-Type": OCI_MANIFEST},
                        timeout=30).status_code == 201
    world.tick(10 * DAY)
    world.record_good(new, "a")
    result, text = world.prune(new, keep_kernel_sets="1")
    assert result.removed_tags == []
    assert world.tags() == sorted([old_id, new_id, "release-1", kernels.kernel_set_id(["5.14.0-0.el9.x86_64"])])
    assert "is not labelled cssr-deploy.kernel-set-id=" in text
    assert f"tag {old_id}: names the same image" in text


def test_a_registry_that_refuses_deletes_is_reported_and_the_volume_still_pruned(
        world, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("REGISTRY_STORAGE_DELETE_ENABLED", "false")  # docker-registry's env override of its config
    closed = RegistryServer(tmp_path_factory.mktemp("no-delete-registry")).start()
    try:
        world.registry = closed
        old = ["5.14.0-1.el9.x86_64"]
        world.lay_out(old[0])
        world.push(old)
        world.tick(10 * DAY)
        result, text = good_run(world, ["5.14.0-2.el9.x86_64"], "a", keep_kernel_sets="1")
        assert result.removed_kernels == old and result.removed_tags == []
        assert kernels.kernel_set_id(old) in world.tags()
        assert "does not allow deletes (405): docker-registry needs REGISTRY_STORAGE_DELETE_ENABLED=true" in text
    finally:
        closed.stop()


def test_the_history_is_kept_beside_reports_keys_and_a_rerun_writes_nothing(world):
    world.tick(10 * DAY)
    good_run(world, ["5.14.0-1.el9.x86_64"], "a")
    good_run(world, ["5.14.0-2.el9.x86_64"], "b")
    data = world.sim.get("v1", "ConfigMap", prune.STATE_CONFIGMAP, NS)["data"]
    history = json.loads(data[prune.HISTORY_KEY])
    assert [h["kernel-versions"] for h in history] == [["5.14.0-2.el9.x86_64"], ["5.14.0-1.el9.x86_64"]]
    assert data["pipeline-run"] == "b"  # report's keys untouched
    assert any(w.query.get("fieldManager") == prune.FIELD_MANAGER for w in world.sim.writes())
    world.sim.clear_requests()
    world.prune(["5.14.0-2.el9.x86_64"])
    assert world.sim.writes() == []


@pytest.mark.parametrize(("env", "problem"), [
    ({"PARAM_KEEP_KERNEL_SETS": "0"}, "keep-kernel-sets=0 is below the minimum 1"),
    ({"PARAM_MODULES_DIR": "relative/modules"}, "modules-dir='relative/modules' must be an absolute path"),
    ({"PARAM_NAMESPACE": ""}, "namespace is required"),
], ids=["keep-zero", "relative-dir", "no-namespace"])
def test_bad_params_are_one_line_and_exit_2(world, env, problem):
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        code = cli.main(["prune"], {**world.env(["5.14.0-2.el9.x86_64"]), **env})
    assert code == 2
    assert problem in err.getvalue() and err.getvalue().count("\n") == 1
