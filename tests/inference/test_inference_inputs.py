"""Inference inputs and checkpoint loading without Ray: discovery, decoding, one-line errors."""
from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

from helpers import write_mp4
from tmtvis.data.video_files import VideoSource, decode_video_file, discover, read_video
from tmtvis.errors import DataError, TmtvisError
from tmtvis.checkpoint import load_checkpoint
from tmtvis.pipeline.batch_inference import (PREDICTIONS, VIDEO_PREDICTIONS, predictions_table, read_predictions,
                                             split_videos, videos_per_block, write_predictions)
from workflows.cli import main


def frames_dir(root: Path, name: str, n: int, size=(24, 32)) -> list[np.ndarray]:
    (root / name).mkdir(parents=True)
    frames = [np.full((*size, 3), 30 * i, np.uint8) for i in range(n)]
    for i, f in enumerate(frames):
        Image.fromarray(f).save(root / name / f"{i:05d}.png")
    return frames


def test_folder_discovery_orders_by_name_and_mixes_kinds(tmp_path):
    frames_dir(tmp_path, "b_video", 3)
    frames_dir(tmp_path, "a_video", 2)
    with av.open(str(tmp_path / "c_clip.mp4"), "w") as c:
        s = c.add_stream("mpeg4", rate=5)
        s.width, s.height, s.pix_fmt = 32, 24, "yuv420p"
        for i in range(5):
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.full((24, 32, 3), 40 * i, np.uint8), format="rgb24")))
        c.mux(s.encode())
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "empty").mkdir()
    sources = discover(tmp_path)
    assert [(s.video_id, s.name, s.kind) for s in sources] == [(1, "a_video", "frames"), (2, "b_video", "frames"),
                                                                 (3, "c_clip", "file")]
    assert sources[0].file_names == ["a_video/00000.png", "a_video/00001.png"]
    assert [f.shape for f in read_video(sources[2])] == [(24, 32, 3)] * 5
    assert [int(f.mean()) for f in read_video(sources[1])] == [0, 30, 60]
    assert discover(tmp_path / "c_clip.mp4")[0].kind == "file"


def test_json_input_uses_the_files_ids_and_refuses_escaping_names(tiny_dataset, tmp_path):
    path, images, data = tiny_dataset
    sources = discover(path)  # default image root: JSON_DIR/JPEGImages
    assert [s.video_id for s in sources] == [1, 2] and sources[0].height == 24
    assert len(read_video(sources[0])) == 3
    data["videos"][0]["file_names"][0] = "../../etc/passwd"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(DataError, match="escapes the image root"):
        discover(bad, images)


def test_broken_inputs_are_one_line_errors(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    with pytest.raises(DataError, match="broken.mp4.*cannot decode"):
        decode_video_file(tmp_path / "broken.mp4")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(TmtvisError, match="no frame folders"):
        discover(tmp_path / "nothing")
    with pytest.raises(TmtvisError, match="input not found"):
        discover(tmp_path / "missing")
    frames_dir(tmp_path / "mixed", "v", 2)
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(tmp_path / "mixed/v/00002.png")
    with pytest.raises(DataError, match="frame 2.*10x10, not 32x24"):
        read_video(discover(tmp_path / "mixed")[0])


def test_predictions_parquet_round_trip(tmp_path):
    preds = [{"category_id": 3, "score": 0.123456789012345,
              "segmentations": [None, {"size": [4, 5], "counts": "abc"}]}]
    write_predictions(tmp_path / "p.parquet", predictions_table(7, (4, 5), preds))
    assert read_predictions(tmp_path / "p.parquet") == [{"video_id": 7, **preds[0]}]
    write_predictions(tmp_path / "empty.parquet", predictions_table(8, (4, 5), []))
    assert read_predictions(tmp_path / "empty.parquet") == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert PREDICTIONS.names[:3] == ["video_id", "category_id", "score"]


def test_actor_rows_split_into_per_video_tables():
    """The actors' columns (one row per video, predictions as lists) -> each video's table, wherever the block
    boundaries fall: the same table as built from the submission-format dicts, a video without predictions too."""
    videos = {4: [{"category_id": 2, "score": 0.5, "segmentations": [{"size": [3, 6], "counts": "x1"}, None]},
                  {"category_id": 9, "score": 0.25, "segmentations": [None, {"size": [3, 6], "counts": "y2"}]}],
              5: [],
              6: [{"category_id": 1, "score": 1.0, "segmentations": [None, None]}]}
    rows = [{"video_id": v, "height": 3, "width": 6, "frames": 2, "category_id": [p["category_id"] for p in preds],
             "score": [p["score"] for p in preds],
             "counts": [[s and s["counts"] for s in p["segmentations"]] for p in preds]} for v, preds in videos.items()]
    whole = pa.Table.from_pylist(rows, schema=VIDEO_PREDICTIONS)
    blocks = [(whole, [4, 5, 6]), (pa.concat_tables([whole.slice(0, 1), whole.slice(1)]), [4, 5, 6]),
              (whole.slice(1, 2), [5, 6]), (whole.slice(0, 0), [])]
    for block, ids in blocks:
        got = list(split_videos(block))
        assert [(v, n) for v, n, _ in got] == [(v, 2) for v in ids]
        for vid, _, table in got:
            assert table.schema == PREDICTIONS and table.equals(predictions_table(vid, (3, 6), videos[vid]))


def test_videos_per_block_amortises_tasks_but_keeps_the_pool_busy():
    def sources(n: int, frames: int, kind: str = "frames") -> list[VideoSource]:
        return [VideoSource(i + 1, f"v{i}", kind, "/", [f"{j}.jpg" for j in range(frames)]) for i in range(n)]

    assert videos_per_block(sources(96, 16), 1) == videos_per_block(sources(96, 16), 2) == 4  # 64 frames
    assert videos_per_block(sources(96, 16), 4) == 3  # 8 blocks per actor
    assert videos_per_block(sources(6, 4), 2) == 1  # too few videos to group
    assert videos_per_block(sources(100, 200), 1) == 1  # long videos: one per block
    assert videos_per_block(sources(100, 1, "file"), 1) == 1  # a video file's length is unknown
    assert videos_per_block([], 1) == 1


def test_checkpoint_errors(tmp_path, capsys):
    with pytest.raises(TmtvisError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "ck").mkdir()
    with pytest.raises(TmtvisError, match="missing state.pt, config.yaml, taxonomy.json"):
        load_checkpoint(tmp_path / "ck")
    rc = main(["infer", "--checkpoint", str(tmp_path / "ck"), "--input", str(tmp_path), "--dataset", "x",
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "not a tmtvis checkpoint" in err[0]


def test_unknown_dataset_and_pickles_are_refused(synth_root, tmp_path, capsys):
    import shutil

    import yaml

    from helpers import tiny_config
    from tmtvis.config import to_dict

    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "config.yaml").write_text(yaml.safe_dump(to_dict(tiny_config(synth_root))))
    shutil.copy(synth_root / "prepared/taxonomy.json", ck / "taxonomy.json")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"model": Evil()}, ck / "state.pt")
    rc = main(["infer", "--checkpoint", str(ck), "--input", str(synth_root / "data/ytvis/valid.json"),
               "--dataset", "coco", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "dataset 'coco' is not in this checkpoint's taxonomy" in err[0] and "ytvis_synth" in err[0]
    with pytest.raises(TmtvisError, match="not a tmtvis checkpoint"):
        load_checkpoint(ck)  # weights_only refuses the pickled callable
    rc = main(["infer", "--checkpoint", str(ck), "--input", str(synth_root / "data/ytvis/valid.json"),
               "--dataset", "ytvis_synth", "--out", str(tmp_path / "o2")])
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].endswith("not a tmtvis checkpoint (or corrupted): " + str(ck / "state.pt"))  # before any Ray start
    assert "pwned" not in captured.out


def test_a_bad_file_in_a_ray_task_becomes_one_line_error():
    from tmtvis.errors import root_cause

    def _user_error(e: BaseException) -> TmtvisError | None:
        return root_cause(e).user_error

    local = DataError("/v/zz.mp4", "", "cannot decode video (Invalid data)")
    wrapped = RuntimeError("UDF failed")
    wrapped.__cause__ = local
    assert str(_user_error(wrapped)) == "/v/zz.mp4: cannot decode video (Invalid data)"
    # across processes Ray Data keeps only the remote traceback's text
    remote = RuntimeError("ray::Map(decode_row)()\n  File ...\ntmtvis.errors.DataError: /v/zz.mp4: cannot decode "
                          "video (Invalid data)\n\nThe above exception was the direct cause of ...")
    err = _user_error(remote)
    assert isinstance(err, TmtvisError) and str(err) == "/v/zz.mp4: cannot decode video (Invalid data)"
    assert _user_error(RuntimeError("worker died")) is None


def test_checkpoint_checked_cheaply_before_ray(synth_root, tmp_path, capsys, monkeypatch):
    """`infer` checks state.pt without building the model for real (keys and shapes against config.yaml on the
    meta device, its size against meta.json); each problem is one line, before any Ray start."""
    import yaml

    from helpers import tiny_config
    from tmtvis import ray_session
    from tmtvis.checkpoint import DataProgress, check_state, save_checkpoint
    from tmtvis.optim import build_optimizer, build_scheduler
    from tmtvis.models import tmtvis_model
    from tmtvis.taxonomy_bank import load_bank

    cfg = tiny_config(synth_root)
    bank = torch.from_numpy(load_bank(synth_root / "prepared/bank.parquet").embeddings)
    model = tmtvis_model.build_model(cfg.model, bank)
    optimizer = build_optimizer(model, cfg.optim)
    ck = tmp_path / "ck"
    ck.mkdir()
    save_checkpoint(ck, model, optimizer, build_scheduler(optimizer, cfg.schedule), 0, DataProgress(), cfg,
                    synth_root / "prepared/taxonomy.json")
    built = []  # the device of each model built
    real_build = tmtvis_model.build_model

    def build(*args):
        model = real_build(*args)
        built.append(next(model.parameters()).device.type)
        return model

    monkeypatch.setattr(tmtvis_model, "build_model", build)
    monkeypatch.setattr(ray_session, "ray_session", lambda *a, **k: pytest.fail("Ray started"))
    check_state(load_checkpoint(ck, with_model=False))  # a whole checkpoint passes
    assert built == ["meta"]

    def infer_error(out: str) -> str:
        rc = main(["infer", "--checkpoint", str(ck), "--input", str(synth_root / "data/ytvis/valid.json"),
                   "--dataset", "ytvis_synth", "--out", str(tmp_path / out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1
        return err[0]

    good = (ck / "config.yaml").read_text()
    wider = yaml.safe_load(good)
    wider["model"]["hidden_dim"] *= 2
    (ck / "config.yaml").write_text(yaml.safe_dump(wider))
    err = infer_error("o1")
    assert f"{ck / 'state.pt'}: weights do not fit the model in config.yaml (size mismatch for " in err
    assert set(built) == {"meta"}

    (ck / "config.yaml").write_text(good)
    whole = (ck / "state.pt").read_bytes()
    (ck / "state.pt").write_bytes(whole[: len(whole) // 2])
    err = infer_error("o2")
    assert err.endswith(f"not a tmtvis checkpoint (or corrupted): {ck / 'state.pt'} ({len(whole) // 2} bytes, "
                        f"meta.json records {len(whole)}: cut short or partly copied)")


def corrupt_mp4(path: Path, size=(48, 64)) -> None:
    """A real MP4 cut in half (its index is lost): PyAV cannot open it."""
    write_mp4([np.full((*size, 3), 40 * i, np.uint8) for i in range(4)], path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_sources_record_real_sizes(tmp_path):
    frames_dir(tmp_path, "a_frames", 2, size=(24, 32))
    write_mp4([np.zeros((48, 64, 3), np.uint8)] * 3, tmp_path / "b.mp4")
    corrupt_mp4(tmp_path / "c.mp4")
    sizes = {s.name: (s.height, s.width) for s in discover(tmp_path)}
    assert sizes == {"a_frames": (24, 32), "b": (48, 64), "c": (0, 0)}  # c: unreadable, decoding will say so
    assert [(s.height, s.width) for s in discover(tmp_path / "b.mp4")] == [(48, 64)]


def test_a_videos_only_json_without_categories_is_an_input(tmp_path):
    frames_dir(tmp_path / "JPEGImages", "v1", 3, size=(24, 32))
    names = [f"v1/{i:05d}.png" for i in range(3)]
    valid = tmp_path / "valid.json"
    valid.write_text(json.dumps({"videos": [{"id": 7, "width": 32, "height": 24, "length": 3, "file_names": names}]}))
    (source,) = discover(valid)
    assert (source.video_id, source.name, source.height, source.width) == (7, "v1", 24, 32)
    assert len(read_video(source)) == 3
    valid.write_text(json.dumps([{"video_id": 7}]))
    with pytest.raises(DataError, match="results file, not a video list"):
        discover(valid)


def test_decode_row_skips_an_unreadable_video_only_when_asked(tmp_path):
    from tmtvis.pipeline.batch_inference import decode_row

    corrupt_mp4(tmp_path / "bad.mp4")
    row = discover(tmp_path / "bad.mp4")[0].to_row()
    with pytest.raises(DataError, match="bad.mp4: (cannot decode video|file has no video stream)"):
        decode_row(row, 32)
    out = decode_row(row, 32, skip_bad_videos=True)
    assert out["video_id"] == 1 and out["frames"].shape[0] == 0 and "bad.mp4: " in out["error"]


def test_ray_session_removes_its_temp_folder(tmp_path, monkeypatch):
    import ray

    from tmtvis.ray_session import ray_session

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # TMPDIR is read again
    seen = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: seen.append(Path(kw["_temp_dir"]).parent))
    monkeypatch.setattr(ray, "shutdown", lambda: Path(seen[-1], "ray", "logs").mkdir(parents=True))  # what Ray leaves
    with ray_session():
        assert seen and seen[0].is_dir() and seen[0].name.startswith("tmtvis-ray-")
    assert not seen[0].exists() and not list(tmp_path.glob("tmtvis-ray-*"))
    with pytest.raises(RuntimeError), ray_session():
        raise RuntimeError("the run failed")
    assert not list(tmp_path.glob("tmtvis-ray-*"))


def test_overlay_video_is_downscaled_and_capped(tmp_path, monkeypatch):
    from tmtvis.data.rle import encode_mask
    from tmtvis.pipeline import batch_inference

    monkeypatch.setattr(batch_inference, "VIZ_MAX_FRAMES", 3)
    h, w = 600, 800  # taller than the 480 px cap
    frames_dir(tmp_path / "in", "big", 5, size=(h, w))
    (source,) = discover(tmp_path / "in")
    mask = np.zeros((h, w), np.uint8)
    mask[100:300, 200:500] = 1
    preds = [{"video_id": 1, "category_id": 3, "score": 0.9, "segmentations": [encode_mask(mask)] * 5}]
    path = batch_inference.visualise(tmp_path / "out", source, preds, {3: "cat"})
    assert path.name == "video_00000001.mp4"
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.height, stream.codec_context.width) == (480, 640)
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 3
    assert decoded[0][200, 280].astype(int).sum() != decoded[0][50, 50].astype(int).sum()  # the mask is drawn
