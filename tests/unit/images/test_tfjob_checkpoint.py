"""The training-side checkpoint helper, where it needs no TensorFlow: it finds the job's
directory where the operator names it, and SIGTERM ends a process at once, as a stopped one.
(Backing up and resuming with real TensorFlow: tests/e2e/test_training.py.)"""

from __future__ import annotations

import importlib
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tfjob_operator.api.v1alpha1 import CHECKPOINT_DIR_ENV

pytestmark = pytest.mark.timeout(20)

TRAINER = Path(__file__).resolve().parents[3] / "images" / "trainer"


@pytest.fixture
def helper(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(TRAINER))
    sys.modules.pop("tfjob_checkpoint", None)
    yield importlib.import_module("tfjob_checkpoint")
    sys.modules.pop("tfjob_checkpoint", None)


def test_the_directory_is_the_one_the_operator_names(helper, monkeypatch) -> None:
    assert helper.ENV == CHECKPOINT_DIR_ENV
    monkeypatch.delenv(CHECKPOINT_DIR_ENV, raising=False)
    assert helper.directory() is None
    # No directory, no callbacks, and Keras is not even looked at.
    assert helper.callbacks(keras=None, strategy=None) == []
    monkeypatch.setenv(CHECKPOINT_DIR_ENV, "/checkpoint/mnist")
    assert helper.directory() == "/checkpoint/mnist"


def test_sigterm_ends_the_process_at_once_with_143() -> None:
    script = (
        f"import sys, time; sys.path.insert(0, {str(TRAINER)!r})\n"
        "import tfjob_checkpoint\n"
        "tfjob_checkpoint.exit_on_sigterm()\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 143
