"""detect-kernel against the simulated OpenShift: every param, result and error of the command.

The upgrade target comes from the Driver Toolkit image itself: the `dtk` fixture is a real
registry (Debian's docker-registry) holding Driver Toolkit images with only
/etc/driver-toolkit-release.json in them and no label, as released images carry none, and a
multi-arch index of one of them; the simulated ImageStream names those images.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cssr_tasks import detect_kernel, driver_toolkit
from cssr_tasks.errors import ConfigError, CssrError
from cssr_tasks.sim import SimulatedCluster, oci
from cssr_tasks.sim import fixtures as fx
from cssr_tasks.sim.images import REGISTRY_BIN, RegistryServer, release_layer

from support import require_tool

K416 = fx.RELEASES["4.16"][1]
K417 = fx.RELEASES["4.17"][1]
RT416 = fx.RELEASES["4.16"][2]
RT417 = fx.RELEASES["4.17"][2]
RHCOS416 = fx.RELEASES["4.16"][0]
RHCOS417 = fx.RELEASES["4.17"][0]
ARM417 = K417.replace("x86_64", "aarch64")
REPOSITORY = "openshift/driver-toolkit"
USER, TOKEN = "serviceaccount", "sa-token-for-the-registry"


@dataclass
class Dtk:
    """A registry holding Driver Toolkit images: RHCOS version (or a name) -> manifest digest."""

    server: RegistryServer
    digests: dict[str, str]

    @property
    def repository(self) -> str:
        return f"{self.server.host}/{REPOSITORY}"

    def stream(self, latest: str, image417: str = RHCOS417) -> list[dict]:
        """The ImageStream with tags 4.16 and 4.17 (at the image named `image417`), `latest` at `latest`'s."""
        digests = {RHCOS416: self.digests[RHCOS416], RHCOS417: self.digests[image417]}
        return fx.driver_toolkit(["4.16", "4.17"], latest=latest, repository=self.repository, digests=digests)

    def requests_during(self, action):
        self.server.settle()
        mark = self.server.log_size()
        result = action()
        self.server.settle()
        return result, self.server.requests_since(mark)


def push(host: str, folder: Path, name: str, **kwargs) -> str:
    return oci.push_rootfs(folder, f"{host}/{REPOSITORY}:{name}", {}, **kwargs)


@pytest.fixture(scope="module")
def dtk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dtk]:
    """Released Driver Toolkit images hold /etc/driver-toolkit-release.json and carry no kernel label.

    The registry requires a login (htpasswd), as the cluster's registry does; the password is the
    service account token the `token` fixture mounts."""
    require_tool(REGISTRY_BIN, "htpasswd")
    root = tmp_path_factory.mktemp("dtk-registry")
    server = RegistryServer(root / "registry", user=USER, password=TOKEN).start()
    login = (USER, TOKEN)

    def pushed(name: str, folder: Path, **kwargs) -> str:
        return oci.push_rootfs(folder, f"{server.host}/{REPOSITORY}:{name}", {}, login=login, **kwargs)

    def only(folder: Path, path: str, text: str) -> Path:
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)
        return folder

    try:
        digests = {
            RHCOS416: pushed(RHCOS416, release_layer(root / "416", K416, RT416)),
            RHCOS417: pushed(RHCOS417, release_layer(root / "417", K417, RT417)),
            "arm417": pushed("arm417", release_layer(root / "arm417", ARM417), architecture="arm64"),
            "no-file": pushed("no-file", only(root / "no-file", "etc/os-release", "ID=rhel\n")),
            "no-kernel": pushed("no-kernel", only(root / "no-kernel", "etc/driver-toolkit-release.json",
                                                  '{"RHEL_VERSION": "9.4"}')),
        }
        digests["multi"] = oci.push_index(f"{server.host}/{REPOSITORY}:multi", {
            "arm64": f"{server.host}/{REPOSITORY}@{digests['arm417']}",
            "amd64": f"{server.host}/{REPOSITORY}@{digests[RHCOS417]}"}, login=login)
        yield Dtk(server, digests)
    finally:
        server.stop()


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The pod's service account token, where the registry client is told to find it."""
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    monkeypatch.setenv("CSSR_SA_TOKEN_FILE", str(path))
    return path


@pytest.fixture
def no_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CSSR_SA_TOKEN_FILE", str(tmp_path / "no-token"))


def on(dtk: Dtk, **env: str) -> detect_kernel.Params:
    """Params for a registry of plain HTTP on 127.0.0.1."""
    return params(tls_verify="false", **env)


def params(**env: str) -> detect_kernel.Params:
    return detect_kernel.Params.from_env({f"PARAM_{k.upper()}": v for k, v in env.items()})


def test_settled_cluster_gives_one_kernel_and_its_dtk(sim, cluster, log):
    result = detect_kernel.run(params(), cluster=cluster, log=log)
    assert result.kernel_versions == [K416]
    assert result.kernel_set_id == hashlib.sha256(K416.encode()).hexdigest()[:12]
    assert result.primary_kernel == K416
    assert result.rhcos_versions == {K416: RHCOS416}
    assert result.dtk_images == {K416: fx.dtk_pullspec(RHCOS416, internal=True)}
    assert result.node_count == 3
    assert "found 3 node(s)" in log.text
    # the newest Driver Toolkit is the release the nodes run: its kernel is known without a registry read
    assert f"newest Driver Toolkit is RHCOS {RHCOS416}, which nodes run already" in log.text
    assert "driver-toolkit-release.json" not in log.text


def test_masters_are_not_targets_unless_selected(sim, cluster, log):
    result = detect_kernel.run(params(node_selector="node-role.kubernetes.io/master="), cluster=cluster, log=log)
    assert result.node_count == 3
    assert all(r.query.get("labelSelector") == "node-role.kubernetes.io/master=" for r in sim.requests
               if r.resource == "nodes")


def test_pool_node_selector_replaces_node_selector(sim, cluster, log, dtk, token):
    sim.load(dtk.stream("4.16"))
    sim.load(fx.workers(2, prefix="cnf", role="worker-cnf", realtime=True))
    sim.put(fx.pool("worker-cnf", machine_count=2, config=fx.rendered("worker-cnf", RHCOS416)))
    result = detect_kernel.run(on(dtk, pool="worker-cnf", node_selector="does-not=matter"), cluster=cluster, log=log)
    assert result.node_count == 2
    # realtime nodes: the RT kernel of the newest DTK is the upgrade target, and it equals the running one
    assert result.kernel_versions == sorted([RT416, K416])
    assert "pool worker-cnf selects nodes with 'node-role.kubernetes.io/worker-cnf='" in log.text


def test_missing_pool_is_a_config_error(cluster, log):
    with pytest.raises(ConfigError, match="MachineConfigPool nope not found"):
        detect_kernel.run(params(pool="nope"), cluster=cluster, log=log)


def test_upgrade_target_joins_the_set_before_any_node_reboots(sim, cluster, log, dtk, token):
    """The acceptance: `latest` names an image holding only the release file, no label; its kernel joins."""
    sim.load(dtk.stream("4.17"))
    result, requests = dtk.requests_during(lambda: detect_kernel.run(on(dtk), cluster=cluster, log=log))
    assert result.kernel_versions == sorted([K416, K417])
    assert result.primary_kernel == K416
    assert result.rhcos_versions == {K416: RHCOS416, K417: RHCOS417}
    assert result.dtk_images == {K416: f"{dtk.repository}@{dtk.digests[RHCOS416]}",
                                 K417: f"{dtk.repository}@{dtk.digests[RHCOS417]}"}
    assert f"newest Driver Toolkit kernel {K417}: added as the upgrade target" in log.text
    # one manifest and one blob, the last layer: never a pull of the image
    gets = sorted({r for r in requests if r.startswith("GET")})
    assert gets == sorted([f"GET /v2/{REPOSITORY}/blobs/{blob_of_last_layer(dtk, RHCOS417)}",
                           f"GET /v2/{REPOSITORY}/manifests/{dtk.digests[RHCOS417]}"])
    assert f"login serviceaccount from the service account token {token}" in log.text


def blob_of_last_layer(dtk: Dtk, name: str) -> str:
    """The digest of the image's last layer, read with the pusher's own client."""
    body = oci._http("GET", f"http://{dtk.server.host}/v2/{REPOSITORY}/manifests/{dtk.digests[name]}",
                     None, {"Accept": oci.ACCEPT}, (USER, TOKEN))[2]
    return str(json.loads(body)["layers"][-1]["digest"])


def test_a_manifest_list_is_followed_to_the_nodes_architecture(sim, cluster, log, dtk, token):
    """Since 4.16 the tags import with importMode PreserveOriginal: the tag names the multi-arch index."""
    sim.load(dtk.stream("4.17", image417="multi"))
    result = detect_kernel.run(on(dtk), cluster=cluster, log=log)
    assert result.kernel_versions == sorted([K416, K417])
    assert result.dtk_images[K417] == f"{dtk.repository}@{dtk.digests['multi']}"
    arm = fx.node("arm-0", kernel=ARM417.replace("427.44", "427.40"), rhcos=RHCOS416)
    arm["status"]["nodeInfo"]["architecture"] = "arm64"
    sim.put(arm)
    both = detect_kernel.run(on(dtk), cluster=cluster, log=log)
    assert K417 in both.kernel_versions and ARM417 in both.kernel_versions


def test_the_realtime_target_of_a_manifest_list(sim, cluster, log, dtk, token):
    sim.load(dtk.stream("4.17", image417="multi"))
    result = detect_kernel.run(on(dtk, kernel_type="realtime"), cluster=cluster, log=log)
    assert result.kernel_versions == sorted([K416, K417, RT417])
    assert result.rhcos_versions[RT417] == RHCOS417
    assert result.dtk_images[RT417] == result.dtk_images[K417]


@pytest.mark.usefixtures("no_token")
def test_upstream_reads_the_tags_own_reference_and_internal_the_cluster_registry(sim, cluster, log, dtk, tmp_path):
    """dtk-source picks the registry the image is read through; a failure is a warning naming the image."""
    stream, tag = dtk.stream("4.17")
    stream["status"]["dockerImageRepository"] = "127.0.0.1:9/openshift/driver-toolkit"  # nothing listens there
    sim.load([stream, tag])
    config = dtk.server.docker_config(tmp_path / "cfg")
    upstream = detect_kernel.run(on(dtk, dtk_source="upstream", docker_config=str(config)), cluster=cluster, log=log)
    assert K417 in upstream.kernel_versions
    internal = detect_kernel.run(on(dtk, docker_config=str(config)), cluster=cluster, log=log)
    assert internal.kernel_versions == [K416]
    assert f"could not read /etc/driver-toolkit-release.json of the Driver Toolkit image " \
           f"127.0.0.1:9/openshift/driver-toolkit@{dtk.digests[RHCOS417]}" in log.text
    assert "going on without its kernels" in log.text


@pytest.mark.parametrize("case", [
    ("no-file", "has no /etc/driver-toolkit-release.json in any layer"),
    ("no-kernel", "names no kernel (KERNEL_VERSION, RT_KERNEL_VERSION)"),
], ids=["no-file", "no-kernel"])
@pytest.mark.usefixtures("token")
def test_an_image_without_kernels_is_a_warning_and_the_run_goes_on(sim, cluster, log, dtk, case):
    image, warning = case
    sim.load(dtk.stream("4.17", image417=image))
    result = detect_kernel.run(on(dtk), cluster=cluster, log=log)
    assert result.kernel_versions == [K416]
    warnings = [line for line in log.text.splitlines() if warning in line]
    assert len(warnings) == 1
    assert f"the Driver Toolkit image {dtk.repository}@{dtk.digests[image]}" in warnings[0]


@pytest.mark.usefixtures("no_token")
def test_the_docker_config_login_is_the_fallback_for_the_cluster_registry(sim, cluster, log, dtk, tmp_path):
    sim.load(dtk.stream("4.17"))
    config = dtk.server.docker_config(tmp_path / "cfg")
    result = detect_kernel.run(on(dtk, docker_config=str(config)), cluster=cluster, log=log)
    assert K417 in result.kernel_versions
    assert f"login serviceaccount from {config}" in log.text
    assert "service account token" not in log.text


def test_each_image_is_read_once_per_run(dtk, log, token):
    reader = driver_toolkit.ReleaseReader(log, tls_verify=False)
    reference = f"{dtk.repository}@{dtk.digests[RHCOS417]}"
    first = reader.read(reference, architecture="amd64", internal=True)
    cold = (reader.traffic.requests, reader.traffic.bytes)
    again = reader.read(reference, architecture="amd64", internal=True)
    assert first == again == driver_toolkit.Release(K417, RT417)
    assert reader.reads == 1
    assert (reader.traffic.requests, reader.traffic.bytes) == cold
    assert 0 < cold[1] < 4096  # the manifest and one small layer


def test_dtk_images_can_name_the_upstream_registry(sim, cluster, log):
    result = detect_kernel.run(params(dtk_source="upstream"), cluster=cluster, log=log)
    assert result.dtk_images == {K416: fx.dtk_pullspec(RHCOS416)}


def test_invalid_dtk_source_is_refused():
    with pytest.raises(ConfigError, match="dtk-source='mirror' must be one of internal, upstream"):
        params(dtk_source="mirror")


def test_upgrade_target_can_be_left_out(sim, cluster, log):
    sim.load(fx.driver_toolkit(["4.16", "4.17"], latest="4.17"))
    result = detect_kernel.run(params(include_upgrade_target="false"), cluster=cluster, log=log)
    assert result.kernel_versions == [K416]
    assert "newest Driver Toolkit" not in log.text


def test_realtime_nodes_add_the_rt_target_and_count_as_their_own_kernel(sim, cluster, log, dtk, token):
    sim.load(dtk.stream("4.17"))
    sim.load(fx.workers(1, prefix="rt", realtime=True))
    result = detect_kernel.run(on(dtk), cluster=cluster, log=log)
    assert result.kernel_versions == sorted([K416, RT416, K417, RT417])
    assert result.primary_kernel == K416
    assert f"kernel {RT416} (realtime) on 1 node(s): rt-0" in log.text


def test_a_switch_to_realtime_adds_the_rt_target_before_any_node_runs_it(sim, cluster, log, dtk, token):
    sim.load(dtk.stream("4.16"))
    result = detect_kernel.run(on(dtk, kernel_type="realtime"), cluster=cluster, log=log)
    assert result.kernel_versions == sorted([K416, RT416])
    assert result.dtk_images[RT416] == result.dtk_images[K416]  # one Driver Toolkit holds both kernels
    assert f"newest Driver Toolkit kernel {RT416}: added as the upgrade target" in log.text


def test_rt_target_is_not_added_without_realtime_nodes(sim, cluster, log, dtk, token):
    sim.load(dtk.stream("4.17"))
    result = detect_kernel.run(on(dtk), cluster=cluster, log=log)
    assert RT417 not in result.kernel_versions


@pytest.mark.parametrize("kernel", ["5.14.0-284.rt14.347.el9_2.x86_64", "5.14.0-427.40.1.el9_4.x86_64+rt"],
                         ids=["rhel92-rt-infix", "rhel94-rt-suffix"])
def test_realtime_kernel_forms_are_kernels_of_their_own(sim, cluster, log, kernel):
    sim.put(fx.node("rt-0", kernel=kernel, rhcos=RHCOS416))
    result = detect_kernel.run(params(include_upgrade_target="false"), cluster=cluster, log=log)
    assert result.kernel_versions == sorted([K416, kernel])
    assert "(realtime)" in log.text


def test_trailing_plus_is_stripped(sim, cluster, log):
    sim.put(fx.node("worker-0", kernel=K416 + "+", rhcos=RHCOS416))
    result = detect_kernel.run(params(include_upgrade_target="false"), cluster=cluster, log=log)
    assert result.kernel_versions == [K416]


def test_mixed_kernels_primary_is_the_majority(sim, cluster, log):
    sim.put(fx.node("worker-0", kernel=K417, rhcos=RHCOS417))
    result = detect_kernel.run(params(include_upgrade_target="false"), cluster=cluster, log=log)
    assert result.kernel_versions == sorted([K416, K417])
    assert result.primary_kernel == K416  # two nodes against one


def test_mixed_kernels_tie_goes_to_the_higher_version(sim, cluster, log):
    sim.delete("v1", "Node", "worker-2")
    sim.put(fx.node("worker-0", kernel=K417, rhcos=RHCOS417))
    result = detect_kernel.run(params(include_upgrade_target="false"), cluster=cluster, log=log)
    assert result.primary_kernel == K417


def test_mixed_kernels_refused_names_the_nodes_of_each(sim, cluster, log):
    sim.put(fx.node("worker-0", kernel=K417, rhcos=RHCOS417))
    with pytest.raises(CssrError) as e:
        detect_kernel.run(params(allow_mixed_kernels="false"), cluster=cluster, log=log)
    assert f"{K416} on worker-1, worker-2" in str(e.value)
    assert f"{K417} on worker-0" in str(e.value)


def test_missing_dtk_imagestream_logs_one_line_and_goes_on(sim, cluster, log):
    sim.delete("image.openshift.io/v1", "ImageStream", "driver-toolkit", "openshift")
    result = detect_kernel.run(params(), cluster=cluster, log=log)
    assert result.kernel_versions == [K416]
    assert result.dtk_images == {}
    assert log.text.count("driver-toolkit not found") == 1


def test_kernel_without_dtk_tag_is_kept_and_warned(sim, cluster, log):
    sim.put(fx.node("worker-0", kernel="5.14.0-999.el9_6.x86_64", rhcos="999.96.202601010000-0"))
    result = detect_kernel.run(params(), cluster=cluster, log=log)
    assert "5.14.0-999.el9_6.x86_64" in result.kernel_versions
    assert "5.14.0-999.el9_6.x86_64" not in result.dtk_images
    assert "no Driver Toolkit image for kernel 5.14.0-999.el9_6.x86_64" in log.text


def test_no_matching_node_names_the_selector(cluster, log):
    with pytest.raises(ConfigError, match="no node matches the selector 'node-role.kubernetes.io/gpu='"):
        detect_kernel.run(params(node_selector="node-role.kubernetes.io/gpu="), cluster=cluster, log=log)


def test_empty_kernel_field_names_the_node(sim, cluster, log):
    bad = fx.node("worker-1", kernel="", rhcos=RHCOS416)
    sim.put(bad)
    with pytest.raises(CssrError, match="node worker-1 reports no kernel version"):
        detect_kernel.run(params(), cluster=cluster, log=log)


def test_lists_are_paginated(sim, cluster, log):
    sim.load(fx.workers(1200, prefix="many"))
    result = detect_kernel.run(params(), cluster=cluster, log=log)
    assert result.node_count == 1203
    pages = [r for r in sim.requests if r.resource == "nodes"]
    assert len(pages) == 3
    assert all(r.query["limit"] == "500" for r in pages)


@pytest.mark.parametrize(("env", "message"), [
    ({"PARAM_INCLUDE_UPGRADE_TARGET": "maybe"}, "include-upgrade-target='maybe' is not a boolean"),
    ({"PARAM_NODE_SELECTOR": "a b c"}, "label selector 'a b c' is not valid"),
    ({"PARAM_POOL": "Worker CNF"}, "param pool='Worker CNF' is not valid"),
], ids=["bad-bool", "bad-selector", "bad-pool"])
def test_invalid_params_fail_before_any_request(env, message):
    with pytest.raises(ConfigError, match=message):
        detect_kernel.Params.from_env(env)


def test_cli_writes_results_without_trailing_newline(sim, run_cli):
    run = run_cli(["detect-kernel"], {"PARAM_NODE_SELECTOR": "node-role.kubernetes.io/worker="}, sim=sim)
    assert run.code == 0, run.err
    assert set(run.results) == {"kernel-versions", "kernel-set-id", "primary-kernel", "rhcos-versions",
                                "dtk-images", "node-count"}
    assert json.loads(run.results["kernel-versions"]) == [K416]
    assert run.results["node-count"] == "3"
    assert not any(v.endswith("\n") for v in run.results.values())
    assert "[detect-kernel] found 3 node(s)" in run.err


def test_cli_option_wins_over_environment(sim, run_cli):
    run = run_cli(["detect-kernel", "--node-selector", "node-role.kubernetes.io/master="],
                  {"PARAM_NODE_SELECTOR": "node-role.kubernetes.io/gpu="}, sim=sim)
    assert run.code == 0, run.err
    assert run.results["node-count"] == "3"
    assert any(r.query.get("labelSelector") == "node-role.kubernetes.io/master=" for r in sim.requests)


def test_cli_no_match_exits_2_with_one_line(sim, run_cli):
    run = run_cli(["detect-kernel"], {"PARAM_NODE_SELECTOR": "node-role.kubernetes.io/gpu="}, sim=sim)
    assert run.code == 2
    errors = [line for line in run.err.splitlines() if "error:" in line]
    assert errors == ["[detect-kernel] error: no node matches the selector 'node-role.kubernetes.io/gpu='; "
                      "check the node-selector or pool param against `oc get nodes --show-labels`"]
    assert run.results == {}


def test_cli_simulated_flag_runs_the_embedded_cluster(run_cli):
    run = run_cli(["detect-kernel", "--simulated"])
    assert run.code == 0, run.err
    assert run.results["kernel-set-id"] == hashlib.sha256(K416.encode()).hexdigest()[:12]


def test_cli_unreachable_cluster_is_one_clear_line(run_cli, tmp_path):
    with SimulatedCluster() as dead:
        kubeconfig = dead.write_kubeconfig(tmp_path / "dead-kubeconfig")
    run = run_cli(["detect-kernel", "--kubeconfig", str(kubeconfig)], {"CSSR_RETRY_ATTEMPTS": "2"})
    assert run.code == 1
    assert "cannot reach http://127.0.0.1" in run.err
    assert "attempt 1/2" in run.err
    assert "Traceback" not in run.err
