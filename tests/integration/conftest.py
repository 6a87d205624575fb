"""Fixtures of the integration tests beside the session's (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A source directory as a data scientist has one: ./my-tf-proj with its train.py."""
    root = tmp_path / "my-tf-proj"
    root.mkdir()
    (root / "train.py").write_text("print('hello')\n")
    return root
