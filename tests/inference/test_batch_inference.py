"""`tmtvis infer` on a local Ray: frame folders, a YouTube-VIS JSON and .mp4 files give the same predictions as
in-process inference; an interrupted run resumes with exactly one result set per video."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from helpers import tiny_config, write_mp4
from tmtvis.checkpoint import DataProgress, load_checkpoint, save_checkpoint
from tmtvis.config import InferConfig
from tmtvis.data.manifest import read_manifest
from tmtvis.data.video_files import decode_video_file, discover
from tmtvis.data.ytvis_format import read_json
from tmtvis.optim import build_optimizer, build_scheduler
from tmtvis.inference.preprocess import resize_frames
from tmtvis.inference.validate import predict_rows
from tmtvis.inference.video_predictor import VideoPredictor
from tmtvis.models.tmtvis_model import build_model
from tmtvis.pipeline import batch_inference
from tmtvis.taxonomy_bank import load_bank
from workflows.cli import main

pytestmark = pytest.mark.integration
DATASET = "ytvis_synth"


@contextlib.contextmanager
def threads(n: int):
    """In-process inference with the actors' thread count: float sums then agree bit for bit."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@pytest.fixture(scope="module")
def checkpoint(synth_root, tmp_path_factory) -> Path:
    """A checkpoint in the training loop's format (its own writer), from a seeded untrained model."""
    cfg = tiny_config(synth_root)
    prepared = synth_root / "prepared"
    torch.manual_seed(0)
    model = build_model(cfg.model, torch.from_numpy(load_bank(prepared / "bank.parquet").embeddings))
    optimizer = build_optimizer(model, cfg.optim)
    out = tmp_path_factory.mktemp("ckpt")
    save_checkpoint(out, model, optimizer, build_scheduler(optimizer, cfg.schedule), 0, DataProgress(),
                    cfg, prepared / "taxonomy.json")
    return out


@pytest.fixture(scope="module")
def frame_folders(synth_root, tmp_path_factory) -> Path:
    """The ytvis train videos as a plain folder of frame folders (name order = the JSON's id order)."""
    out = tmp_path_factory.mktemp("folders")
    for v in read_json(synth_root / "data/ytvis/train.json")["videos"]:
        folder = Path(v["file_names"][0]).parent
        shutil.copytree(synth_root / "data/ytvis/JPEGImages" / folder, out / folder)
    return out


def infer(*args: str) -> int:
    return main(["infer", "--dataset", DATASET, "--no-progress", *args])


def run_infer(checkpoint: Path, input_path: Path, out: Path, **options) -> batch_inference.InferenceSummary:
    """`run_inference` in this process (the session's Ray) on the test dataset's label space."""
    return batch_inference.run_inference(InferConfig(str(checkpoint), str(input_path), DATASET, str(out), **options))


def per_video(results: list[dict]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for r in results:
        out.setdefault(r["video_id"], []).append(r)
    return out


def evaluate_cli(gt: Path, pred: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["evaluate", "--gt", str(gt), "--pred", str(pred), "--json", "--no-progress"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def folder_run(checkpoint, frame_folders, ray_local, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("infer") / "folders"
    assert infer("--checkpoint", str(checkpoint), "--input", str(frame_folders), "--out", str(out),
                 "--actors", "2", "--cpus-per-actor", "0.5", "--viz", "2") == 0
    return out


def test_json_and_folders_match_in_process(checkpoint, synth_root, folder_run, tmp_path, capsys):
    ckpt = load_checkpoint(checkpoint)
    rows = read_manifest(synth_root / "prepared/manifests/ytvis_synth_train.parquet")
    with threads(1):
        expected = predict_rows(ckpt.model, rows, ckpt.labels(DATASET), ckpt.cfg.data.clip.short_edge[0])
    gt = synth_root / "data/ytvis/train.json"

    out = tmp_path / "json"
    assert infer("--checkpoint", str(checkpoint), "--input", str(gt), "--out", str(out), "--cpus-per-actor", "0.5") == 0
    from_json = json.loads((out / "results.json").read_text())
    from_folders = json.loads((folder_run / "results.json").read_text())
    assert from_json == expected
    assert from_folders == expected
    videos = {v["id"] for v in read_json(gt)["videos"]}
    assert set(per_video(from_json)) == videos and all(len(p) == 10 for p in per_video(from_json).values())

    stats = evaluate_cli(gt, folder_run / "results.json", capsys)
    (tmp_path / "expected.json").write_text(json.dumps(expected))
    assert stats == evaluate_cli(gt, tmp_path / "expected.json", capsys)
    with zipfile.ZipFile(folder_run / "results.zip") as z:
        assert z.namelist() == ["results.json"] and json.loads(z.read("results.json")) == from_folders


def test_overlay_videos(folder_run, synth_root):
    videos = sorted((folder_run / "viz").glob("*"))
    assert [g.name for g in videos] == ["video_00000001.mp4", "video_00000002.mp4"]
    with av.open(str(videos[0])) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (256, 256)  # 64x64 upscaled to be read
        assert sum(1 for _ in container.decode(video=0)) == 4
    run = json.loads((folder_run / "run.json").read_text())
    assert all((v["height"], v["width"]) == (64, 64) for v in run["videos"])  # real sizes, not 0


def test_bad_videos_skipped_listed_and_retried(checkpoint, frame_folders, ray_local, tmp_path, capfd):
    from test_inference_inputs import corrupt_mp4

    videos = tmp_path / "mp4"
    videos.mkdir()
    good = discover(frame_folders)[:2]
    for s in good:
        write_mp4([np.asarray(Image.open(Path(s.root) / n).convert("RGB")) for n in s.file_names],
                  videos / f"{s.name}.mp4")
    corrupt_mp4(videos / "zz_broken.mp4", size=(64, 64))
    out = tmp_path / "out"
    args = ["--checkpoint", str(checkpoint), "--input", str(videos), "--out", str(out), "--cpus-per-actor", "0.5"]
    capfd.readouterr()
    assert infer(*args) == 2  # without the flag: one line naming the file, no Ray retry lines before it
    err = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "zz_broken.mp4" in err[0] and "Traceback" not in err[0]

    # the good videos that run finished before it met the broken one stay done (how many depends on the order)
    done = sum(batch_inference.prediction_file(out, s.video_id).is_file() for s in good)

    assert infer(*args, "--skip-bad-videos") == 0
    printed = capfd.readouterr().out
    assert f"3 videos: {2 - done} predicted now, {done} already done" in printed
    assert "failed: 1 unreadable" in printed
    failed = json.loads((out / "failed.json").read_text())
    assert [(f["video_id"], f["name"]) for f in failed] == [(3, "zz_broken")] and "zz_broken.mp4" in failed[0]["reason"]
    assert {r["video_id"] for r in json.loads((out / "results.json").read_text())} == {1, 2}

    write_mp4([np.zeros((64, 64, 3), np.uint8)] * 4, videos / "zz_broken.mp4")  # repaired: only it is predicted
    assert infer(*args, "--skip-bad-videos") == 0
    assert "1 predicted now, 2 already done" in capfd.readouterr().out
    assert json.loads((out / "failed.json").read_text()) == []
    assert {r["video_id"] for r in json.loads((out / "results.json").read_text())} == {1, 2, 3}


def test_mp4_inputs(checkpoint, synth_root, frame_folders, ray_local, tmp_path, capsys):
    videos = tmp_path / "mp4"
    videos.mkdir()
    sources = discover(frame_folders)[:3]
    originals = {}
    for s in sources:
        frames = [np.asarray(Image.open(Path(s.root) / n).convert("RGB")) for n in s.file_names]
        originals[s.video_id] = frames
        write_mp4(frames, videos / f"{s.name}.mp4")
    out = tmp_path / "out"
    assert infer("--checkpoint", str(checkpoint), "--input", str(videos), "--out", str(out),
                 "--cpus-per-actor", "0.5") == 0
    results = json.loads((out / "results.json").read_text())

    ckpt = load_checkpoint(checkpoint)
    labels = ckpt.labels(DATASET)
    predictor = VideoPredictor(ckpt.model, topk=10)
    expected = []
    with threads(1):
        for s in sources:
            decoded = decode_video_file(videos / f"{s.name}.mp4")
            assert len(decoded) == 4 and decoded[0].shape == (64, 64, 3)
            # lossy, but the same pictures: mean error of a few grey levels
            assert np.abs(np.stack(decoded).astype(float) - np.stack(originals[s.video_id])).mean() < 12
            frames = resize_frames(decoded, ckpt.cfg.data.clip.short_edge[0])
            expected += [{"video_id": s.video_id, **r}
                         for r in predictor.predict(frames, (64, 64), labels.unified_ids, labels.from_unified)]
    assert results == expected

    # the ids of a folder input follow name order, here the ground truth's ids 1..3
    gt = read_json(synth_root / "data/ytvis/train.json")
    keep = {s.video_id for s in sources}
    gt = {**gt, "videos": [v for v in gt["videos"] if v["id"] in keep],
          "annotations": [a for a in gt["annotations"] if a["video_id"] in keep]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    stats = evaluate_cli(tmp_path / "gt.json", out / "results.json", capsys)
    assert set(stats) >= {"AP", "AP50", "AR10"} and all(-1 <= v <= 1 for v in stats.values())


class Interrupted(Exception):
    pass


def test_interrupted_run_resumes(checkpoint, frame_folders, folder_run, ray_local, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real_write = batch_inference.write_predictions
    written = []

    def write_then_stop(path, *args):
        if len(written) == 2:
            raise Interrupted()
        real_write(path, *args)
        written.append(path)

    monkeypatch.setattr(batch_inference, "write_predictions", write_then_stop)
    with pytest.raises(Interrupted):
        run_infer(checkpoint, frame_folders, out, cpus_per_actor=0.5, progress=False)
    monkeypatch.undo()
    done = sorted((out / "predictions").iterdir())
    assert done == sorted(written) and len(done) == 2  # whole files only, no temp files
    assert not (out / "results.json").exists()
    stamps = {p: p.stat().st_mtime_ns for p in done}

    summary = run_infer(checkpoint, frame_folders, out, cpus_per_actor=0.5, progress=False)
    assert (summary.videos, summary.predicted) == (6, 4)
    assert {p: p.stat().st_mtime_ns for p in done} == stamps  # finished videos were not redone
    results = json.loads((out / "results.json").read_text())
    assert results == json.loads((folder_run / "results.json").read_text())
    assert sorted(per_video(results)) == [1, 2, 3, 4, 5, 6]

    again = run_infer(checkpoint, frame_folders, out, progress=False)
    assert again.predicted == 0 and json.loads((out / "results.json").read_text()) == results


def test_videos_in_blocks_give_the_same_results(checkpoint, frame_folders, folder_run, ray_local, tmp_path,
                                                monkeypatch):
    """Several videos per decode task and actor call (as for long inputs of short videos): the same files."""
    monkeypatch.setattr(batch_inference, "BLOCKS_PER_ACTOR", 1)
    assert batch_inference.videos_per_block(discover(frame_folders), 1) == 6  # 6 videos of 4 frames: one block
    out = tmp_path / "out"
    summary = run_infer(checkpoint, frame_folders, out, cpus_per_actor=0.5, progress=False)
    assert (summary.predicted, summary.frames) == (6, 24)
    assert json.loads((out / "results.json").read_text()) == json.loads((folder_run / "results.json").read_text())


def test_out_dir_of_another_run_is_refused(checkpoint, folder_run, synth_root, capsys):
    rc = infer("--checkpoint", str(checkpoint), "--input", str(synth_root / "data/ytvis/valid.json"),
               "--out", str(folder_run))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "different videos" in err[0]


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
@pytest.mark.soak
def test_a_thousand_videos_flat_driver_memory_one_set_each(checkpoint, ray_local, tmp_path):
    rng = np.random.default_rng(0)
    videos = tmp_path / "videos"
    for v in range(1000):
        (videos / f"v{v:04d}").mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(videos / f"v{v:04d}" / "0.png")
    out = tmp_path / "out"
    seen: dict[int, int] = {}
    real_write = batch_inference.write_predictions

    def write_and_measure(path, *args):
        real_write(path, *args)
        done = len(seen) + 1
        seen[done] = rss_bytes()  # the driver's resident memory after `done` videos

    batch_inference.write_predictions = write_and_measure
    try:
        summary = run_infer(checkpoint, videos, out, topk=3, window=0, progress=False)
    finally:
        batch_inference.write_predictions = real_write
    growth = seen[1000] - seen[100]
    print(f"\n[load] 1000 videos in {summary.seconds:.0f} s; driver RSS {seen[100] / 2**20:.0f} MiB at 100, "
          f"{seen[1000] / 2**20:.0f} MiB at 1000 ({growth / 2**20:+.1f} MiB)")
    assert summary.predicted == 1000 and len(seen) == 1000
    assert growth < 64 * 2**20  # flat: nothing per video is kept on the driver
    files = sorted((out / "predictions").iterdir())
    assert [f.name for f in files] == [f"video_{v:08d}.parquet" for v in range(1, 1001)]
    results = per_video(json.loads((out / "results.json").read_text()))
    assert sorted(results) == list(range(1, 1001))
    for f in files[::97]:
        [vid] = {p["video_id"] for p in batch_inference.read_predictions(f)}
        assert results[vid] == batch_inference.read_predictions(f)  # exactly that video's one set


def test_infer_options_come_from_a_file_and_the_flags(tmp_path, capsys):
    """`--config FILE` gives InferConfig's keys, the flags given win, a missing one is a one-line error."""
    path = tmp_path / "infer.yaml"
    path.write_text(f"input: {tmp_path / 'videos'}\ndataset: {DATASET}\nout: {tmp_path / 'out'}\n")
    assert main(["infer", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"tmtvis: error: {path}: checkpoint is required (--checkpoint or checkpoint: in the file)"]
    assert main(["infer", "--config", str(path), "--checkpoint", str(tmp_path / "none"), "--actors", "0"]) == 2
    assert capsys.readouterr().err.strip() == "tmtvis: error: infer: actors must be >= 1 (--actors), got 0"
