"""Train a small Keras model on synthetic data, distributed the way TF_CONFIG says.

The trainer images run this as their entry script, and the operator's examples and end-to-end
tests use it as is:

- no TF_CONFIG: one process;
- a cluster of workers (and maybe a chief): tf.distribute.MultiWorkerMirroredStrategy;
- a cluster with parameter servers: tf.distribute.ParameterServerStrategy, where the chief
  coordinates, workers and parameter servers serve until the operator stops them, and an
  evaluator scores the checkpoints the chief writes to --model-dir.

With a job checkpoint (TFJOB_CHECKPOINT_DIR, from spec.checkpoint) the training backs up every
epoch, and under MultiWorkerMirroredStrategy on SIGTERM too, and a restarted job resumes from
there (tfjob_checkpoint.py). Every role exits at once on SIGTERM.

Keras 3 cannot fit a multi-worker model, so this uses Keras 2 (tf_keras).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

try:  # beside this script in the trainer images; optional when the script is copied alone
    import tfjob_metrics
except ImportError:  # pragma: no cover - a script shipped without the helper
    tfjob_metrics = None
try:
    import tfjob_checkpoint
except ImportError:  # pragma: no cover - a script shipped without the helper
    tfjob_checkpoint = None

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before TensorFlow is imported
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FEATURES = 8


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32, help="global batch size")
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--steps-per-epoch", type=int, default=10)
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--data", help="a CSV of features and target; synthetic data if absent")
    parser.add_argument("--model-dir", help="where the chief writes checkpoints")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--onnx-output",
        help="the process that decides the job (alone, chief or worker 0) exports the trained "
        "model to this ONNX file, with PATH.probe.json beside it: inputs and the Keras model's "
        "outputs for them, to check the file where it is served",
    )
    return parser.parse_args()


def load_data(args: argparse.Namespace):  # -> (features, targets) as numpy arrays
    import numpy as np

    if args.data:
        table = np.loadtxt(args.data, delimiter=",", dtype="float32")  # fails loudly if missing
        return table[:, :-1], table[:, -1:]
    rng = np.random.default_rng(args.seed)
    x = rng.normal(size=(args.samples, FEATURES)).astype("float32")
    weights = rng.normal(size=(FEATURES, 1)).astype("float32")
    y = x @ weights + 0.1 * rng.normal(size=(args.samples, 1)).astype("float32")
    return x, y


def build_model(keras, learning_rate: float):
    model = keras.Sequential(
        [
            keras.layers.Input(shape=(FEATURES,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=learning_rate), loss="mse")
    return model


def say(*parts: object) -> None:
    print(*parts, flush=True)


def main() -> int:
    args = parse_args()
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    cluster = config.get("cluster", {})
    task = config.get("task", {})
    role, index = task.get("type", "single"), task.get("index", 0)
    say(f"{role} {index}: parameters {json.dumps(vars(args), sort_keys=True)}")

    import tensorflow as tf
    import tf_keras as keras

    tf.keras.utils.set_random_seed(args.seed)
    x, y = load_data(args)

    def dataset(batch_size: int) -> tf.data.Dataset:
        data = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(batch_size)
        options = tf.data.Options()
        sharding = tf.data.experimental.AutoShardPolicy.DATA
        options.experimental_distribute.auto_shard_policy = sharding
        return data.with_options(options)

    if "ps" in cluster:
        return parameter_server(args, tf, keras, role, index, dataset)

    strategy = (
        tf.distribute.MultiWorkerMirroredStrategy() if cluster else tf.distribute.get_strategy()
    )
    exit_on_sigterm()
    say(f"{role} {index}: replicas in sync {strategy.num_replicas_in_sync}")
    with strategy.scope():
        model = build_model(keras, args.learning_rate)
    history = model.fit(
        dataset(args.batch_size),
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        verbose=2,
        # The final loss reaches the job's status.metrics (through the termination message).
        callbacks=[
            *([tfjob_metrics.KerasCallback()] if tfjob_metrics else []),
            *(tfjob_checkpoint.callbacks(keras, strategy) if tfjob_checkpoint else []),
        ],
    )
    say(f"{role} {index}: final loss {history.history['loss'][-1]:.6f}")
    deciding = role in ("single", "chief") or (
        role == "worker" and index == 0 and "chief" not in cluster
    )
    if args.onnx_output and deciding:
        export_onnx(args, keras, model, x)
    return 0


def exit_on_sigterm() -> None:
    """Stop at SIGTERM rather than at the kubelet's SIGKILL a grace period later: TensorFlow's
    multi-worker runtime catches the signal and, with no checkpoint handler, ignores it; a
    server blocked in join() never returns to Python to run a handler of its own."""
    if tfjob_checkpoint is not None:
        tfjob_checkpoint.exit_on_sigterm()
    else:  # pragma: no cover - a script shipped without the helper
        import signal

        signal.signal(signal.SIGTERM, lambda *_: os._exit(143))


def export_onnx(args: argparse.Namespace, keras, model, x) -> None:
    """The trained weights in a plain (undistributed) copy of the model, written as ONNX."""
    import tfjob_onnx

    plain = build_model(keras, args.learning_rate)
    plain.set_weights(model.get_weights())
    tfjob_onnx.export(plain, args.onnx_output)
    probe = x[:16]
    with open(args.onnx_output + ".probe.json", "w") as out:
        json.dump(
            {"inputs": probe.tolist(), "outputs": plain.predict(probe, verbose=0).tolist()}, out
        )
    say(f"exported the model to {args.onnx_output}")


def parameter_server(args, tf, keras, role, index, dataset) -> int:
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if role in ("worker", "ps"):
        server = tf.distribute.Server(
            resolver.cluster_spec(),
            job_name=role,
            task_index=index,
            protocol=resolver.rpc_layer or "grpc",
            start=True,
        )
        say(f"{role} {index}: serving at {server.target}")  # kept: the server lives with it
        exit_on_sigterm()
        while True:  # until the operator stops this pod once the chief has finished; not
            time.sleep(3600)  # server.join(), which would hold SIGTERM's handler off
    if role == "evaluator":
        return evaluate(args, tf, keras)
    strategy = tf.distribute.ParameterServerStrategy(resolver)
    exit_on_sigterm()
    say(f"chief: coordinating {strategy.num_replicas_in_sync} replicas")
    with strategy.scope():
        model = build_model(keras, args.learning_rate)
    callbacks = [tfjob_metrics.KerasCallback()] if tfjob_metrics else []
    if tfjob_checkpoint is not None:
        callbacks += tfjob_checkpoint.callbacks(keras, strategy)
    if args.model_dir:
        callbacks.append(
            keras.callbacks.ModelCheckpoint(
                os.path.join(args.model_dir, "ckpt-{epoch}"), save_weights_only=True
            )
        )
    history = model.fit(
        keras.utils.experimental.DatasetCreator(
            lambda context: dataset(context.get_per_replica_batch_size(args.batch_size))
        ),
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        callbacks=callbacks,
        verbose=2,
    )
    say(f"chief: final loss {history.history['loss'][-1]:.6f}")
    if args.onnx_output:
        x, _ = load_data(args)
        export_onnx(args, keras, model, x)
    return 0


def evaluate(args, tf, keras) -> int:
    """Score each new checkpoint the chief writes, until the operator stops this pod."""
    exit_on_sigterm()
    model = build_model(keras, args.learning_rate)
    seen: set[str] = set()
    say("evaluator: waiting for checkpoints" + (f" in {args.model_dir}" if args.model_dir else ""))
    while args.model_dir:
        for index_file in sorted(glob.glob(os.path.join(args.model_dir, "ckpt-*.index"))):
            checkpoint = index_file.removesuffix(".index")
            if checkpoint in seen:
                continue
            seen.add(checkpoint)
            model.load_weights(checkpoint)
            x, y = load_data(args)
            loss = model.evaluate(x, y, verbose=0)
            say(f"evaluator: {os.path.basename(checkpoint)} loss {loss:.6f}")
        time.sleep(1)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
