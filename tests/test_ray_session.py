"""ray_session's local start: a node that does not register within Ray's 30 s is stopped and started again."""
from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tmtvis.errors import TmtvisError

TIMEOUT = Exception("The current node timed out during startup. This could happen because some of the raylet "
                    "failed to startup or the GCS has become overloaded.")


@pytest.fixture
def fake_ray(tmp_path, monkeypatch):
    """ray.init replaced: each call spawns a process running from the session's temp dir (as Ray's GCS and raylet
    do), then raises what the next item of `outcomes` says (None: started)."""
    import ray

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", None)  # TMPDIR is read again
    state = {"outcomes": [], "procs": [], "calls": 0}

    def init(**kw):
        state["calls"] += 1
        state["procs"].append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)",
                                                kw["_temp_dir"]]))
        if (error := state["outcomes"].pop(0)) is not None:
            raise error

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    yield state
    for p in state["procs"]:
        p.kill()
        p.wait()


def test_a_start_that_times_out_is_stopped_and_tried_again(fake_ray, tmp_path, caplog):
    from tmtvis.ray_session import ray_session

    fake_ray["outcomes"] = [TIMEOUT, None]
    with caplog.at_level(logging.WARNING), ray_session():
        assert fake_ray["calls"] == 2
        first, second = fake_ray["procs"]
        assert first.wait(timeout=30) is not None  # what the failed start left is stopped
        assert second.poll() is None  # the started one runs
    assert "starting it again (attempt 2 of 3)" in caplog.text
    assert not list(tmp_path.glob("tmtvis-ray-*"))


def test_a_start_that_never_registers_is_one_line(fake_ray, tmp_path):
    from tmtvis.ray_session import ray_session

    fake_ray["outcomes"] = [TIMEOUT, TIMEOUT, TIMEOUT]
    with pytest.raises(TmtvisError) as e, ray_session():
        pass
    assert fake_ray["calls"] == 3 and "\n" not in str(e.value)
    assert str(e.value).startswith("a local Ray did not start: its node did not register within Ray's 30 s, 3 times")
    assert all(p.wait(timeout=30) is not None for p in fake_ray["procs"])
    assert not list(tmp_path.glob("tmtvis-ray-*"))


def test_other_start_errors_are_not_retried(fake_ray):
    from tmtvis.ray_session import ray_session

    fake_ray["outcomes"] = [ValueError("bad num_cpus")]
    with pytest.raises(ValueError, match="bad num_cpus"), ray_session():
        pass
    assert fake_ray["calls"] == 1
