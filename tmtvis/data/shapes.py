"""Drawing for the synthetic datasets: appearances, shapes, textures and backgrounds (vectorised numpy)."""
from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

SHAPES = ("circle", "square", "triangle", "star", "ring", "cross", "ellipse", "diamond", "hexagon", "crescent")
TEXTURES = ("solid", "stripes", "dots", "checker")
HUES = (0, 30, 55, 120, 180, 220, 275, 320)  # degrees; eight well-separated colours


@dataclass(frozen=True)
class Appearance:
    shape: str
    texture: str
    colour: tuple[int, int, int]
    accent: tuple[int, int, int]  # second colour of the texture pattern


def _rgb(hue_deg: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((hue_deg % 360) / 360.0, s, v)
    return round(r * 255), round(g * 255), round(b * 255)


def appearance(index: int) -> Appearance:
    """The index-th appearance: indices 0..79 have pairwise distinct (shape, colour) pairs (`separable`)."""
    # shape cycles with period 10, colour with period 8: 0..39 take the 40 pairs whose shape and colour
    # indices have the same parity, 40..79 (colour shifted by one) the 40 of opposite parity. From 80 on a
    # (shape, colour) pair repeats and only the texture differs: `separable` reports such pairs as near-twins.
    # Objects that share a shape (index distance 10) also differ in texture, since (i // 2) moves by 5.
    hue = HUES[(index + (index // 40) % 2) % len(HUES)]
    return Appearance(
        shape=SHAPES[index % len(SHAPES)],
        texture=TEXTURES[(index // 2 + index // 80) % len(TEXTURES)],
        colour=_rgb(hue, 0.8, 0.92),
        accent=_rgb(hue, 0.9, 0.35),
    )


def separable(a: Appearance, b: Appearance) -> bool:
    """Two looks differ in shape or colour (a texture alone does not survive a small, JPEG-compressed object)."""
    return a.shape != b.shape or a.colour != b.colour


@dataclass(frozen=True)
class Domain:
    """A dataset's visual domain: background statistics and the lighting of the whole frame."""

    grey: tuple[float, float]  # background base level range
    tint: tuple[float, float, float]  # background colour direction added to the base
    blob_cells: int  # background blob scale: frame side / cells (larger = busier)
    blob_contrast: tuple[float, float]
    grain: tuple[float, float]  # per-pixel noise std range
    gain: float  # lighting: global brightness factor on the whole frame, objects included
    cast: tuple[float, float, float]  # lighting: per-channel colour cast on the whole frame

    def light(self, image: np.ndarray) -> np.ndarray:
        """The frame under this domain's lighting, (H, W, 3) uint8."""
        factor = self.gain * np.asarray(self.cast, np.float32)
        return np.clip(image.astype(np.float32) * factor, 0, 255).astype(np.uint8)

    def lit(self, colour: tuple[int, int, int]) -> tuple[float, float, float]:
        """A colour under this domain's lighting (before JPEG)."""
        return tuple(float(min(255.0, c * self.gain * m)) for c, m in zip(colour, self.cast))


NEUTRAL = Domain((80, 170), (0.0, 0.0, 0.0), 6, (6, 14), (2, 6), 1.0, (1.0, 1.0, 1.0))


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test in object coordinates (radius 1, v pointing down)."""
    au, av = np.abs(u), np.abs(v)
    r2 = u * u + v * v
    if shape == "circle":
        return r2 <= 1.0
    if shape == "square":
        return np.maximum(au, av) <= 0.85
    if shape == "triangle":  # apex up
        return (v <= 0.75) & (au <= (v + 1.0) * 0.62)
    if shape == "star":
        theta = np.arctan2(v, u)
        return np.sqrt(r2) <= 0.45 + 0.55 * np.abs(np.cos(2.5 * theta)) ** 2
    if shape == "ring":
        return (r2 <= 1.0) & (r2 >= 0.3)
    if shape == "cross":
        return ((au <= 0.32) & (av <= 0.95)) | ((av <= 0.32) & (au <= 0.95))
    if shape == "ellipse":
        return u * u + (v / 0.55) ** 2 <= 1.0
    if shape == "diamond":
        return au + av <= 1.0
    if shape == "hexagon":
        return np.maximum(au * 0.866 + av * 0.5, av) <= 0.9
    if shape == "crescent":
        return (r2 <= 1.0) & ((u - 0.45) ** 2 + v * v >= 0.49)
    raise ValueError(f"unknown shape {shape!r}")


def texture_mask(texture: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Where the accent colour goes; in object coordinates so the pattern moves and scales with the object."""
    if texture == "solid":
        return np.zeros(u.shape, bool)
    if texture == "stripes":
        return np.floor((u + v) * 2.2) % 2 == 1
    if texture == "dots":
        fu, fv = (u * 2.5) % 1.0 - 0.5, (v * 2.5) % 1.0 - 0.5
        return fu * fu + fv * fv < 0.09
    if texture == "checker":
        return (np.floor(u * 2.2) + np.floor(v * 2.2)) % 2 == 1
    raise ValueError(f"unknown texture {texture!r}")


def draw(
    image: np.ndarray,
    labels: np.ndarray,
    label: int,
    look: Appearance,
    brightness: float,
    cx: float,
    cy: float,
    radius: float,
    aspect: float,
    angle: float,
) -> int:
    """Paint one object over `image` (H,W,3 uint8) and `labels` (H,W); return its unoccluded area in the frame."""
    h, w = labels.shape
    reach = radius * max(aspect, 1.0) * 1.15 + 1.0
    x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 1, w)
    y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return 0
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = (xs + 0.5 - cx) / radius, (ys + 0.5 - cy) / radius
    c, s = np.cos(angle), np.sin(angle)
    u, v = (c * dx + s * dy) / aspect, -s * dx + c * dy
    inside = shape_mask(look.shape, u, v)
    if not inside.any():
        return 0
    colour = np.clip(np.array(look.colour, np.float32) * brightness, 0, 255).astype(np.uint8)
    accent = np.array(look.accent, np.uint8)
    pixels = np.where(texture_mask(look.texture, u, v)[..., None], accent, colour)
    image[y0:y1, x0:x1][inside] = pixels[inside]
    labels[y0:y1, x0:x1][inside] = label
    return int(inside.sum())


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Bilinearly upsampled coarse Gaussian noise, (H, W, 3)."""
    gh, gw = h // cell + 2, w // cell + 2
    coarse = rng.normal(size=(gh, gw, 3)).astype(np.float32)

    def weights(n: int, g: int) -> np.ndarray:
        pos = np.linspace(0, g - 1.001, n)
        i0 = pos.astype(int)
        frac = (pos - i0).astype(np.float32)
        m = np.zeros((n, g), np.float32)
        m[np.arange(n), i0] = 1 - frac
        m[np.arange(n), i0 + 1] = frac
        return m

    return np.einsum("yi,ijc,xj->yxc", weights(h, gh), coarse, weights(w, gw))


def background(rng: np.random.Generator, h: int, w: int, domain: Domain = NEUTRAL) -> np.ndarray:
    """A low-saturation textured background (gradient + blobs + grain) of a domain, (H, W, 3) uint8."""
    grey = rng.uniform(*domain.grey)
    base = grey + (rng.uniform(60, 190, 3) - grey) * 0.3 + np.asarray(domain.tint, np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)[..., None] * rng.uniform(-30, 30)
    blobs = _smooth_noise(rng, h, w, cell=max(h, w) // domain.blob_cells or 1) * rng.uniform(*domain.blob_contrast)
    grain = rng.normal(size=(h, w, 1)).astype(np.float32) * rng.uniform(*domain.grain)
    return np.clip(base + ramp + blobs + grain, 0, 255).astype(np.uint8)
