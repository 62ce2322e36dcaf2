"""Frame decoding: JPEGs under an image root, with clear errors for missing or broken files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from tmtvis.data.ytvis_format import VisDataset, resolve_frame
from tmtvis.errors import DataError


def load_image(path: str | Path, draft: tuple[int, int] | None = None) -> tuple[Image.Image, tuple[float, float]]:
    """Decode one frame to a loaded RGB PIL image and the (W, H) the full frame spans in its pixels.

    `draft` (W, H): a JPEG may decode at 1/2, 1/4 or 1/8 scale (DCT scaling, much faster), never below that
    size; the span is then the full size over that factor. A missing, unreadable or truncated file is a
    DataError."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            span = im.size
            if draft is not None and (drafted := im.draft("RGB", draft)) is not None:
                span = drafted[1][2:]
            im.load()  # decodes fully: a truncated JPEG raises here
            return (im if im.mode == "RGB" else im.convert("RGB")), span
    except FileNotFoundError:
        raise DataError(path, "", "frame file not found") from None
    except UnidentifiedImageError:
        raise DataError(path, "", "not a readable image") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(path, "", f"unreadable or truncated image ({e})") from None


def read_frame(path: str | Path) -> np.ndarray:
    """Decode one frame to (H, W, 3) uint8 RGB; a missing, unreadable or truncated file is a DataError."""
    return np.asarray(load_image(path)[0])


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
