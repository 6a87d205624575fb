"""What the pure core builds from generated specs (tests/unit/test_fuzz_core.py's strategy), sent
to the real API server as a server-side dry run. A job the API server refuses at apply never
reaches the operator; for every other, each Pod, Service, ConfigMap and PodGroup the core builds
must be accepted too."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from tests.support.specs import (
    PRIORITY_CLASS,
    SETTINGS,
    estimator_form,
    first_pass,
    kubeflow_form,
)
from tfjob_operator.api.v1alpha1 import GROUP, PLURAL, VERSION

pytestmark = [pytest.mark.timeout(600), pytest.mark.usefixtures("crd")]

SAMPLES = 300


def dry_run_create(api_client: k8s.ApiClient, namespace: str, child: dict[str, Any]) -> None:
    core, custom = k8s.CoreV1Api(api_client), k8s.CustomObjectsApi(api_client)
    body = {**child, "metadata": {**child["metadata"], "namespace": namespace}}
    if child["kind"] == "Pod":
        core.create_namespaced_pod(namespace, body, dry_run="All")
    elif child["kind"] == "Service":
        core.create_namespaced_service(namespace, body, dry_run="All")
    elif child["kind"] == "ConfigMap":
        core.create_namespaced_config_map(namespace, body, dry_run="All")
    elif child["kind"] == "PodGroup":
        group, version = child["apiVersion"].split("/")
        custom.create_namespaced_custom_object(
            group, version, namespace, "podgroups", body, dry_run="All"
        )
    else:
        raise AssertionError(f"unexpected child kind {child['kind']}")


def test_the_api_server_accepts_every_child_the_core_builds(
    api_client: k8s.ApiClient, namespace: str
) -> None:
    assert SETTINGS.pod_group_api == "scheduling.k8s.io/v1alpha2"  # the cluster's, with gangs on
    scheduling = k8s.SchedulingV1Api(api_client)
    try:
        scheduling.create_priority_class({"metadata": {"name": PRIORITY_CLASS}, "value": 1000})
    except ApiException as error:
        if error.status != 409:
            raise
    built = {"refused at apply": 0, "refused later": 0, "jobs": 0, "children": 0}
    custom = k8s.CustomObjectsApi(api_client)

    @settings(
        max_examples=SAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(st.one_of(kubeflow_form, estimator_form))
    def check(spec: dict[str, Any]) -> None:
        body, decision = first_pass(spec)
        manifest = {k: v for k, v in body.items() if k != "metadata"}
        manifest["metadata"] = {"name": body["metadata"]["name"]}
        try:
            custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, manifest, dry_run="All"
            )
        except ApiException as refused:
            if refused.status != 422:  # anything but "invalid, naming the field" is a fault
                raise
            built["refused at apply"] += 1
            return
        if decision.status and decision.status["conditions"][-1]["type"] == "Failed":
            built["refused later"] += 1  # on the job's status, with the reason
        if decision.create:
            built["jobs"] += 1
        for child in decision.create:
            try:
                dry_run_create(api_client, namespace, child)
            except ApiException as refused:
                if refused.status == 403 and "no PriorityClass with name" in str(refused.body):
                    # A class the cluster lacks: the operator fails the job with these words
                    # when its pod is refused (kube.is_policy_denial).
                    built["refused later"] += 1
                    return
                raise AssertionError(
                    f"the API server refused {child['kind']} {child['metadata']['name']} "
                    f"built from spec {spec!r}: {refused.body}"
                ) from refused
            built["children"] += 1

    check()
    print(
        f"dry-run: {built['refused at apply']} of {SAMPLES} jobs refused at apply, "
        f"{built['refused later']} accepted there and failed by the operator; "
        f"{built['children']} children of {built['jobs']} jobs accepted"
    )
    assert built["jobs"] >= SAMPLES // 10  # the sample does reach the build step
