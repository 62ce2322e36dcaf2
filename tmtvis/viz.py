"""Overlay pictures of predictions: coloured masks and labels over the video frames."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from tmtvis.data.ytvis_format import decode_rle

PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
                    [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 190], [0, 128, 128], [170, 110, 40]],
                   np.uint8)


def overlay_frames(frames: list[np.ndarray], predictions: list[dict], names: dict[int, str],
                   score_threshold: float = 0.3, alpha: float = 0.5) -> list[Image.Image]:
    """Frames (H, W, 3) uint8 with the predicted tracks above `score_threshold` painted on them."""
    tracks = [p for p in sorted(predictions, key=lambda p: -p["score"]) if p["score"] >= score_threshold]
    out = []
    for t, frame in enumerate(frames):
        canvas = frame.astype(np.float32).copy()
        labels = []
        for k, p in enumerate(tracks):
            rle = p["segmentations"][t]
            if rle is None:
                continue
            m = decode_rle(rle).astype(bool)
            if m.shape != frame.shape[:2] or not m.any():
                continue
            colour = PALETTE[k % len(PALETTE)].astype(np.float32)
            canvas[m] = (1 - alpha) * canvas[m] + alpha * colour
            ys, xs = np.nonzero(m)
            labels.append((int(xs.min()), int(ys.min()), f"{names.get(p['category_id'], p['category_id'])} "
                                                         f"{p['score']:.2f}", tuple(int(c) for c in colour)))
        img = Image.fromarray(canvas.clip(0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for x, y, text, colour in labels:
            draw.text((x + 1, max(y - 10, 0)), text, fill=colour)
        out.append(img)
    return out


def grid(images: list[Image.Image], columns: int = 8) -> Image.Image:
    """Tile images (same size) into one picture."""
    w, h = images[0].size
    rows = (len(images) + columns - 1) // columns
    sheet = Image.new("RGB", (w * min(columns, len(images)), h * rows))
    for i, im in enumerate(images):
        sheet.paste(im, ((i % columns) * w, (i // columns) * h))
    return sheet
