"""Several Ray nodes on one machine (ray.cluster_utils.Cluster: a head with the dashboard + a worker node):
`tmtvis submit` ships this project as the job's working_dir, a tiny `tmtvis train` job (tracked by a real MLflow
server) reaches SUCCEEDED and leaves a loadable checkpoint, a failing job makes `tmtvis submit` exit non-zero, and
`train` on the two nodes refuses to start without a tracking URI and reports what it waits for."""
from __future__ import annotations

import os
import sys
import time

import pytest

from helpers import MlflowServer, free_port, ray_nodes
from tmtvis.checkpoint import load_checkpoint
from workflows.cli import main

pytestmark = pytest.mark.integration
# Logical CPUs per node. A train worker asks for 2, so no node holds both workers: DDP has to span the two
# nodes, and each node keeps 1 CPU for the data pipeline's tasks.
NODE_CPUS = 3


@pytest.fixture(scope="module")
def cluster():
    with ray_nodes(NODE_CPUS) as nodes:
        yield nodes


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real MLflow server on 127.0.0.1, as a cluster has one (several nodes refuse to train without it)."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow")).start()
    yield server.uri
    server.stop()


def submit(address: str, *args: str) -> int:
    return main(["submit", "--address", address, "--python", sys.executable, "--", *args])


def test_train_job_on_two_nodes_leaves_checkpoint(cluster, mlflow_server, synth_root, tmp_path, capfd):
    c, address, _ = cluster
    assert len([n for n in c.list_all_nodes()]) == 2
    run_dir = tmp_path / "run"
    rc = submit(address, "train", "--config", "tiny", "--address", "auto", "--run-dir", str(run_dir),
                "--set", f"data.root={synth_root / 'data'}", "--set", f"output_dir={tmp_path / 'out'}",
                "--set", "taxonomy.clip_model=tmtvis-test-clip",
                "--set", f"taxonomy.clip_model_config={synth_root / 'clip.json'}",
                "--set", "model.num_queries=6", "--set", "model.dec_layers=2", "--set", "loss.num_points=256",
                "--set", "schedule.iterations=4", "--set", "checkpoint.every=4", "--set", "train.log_every=2",
                "--set", "train.val_every=0", "--set", "train.val_max_videos=1", "--set", "scaling.workers=2",
                "--set", "scaling.cpus_per_worker=2", "--tracking-uri", mlflow_server)
    out, err = capfd.readouterr()
    assert rc == 0, out[-3000:] + err[-3000:]
    assert "SUCCEEDED" in err and "final checkpoint:" in out  # the job's own output, followed live
    ckpt = load_checkpoint(run_dir)  # the run dir's latest checkpoint, weights_only
    assert ckpt.iteration == 4 and ckpt.path.parent.parent == run_dir / "checkpoints"
    assert set(ckpt.taxonomy.datasets) == {"ytvis_synth", "ovis_synth", "uvo_synth"}
    from ray.util.state import list_actors

    workers = list_actors(address=address, filters=[("class_name", "=", "RayTrainWorker")], detail=True)
    assert len(workers) == 2 and len({w.node_id for w in workers}) == 2  # one DDP rank per node


def test_failing_job_gives_nonzero_exit(cluster, tmp_path, capfd):
    _, address, _ = cluster
    rc = submit(address, "evaluate", "--gt", str(tmp_path / "missing.json"), "--pred", str(tmp_path / "p.json"))
    out, err = capfd.readouterr()
    assert rc == 1
    assert "missing.json: file not found" in out + err and "FAILED" in err


def test_no_wait_returns_the_job_id(cluster, capfd):
    from ray.job_submission import JobStatus, JobSubmissionClient

    _, address, _ = cluster
    assert main(["submit", "--address", address, "--no-wait", "--python", sys.executable, "--", "--help"]) == 0
    job_id = capfd.readouterr().out.strip().splitlines()[-1]
    client = JobSubmissionClient(address)
    for _ in range(120):
        if client.get_job_status(job_id) in (JobStatus.SUCCEEDED, JobStatus.FAILED):
            break
        time.sleep(0.5)
    assert client.get_job_status(job_id) == JobStatus.SUCCEEDED
    assert "usage: tmtvis" in client.get_job_logs(job_id)


def test_unreachable_dashboard_is_one_line_error(capsys):
    rc = main(["submit", "--address", f"http://127.0.0.1:{free_port()}", "--", "evaluate", "--help"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "cannot reach the Ray dashboard" in err[0]


def test_tracking_refusal_and_pending_lines_on_two_nodes(cluster, synth_root, tmp_path):
    """Two nodes and no tracking URI: refused in one line. With one, a GPU request on this CPU-only cluster (which
    could be an autoscaling one) waits, and says what is pending on the console at the configured interval."""
    import subprocess

    from helpers import ROOT, tiny_config
    from tmtvis.config import save_config

    c, _, base = cluster
    save_config(tiny_config(synth_root, f"output_dir={synth_root}", "scaling.gpus_per_worker=1"), tmp_path / "gpu.yaml")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_TMPDIR": base, "TMTVIS_PENDING_REPORT_S": "2"}
    args = [sys.executable, "-m", "workflows.cli", "train", "--config", str(tmp_path / "gpu.yaml"), "--address", c.address]
    refused = subprocess.run([*args, "--run-dir", str(tmp_path / "r0")], capture_output=True, text=True, env=env,
                             timeout=300)
    err = [line for line in refused.stderr.splitlines() if line.startswith("tmtvis: error")]
    assert refused.returncode == 2 and len(err) == 1 and "2 nodes and no MLflow tracking URI" in err[0]
    log = tmp_path / "pending.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([*args, "--run-dir", str(tmp_path / "r1"), "--tracking-uri",
                                 f"sqlite:///{tmp_path / 'mlflow.db'}"], stdout=f, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and log.read_text().count("placement group(s) pending") < 2:
            time.sleep(0.5)
        lines = [line for line in log.read_text().splitlines() if "placement group(s) pending" in line]
        assert len(lines) >= 2, log.read_text()[-3000:]
        assert "'GPU': 1.0" in lines[0] and "GPU" not in lines[0].split("free/total:")[1]  # the cluster has none
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()
