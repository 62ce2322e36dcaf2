"""Inference inputs: a YouTube-VIS annotation/video list with an image root, a folder of frame folders, or
video files (.mp4 .avi .mov .mkv .webm, decoded with PyAV). Each becomes a list of `VideoSource`s."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tmtvis.data.frames import read_frames
from tmtvis.data.ytvis_format import load_videos, resolve_frame
from tmtvis.errors import DataError, TmtvisError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


@dataclass
class VideoSource:
    """One input video: JPEG/PNG frames `file_names` under `root`, or the video file `root / file_names[0]`."""

    video_id: int
    name: str
    kind: str                 # "frames" | "file"
    root: str
    file_names: list[str]
    width: int = 0            # 0: unknown until decoded (a file whose header cannot be read)
    height: int = 0

    def to_row(self) -> dict:
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict) -> "VideoSource":
        return cls(**{k: (list(v) if k == "file_names" else v.item() if hasattr(v, "item") else v)
                      for k, v in row.items() if k in cls.__dataclass_fields__})


def _frame_names(folder: Path, root: Path) -> list[str]:
    names = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    return [(folder.relative_to(root) / n).as_posix() for n in names]


def discover(path: str | Path, images: str | Path | None = None) -> list[VideoSource]:
    """The videos of an input: a YouTube-VIS JSON (frames under `images`, default JSON_DIR/JPEGImages), a
    folder of frame folders and/or video files (ids 1.. in name order), or a single video file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise TmtvisError(f"{path}: input not found")
    if path.is_file() and path.suffix.lower() == ".json":
        return _from_json(path, images)
    if path.is_file():
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            raise TmtvisError(f"{path}: not a YouTube-VIS JSON nor a video file ({', '.join(VIDEO_EXTENSIONS)})")
        return [_sized(VideoSource(1, path.stem, "file", str(path.parent.resolve()), [path.name]))]
    root = path.resolve()
    sources: list[VideoSource] = []
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            names = _frame_names(entry, root)
            if names:
                sources.append(VideoSource(len(sources) + 1, entry.name, "frames", str(root), names))
        elif entry.suffix.lower() in VIDEO_EXTENSIONS:
            sources.append(VideoSource(len(sources) + 1, entry.stem, "file", str(root), [entry.name]))
    sources = [_sized(s) for s in sources]
    if not sources:
        raise TmtvisError(f"{path}: no frame folders ({'/'.join(IMAGE_EXTENSIONS)}) or video files "
                          f"({'/'.join(VIDEO_EXTENSIONS)}) found")
    return sources


def _sized(source: VideoSource) -> VideoSource:
    """`source` with its frame size read from the first frame's or the video stream's header (0 x 0 if unreadable:
    decoding then reports the problem)."""
    first = Path(source.root) / source.file_names[0]
    try:
        if source.kind == "file":
            import av

            with av.open(str(first)) as container:
                stream = container.streams.video[0]
                source.width, source.height = stream.codec_context.width, stream.codec_context.height
        else:
            from PIL import Image

            with Image.open(first) as im:
                source.width, source.height = im.size
    except Exception:  # noqa: BLE001 - any unreadable header: the size stays unknown, decoding names the problem
        source.width = source.height = 0
    return source


def _from_json(path: Path, images: str | Path | None) -> list[VideoSource]:
    videos = load_videos(path)  # validates ids, sizes and that frame names stay inside the root
    root = Path(images).expanduser() if images else path.parent / "JPEGImages"
    if not root.is_dir():
        raise TmtvisError(f"{root}: image root not found (give --images ROOT for {path.name})")
    root = root.resolve()
    return [VideoSource(v.id, Path(v.file_names[0]).parent.as_posix() or str(v.id), "frames", str(root),
                        list(v.file_names), v.width, v.height)
            for _, v in sorted(videos.items())]


def read_video(source: VideoSource) -> list[np.ndarray]:
    """All frames of a source as (H, W, 3) uint8 RGB; every frame must have the size of the first."""
    if source.kind == "file":
        frames = decode_video_file(resolve_frame(source.root, source.file_names[0]))
    else:
        frames = read_frames(source.root, source.file_names)
    h, w = frames[0].shape[:2]
    if source.height and (h, w) != (source.height, source.width):
        raise DataError(Path(source.root) / source.file_names[0], f"video {source.video_id}",
                        f"frame is {w}x{h} but the video list says {source.width}x{source.height}")
    for i, f in enumerate(frames):
        if f.shape[:2] != (h, w):
            raise DataError(Path(source.root) / source.file_names[min(i, len(source.file_names) - 1)],
                            f"video {source.video_id} frame {i}", f"frame is {f.shape[1]}x{f.shape[0]}, not {w}x{h}")
    return frames


def decode_video_file(path: str | Path) -> list[np.ndarray]:
    """Decode every frame of the first video stream with PyAV; a missing or broken file is a DataError."""
    import av

    path = Path(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(path, "", "file has no video stream")
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except FileNotFoundError:
        raise DataError(path, "", "video file not found") from None
    except av.FFmpegError as e:
        raise DataError(path, "", f"cannot decode video ({getattr(e, 'strerror', None) or e})") from None
    if not frames:
        raise DataError(path, "", "video has no decodable frames")
    return frames
