"""`keras` in the Horovod image is Keras 2: the tf_keras package that training uses.

TensorFlow 2.18 pulls in Keras 3 as the standalone `keras`, while the image trains with tf_keras
(TF_USE_LEGACY_KERAS=1 makes `tf.keras` tf_keras). Horovod 0.28.1 imports the standalone
package (`from keras import backend as K` in horovod.tensorflow.keras.callbacks, `import keras`
in horovod.keras), so with Keras 3 there its MetricAverageCallback and the other callbacks
failed (`module 'keras.backend' has no attribute 'constant'`). The image removes Keras 3 and
installs this module in its place: `keras` and every `keras.X` are tf_keras and `tf_keras.X`,
the same module objects, never a second copy.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

import tf_keras


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds `keras.X` as the module `tf_keras.X`, leaving that module as it was."""

    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(
        self, fullname: str, path: object = None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith("keras."):
            return None
        if importlib.util.find_spec("tf_" + fullname) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = importlib.import_module("tf_" + spec.name)
        # The import system stamps the alias's spec on the module it gets: keep tf_keras' own.
        self._specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        module.__spec__ = self._specs.pop(module.__spec__.name, module.__spec__)


sys.meta_path.insert(0, _Alias())
sys.modules[__name__] = tf_keras
