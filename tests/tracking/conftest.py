"""A real `mlflow server` on 127.0.0.1 that a test can stop and start again (same port, same store)."""
from __future__ import annotations

import pytest

from helpers import MlflowServer


@pytest.fixture
def mlflow_server(tmp_path):
    """A started server (`.uri`, `.stop()`, `.start()`), stopped at the end of the test."""
    server = MlflowServer(tmp_path / "mlflow-server")
    server.start()
    yield server
    server.stop()
