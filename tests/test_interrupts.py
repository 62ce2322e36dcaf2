"""run_interruptible: SIGINT/SIGTERM end a command whatever it is blocked in, with its child processes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import ROOT, alive
from tmtvis.errors import TmtvisError
from tmtvis.interrupts import run_interruptible

BLOCKED = """
import subprocess, sys, threading, time
from tmtvis.interrupts import run_interruptible

def work():
    child = subprocess.Popen(["sleep", "600"])
    open(sys.argv[1], "w").write(str(child.pid))
    threading.Event().wait()  # blocked for good, as a command waiting for resources is

sys.exit(run_interruptible(work))
"""


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_ends_a_blocked_command_and_its_children(tmp_path, sig, code):
    pid_file = tmp_path / "child.pid"
    proc = subprocess.Popen([sys.executable, "-c", BLOCKED, str(pid_file)], env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stderr=subprocess.PIPE, text=True)
    for _ in range(600):
        if pid_file.is_file() and pid_file.read_text():
            break
        time.sleep(0.05)
    child = int(pid_file.read_text())
    proc.send_signal(sig)
    assert proc.wait(60) == code
    err = proc.stderr.read()
    assert f"stopped by {signal.Signals(sig).name}" in err and "Traceback" not in err
    for _ in range(100):
        if not alive(child):
            break
        time.sleep(0.1)
    assert not alive(child)


def test_results_and_errors_come_back_to_the_caller():
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    assert run_interruptible(lambda: 7, exit_process=False) == 7

    def fails() -> int:
        raise TmtvisError("bad input")

    with pytest.raises(TmtvisError, match="bad input"):
        run_interruptible(fails, exit_process=False)
    # whatever was installed before (pytest's, or one an earlier in-process Ray trainer left) is back
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_without_exit_a_signal_returns_its_code():
    def interrupts_itself() -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)
        return 0

    assert run_interruptible(interrupts_itself, exit_process=False) == 143
