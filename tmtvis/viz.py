"""Overlay pictures of predictions: frames upscaled to a readable size, masks, boxes and labels drawn with
torchvision's utilities (draw_segmentation_masks, draw_bounding_boxes), one colour per track."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFont
from torchvision.ops import masks_to_boxes
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from tmtvis.data.rle import decode_rle

PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 190), (0, 128, 128), (170, 110, 40)]
MIN_SHORT_SIDE = 256  # pixels: small frames are upscaled (an integer factor) so masks and labels can be read


def upscale_factor(height: int, width: int, min_short_side: int = MIN_SHORT_SIDE) -> int:
    return max(1, math.ceil(min_short_side / min(height, width)))


def _text_colour(background: tuple[int, int, int]) -> str:
    """Black on light label backgrounds, white on dark ones."""
    r, g, b = background
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 150 else "white"


def fit_label(text: str, room: int, font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> str:
    """`text` shortened (with '…') until it is at most `room` pixels wide in `font`."""
    if font.getlength(text) <= room:
        return text
    while len(text) > 1 and font.getlength(text + "…") > room:
        text = text[:-1]
    return text + "…"


def overlay_frames(frames: list[np.ndarray], predictions: list[dict], names: dict[int, str],
                   score_threshold: float = 0.3, alpha: float = 0.5,
                   min_short_side: int = MIN_SHORT_SIDE, max_height: int | None = None) -> list[Image.Image]:
    """Frames (H, W, 3) uint8 with the predicted tracks above `score_threshold` drawn on them (masks, a box and a
    'name score' label per track), upscaled so the short side is at least `min_short_side` pixels, or
    downscaled to `max_height` pixels tall when taller (drawing at full resolution costs far more)."""
    tracks = [p for p in sorted(predictions, key=lambda p: -p["score"]) if p["score"] >= score_threshold]
    font = ImageFont.load_default()  # the font draw_bounding_boxes uses when given none
    out = []
    for t, frame in enumerate(frames):
        h, w = frame.shape[:2]
        k = upscale_factor(h, w, min_short_side)
        down = max_height is not None and h > max_height
        if down:
            k, size = 1, (max(1, round(w * max_height / h)), max_height)  # PIL's (width, height)
            frame = np.asarray(Image.fromarray(np.asarray(frame, np.uint8)).resize(size, Image.BILINEAR))
        image = torch.from_numpy(np.array(frame, np.uint8)).permute(2, 0, 1)  # a writable copy
        if k > 1:
            image = torch.nn.functional.interpolate(image[None].float(), scale_factor=k, mode="bilinear",
                                                    align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)
        masks, colours, labels = [], [], []
        for i, p in enumerate(tracks):
            rle = p["segmentations"][t]
            if rle is None:
                continue
            m = decode_rle(rle).astype(bool)
            if m.shape != (h, w) or not m.any():
                continue
            if down:
                m = np.asarray(Image.fromarray(m.view(np.uint8)).resize(size, Image.NEAREST)).astype(bool)
                if not m.any():
                    continue
                masks.append(torch.from_numpy(m))
            else:
                masks.append(torch.from_numpy(m.repeat(k, 0).repeat(k, 1)))
            colours.append(PALETTE[i % len(PALETTE)])
            labels.append(f"{names.get(p['category_id'], p['category_id'])} {p['score']:.2f}")
        if masks:
            stack = torch.stack(masks)
            image = draw_segmentation_masks(image, stack, alpha=alpha, colors=colours)
            boxes = masks_to_boxes(stack)
            labels = [fit_label(text, int(image.shape[2] - box[0]) - 4, font) for text, box in zip(labels, boxes.tolist())]
            image = draw_bounding_boxes(image, boxes, labels=labels, colors=colours, width=2,
                                        label_colors=[_text_colour(c) for c in colours],
                                        label_background_colors=colours, fill_labels=True)
        out.append(Image.fromarray(image.permute(1, 2, 0).numpy()))
    return out


def grid(images: list[Image.Image], columns: int = 8) -> Image.Image:
    """Tile images (same size) into one picture."""
    w, h = images[0].size
    rows = (len(images) + columns - 1) // columns
    sheet = Image.new("RGB", (w * min(columns, len(images)), h * rows))
    for i, im in enumerate(images):
        sheet.paste(im, ((i % columns) * w, (i // columns) * h))
    return sheet


def write_mp4(images: list[Image.Image], path: str | Path, fps: int = 5) -> None:
    """Frames as an H.264 MP4 (PyAV), cropped to even sides as yuv420p needs."""
    import av

    w, h = images[0].size
    w, h = w - w % 2, h - h % 2
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for im in images:
            frame = av.VideoFrame.from_ndarray(np.asarray(im.convert("RGB"))[:h, :w], format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
