from pathlib import Path

import numpy as np
import pytest

from tmtvis.data.frames import check_video_frames, read_frame
from tmtvis.data.ytvis_format import load_dataset, resolve_frame
from tmtvis.errors import DataError


def test_reads_frames(tiny_dataset):
    path, root, _ = tiny_dataset
    ds = load_dataset(path)
    check_video_frames(ds, 1, root)
    assert read_frame(root / "vid1/00000.jpg").shape == (24, 32, 3)


def test_truncated_jpeg_names_the_path(tiny_dataset):
    path, root, _ = tiny_dataset
    frame = root / "vid2/00001.jpg"
    frame.write_bytes(frame.read_bytes()[:200])
    with pytest.raises(DataError) as e:
        check_video_frames(load_dataset(path), 2, root)
    assert str(frame) in str(e.value) and "truncated" in str(e.value)


def test_missing_frame_names_the_path(tiny_dataset):
    path, root, _ = tiny_dataset
    (root / "vid1/00002.jpg").unlink()
    with pytest.raises(DataError, match="00002.jpg: frame file not found"):
        check_video_frames(load_dataset(path), 1, root)


def test_not_an_image(tmp_path: Path):
    p = tmp_path / "x.jpg"
    p.write_text("hello")
    with pytest.raises(DataError, match="not a readable image"):
        read_frame(p)


def test_frame_size_must_match_json(tiny_dataset):
    from PIL import Image
    path, root, _ = tiny_dataset
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(root / "vid1/00001.jpg")
    with pytest.raises(DataError, match="image is 10x10 but the file says 32x24"):
        check_video_frames(load_dataset(path), 1, root)


def test_symlink_out_of_root_is_refused(tmp_path: Path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.jpg").write_bytes(b"x")
    (root / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    with pytest.raises(DataError, match="outside the image root"):
        resolve_frame(root, "link.jpg")
