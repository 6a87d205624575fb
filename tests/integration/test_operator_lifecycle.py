"""Full lifecycles on the real control plane: the operator creates pods, kwok runs them, the test
decides how each pod ends, and the job's status must follow."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s

from tests.support.jobs import (
    apply,
    condition,
    estimator_job,
    get_job,
    job_pods,
    kubeflow_job,
    replica,
    tf_config,
    wait_for_condition,
    wait_for_job,
    wait_for_pods,
)
from tfjob_localcluster import control
from tfjob_localcluster.nodepools import NODE_POOL_LABEL
from tfjob_operator.core.packages import PACKAGES_PYTHON

pytestmark = [pytest.mark.timeout(180), pytest.mark.usefixtures("operator")]

DOMAIN = "cluster.local"


def host(job: str, namespace: str, pod: str) -> str:
    return f"{pod}.{job}.{namespace}.svc.{DOMAIN}:2222"


def test_single_node_gpu_job_runs_its_script_and_succeeds(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    apply(
        kubectl,
        namespace,
        estimator_job(
            "keras-gpu",
            scriptParams={"--batch-size": 50, "--learning-rate": 0.01, "--verbose": True},
            useGpu=True,
            pipPackages=["keras-tuner==1.4.7"],
        ),
    )
    pods = wait_for_pods(core, namespace, "keras-gpu", {"keras-gpu-worker-0"})
    pod = pods["keras-gpu-worker-0"]
    node = core.read_node(pod.spec.node_name)
    assert node.metadata.labels[NODE_POOL_LABEL].startswith("gpu-")
    trainer = pod.spec.containers[0]
    assert trainer.resources.limits == {"nvidia.com/gpu": "1"}
    assert trainer.image == "tensorflow/tensorflow:2.21.0-gpu"
    assert trainer.command == [
        PACKAGES_PYTHON,
        *("train.py", "--batch-size", "50", "--learning-rate", "0.01", "--verbose"),
    ]
    (install,) = pod.spec.init_containers
    assert install.name == "tfjob-packages"
    assert install.command[-1] == "keras-tuner==1.4.7"
    assert tf_config(pod) is None  # one pod: TensorFlow runs single-process
    assert pod.spec.hostname == "keras-gpu-worker-0"
    assert pod.spec.subdomain == "keras-gpu"

    running = wait_for_condition(api_client, namespace, "keras-gpu", "Running")
    assert running["status"]["state"] == "Running"
    control.end_pod(core, namespace, "keras-gpu-worker-0", exit_code=0)
    done = wait_for_condition(api_client, namespace, "keras-gpu", "Succeeded")
    status = done["status"]
    assert status["state"] == "Succeeded"
    assert status["replicaStatuses"]["Worker"]["succeeded"] == 1
    assert status["completionTime"] >= status["startTime"]
    assert status["observedGeneration"] == done["metadata"]["generation"]
    # Events follow the status write that records the transition: wait for them.
    transitions = {"TFJobCreated", "TFJobRunning", "TFJobSucceeded"}
    control.wait_for(
        core.list_namespaced_event,
        lambda events: transitions <= {e.reason for e in events} or None,
        timeout=30,
        what="an event for each transition",
        namespace=namespace,
        field_selector="involvedObject.name=keras-gpu,involvedObject.kind=TensorFlowJob",
    )


def test_multi_worker_job_gets_tf_config_and_succeeds_on_worker_zero(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    apply(
        kubectl,
        namespace,
        estimator_job(
            "mwms",
            distribution={"backend": "multiWorkerMirrored", "workerCount": 2},
        ),
    )
    names = {"mwms-worker-0", "mwms-worker-1"}
    pods = wait_for_pods(core, namespace, "mwms", names)
    workers = [host("mwms", namespace, f"mwms-worker-{i}") for i in range(2)]
    for index in range(2):
        assert tf_config(pods[f"mwms-worker-{index}"]) == {
            "cluster": {"worker": workers},
            "task": {"type": "worker", "index": index},
            "environment": "cloud",
        }
    assert pods["mwms-worker-0"].metadata.labels["tfjob.dev/job-role"] == "chief"
    service = core.read_namespaced_service("mwms", namespace)
    assert service.spec.cluster_ip == "None"
    assert service.spec.publish_not_ready_addresses is True
    assert service.metadata.owner_references[0].kind == "TensorFlowJob"

    control.end_pod(core, namespace, "mwms-worker-0", exit_code=0)
    wait_for_condition(api_client, namespace, "mwms", "Succeeded")
    # The default cleanPodPolicy (Running) stops the worker still running.
    control.wait_for_deletion(core.list_namespaced_pod, "mwms-worker-1", namespace=namespace)
    assert core.read_namespaced_pod("mwms-worker-0", namespace).status.phase == "Succeeded"


def test_parameter_server_job_with_evaluator(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    apply(
        kubectl,
        namespace,
        kubeflow_job(
            "ps",
            {
                "Chief": replica(1),
                "Worker": replica(2),
                "PS": replica(1),
                "Evaluator": replica(1),
            },
        ),
    )
    names = {"ps-chief-0", "ps-worker-0", "ps-worker-1", "ps-ps-0", "ps-evaluator-0"}
    pods = wait_for_pods(core, namespace, "ps", names)
    training = {
        "chief": [host("ps", namespace, "ps-chief-0")],
        "ps": [host("ps", namespace, "ps-ps-0")],
        "worker": [host("ps", namespace, f"ps-worker-{i}") for i in range(2)],
    }
    assert tf_config(pods["ps-chief-0"])["cluster"] == training
    assert tf_config(pods["ps-worker-1"])["task"] == {"type": "worker", "index": 1}
    assert tf_config(pods["ps-ps-0"])["task"] == {"type": "ps", "index": 0}
    evaluator = tf_config(pods["ps-evaluator-0"])
    assert evaluator["cluster"] == {
        **training,
        "evaluator": [host("ps", namespace, "ps-evaluator-0")],
    }
    assert evaluator["task"] == {"type": "evaluator", "index": 0}
    assert pods["ps-chief-0"].metadata.labels["tfjob.dev/job-role"] == "chief"

    # A worker failing after the chief succeeded does not matter: the chief decides.
    control.end_pod(core, namespace, "ps-chief-0", exit_code=0)
    job = wait_for_condition(api_client, namespace, "ps", "Succeeded")
    assert job["status"]["replicaStatuses"]["PS"]["active"] == 1
    for leftover in ("ps-worker-0", "ps-worker-1", "ps-ps-0", "ps-evaluator-0"):
        control.wait_for_deletion(core.list_namespaced_pod, leftover, namespace=namespace)
    assert set(job_pods(core, namespace, "ps")) == {"ps-chief-0"}


def test_failed_worker_fails_the_job_with_its_exit_code(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    apply(
        kubectl,
        namespace,
        estimator_job(
            "oom",
            distribution={"backend": "multiWorkerMirrored", "workerCount": 2},
        ),
    )
    wait_for_pods(core, namespace, "oom", {"oom-worker-0", "oom-worker-1"})
    wait_for_condition(api_client, namespace, "oom", "Running")
    # An estimator job's pods run under restartPolicy ExitCode: code 1 is the script's own
    # error, permanent (137 would be retried: see test_restarts).
    control.end_pod(
        core,
        namespace,
        "oom-worker-1",
        exit_code=1,
        reason="Error",
        message="ValueError: shapes do not match",
    )
    job = wait_for_condition(api_client, namespace, "oom", "Failed")
    failed = condition(job, "Failed")
    assert failed["reason"] == "TFJobFailed"
    assert "Worker 1 (pod oom-worker-1) exited with code 1 (Error)" in failed["message"]
    assert "shapes do not match" in failed["message"]
    assert job["status"]["state"] == "Failed"
    assert job["status"]["replicaStatuses"]["Worker"]["failed"] == 1
    running = next(c for c in job["status"]["conditions"] if c["type"] == "Running")
    assert running["status"] == "False"
    control.wait_for_deletion(core.list_namespaced_pod, "oom-worker-0", namespace=namespace)
    # The failed pod stays, with its logs, for the user to inspect.
    assert core.read_namespaced_pod("oom-worker-1", namespace).status.phase == "Failed"


@pytest.mark.parametrize("failing", ["ps-ps-0", "ps-chief-0", "ps-evaluator-0"])
def test_parameter_server_chief_or_evaluator_failure_fails_the_job(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str, failing: str
) -> None:
    apply(
        kubectl,
        namespace,
        kubeflow_job(
            "ps",
            {
                "Chief": replica(1),
                "Worker": replica(1),
                "PS": replica(1),
                "Evaluator": replica(1),
            },
        ),
    )
    wait_for_pods(core, namespace, "ps", {"ps-chief-0", "ps-worker-0", "ps-ps-0", "ps-evaluator-0"})
    control.end_pod(core, namespace, failing, exit_code=2)
    job = wait_for_condition(api_client, namespace, "ps", "Failed")
    assert f"(pod {failing}) exited with code 2" in condition(job, "Failed")["message"]


def test_all_workers_success_policy_waits_for_every_worker(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    apply(
        kubectl, namespace, kubeflow_job("all", {"Worker": replica(2)}, successPolicy="AllWorkers")
    )
    wait_for_pods(core, namespace, "all", {"all-worker-0", "all-worker-1"})
    control.end_pod(core, namespace, "all-worker-0", exit_code=0)
    control.wait_for_pod_phase(core, namespace, "all-worker-0", "Succeeded")
    # Worker 0 alone does not finish the job under AllWorkers...
    job = wait_for_condition(api_client, namespace, "all", "Running")
    assert condition(job, "Succeeded") is None
    control.end_pod(core, namespace, "all-worker-1", exit_code=0)
    job = wait_for_condition(api_client, namespace, "all", "Succeeded")
    assert job["status"]["replicaStatuses"]["Worker"]["succeeded"] == 2


def test_clean_pod_policy_none_keeps_running_pods(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    apply(
        kubectl,
        namespace,
        kubeflow_job(
            "keep",
            {"Chief": replica(1), "PS": replica(1), "Worker": replica(1)},
            runPolicy={"cleanPodPolicy": "None"},
        ),
    )
    wait_for_pods(core, namespace, "keep", {"keep-chief-0", "keep-ps-0", "keep-worker-0"})
    control.end_pod(core, namespace, "keep-chief-0", exit_code=0)
    wait_for_condition(api_client, namespace, "keep", "Succeeded")
    pods = job_pods(core, namespace, "keep")
    assert {n: p.status.phase for n, p in pods.items()} == {
        "keep-chief-0": "Succeeded",
        "keep-ps-0": "Running",
        "keep-worker-0": "Running",
    }
    assert all(p.metadata.deletion_timestamp is None for p in pods.values())


def test_gpu_pods_land_on_the_chosen_pool_and_cpu_pods_stay_off_gpu_nodes(
    kubectl, core: k8s.CoreV1Api, namespace: str
) -> None:
    apply(
        kubectl,
        namespace,
        estimator_job(
            "t4",
            useGpu=True,
            gpuCount=4,
            nodePool="gpu-t4",
            distribution={"backend": "parameterServer", "workerCount": 2},
        ),
    )
    names = {"t4-chief-0", "t4-worker-0", "t4-worker-1", "t4-ps-0"}
    pods = wait_for_pods(core, namespace, "t4", names)
    for name, pod in pods.items():
        pool = core.read_node(pod.spec.node_name).metadata.labels[NODE_POOL_LABEL]
        if "worker" in name:
            assert pool == "gpu-t4"
            assert pod.spec.node_selector == {NODE_POOL_LABEL: "gpu-t4"}
            assert pod.spec.containers[0].resources.limits == {"nvidia.com/gpu": "4"}
            assert any(t.key == "nvidia.com/gpu" for t in pod.spec.tolerations)
        else:
            assert pool == "cpu", f"{name} has no GPU and must not take a GPU node"


def test_kubeflow_form_gpu_limit_gets_toleration_and_gpu_node(
    kubectl, core: k8s.CoreV1Api, namespace: str
) -> None:
    apply(kubectl, namespace, kubeflow_job("big", {"Worker": replica(2, gpus=8)}))
    pods = wait_for_pods(core, namespace, "big", {"big-worker-0", "big-worker-1"})
    nodes = {
        core.read_node(p.spec.node_name).metadata.labels[NODE_POOL_LABEL] for p in pods.values()
    }
    assert nodes == {"gpu-a100"}  # only the A100 nodes have 8 GPUs


def test_deleting_the_job_removes_every_child(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    apply(kubectl, namespace, kubeflow_job("gone", {"Chief": replica(1), "Worker": replica(2)}))
    wait_for_pods(core, namespace, "gone", {"gone-chief-0", "gone-worker-0", "gone-worker-1"})
    kubectl("delete", "tensorflowjob", "gone", "-n", namespace, "--wait=false")
    for pod in ("gone-chief-0", "gone-worker-0", "gone-worker-1"):
        control.wait_for_deletion(core.list_namespaced_pod, pod, namespace=namespace, timeout=60)
    control.wait_for_deletion(core.list_namespaced_service, "gone", namespace=namespace)


def test_pod_deleted_by_someone_else_is_recreated_alone_where_pods_restart_alone(
    kubectl, core: k8s.CoreV1Api, namespace: str
) -> None:
    """restartScope Pod: the pod is made again under its name, in the same attempt. (A
    collective restarts whole instead: test_disruptions.)"""
    job = kubeflow_job("heal", {"Worker": replica(2)}, runPolicy={"restartScope": "Pod"})
    apply(kubectl, namespace, job)
    pods = wait_for_pods(core, namespace, "heal", {"heal-worker-0", "heal-worker-1"})
    old_uid = pods["heal-worker-1"].metadata.uid
    core.delete_namespaced_pod("heal-worker-1", namespace)
    recreated = control.wait_for_pod(
        core,
        namespace,
        "heal-worker-1",
        lambda p: p.metadata.uid != old_uid and p.status.phase == "Running",
        what="heal-worker-1 recreated",
    )
    assert recreated.metadata.uid != old_uid
    assert recreated.metadata.labels["tfjob.dev/attempt"] == "1"


def test_spec_change_that_cannot_reach_running_pods_is_reported(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    apply(kubectl, namespace, estimator_job("change", scriptParams={"--epochs": 1}))
    wait_for_pods(core, namespace, "change", {"change-worker-0"})
    wait_for_condition(api_client, namespace, "change", "Running")
    apply(kubectl, namespace, estimator_job("change", scriptParams={"--epochs": 5}))
    event = control.wait_for(
        core.list_namespaced_event,
        lambda events: next((e for e in events if e.reason == "SpecChangeNotApplied"), None),
        timeout=30,
        what="a SpecChangeNotApplied event",
        namespace=namespace,
        field_selector="involvedObject.name=change",
    )
    assert event.type == "Warning"
    assert "change-worker-0" in event.message
    job = get_job(api_client, namespace, "change")
    assert job["status"]["observedGeneration"] == job["metadata"]["generation"] == 2


def test_pod_template_refused_by_the_api_server_fails_the_job_once(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str, operator
) -> None:
    bad = replica(1)
    # Mounting a volume the pod does not define passes the CRD but not pod validation.
    bad["template"]["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "data", "mountPath": "/data"}
    ]
    apply(kubectl, namespace, kubeflow_job("refused", {"Worker": bad}))
    job = wait_for_condition(api_client, namespace, "refused", "Failed")
    failed = condition(job, "Failed")
    assert "refused pod refused-worker-0" in failed["message"]
    assert 'volumeMounts[0].name: Not found: "data"' in failed["message"]
    control.wait_for(
        core.list_namespaced_event,
        lambda events: [e for e in events if e.reason == "TFJobFailed"] or None,
        timeout=30,
        what="the TFJobFailed event",
        namespace=namespace,
        field_selector="involvedObject.name=refused",
    )
    # Touch the job with a new generation: the operator passes over it again (the status then
    # describes generation 2, which only that pass can write) and must not retry the pod.
    kubectl("annotate", "tensorflowjob", "refused", "-n", namespace, "touched=1")
    kubectl(
        "patch", "tensorflowjob", "refused", "-n", namespace, "--type=merge",
        "-p", '{"spec":{"runPolicy":{"ttlSecondsAfterFinished":3600}}}',
    )  # fmt: skip
    wait_for_job(
        api_client,
        namespace,
        "refused",
        lambda job: bool(job and job["status"].get("observedGeneration") == 2),
        "a pass over generation 2",
        timeout=30,
    )
    assert job_pods(core, namespace, "refused") == {}
    again = get_job(api_client, namespace, "refused")
    assert condition(again, "Failed")["lastTransitionTime"] == failed["lastTransitionTime"]
    failures = core.list_namespaced_event(
        namespace, field_selector="involvedObject.name=refused,reason=TFJobFailed"
    ).items
    assert len(failures) == 1


def test_spec_the_schema_cannot_check_is_reported_on_the_status(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    # The schema leaves script parameter values open; the operator refuses a nested one.
    apply(kubectl, namespace, estimator_job("nested", scriptParams={"--config": {"lr": 0.1}}))
    job = wait_for_condition(api_client, namespace, "nested", "Failed")
    failed = condition(job, "Failed")
    assert failed["reason"] == "InvalidSpec"
    assert failed["message"] == (
        "spec.scriptParams: the value of '--config' must be a string, number, boolean or null, "
        "not dict"
    )
    assert job_pods(core, namespace, "nested") == {}


def test_a_pod_in_the_way_is_reported_and_replaced_once_gone(
    kubectl, core: k8s.CoreV1Api, api_client: k8s.ApiClient, namespace: str
) -> None:
    """A pod that holds a child's name but is not the job's is never created over in a loop:
    the status says it is in the way, and the job makes its own pod once it is gone."""
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "squat-worker-0", "labels": {"tfjob.dev/job-name": "squat"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        },
    )
    apply(kubectl, namespace, kubeflow_job("squat", {"Worker": replica(1)}))
    job = wait_for_job(
        api_client,
        namespace,
        "squat",
        lambda job: bool(job and (job.get("status") or {}).get("waiting")),
        "its status naming the pod in the way",
    )
    assert job is not None
    (waiting,) = job["status"]["waiting"]
    assert (waiting["pod"], waiting["reason"]) == ("squat-worker-0", "NameInUse")
    core.delete_namespaced_pod("squat-worker-0", namespace, grace_period_seconds=0)
    control.wait_for(
        core.list_namespaced_pod,
        lambda pods: (
            [
                p
                for p in pods
                if p.metadata.name == "squat-worker-0"
                and any(ref.kind == "TensorFlowJob" for ref in p.metadata.owner_references or [])
            ]
            or None
        ),
        timeout=60,
        what="the job's own squat-worker-0",
        namespace=namespace,
    )
    wait_for_condition(api_client, namespace, "squat", "Running", timeout=60)
    assert not get_job(api_client, namespace, "squat")["status"].get("waiting")
