"""Fixtures: a small hand-written run directory (report_run_dir.make_run)."""

from __future__ import annotations

import pytest
from report_run_dir import make_run


@pytest.fixture
def run_dir(tmp_path):
    return make_run(tmp_path / "run_a")


@pytest.fixture
def make_run_dir(tmp_path):
    return lambda name, **kw: make_run(tmp_path / name, **kw)
