"""The training-side helper: what it writes to the termination message, within its size."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(20)

TRAINER = Path(__file__).resolve().parents[3] / "images" / "trainer"


@pytest.fixture
def helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TFJOB_TERMINATION_LOG", str(tmp_path / "termination-log"))
    monkeypatch.syspath_prepend(str(TRAINER))
    sys.modules.pop("tfjob_metrics", None)
    module = importlib.import_module("tfjob_metrics")
    yield module
    sys.modules.pop("tfjob_metrics", None)


def written(helper) -> dict:
    return json.loads(Path(helper.PATH).read_text())


def test_log_writes_every_metric_so_far(helper) -> None:
    helper.log("loss", 0.5)
    helper.log("accuracy", 0.75)
    helper.log("loss", 0.25)
    assert written(helper) == {"tfjob.dev/metrics": {"accuracy": 0.75, "loss": 0.25}}


def test_a_value_that_is_not_a_finite_number_is_refused(helper) -> None:
    with pytest.raises(ValueError, match="not a finite number"):
        helper.log("loss", float("nan"))


def test_what_does_not_fit_4096_bytes_is_left_out(helper) -> None:
    for index in range(400):
        helper.log(f"metric_{index:03d}", index)
    assert len(Path(helper.PATH).read_bytes()) <= 4096
    kept = written(helper)["tfjob.dev/metrics"]
    assert "metric_000" in kept
    assert 0 < len(kept) < 400


def test_the_keras_callback_records_the_last_epochs_logs(helper) -> None:
    callback = helper.KerasCallback()
    callback.on_batch_end(0, {"loss": 9.0})  # other hooks do nothing
    callback.on_epoch_end(0, {"loss": 0.9, "mse": 0.8})
    callback.on_epoch_end(1, {"loss": 0.4, "mse": 0.3})
    callback.on_train_end()
    assert written(helper) == {"tfjob.dev/metrics": {"loss": 0.4, "mse": 0.3}}
    assert helper.KerasCallback(keys=["mse"]).keys == ["mse"]
