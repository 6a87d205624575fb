"""Generated TensorFlowJob specs (hypothesis strategies), valid and invalid, of both forms, and
the first passes over them: the core's fuzz test and the API server's dry run share them."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from hypothesis import strategies as st

from tfjob_operator.core.compile import compile_job
from tfjob_operator.core.decide import Decision, decide
from tfjob_operator.core.observed import Observed, PodObservation
from tfjob_operator.settings import OperatorSettings

SETTINGS = OperatorSettings(pod_group_api="scheduling.k8s.io/v1alpha2")
NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
UID = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
# What a refusal must name: a field of the spec (or the spec as a whole).
NAMES_A_FIELD = re.compile(r"\bspec(\.|\b)")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
PRIORITY_CLASS = "fuzz-high"  # the dry run creates it: a class must exist for a pod to use it

# Mostly valid values, sometimes a wrong type, a huge or negative number, odd text.
odd_text = st.text(st.characters(codec="utf-8"), max_size=12)
odd = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    odd_text,
    st.lists(st.integers(), max_size=2),
)
small = st.integers(0, 4)
names = st.from_regex(r"\A[a-z][a-z0-9-]{0,20}[a-z0-9]\Z")


def maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``value`` nine times in ten, else something of any type."""
    return st.integers(0, 9).flatmap(lambda roll: odd if roll == 0 else value)


container = st.fixed_dictionaries(
    {"name": st.just("tensorflow"), "image": maybe(st.just("tf:2.21"))},
    optional={
        "command": st.lists(st.sampled_from(["python", "train.py", "--epochs", "2"]), max_size=3),
        "ports": st.lists(
            st.fixed_dictionaries(
                {"name": st.just("tfjob-port"), "containerPort": maybe(st.integers(1, 65535))}
            ),
            max_size=1,
        ),
        "env": st.lists(
            st.fixed_dictionaries({"name": st.sampled_from(["A", "B"]), "value": st.just("1")}),
            max_size=2,
        ),
        # Dynamic Resource Allocation: the container uses a claim the pod spec names.
        "resources": st.fixed_dictionaries(
            {},
            optional={
                "limits": st.fixed_dictionaries({"nvidia.com/gpu": st.integers(0, 8)}),
                "claims": st.lists(
                    st.fixed_dictionaries({"name": maybe(st.just("gpu"))}), max_size=1
                ),
            },
        ),
        "securityContext": st.fixed_dictionaries(
            {},
            optional={
                "runAsUser": maybe(st.integers(0, 2000)),
                "runAsGroup": maybe(st.integers(0, 2000)),
                "runAsNonRoot": maybe(st.booleans()),
            },
        ),
    },
)
pod_extras = {
    "resourceClaims": st.lists(
        st.fixed_dictionaries(
            # Open fields (the CRD keeps them as written): odd values only in typed ones.
            {"name": st.just("gpu"), "resourceClaimTemplateName": st.just("one-gpu")}
        ),
        max_size=1,
    ),
    "securityContext": st.fixed_dictionaries(
        {},
        optional={
            "runAsUser": maybe(st.integers(0, 2000)),
            "runAsGroup": maybe(st.integers(0, 2000)),
            "fsGroup": maybe(st.integers(0, 2000)),
        },
    ),
    "ephemeralContainers": st.lists(
        st.fixed_dictionaries({"name": st.just("debug"), "image": st.just("busybox:1")}),
        min_size=1,
        max_size=1,
    ),
    "topologySpreadConstraints": st.lists(
        st.fixed_dictionaries(
            {
                "maxSkew": st.integers(1, 3),
                "topologyKey": st.just("topology.kubernetes.io/zone"),
                "whenUnsatisfiable": st.sampled_from(["DoNotSchedule", "ScheduleAnyway"]),
                "labelSelector": st.just({"matchLabels": {"app": "train"}}),
            }
        ),
        max_size=1,
    ),
}
template = st.fixed_dictionaries(
    {
        "spec": st.fixed_dictionaries(
            {"containers": st.lists(container, min_size=1, max_size=2)}, optional=pod_extras
        )
    }
)
# The estimator form's spec.template: merged into every pod it generates.
partial_template = st.fixed_dictionaries(
    {
        "spec": st.fixed_dictionaries(
            {},
            optional={
                "containers": st.lists(
                    container.map(lambda c: {k: v for k, v in c.items() if k != "image"}),
                    max_size=1,
                ),
                **pod_extras,
            },
        )
    }
)
replica = st.fixed_dictionaries(
    {"replicas": maybe(small), "template": template},
    optional={
        "restartPolicy": maybe(st.sampled_from(["Never", "OnFailure", "Always", "ExitCode"]))
    },
)
replica_types = st.sampled_from(["Chief", "Master", "Worker", "PS", "Evaluator"])
run_policy = st.fixed_dictionaries(
    {},
    optional={
        "cleanPodPolicy": maybe(st.sampled_from(["All", "Running", "None"])),
        "backoffLimit": maybe(st.integers(0, 10)),
        "activeDeadlineSeconds": maybe(st.integers(1, 10**6)),
        "ttlSecondsAfterFinished": maybe(st.integers(0, 10**6)),
        "suspend": maybe(st.booleans()),
        "restartScope": maybe(st.sampled_from(["Pod", "Job"])),
        "schedulingPolicy": st.fixed_dictionaries(
            {},
            optional={
                "minAvailable": maybe(st.integers(1, 10)),
                "queue": maybe(names),
                "priorityClass": maybe(st.just(PRIORITY_CLASS)),
                "scheduleTimeoutSeconds": maybe(st.integers(1, 600)),
            },
        ),
    },
)
checkpoint = st.fixed_dictionaries(
    {"persistentVolumeClaim": maybe(st.fixed_dictionaries({"claimName": names}))},
    optional={
        "mountPath": maybe(st.sampled_from(["/checkpoint", "/mnt/ck/", "ck", "/workspace/ck"]))
    },
)
kubeflow_form = st.fixed_dictionaries(
    {"tfReplicaSpecs": st.dictionaries(replica_types, replica, min_size=1, max_size=4)},
    optional={
        "runPolicy": run_policy,
        "successPolicy": maybe(st.sampled_from(["", "AllWorkers"])),
        "nodePool": maybe(names),
        "checkpoint": checkpoint,
    },
)
distribution = st.one_of(
    st.fixed_dictionaries(
        {"backend": st.just("multiWorkerMirrored")}, optional={"workerCount": maybe(small)}
    ),
    st.fixed_dictionaries(
        {"backend": st.just("parameterServer")},
        optional={"workerCount": maybe(small), "parameterServerCount": maybe(small)},
    ),
    st.fixed_dictionaries(
        {"backend": st.just("mpi")},
        optional={"nodeCount": maybe(small), "processCountPerNode": maybe(small)},
    ),
    st.fixed_dictionaries({"backend": odd}),
)
estimator_form = st.fixed_dictionaries(
    {"entryScript": maybe(st.sampled_from(["train.py", "src/train.py"]))},
    optional={
        "scriptParams": st.dictionaries(
            st.sampled_from(["--epochs", "--lr", "--verbose"]),
            maybe(st.one_of(st.integers(0, 100), st.floats(0, 1), st.booleans(), odd_text)),
            max_size=3,
        ),
        "arguments": st.lists(
            maybe(st.sampled_from(["--model", "MobileNetV2", "--no-cuda", "data/", ""])),
            max_size=4,
        ),
        "useGpu": maybe(st.booleans()),
        "gpuCount": maybe(st.integers(1, 8)),
        "pipPackages": st.lists(
            maybe(st.sampled_from(["pandas", "numpy>=2", "./lib"])), max_size=2
        ),
        "packageIndex": st.fixed_dictionaries(
            {"url": maybe(st.just("http://pypi.ml.svc:8080/simple"))},
            optional={"credentialsSecret": maybe(names)},
        ),
        "environmentVariables": st.dictionaries(
            st.sampled_from(["A", "B"]), maybe(st.just("x")), max_size=2
        ),
        "distribution": distribution,
        "source": st.one_of(
            st.fixed_dictionaries({"directory": st.fixed_dictionaries({"configMap": names})}),
            st.fixed_dictionaries(
                {"persistentVolumeClaim": st.fixed_dictionaries({"claimName": names})}
            ),
        ),
        "runPolicy": run_policy,
        "nodePool": maybe(names),
        "checkpoint": checkpoint,
        "template": partial_template,
    },
)
specs = st.one_of(
    kubeflow_form,
    estimator_form,
    st.dictionaries(
        st.sampled_from(["tfReplicaSpecs", "entryScript", "runPolicy", "bogus"]), odd, max_size=3
    ),
)


def job(spec: dict[str, Any], name: str = "fuzz") -> dict[str, Any]:
    return {
        "apiVersion": "tfjob.dev/v1alpha1",
        "kind": "TensorFlowJob",
        "metadata": {"name": name, "namespace": "ml", "uid": UID, "generation": 1},
        "spec": spec,
    }


def first_pass(spec: dict[str, Any]) -> tuple[dict[str, Any], Decision]:
    body = job(spec)
    compiled = compile_job(spec, SETTINGS)
    decision = decide(body, compiled, Observed(), SETTINGS, NOW)
    # The operator's safety net (a spec nothing foresaw fails as InvalidSpec) never catches a
    # generated spec: each refusal is one the operator means, naming its field.
    for condition in (decision.status or {}).get("conditions", []):
        assert "cannot build this job" not in condition.get("message", ""), condition
    if compiled.problem is not None:
        assert NAMES_A_FIELD.search(compiled.problem.message), compiled.problem
        assert decision.create == []
        assert decision.status is not None
        assert decision.status["conditions"][-1]["type"] == "Failed"
    if decision.create_ssh_secret and "sshSecret" not in (decision.status or {}):
        # An MPI job: the shell creates its key Secret under a generated name and puts it on
        # the status; the pods come with the next pass. Both passes' children, as one.
        body, observed = settled(body, decision)
        body["status"] = {**body["status"], "sshSecret": f"{body['metadata']['name']}-ssh-k4x9z"}
        made = decision.create
        decision = decide(body, compiled, observed, SETTINGS, NOW)
        decision.create[:0] = made
    return body, decision


def settled(body: dict[str, Any], decision: Decision) -> tuple[dict[str, Any], Observed]:
    """The job and its children as the API server holds them after ``decision``."""
    pods = tuple(
        PodObservation.from_pod(
            {**o, "metadata": {**o["metadata"], "uid": f"uid-{o['metadata']['name']}"}}
        )
        for o in decision.create
        if o["kind"] == "Pod"
    )
    services = tuple(UID for o in decision.create if o["kind"] == "Service")
    objects = tuple(
        (o["kind"], o["metadata"]["name"], UID) for o in decision.create if o["kind"] == "ConfigMap"
    )
    return {**body, "status": decision.status or body.get("status")}, Observed(
        pods, services, objects
    )
