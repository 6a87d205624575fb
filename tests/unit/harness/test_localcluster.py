"""Pure parts of the local cluster: node pools, stage configuration, the k8s build recipe."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from tfjob_localcluster import binaries, nodepools
from tfjob_localcluster.control import EXIT_CODE, NODE_NOT_READY

pytestmark = pytest.mark.timeout(10)


def test_default_pools_are_two_gpu_pools_and_one_cpu_pool() -> None:
    pools = nodepools.load()
    summary = {(p.name, p.count, p.gpus, p.runtime) for p in pools.pools}
    # The person's cluster: simulated GPU pools, and this machine as the CPU node.
    assert summary == {
        ("gpu-a100", 4, 8, "kwok"),
        ("gpu-t4", 2, 4, "kwok"),
        ("cpu", 1, 0, "real"),
    }
    assert len(pools.nodes()) == 6  # the real node registers itself
    assert pools.node_names()[-1] == "cpu-0"


def test_simulated_pools_of_the_test_suite() -> None:
    pools = nodepools.load(nodepools.SIMULATED)
    summary = {(p.name, p.count, p.gpus, p.runtime) for p in pools.pools}
    assert summary == {
        ("gpu-a100", 4, 8, "kwok"),
        ("gpu-t4", 2, 4, "kwok"),
        ("cpu", 3, 0, "kwok"),
    }
    assert len(pools.nodes()) == 9
    assert nodepools.load().simulated().real_pools() == []


def test_a_real_pool_is_one_node_and_there_is_at_most_one(tmp_path) -> None:
    with pytest.raises(ValueError, match="count must be 1"):
        nodepools.NodePool(name="cpu", count=2, runtime="real")
    two = tmp_path / "pools.yaml"
    two.write_text(
        "pools:\n  - {name: a, count: 1, runtime: real}\n  - {name: b, count: 1, runtime: real}\n"
    )
    with pytest.raises(ValueError, match="at most one pool may be real"):
        nodepools.load(two)


def test_gpu_node_is_tainted_labelled_and_has_gpu_capacity() -> None:
    node = nodepools.load(nodepools.SIMULATED).pool("gpu-a100").node("gpu-a100-0")
    assert node["spec"]["taints"] == [
        {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    ]
    labels = node["metadata"]["labels"]
    assert labels["tfjob.dev/node-pool"] == "gpu-a100"
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB"
    assert labels["kubernetes.io/hostname"] == "gpu-a100-0"
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8"
    assert node["metadata"]["annotations"] == {"kwok.x-k8s.io/node": "fake"}


def test_cpu_node_has_no_taint_and_no_gpu() -> None:
    node = nodepools.load(nodepools.SIMULATED).pool("cpu").node("cpu-0")
    assert node["spec"]["taints"] == []
    assert "nvidia.com/gpu" not in node["status"]["capacity"]
    assert "nvidia.com/gpu.present" not in node["metadata"]["labels"]


def test_pool_file_with_explicit_taints_and_labels(tmp_path: Path) -> None:
    path = tmp_path / "pools.yaml"
    path.write_text(
        "pools:\n- name: h100\n  count: 1\n  gpus: 8\n  labels: {zone: a}\n"
        "  taints: [{key: dedicated, value: ml, effect: NoExecute}]\n"
    )
    node = nodepools.load(path).pools[0].node("h100-0")
    assert node["spec"]["taints"] == [{"key": "dedicated", "value": "ml", "effect": "NoExecute"}]
    assert node["metadata"]["labels"]["zone"] == "a"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("pools:\n- name: Bad_Name\n  count: 1\n", "name"),
        ("pools:\n- name: a\n  count: -1\n", "count"),
        ("pools:\n- name: a\n  count: 1\n  gpu: 8\n", "gpu"),
        ("pools:\n- name: a\n  count: 1\n  taints: [{key: k, effect: Sometimes}]\n", "effect"),
    ],
)
def test_invalid_pool_file_names_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "pools.yaml"
    path.write_text(text)
    with pytest.raises(ValidationError) as error:
        nodepools.load(path)
    assert field in str(error.value)


def test_repeated_pool_names_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "pools.yaml"
    path.write_text("pools:\n- {name: a, count: 1}\n- {name: a, count: 2}\n")
    with pytest.raises(ValueError, match="repeated"):
        nodepools.load(path)


def test_stages_cover_every_simulated_transition() -> None:
    text = resources.files("tfjob_localcluster").joinpath("stages.yaml").read_text()
    stages = list(yaml.safe_load_all(text))
    names = [s["metadata"]["name"] for s in stages]
    assert len(names) == len(set(names))
    assert {s["kind"] for s in stages} == {"Stage"}
    assert {s["spec"]["resourceRef"]["kind"] for s in stages} == {"Node", "Pod"}
    # The control annotations the helpers write are the ones the stages select on.
    assert EXIT_CODE in text
    assert NODE_NOT_READY in text
    assert set(names) >= {
        "tfjob-node-ready",
        "tfjob-node-not-ready",
        "tfjob-pod-running",
        "tfjob-pod-succeeded",
        "tfjob-pod-failed",
        "tfjob-pod-container-restarted",
        "tfjob-pod-deleted",
    }


def test_staging_modules_are_read_from_the_release_go_mod() -> None:
    go_mod = """module k8s.io/kubernetes

go 1.26.0

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/streaming => ./staging/src/k8s.io/streaming
\tgithub.com/other/thing => github.com/fork/thing v1.0.0
)
"""
    assert binaries.staging_modules(go_mod) == ["k8s.io/api", "k8s.io/streaming"]


def test_kubernetes_version_stamp_sets_both_version_packages() -> None:
    flags = binaries._kubernetes_ldflags("v1.36.3")
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"-X {package}.gitVersion=v1.36.3" in flags
        assert f"-X {package}.gitMinor=36" in flags


def test_cache_lives_outside_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TFJOB_BIN_CACHE", raising=False)
    repository = Path(__file__).resolve().parents[3]
    assert repository not in binaries.cache_root().resolve().parents
    component = binaries.COMPONENTS["kubernetes"]
    assert binaries.KUBERNETES_VERSION in component.directory.name


def test_sample_job_of_the_local_cluster_is_the_multi_worker_example() -> None:
    sample = resources.files("tfjob_localcluster").joinpath("sample-job.yaml").read_text()
    example = Path(__file__).resolve().parents[3] / "examples" / "multi-worker-mirrored.yaml"
    assert sample == example.read_text()


def test_the_tensorflow_extra_pins_what_the_cpu_trainer_image_installs() -> None:
    import tomllib

    root = Path(__file__).resolve().parents[3]
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    dockerfile = (root / "images" / "trainer-cpu" / "Dockerfile").read_text()
    for pin in pyproject["project"]["optional-dependencies"]["tensorflow"]:
        assert pin in dockerfile, pin


def test_clear_state_removes_only_what_a_cluster_wrote(tmp_path: Path) -> None:
    from tfjob_localcluster.cluster import LocalCluster

    for directory in ("etcd", "pki", "logs", "nodes"):
        (tmp_path / directory).mkdir()
        (tmp_path / directory / "data").write_text("old")
    for name in ("cluster.json", "kubeconfig", "user-x.kubeconfig", "notes.txt"):
        (tmp_path / name).write_text("old")
    LocalCluster(state_dir=tmp_path).clear_state()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_kueues_webhooks_are_trimmed_and_pointed_at_loopback() -> None:
    from tfjob_localcluster.kueue import webhook_configurations

    def hook(name: str, path: str) -> dict:
        return {
            "name": name,
            "clientConfig": {
                "service": {"name": "webhook-service", "namespace": "system", "path": path}
            },
        }

    manifests = yaml.safe_dump_all(
        [
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "MutatingWebhookConfiguration",
                "metadata": {"name": "mutating-webhook-configuration"},
                "webhooks": [
                    hook("mpod.kb.io", "/mutate--v1-pod"),
                    hook("mjob.kb.io", "/mutate-batch-v1-job"),
                    hook("mworkload.kb.io", "/mutate-kueue-x-k8s-io-v1beta2-workload"),
                ],
            }
        ]
    )
    (configuration,) = webhook_configurations(manifests, "https://127.0.0.1:9443", "Q0E=")
    assert configuration["metadata"]["name"] == "kueue-mutating-webhook-configuration"
    pod, workload = configuration["webhooks"]  # no batch/v1 Job: its integration is off
    assert pod["clientConfig"] == {
        "url": "https://127.0.0.1:9443/mutate--v1-pod",
        "caBundle": "Q0E=",
    }
    assert pod["namespaceSelector"] == {"matchLabels": {"kueue-managed": "true"}}
    assert "namespaceSelector" not in workload
