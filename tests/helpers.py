"""Helpers shared by the tests: tiny YouTube-VIS-format datasets and configs written to tmp dirs."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

ROOT = Path(__file__).resolve().parents[1]
REGISTERED_NAME = "tmtvis-tiny"  # the model name the shared tracked run (conftest.tracked_run) registers
TINY_CLIP = {"embed_dim": 16,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 16, "head_width": 8, "patch_size": 16},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}


def rle(mask: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")}


def make_dataset(root: Path, videos: int = 2, length: int = 3, h: int = 24, w: int = 32) -> dict:
    """Write JPEG frames under root/JPEGImages and return a valid YouTube-VIS dict (not yet saved)."""
    images = root / "JPEGImages"
    vids, anns = [], []
    for v in range(1, videos + 1):
        names = []
        for f in range(length):
            name = f"vid{v}/{f:05d}.jpg"
            (images / f"vid{v}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((h, w, 3), 40 * f, np.uint8)).save(images / name, quality=90)
            names.append(name)
        vids.append({"id": v, "width": w, "height": h, "length": length, "file_names": names})
        for k, cat in enumerate((1, 2)):
            segs, areas = [], []
            for f in range(length):
                if k == 1 and f == 0:
                    segs.append(None)
                    areas.append(None)
                    continue
                m = np.zeros((h, w), np.uint8)
                m[2 + f:10 + f, 3 + 8 * k:11 + 8 * k] = 1
                segs.append(rle(m))
                areas.append(int(m.sum()))
            anns.append({"id": len(anns) + 1, "video_id": v, "category_id": cat, "iscrowd": 0,
                         "segmentations": segs, "areas": areas, "bboxes": [None] * length})
    cats = [{"id": 1, "name": "person", "supercategory": "object"},
            {"id": 2, "name": "motorbike", "supercategory": "object"}]
    return {"videos": vids, "annotations": anns, "categories": cats}


def tiny_config(root: Path, *overrides: str) -> "Config":
    """The tiny preset shrunk for tests: few iterations, tiny CLIP text tower, small validation."""
    from tmtvis.config import load_config, preset_path

    return load_config(preset_path("tiny"), [
        f"data.root={root / 'data'}", f"output_dir={root / 'runs'}",
        "taxonomy.clip_model=tmtvis-test-clip", f"taxonomy.clip_model_config={root / 'clip.json'}",
        "model.num_queries=6", "model.dec_layers=2", "loss.num_points=256",
        "train.log_every=2", "train.val_every=0", "train.val_max_videos=2", "tracking.overlays=1",
        *overrides])


def old_layout(cfg: "Config") -> dict:
    """The config as a file or checkpoint written before the split holds it: one flat train section."""
    from tmtvis.config import LEGACY_TRAIN_KEYS, to_dict

    data = to_dict(cfg)
    sections = {section for section, _ in LEGACY_TRAIN_KEYS.values()}
    moved = {section: data.pop(section) for section in sections}
    for old, (section, new) in LEGACY_TRAIN_KEYS.items():
        data["train"][old] = moved[section].pop(new)
    assert not any(moved.values())  # every key of the new sections has its old name
    return data


def with_truncated_frame(synth_root: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the prepared data whose ytvis_synth train video 1 has its second frame cut in half."""
    import shutil

    from tmtvis.data.manifest import read_manifest, write_manifest

    prepared = tmp_path / "prepared"
    shutil.copytree(synth_root / "prepared", prepared)
    manifest = prepared / "manifests" / "ytvis_synth_train.parquet"
    rows = read_manifest(manifest)
    images = tmp_path / "JPEGImages"
    for name in rows[0]["file_names"]:
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(rows[0]["image_root"]) / name, images / name)
    bad = images / rows[0]["file_names"][1]
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    rows[0]["image_root"] = str(images)
    write_manifest(manifest, rows)
    return prepared, bad


def synthetic_trio(root: Path, videos: int, size: int, val_fraction: float, frames: int = 4) -> Path:
    """The three synthetic presets under root/data (not prepared) and the tiny CLIP config tiny_config names."""
    import json

    from tmtvis.data.synthetic import generate

    (root / "clip.json").write_text(json.dumps(TINY_CLIP))
    for preset in ("ytvis", "ovis", "uvo"):
        generate(root / "data" / preset, preset, videos=videos, frames=frames, size=(size, size), seed=0,
                 val_fraction=val_fraction)
    return root


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def ray_nodes(cpus: int, nodes: int = 2, node_args: list[dict] | None = None) -> Iterator[tuple["Cluster", str, str]]:
    """Several Ray nodes on this machine (ray.cluster_utils.Cluster): a head with its dashboard on 127.0.0.1 and
    `nodes - 1` worker nodes, `cpus` logical CPUs each. Yields (cluster, dashboard address, base dir); RAY_TMPDIR
    is base meanwhile, so the cluster's address file goes to base/ray, the head's temp dir, where a job's driver
    and Ray Train's placement group cleaner look for their cluster, whatever other Ray instances run here; worker
    node i has base/ray<i>.
    `node_args[i]` overrides node i's arguments (0: the head), e.g. {"num_cpus": 1, "resources": {"decode": 2}}."""
    import pytest
    from ray.cluster_utils import Cluster
    from ray.job_submission import JobSubmissionClient

    port = free_port()
    base = tempfile.mkdtemp(prefix="tmtvis-rc-")  # short: Ray's socket paths live under it
    temp = os.path.join(base, "ray")
    os.makedirs(temp)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_TMPDIR", base)
        c = Cluster(initialize_head=True, head_node_args={
            "num_cpus": cpus, "include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": port,
            # the job agent's default port (52365) is taken by any other Ray instance on this machine
            "dashboard_agent_listen_port": free_port(), "temp_dir": temp, **((node_args or [{}])[0])})
        try:
            for i in range(1, nodes):
                # each node its own temp dir, as on separate machines: nodes sharing one session dir share one
                # runtime_resources dir, and a node that sets up a job's working_dir re-extracts it (Ray removes
                # and unzips it again) under a driver already importing from it on another node
                c.add_node(**{"num_cpus": cpus, "temp_dir": f"{temp}{i}", **(node_args[i] if node_args else {})})
            c.wait_for_nodes()
            address = f"http://127.0.0.1:{port}"
            for _ in range(120):  # the dashboard's job module comes up after the node
                try:
                    JobSubmissionClient(address).list_jobs()
                    break
                except Exception:
                    time.sleep(0.5)
            else:
                pytest.fail("the Ray dashboard did not come up")
            yield c, address, base
        finally:
            c.shutdown()
            shutil.rmtree(base, ignore_errors=True)


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 (its own process group, stopped by PID) that a test can stop and start
    again on the same port and store. Without `jobs`, MLflow's job consumers (huey, 4 processes of ~260 MB each,
    busy at start-up) stay off: tmtvis uses none of the features that need them."""

    def __init__(self, root: Path, artifacts: str | None = None, jobs: bool = False) -> None:
        self.root, self.jobs = root, jobs
        self.artifacts = artifacts or str(root / "artifacts")
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self, timeout: float = 240.0) -> "MlflowServer":
        import subprocess
        import sys
        import urllib.request

        import pytest

        self.root.mkdir(parents=True, exist_ok=True)
        log = (self.root / "server.log").open("ab")
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true" if self.jobs else "false"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{self.root / 'server.db'}",
             "--artifacts-destination", self.artifacts, "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1"], stdout=log, stderr=log, env=env, start_new_session=True)
        deadline = time.time() + timeout  # a few seconds on an idle machine, much longer on a loaded one
        while time.time() < deadline and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2):
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        tail = (self.root / "server.log").read_text(errors="replace").strip().splitlines()[-3:]
        pytest.fail(f"mlflow server did not start: {' | '.join(tail)}")

    def stop(self) -> None:
        """SIGTERM to the server's process group (it forwards to uvicorn), SIGKILL if it lingers."""
        import signal
        import subprocess

        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None


def registered_iterations(checkpoints: Path) -> set[int]:
    """The iterations of the checkpoints that Ray Train's controller has registered for runs under `checkpoints`:
    the ones its checkpoint manager snapshot names (written when it takes a reported checkpoint into account)."""
    import json

    def names(node) -> Iterator[str]:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "checkpoint_dir_name" and isinstance(v, str):
                    yield v
                else:
                    yield from names(v)
        elif isinstance(node, list):
            for v in node:
                yield from names(v)

    found: set[int] = set()
    for snapshot in checkpoints.glob("*/checkpoint_manager_snapshot.json"):
        try:
            for name in names(json.loads(snapshot.read_text())):
                found.add(json.loads((snapshot.parent / name / "meta.json").read_text())["iteration"])
        except (OSError, ValueError, KeyError):  # being replaced right now, or already deleted (kept: the newest)
            continue
    return found


def write_mp4(frames: list[np.ndarray], path: Path) -> None:
    """An MPEG-4 video of RGB `frames` (H, W, 3 uint8) at 5 fps."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode())


def class_row(num_classes: int, *ids: int):
    """A target's `valid_classes`: the (C,) bool mask of these unified ids (the batch contract, data/batch.py)."""
    import torch

    row = torch.zeros(num_classes, dtype=torch.bool)
    row[list(ids)] = True
    return row
