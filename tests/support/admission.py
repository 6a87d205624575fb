"""Holding open the window between the operator counting a failure and the pod going: a
ValidatingAdmissionPolicy that refuses every DELETE of the named pods while it stands."""

from __future__ import annotations

import time
from types import TracebackType

from kubernetes import client as k8s


class DeletesRefused:
    """``with DeletesRefused(api, namespace, pod, ...)``: their DELETEs are refused until the
    block ends or ``release()``."""

    def __init__(self, api_client: k8s.ApiClient, namespace: str, *pods: str) -> None:
        self._admission = k8s.AdmissionregistrationV1Api(api_client)
        self._namespace = namespace
        self._pods = pods
        self._name = f"keep-{pods[0]}-{namespace}"[:63].rstrip("-")
        self._held = False

    def __enter__(self) -> DeletesRefused:
        names = ", ".join(f"'{pod}'" for pod in self._pods)
        self._admission.create_validating_admission_policy(
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicy",
                "metadata": {"name": self._name},
                "spec": {
                    "failurePolicy": "Fail",
                    "matchConstraints": {
                        "resourceRules": [
                            {
                                "apiGroups": [""],
                                "apiVersions": ["v1"],
                                "operations": ["DELETE"],
                                "resources": ["pods"],
                            }
                        ]
                    },
                    "validations": [
                        {
                            "expression": f"!(oldObject.metadata.name in [{names}])",
                            "message": "held for the test",
                        }
                    ],
                },
            }
        )
        self._admission.create_validating_admission_policy_binding(
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicyBinding",
                "metadata": {"name": self._name},
                "spec": {
                    "policyName": self._name,
                    "validationActions": ["Deny"],
                    "matchResources": {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": self._namespace}
                        }
                    },
                },
            }
        )
        self._held = True
        time.sleep(2)  # bindings take a moment to reach the API server's admission
        return self

    def release(self) -> None:
        if self._held:
            self._admission.delete_validating_admission_policy_binding(self._name)
            self._admission.delete_validating_admission_policy(self._name)
            self._held = False

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
