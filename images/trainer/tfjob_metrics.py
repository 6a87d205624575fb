"""Report a training run's final metrics to its TensorFlowJob, from the training code.

    import tfjob_metrics
    tfjob_metrics.log("accuracy", 0.93)                      # by hand, any time
    model.fit(..., callbacks=[tfjob_metrics.KerasCallback()])  # or a Keras fit's last logs

The values are written, as one JSON document, to the container's termination message
(``/dev/termination-log``, which Kubernetes keeps in the pod's status when the container ends);
the operator copies those of the pod that decides the job into the job's ``status.metrics``.
No dependency beyond the standard library (the Keras callback needs Keras, of course), so the
file can sit beside any training script.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

KEY = "tfjob.dev/metrics"
PATH = os.environ.get("TFJOB_TERMINATION_LOG", "/dev/termination-log")
MAX_BYTES = 4096  # what Kubernetes keeps of a termination message
_metrics: dict[str, float] = {}


def log(name: str, value: float) -> None:
    """Record ``name`` = ``value`` (the last value of a name wins) and write them all."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"metric {name}: {value!r} is not a finite number")
    _metrics[str(name)] = number
    write()


def metrics() -> dict[str, float]:
    return dict(_metrics)


def write(path: str = PATH) -> None:
    """Write every metric recorded so far, as ``{"tfjob.dev/metrics": {...}}`` (names sorted;
    the last that do not fit in 4096 bytes are left out)."""
    kept: dict[str, float] = {}
    for name in sorted(_metrics):
        trial = {**kept, name: _metrics[name]}
        if len(json.dumps({KEY: trial}).encode()) > MAX_BYTES:
            break
        kept = trial
    try:
        with open(path, "w") as out:
            json.dump({KEY: kept}, out)
    except OSError:
        pass  # not in a pod (a local run): the values stay readable through metrics()


class KerasCallback:
    """A Keras callback that records the last epoch's logs (loss, metrics) when fit ends.

    Works with tf.keras, tf_keras and Keras 3: it only needs the callback protocol, so it does
    not import Keras; pass ``keys`` to keep only some of the logs."""

    def __init__(self, keys: list[str] | None = None) -> None:
        self.keys = keys
        self.model: Any = None
        self.params: dict[str, Any] = {}
        self._last: dict[str, Any] = {}

    def set_model(self, model: Any) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._last = dict(logs or {})

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        for name, value in {**self._last, **(logs or {})}.items():
            if self.keys is None or name in self.keys:
                try:
                    log(name, float(value))
                except (TypeError, ValueError):
                    continue

    def __getattr__(self, name: str) -> Any:
        # Every other hook of the callback protocol (on_batch_begin...): nothing to do.
        if name.startswith("on_") or name.startswith("_implements"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)
