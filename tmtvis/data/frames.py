"""Frame decoding: JPEGs under an image root, with clear errors for missing or broken files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from tmtvis.data.ytvis_format import VisDataset, resolve_frame
from tmtvis.errors import DataError


def read_frame(path: str | Path) -> np.ndarray:
    """Decode one frame to (H, W, 3) uint8 RGB; a missing, unreadable or truncated file is a DataError."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()  # decodes fully: a truncated JPEG raises here
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise DataError(path, "", "frame file not found") from None
    except UnidentifiedImageError:
        raise DataError(path, "", "not a readable image") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(path, "", f"unreadable or truncated image ({e})") from None


def read_frames(image_root: str | Path, names: list[str]) -> list[np.ndarray]:
    """Decode the named frames of one video under its image root."""
    return [read_frame(resolve_frame(image_root, name)) for name in names]


def check_video_frames(dataset: VisDataset, video_id: int, image_root: str | Path) -> None:
    """Decode every frame of one video and check its size against the annotation file."""
    video = dataset.videos[video_id]
    for f, name in enumerate(video.file_names):
        frame = read_frame(resolve_frame(image_root, name))
        h, w = frame.shape[:2]
        if (h, w) != (video.height, video.width):
            raise DataError(dataset.path, f"video {video_id} frame {f} ({name})",
                            f"image is {w}x{h} but the file says {video.width}x{video.height}")
