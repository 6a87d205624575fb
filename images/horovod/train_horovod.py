"""Train a small Keras model with Horovod over MPI: one process per MPI slot, gradients
averaged with allreduce. The Horovod image runs it; the launcher starts every copy with mpirun.

horovod.tensorflow.keras needs Keras 2: TF_USE_LEGACY_KERAS=1 must be set before TensorFlow is
imported (the image sets it; so does this script), and its callbacks import the standalone
`keras`, which the image makes tf_keras too. With a job checkpoint (TFJOB_CHECKPOINT_DIR)
rank 0 backs up after every epoch and a restarted job resumes from there.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FEATURES = 8


def say(line: str) -> None:
    """One line in one write: mpirun interleaves the ranks' output write by write."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16, help="per process")
    parser.add_argument("--learning-rate", type=float, default=0.02)
    parser.add_argument("--steps-per-epoch", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    import horovod.tensorflow.keras as hvd
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    hvd.init()
    rank, size = hvd.rank(), hvd.size()
    say(
        f"rank {rank} of {size} (local {hvd.local_rank()} of {hvd.local_size()}) "
        f"on {socket.gethostname()}"
    )

    rng = np.random.default_rng(args.seed)
    x = rng.normal(size=(1024, FEATURES)).astype("float32")
    y = (x @ rng.normal(size=(FEATURES, 1)) + 0.1 * rng.normal(size=(1024, 1))).astype("float32")
    data = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shard(size, rank)  # each process trains on its own part of the data
        .repeat()
        .batch(args.batch_size)
    )
    tf.keras.utils.set_random_seed(args.seed + rank)
    model = keras.Sequential(
        [
            keras.layers.Input(shape=(FEATURES,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    optimizer = hvd.DistributedOptimizer(
        keras.optimizers.SGD(learning_rate=args.learning_rate * size)
    )
    model.compile(optimizer=optimizer, loss="mse")
    callbacks = [
        hvd.callbacks.BroadcastGlobalVariablesCallback(0),  # start from rank 0's weights
        hvd.callbacks.MetricAverageCallback(),  # each epoch's loss: the ranks' average
    ]
    directory = os.environ.get("TFJOB_CHECKPOINT_DIR")
    initial_epoch = 0
    if directory:
        initial_epoch, backup = resume(hvd, tf, keras, model, directory)
        callbacks.append(backup)
    history = model.fit(
        data,
        epochs=args.epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=args.steps_per_epoch,
        callbacks=callbacks,
        verbose=2 if rank == 0 else 0,
    )
    if directory and rank == 0:  # trained to the end: a job made again starts afresh
        shutil.rmtree(directory, ignore_errors=True)
    loss = history.history["loss"][-1]
    average = float(hvd.allreduce(tf.constant(loss), op=hvd.Average))
    # Gradients were averaged over all ranks at every step: every copy holds the same model.
    checksum = float(sum(float(tf.reduce_sum(w)) for w in model.get_weights()))
    say(
        f"rank {rank}: loss {loss:.6f}, average loss {average:.6f}, weights checksum {checksum:.6f}"
    )
    return 0


def resume(hvd, tf, keras, model, directory: str):
    """The job's checkpoint (spec.checkpoint; mpirun forwards TFJOB_CHECKPOINT_DIR): rank 0
    restores the last backup and backs up after every epoch; every rank goes on from the epoch
    rank 0 restored, and the weights reach them through the broadcast at the start of fit."""
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    checkpoint = tf.train.Checkpoint(model=model, epoch=epoch)
    manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=1)
    if hvd.rank() == 0:
        say(f"checkpoints: {directory}, every epoch")
        if manager.latest_checkpoint:
            checkpoint.restore(manager.latest_checkpoint).expect_partial()
            say(f"checkpoints: restored the training as it was after epoch {int(epoch.numpy())}")
    import horovod.tensorflow  # its broadcast_object; the keras module has none

    initial_epoch = int(horovod.tensorflow.broadcast_object(int(epoch.numpy()), root_rank=0))

    class Backup(keras.callbacks.Callback):
        def on_epoch_end(self, index, logs=None):
            if hvd.rank() == 0:
                epoch.assign(index + 1)
                manager.save()

    return initial_epoch, Backup()


if __name__ == "__main__":
    sys.exit(main())
