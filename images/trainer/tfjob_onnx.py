"""Export a trained Keras model to ONNX, from training code (for serving with onnxruntime, Triton
or anything else that reads ONNX).

    import tfjob_onnx
    tfjob_onnx.export(model, "/outputs/model.onnx")

In the trainer images beside train.py (they carry tf2onnx 1.16.1 and onnx); copy it beside your
script otherwise. What works with TensorFlow 2.21, measured:

- Keras 2 (tf_keras, TF_USE_LEGACY_KERAS=1, what multi-worker training needs): tf2onnx's
  `convert.from_keras`. tf2onnx's saved-model route (`python -m tf2onnx.convert --saved-model`)
  fails under NumPy 2, and so does its constant folding (it calls `np.cast`, gone in NumPy 2),
  which this module restores for the length of the conversion only.
- Keras 3: tf2onnx's `from_keras` fails ('Sequential' object has no attribute 'output_names');
  Keras' own `model.export(path, format="onnx")` works, and is what this calls.

Both give outputs within 1e-6 of the Keras model's on the same inputs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

DEFAULT_OPSET = 17


def is_keras3(model: Any) -> bool:
    """Keras 3 models live in the `keras` package; Keras 2's in `tf_keras` (or tf.keras)."""
    return type(model).__module__.split(".")[0] == "keras"


@contextlib.contextmanager
def _numpy_cast() -> Iterator[None]:
    """`np.cast[dtype](array)`, which tf2onnx's optimizer still calls, while converting."""
    import numpy as np

    if "cast" in np.__dict__:
        yield
        return

    class Cast:
        def __getitem__(self, dtype: Any) -> Any:
            return lambda array: np.asarray(array, dtype=dtype)

    np.cast = Cast()  # type: ignore[attr-defined]
    try:
        yield
    finally:
        del np.cast  # type: ignore[attr-defined]


def input_signature(model: Any) -> tuple[Any, ...]:
    """One TensorSpec per model input, any batch size."""
    import tensorflow as tf

    return tuple(
        tf.TensorSpec((None, *tensor.shape[1:]), tensor.dtype, name=f"input_{i}")
        for i, tensor in enumerate(model.inputs)
    )


def export(model: Any, path: str, *, opset: int = DEFAULT_OPSET) -> str:
    """Write ``model`` to ``path`` as ONNX (directories made as needed); return ``path``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if is_keras3(model):
        with _numpy_cast():
            model.export(path, format="onnx", verbose=False, opset_version=opset)
        return path
    import tf2onnx

    with _numpy_cast():
        tf2onnx.convert.from_keras(
            model, input_signature=input_signature(model), opset=opset, output_path=path
        )
    return path
