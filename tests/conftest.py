"""Shared pytest settings: deterministic, single-process torch so tests behave the same on 2 cores."""
import logging
import os
from pathlib import Path
from typing import List

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
# A copy of shared/fixtures/convnext_checkpoint_layouts.json, so a clone tests on its own.
FIXTURES = REPO_ROOT / 'tests' / 'fixtures'
os.environ.setdefault('PYTHONHASHSEED', '0')


class RunsCodeWhenUnpickled:
    """Unpickling this calls ``os.mkdir(path)``: the stand-in for arbitrary code in a crafted checkpoint."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


class LogRecords(logging.Handler):
    """A logging handler that keeps the messages it receives (attach it to the logger a test reads)."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def pytest_collection_modifyitems(items):
    """Everything under tests/integration/ (subprocesses, end-to-end runs) is ``slow``: ``-m "not slow"``
    leaves the fast unit tests."""
    for item in items:
        if 'integration' in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _fresh_mmengine_loggers():
    """Each test starts without mmengine's loggers: an MMLogger keeps the stream it was created with, so one
    made under an earlier test's captured stderr would write this test's messages into a closed capture
    ("--- Logging error ---") instead of where the test reads them."""
    from mmengine.logging import MMLogger
    MMLogger._instance_dict.clear()
    yield


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope='session')
def repo_root() -> Path:
    return REPO_ROOT
