"""Keep a Keras training's progress across a TensorFlowJob's restarts.

When a job has `spec.checkpoint`, the operator mounts its volume into every pod and names the
job's own directory on it in TFJOB_CHECKPOINT_DIR. A restart (a worker evicted, preempted,
deleted, OOM-killed, its node lost) makes every pod anew; with this, the new attempt resumes
from the last backup instead of epoch 1:

    import tfjob_checkpoint
    callbacks = [*tfjob_checkpoint.callbacks(keras, strategy)]
    tfjob_checkpoint.exit_on_sigterm()   # before fit: see below
    model.fit(..., callbacks=callbacks)

- Keras' BackupAndRestore backs up at the end of every epoch (or every N steps) and restores
  on the next start, epoch and step included; it deletes the backup once fit ends, so a job
  that succeeded and is created again starts afresh.
- Under MultiWorkerMirroredStrategy, a SIGTERM (an eviction, a drain, a graceful delete,
  kube-scheduler's preemption) also saves: every worker agrees through TensorFlow's
  coordination service on the next step, saves there and exits 143
  (tf.distribute.experimental.PreemptionCheckpointHandler). Nothing trained is lost.
- TensorFlow's MultiWorkerMirroredStrategy catches SIGTERM in C++ and does nothing with it
  unless such a handler exists: a worker without one runs on until the grace period ends and
  the kubelet kills it. `exit_on_sigterm()` makes SIGTERM end the process at once (exit 143)
  whenever no preemption handler has taken the signal over.

Standard library only at import; TensorFlow and Keras come from the caller.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

ENV = "TFJOB_CHECKPOINT_DIR"
TERMINATED = 143  # 128 + SIGTERM: what a process the kubelet stopped exits with


def directory() -> str | None:
    """The job's checkpoint directory, if the job has one."""
    return os.environ.get(ENV) or None


def _exit_terminated(*_: object) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(TERMINATED)


def exit_on_sigterm() -> None:
    """End the process at SIGTERM (exit 143): after creating the strategy, which takes the
    signal over and would otherwise sit on it until the kubelet's SIGKILL."""
    signal.signal(signal.SIGTERM, _exit_terminated)


def _unlock_preemption_checkpoints() -> bool:
    """tf_keras saves on SIGTERM only where it finds the GCE metadata server (it asks it over
    the network). The handler itself works wherever SIGTERM comes, as in every Kubernetes pod:
    take the signal as the notice, never the network. False where tf_keras has moved on."""
    try:
        from tensorflow.python.distribute.failure_handling import failure_handling_util
        from tf_keras.src.distribute import worker_training_state
    except ImportError:
        return False
    if not hasattr(worker_training_state, "support_on_demand_checkpoint_callback"):
        return False
    import tensorflow as tf

    failure_handling_util.on_gcp = lambda: False
    worker_training_state.support_on_demand_checkpoint_callback = lambda strategy: isinstance(
        strategy, tf.distribute.MultiWorkerMirroredStrategy
    )
    return True


def callbacks(keras: Any, strategy: Any, *, save_freq: int | str = "epoch") -> list[Any]:
    """The callbacks that keep this training's progress, or none if the job has no checkpoint
    directory. `keras` is tf_keras (Keras 2), as the trainer images use."""
    backup_dir = directory()
    if backup_dir is None:
        return []
    import tensorflow as tf

    preemption = (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and _unlock_preemption_checkpoints()
    )

    class BackupAndRestore(keras.callbacks.BackupAndRestore):
        def _implements_train_batch_hooks(self) -> bool:
            # The notice is looked for after each step; saving every epoch alone would have
            # Keras skip the step hooks, and the notice would wait for the kubelet's SIGKILL.
            return preemption or super()._implements_train_batch_hooks()

        def on_train_begin(self, logs: Any = None) -> None:
            super().on_train_begin(logs)
            handler = getattr(self._training_state, "preemption_handler", None)
            if handler is not None:
                # tf_keras had the handler restore from where this worker writes, which is a
                # scratch directory but on the chief: after a SIGKILL every other worker would
                # start again from epoch 1, out of step with the chief, and the collective
                # would break. Every worker restores the chief's backup, and counts its steps
                # from there, so that all agree on the step of the next save.
                handler._read_checkpoint_manager.restore_or_initialize()
                handler._run_counter = handler._checkpointed_runs.numpy()
                # Saved: now exit as a stopped process does, not with tf_keras' 42.
                handler._exit_fn = _exit_terminated
                print(f"checkpoints: {backup_dir}, every {save_freq} and on SIGTERM", flush=True)
            else:
                print(f"checkpoints: {backup_dir}, every {save_freq}", flush=True)
            state = self._training_state
            epoch = int(state._ckpt_saved_epoch.numpy())
            if epoch >= 0:  # -1: nothing was backed up yet
                step = int(state._ckpt_saved_batch.numpy())
                where = f"epoch {epoch + 1}" + (f", step {step + 1}" if step >= 0 else "")
                print(f"checkpoints: restored the training as it was after {where}", flush=True)

    return [BackupAndRestore(backup_dir, save_freq=save_freq, save_before_preemption=preemption)]
