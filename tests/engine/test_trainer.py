from tmtvis.errors import root_cause


class TrainingFailed(Exception):
    def __init__(self, failures: dict) -> None:
        super().__init__("Training failed due to worker errors:\n  see below")
        self.worker_failures = failures


def test_failure_summary_names_the_worker_error():
    err = TrainingFailed({1: ValueError("Traceback (most recent call last):\n  File x\nValueError: Invalid learning rate: -1.0")})
    assert root_cause(err).line == "ValueError: Invalid learning rate: -1.0"
    assert root_cause(RuntimeError("boom\n")).line == "boom"
    assert root_cause(TrainingFailed({})).line == "see below"


def test_gpu_request_on_a_cpu_cluster_is_refused_in_one_line(ray_local, synth_root, tmp_path):
    """No GPU and no autoscaler: one line naming scaling.gpus_per_worker before anything starts, never a wait."""
    import os
    import subprocess
    import sys

    import pytest

    from helpers import ROOT, tiny_config
    from tmtvis.config import save_config
    from tmtvis.cluster import check_cluster
    from tmtvis.errors import TmtvisError

    with pytest.raises(TmtvisError, match=r"^scaling\.gpus_per_worker=1: 2 workers need 2 GPUs and this Ray cluster "
                                          r"has 0 and no autoscaler"):
        check_cluster(tiny_config(synth_root, "scaling.gpus_per_worker=1"), can_grow=False)
    with pytest.raises(TmtvisError, match=r"^scaling\.workers=2 x scaling\.cpus_per_worker=4: only 0 such workers fit"):
        check_cluster(tiny_config(synth_root, "scaling.cpus_per_worker=4"), can_grow=False)
    check_cluster(tiny_config(synth_root), can_grow=False)  # 2 x 0.5 CPU fit
    check_cluster(tiny_config(synth_root, "scaling.gpus_per_worker=1"), can_grow=True)  # may get a GPU node

    # the command a user runs: its own local Ray (2 CPUs, no GPU), the r50-style request for a GPU per worker
    save_config(tiny_config(synth_root, f"output_dir={synth_root}", "scaling.gpus_per_worker=1"), tmp_path / "gpu.yaml")
    out = subprocess.run([sys.executable, "-m", "workflows.cli", "train", "--config", str(tmp_path / "gpu.yaml"),
                          "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    err = [line for line in out.stderr.splitlines() if line.startswith("tmtvis: error")]
    assert out.returncode == 2 and len(err) == 1 and "scaling.gpus_per_worker=1" in err[0], out.stderr[-2000:]
    assert not (tmp_path / "run").exists()  # refused before anything was written
