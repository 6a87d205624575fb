"""`tfjob-operator compile --pods` shows what the operator really creates: a job of each kind is
applied, read back, and piped into `compile --pods` as a user would (`kubectl get tfj NAME -o
yaml | tfjob-operator compile -f - --pods`), under the operator's own settings; every object it
prints must exist with every field it printed (names, labels, annotations, owners, env and
TF_CONFIG, volumes, init containers, scheduling fields), and the job must have no pod it did not
print. Fields the API server adds (defaults, the service account token volume) are allowed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
import yaml

from tests.support.jobs import apply, estimator_job, kubeflow_job, replica
from tfjob_localcluster import processes
from tfjob_operator.core.gang import pick_pod_group_api

pytestmark = [pytest.mark.timeout(180), pytest.mark.usefixtures("operator")]

# Lists whose items have names are matched by name; these names the API server adds itself.
ADDED_BY_THE_API_SERVER = ("kube-api-access-",)

JOBS = {
    "single": estimator_job(
        "single", arguments=["--epochs", "2", "data/"], pipPackages=["pandas==2.3.3"]
    ),
    "mwms-gpus": estimator_job(
        "mwms-gpus",
        useGpu=True,
        gpuCount=2,
        nodePool="gpu-a100",
        distribution={"backend": "multiWorkerMirrored", "workerCount": 2},
        checkpoint={"persistentVolumeClaim": {"claimName": "ckpt"}},
        environmentVariables={"EPOCHS": "3"},
    ),
    "ps-gang": kubeflow_job(
        "ps-gang",
        {
            "Chief": replica(1),
            "Worker": replica(2, gpus=1),
            "PS": replica(1),
            "Evaluator": replica(1),
        },
        runPolicy={"schedulingPolicy": {"minAvailable": 4, "priorityClass": "compile-high"}},
    ),
    "horovod": estimator_job(
        "horovod",
        entryScript="train_horovod.py",
        distribution={"backend": "mpi", "nodeCount": 2, "processCountPerNode": 2},
    ),
}


def differences(printed: Any, live: Any, path: str) -> list[str]:
    """Where ``live`` lacks or changes what ``printed`` says (and, for labels and
    annotations, which nothing but the operator writes, has more)."""
    if path.endswith((".metadata.labels", ".metadata.annotations")):
        return [] if printed == live else [f"{path}: printed {printed!r}, live {live!r}"]
    if isinstance(printed, dict):
        if not isinstance(live, dict):
            return [f"{path}: printed a map, live has {live!r}"]
        found: list[str] = []
        for key, value in printed.items():
            if key not in live and value in ("", [], {}, None):
                continue  # the API server leaves empty values out (Go's omitempty)
            if key not in live:
                found.append(f"{path}.{key}: printed {value!r}, missing live")
            else:
                found += differences(value, live[key], f"{path}.{key}")
        return found
    if isinstance(printed, list):
        if not isinstance(live, list):
            return [f"{path}: printed a list, live has {live!r}"]
        if printed and all(isinstance(item, dict) and "name" in item for item in printed):
            live_by_name = {item.get("name"): item for item in live if isinstance(item, dict)}
            found = []
            for item in printed:
                if item["name"] not in live_by_name:
                    found.append(f"{path}[{item['name']}]: printed, missing live")
                else:
                    found += differences(
                        item, live_by_name[item["name"]], f"{path}[{item['name']}]"
                    )
            extra = [
                name
                for name in live_by_name
                if name not in {item["name"] for item in printed}
                and not str(name).startswith(ADDED_BY_THE_API_SERVER)
            ]
            if extra:
                found.append(f"{path}: live has {extra}, not printed")
            order = [item["name"] for item in printed]
            if [name for name in live_by_name if name in order] != order:
                found.append(f"{path}: live order {list(live_by_name)}, printed {order}")
            return found
        if printed and all(isinstance(item, dict) for item in printed):
            # Unnamed items (tolerations): each printed one is live; the API server adds some.
            return [
                f"{path}: printed {item!r}, not live"
                for item in printed
                if not any(not differences(item, candidate, path) for candidate in live)
            ]
        return [] if printed == live else [f"{path}: printed {printed!r}, live {live!r}"]
    return [] if printed == live else [f"{path}: printed {printed!r}, live {live!r}"]


def get_json(kubectl: Any, namespace: str, *what: str) -> dict[str, Any]:
    return json.loads(kubectl("get", "-n", namespace, *what, "-o", "json").stdout)


def compile_pods(job_yaml: str, env: dict[str, str]) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "tfjob_operator", "compile", "-f", "-", "--pods"],
        input=job_yaml,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d][1:]  # after the job itself


@pytest.fixture(scope="module", autouse=True)
def priority_class(kubectl: Any) -> None:
    """The class ps-gang's runPolicy names: a pod naming a class that does not exist is
    refused."""
    kubectl(
        "apply",
        "-f",
        "-",
        input=yaml.safe_dump(
            {
                "apiVersion": "scheduling.k8s.io/v1",
                "kind": "PriorityClass",
                "metadata": {"name": "compile-high"},
                "value": 1000,
            }
        ),
    )


@pytest.fixture(scope="module")
def operator_env(operator: Any, kubectl: Any) -> dict[str, str]:
    """The operator's settings, with the PodGroup API it found by discovery at startup."""
    api = pick_pod_group_api(set(kubectl("api-versions").stdout.split()))
    assert api is not None  # the session's cluster runs with gang scheduling on
    return {**os.environ, **operator.env, "TFJOB_POD_GROUP_API": api or ""}


@pytest.mark.parametrize("kind", list(JOBS))
def test_compile_pods_prints_what_the_operator_creates(
    kubectl: Any, namespace: str, operator_env: dict[str, str], kind: str
) -> None:
    manifest = JOBS[kind]
    name = manifest["metadata"]["name"]
    apply(kubectl, namespace, manifest)
    # Read back once its pods come: an MPI job's key Secret then has its generated name.
    processes.wait_until(
        lambda: bool(
            get_json(kubectl, namespace, "pods", "-l", f"tfjob.dev/job-name={name}")["items"]
        ),
        timeout=60,
        what=f"a pod of {name}",
        interval=0.5,
    )
    live_job = get_json(kubectl, namespace, "tensorflowjob", name)
    printed = compile_pods(yaml.safe_dump(live_job), operator_env)
    pods = [p["metadata"]["name"] for p in printed if p["kind"] == "Pod"]
    assert pods, printed

    # Every pod printed is made (an MPI launcher once the workers are Ready, which kwok's are).
    def made(items: list[dict[str, Any]]) -> bool:
        return sorted(p["metadata"]["name"] for p in items) == sorted(pods)

    processes.wait_until(
        lambda: made(
            get_json(kubectl, namespace, "pods", "-l", f"tfjob.dev/job-name={name}")["items"]
        ),
        timeout=90,
        what=f"the pods of {name}: {pods}",
        interval=0.5,
    )
    # Nothing else of the job's kinds carries the job's name: the printed objects are all.
    for kind, resource in (("Service", "services"), ("PodGroup", "podgroups.scheduling.k8s.io")):
        live_names = sorted(
            item["metadata"]["name"]
            for item in get_json(kubectl, namespace, resource, "-l", f"tfjob.dev/job-name={name}")[
                "items"
            ]
        )
        assert live_names == sorted(c["metadata"]["name"] for c in printed if c["kind"] == kind)
    found: list[str] = []
    for child in printed:
        resource = {"PodGroup": "podgroups.scheduling.k8s.io"}.get(child["kind"], child["kind"])
        live = get_json(kubectl, namespace, resource, child["metadata"]["name"])
        found += differences(child, live, f"{child['kind']} {child['metadata']['name']}")
    assert found == [], "\n".join(found)
