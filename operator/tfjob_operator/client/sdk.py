"""A Python API in the shape of Azure ML's TensorFlow estimator, over TensorFlowJobs.

The seed document's examples run after changing only their import line::

    from tfjob_operator.client.sdk import TensorFlow  # was: from azureml.train.dnn import ...
    exp = Experiment("my-experiment", namespace="ml")    # was: Experiment(workspace, name)
    compute_target = "gpu-a100"                          # a node pool of the operator's settings

    tf_est = TensorFlow(source_directory="./my-tf-proj", entry_script="train.py",
                        script_params={"--batch-size": 50}, compute_target=compute_target,
                        pip_packages=["scikit-learn"], use_gpu=True)
    run = exp.submit(tf_est)
    run.wait_for_completion(show_output=True)

An estimator becomes exactly the TensorFlowJob a person could apply (``to_manifest``), so SDK
users and GitOps repositories share one API; its source directory is shipped as
``tfjob-operator submit --source`` ships it.
"""

from __future__ import annotations

import re
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

import yaml
from kubernetes import client as k8s
from kubernetes import config, watch

from tfjob_operator.api.labels import JOB_NAME_LABEL, JOB_ROLE_LABEL
from tfjob_operator.api.v1alpha1 import GROUP, PLURAL, VERSION
from tfjob_operator.core.estimator import script_arguments

from .submit import submit

_BACKENDS = {"mpi": "mpi", "ps": "parameterServer", "multiworkermirrored": "multiWorkerMirrored"}
TERMINAL = ("Succeeded", "Failed")


class RunFailed(RuntimeError):
    """The job failed: its Failed condition's reason and message."""

    def __init__(self, job: str, reason: str, message: str) -> None:
        super().__init__(f"{job} failed ({reason}): {message}")
        self.reason, self.message = reason, message


class TensorFlow:
    """What to run and how to spread it, with the estimator's argument names and defaults."""

    def __init__(
        self,
        source_directory: str | Path | None = None,
        *,
        entry_script: str,
        script_params: dict[str, Any] | None = None,
        arguments: list[Any] | None = None,
        compute_target: str | None = None,
        use_gpu: bool = False,
        pip_packages: list[str] | None = None,
        pip_index_url: str | None = None,
        pip_index_secret: str | None = None,
        conda_packages: list[str] | None = None,
        node_count: int = 1,
        process_count_per_node: int = 1,
        worker_count: int | None = None,
        parameter_server_count: int | None = None,
        distributed_backend: str | None = None,
        image: str | None = None,
        environment_variables: dict[str, str] | None = None,
        pod_template: dict[str, Any] | None = None,
        checkpoint_claim: str | None = None,
        **unknown: Any,
    ) -> None:
        """The estimator's arguments, plus ``arguments``: the script's command line after
        ``script_params``' flags, in order (ScriptRunConfig's name; positional arguments go
        here), ``image``, ``environment_variables``,
        ``pod_template`` (spec.template: volumes, tolerations... merged into every pod),
        ``pip_index_url`` / ``pip_index_secret``: the index pip_packages come from and a
        basic-auth Secret (username, password) for it (spec.packageIndex), and
        ``checkpoint_claim``: a PersistentVolumeClaim for the job's checkpoints, so that a
        restarted job resumes where it was (spec.checkpoint; the script finds its directory in
        TFJOB_CHECKPOINT_DIR)."""
        if unknown:
            raise TypeError(
                f"TensorFlow() got arguments it does not support: {', '.join(sorted(unknown))}"
            )
        if conda_packages:
            raise ValueError(
                "conda_packages is not supported: the trainer images have no conda; use "
                f"pip_packages={list(conda_packages)!r} (the same names exist on PyPI for most)"
            )
        backend = (distributed_backend or "").lower() or None
        if backend is not None and backend not in _BACKENDS:
            raise ValueError(
                f"distributed_backend={distributed_backend!r}: use one of 'mpi', 'ps', "
                "'multiWorkerMirrored', or None for one node"
            )
        if backend != "mpi" and process_count_per_node != 1:
            raise ValueError("process_count_per_node is for distributed_backend='mpi'")
        if backend == "ps" and worker_count is not None and node_count not in (1, worker_count):
            raise ValueError(
                f"node_count={node_count} and worker_count={worker_count} differ: with "
                "distributed_backend='ps' each worker runs on its own pod (node)"
            )
        if backend is None and node_count != 1:
            raise ValueError("node_count > 1 needs a distributed_backend ('mpi', 'ps'...)")
        self.source_directory = Path(source_directory) if source_directory else None
        self.entry_script = entry_script
        self.script_params = dict(script_params or {})
        for flag, value in self.script_params.items():
            if value is not None and not isinstance(value, str | int | float | bool):
                raise ValueError(
                    f"script_params[{flag!r}] must be a string, number, boolean or None "
                    f"(a flag alone), not {type(value).__name__}"
                )
        self.arguments = [str(argument) for argument in arguments or []]
        self.compute_target = compute_target
        self.use_gpu = use_gpu
        self.pip_packages = list(pip_packages or [])
        if (pip_index_url or pip_index_secret) and not self.pip_packages:
            raise ValueError("pip_index_url and pip_index_secret need pip_packages")
        if pip_index_secret and not pip_index_url:
            raise ValueError("pip_index_secret needs pip_index_url: the index it logs in to")
        self.pip_index_url = pip_index_url
        self.pip_index_secret = pip_index_secret
        self.node_count = node_count
        self.process_count_per_node = process_count_per_node
        self.worker_count = worker_count
        self.parameter_server_count = parameter_server_count
        self.backend = backend
        self.image = image
        self.environment_variables = dict(environment_variables or {})
        self.pod_template = pod_template
        self.checkpoint_claim = checkpoint_claim

    def spec(self) -> dict[str, Any]:
        """The TensorFlowJob spec this estimator means (without its source, added at submit)."""
        spec: dict[str, Any] = {"entryScript": self.entry_script}
        # Sent as the ordered list: a map (scriptParams) comes back sorted from the API server.
        command_line = [*script_arguments(self.script_params), *self.arguments]
        if command_line:
            spec["arguments"] = command_line
        if self.use_gpu:
            spec["useGpu"] = True
        if self.pip_packages:
            spec["pipPackages"] = self.pip_packages
        if self.pip_index_url:
            spec["packageIndex"] = {"url": self.pip_index_url}
            if self.pip_index_secret:
                spec["packageIndex"]["credentialsSecret"] = self.pip_index_secret
        if self.compute_target:
            spec["nodePool"] = self.compute_target
        if self.image:
            spec["image"] = self.image
        if self.environment_variables:
            spec["environmentVariables"] = self.environment_variables
        if self.pod_template:
            spec["template"] = self.pod_template
        if self.checkpoint_claim:
            spec["checkpoint"] = {"persistentVolumeClaim": {"claimName": self.checkpoint_claim}}
        if self.backend == "mpi":
            spec["distribution"] = {
                "backend": "mpi",
                "nodeCount": self.node_count,
                "processCountPerNode": self.process_count_per_node,
            }
        elif self.backend is not None:
            distribution: dict[str, Any] = {
                "backend": _BACKENDS[self.backend],
                "workerCount": self.worker_count or self.node_count,
            }
            if self.backend == "ps":
                distribution["parameterServerCount"] = self.parameter_server_count or 1
            spec["distribution"] = distribution
        return spec

    def to_manifest(self, name: str) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "TensorFlowJob",
            "metadata": {"name": name},
            "spec": self.spec(),
        }

    def to_yaml(self, name: str) -> str:
        """The manifest as YAML, to keep in a GitOps repository or `kubectl apply`."""
        return yaml.safe_dump(self.to_manifest(name), sort_keys=False)


class Experiment:
    """Where runs go: a namespace of a cluster (kubeconfig and context as kubectl finds them),
    and a name that prefixes each run's job."""

    def __init__(
        self,
        name: str,
        *,
        namespace: str | None = None,
        kubeconfig: str | None = None,
        api: k8s.ApiClient | None = None,
    ) -> None:
        if not re.fullmatch(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?", name):
            raise ValueError(
                f"experiment name {name!r}: lower-case letters, digits and '-', starting with a "
                "letter, at most 40 characters (it starts each run's job name)"
            )
        self.name = name
        if api is None:
            api = config.new_client_from_config(config_file=kubeconfig)
            _, active = config.list_kube_config_contexts(config_file=kubeconfig)
            namespace = namespace or active["context"].get("namespace")
        self.api = api
        self.namespace = namespace or "default"

    def submit(self, estimator: TensorFlow, *, name: str | None = None) -> Run:
        """Create the run's job (and ship its source directory); return the run."""
        name = name or f"{self.name}-{secrets.token_hex(3)}"
        job = submit(
            self.api,
            estimator.to_manifest(name),
            namespace=self.namespace,
            source_directory=estimator.source_directory,
        )
        return Run(self.api, self.namespace, job["metadata"]["name"])


class Run:
    """One submitted job: its status, its output, its end."""

    def __init__(self, api: k8s.ApiClient, namespace: str, name: str) -> None:
        self.api, self.namespace, self.name = api, namespace, name
        self.custom = k8s.CustomObjectsApi(api)
        self.core = k8s.CoreV1Api(api)

    def __repr__(self) -> str:
        return f"Run({self.namespace}/{self.name})"

    def get_job(self) -> dict[str, Any]:
        job: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.name
        )
        return job

    def get_status(self) -> str:
        """The job's state: Created, Running, Restarting, Suspended, Succeeded or Failed."""
        return str((self.get_job().get("status") or {}).get("state") or "Created")

    def get_metrics(self) -> dict[str, float]:
        """The final metrics the training reported (tfjob_metrics), once the job succeeded."""
        return dict((self.get_job().get("status") or {}).get("metrics") or {})

    def cancel(self) -> None:
        """Stop the run: its job is deleted, and its pods with it."""
        self.custom.delete_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.name
        )

    def pods(self) -> list[k8s.V1Pod]:
        """The job's pods, by name."""
        pods: list[k8s.V1Pod] = self.core.list_namespaced_pod(
            self.namespace, label_selector=f"{JOB_NAME_LABEL}={self.name}"
        ).items
        return sorted(pods, key=lambda p: p.metadata.name)

    def deciding_pod(self) -> str:
        """The pod whose end decides the job (and whose log tells its story)."""
        for pod in self.pods():
            if (pod.metadata.labels or {}).get(JOB_ROLE_LABEL) in ("chief", "launcher"):
                return str(pod.metadata.name)
        return f"{self.name}-worker-0"

    def wait_for_completion(
        self, show_output: bool = False, *, timeout: float | None = None, out: TextIO = sys.stdout
    ) -> str:
        """Wait until the job ends; with ``show_output`` stream the deciding pod's log and each
        change of state. Returns "Succeeded"; raises RunFailed with the job's reason."""
        deadline = None if timeout is None else time.monotonic() + timeout
        follower: threading.Thread | None = None
        done = threading.Event()
        state: str | None = None
        while True:
            job = self._watch_until(state, deadline)
            state = job_state(job)
            if show_output:
                ready = (job.get("status") or {}).get("ready", "")
                print(f"[{self.name}] {state} {ready}", file=out)
                if follower is None and state != "Created":
                    follower = threading.Thread(
                        target=self._follow, args=(self.deciding_pod(), out, done), daemon=True
                    )
                    follower.start()
            if state in TERMINAL:
                break
        done.set()
        if follower is not None:
            follower.join(timeout=5)  # the log of a pod that ended ends by itself
        if state == "Failed":
            failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
            raise RunFailed(self.name, failed["reason"], failed["message"])
        return "Succeeded"

    def _watch_until(self, state: str | None, deadline: float | None) -> dict[str, Any]:
        """The job once its state is other than ``state``."""

        def changed(job: dict[str, Any]) -> bool:
            return job_state(job) != state

        while True:
            listed = self.custom.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, field_selector=f"metadata.name={self.name}"
            )
            for job in listed["items"]:
                if changed(job):
                    return job
            stream = watch.Watch()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"{self.name} did not finish in time")
            try:
                for event in stream.stream(
                    self.custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    field_selector=f"metadata.name={self.name}",
                    resource_version=listed["metadata"]["resourceVersion"],
                    timeout_seconds=int(min(remaining or 60, 60)) + 1,
                ):
                    if event["type"] == "DELETED":
                        raise RunFailed(self.name, "Deleted", "the job was deleted")
                    if changed(event["object"]):
                        return dict(event["object"])
            finally:
                stream.stop()

    def _follow(self, pod: str, out: TextIO, done: threading.Event) -> None:
        """Print the pod's log as it comes, once it has started; best effort: the run's end
        (``done``) does not wait for a log that cannot be read."""
        while True:
            try:
                stream = self.core.read_namespaced_pod_log(
                    pod, self.namespace, follow=True, _preload_content=False
                )
                break
            except Exception:  # noqa: BLE001 - not started yet, or its node serves no logs
                if done.wait(0.5):
                    return
        try:
            for chunk in stream.stream():
                out.write(chunk.decode(errors="replace"))
                out.flush()
        except Exception as error:  # noqa: BLE001 - the run's state still tells its end
            out.write(f"[{self.name}] the log of {pod} broke off: {error}\n")
        finally:
            stream.release_conn()


def job_state(job: dict[str, Any]) -> str:
    return str((job.get("status") or {}).get("state") or "Created")
