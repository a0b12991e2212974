"""Where a frame's pixels sit in the model's square input, and the way back: one transform for training,
evaluation, explanation and serving, so a deployed model sees what it was trained on and its maps land
on the frame the operator sees.

    p = Placement.fit(h, w, 128)            # aspect kept: scaled to fit, centred, margin padded
    x = p.planes(planes)                    # (C, h, w) -> (C, 128, 128)
    heat_on_frame = p.to_source(heat)       # (128, 128) -> (h, w)

    t = Tiling.plan(2048, 2448, tile=200, scale=1.0)      # a line camera's frame, at training scale
    crops = t.crops(planes)                                # (T, C, 200, 200)
    frame_map = t.stitch(tile_maps)                        # (2048, 2448), no seams

Squashing a 600x200 image into a square would widen a 3-pixel crack across the short side and shrink it
along the other; letterboxing keeps every defect's shape. The margin is filled with each channel's mean
over the image, which per-image standardisation turns into 0: a flat border with no texture of its own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# A frame whose long side, at the training scale, exceeds the model input by more than this factor is
# inspected in tiles; below it the whole frame is letterboxed (what training did with its images).
TILE_FACTOR = 1.5
TILE_OVERLAP = 0.25


def resize_plane(p: np.ndarray, h: int, w: int) -> np.ndarray:
    """(H, W) float -> (h, w): area averaging when shrinking (no aliasing), bilinear when growing."""
    if p.shape == (h, w):
        return p.astype(np.float32, copy=False)
    shrink = p.shape[0] > h or p.shape[1] > w
    return cv2.resize(p.astype(np.float32, copy=False), (w, h),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resize_mask(m: np.ndarray, h: int, w: int) -> np.ndarray:
    """Boolean mask -> (h, w). Shrinking keeps any covered fraction (a 0.1 % defect survives); growing is
    nearest-neighbour (no defect grows by interpolation)."""
    if m.shape == (h, w):
        return m.astype(bool)
    shrink = m.shape[0] > h or m.shape[1] > w
    return cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_NEAREST) > 0


@dataclass(frozen=True)
class Placement:
    """A (src_h, src_w) frame scaled by `scale` to (h, w) and placed at (top, left) in a size x size input."""
    src_h: int
    src_w: int
    size: int
    scale: float
    top: int
    left: int
    h: int
    w: int

    @classmethod
    def fit(cls, src_h: int, src_w: int, size: int) -> "Placement":
        scale = size / max(src_h, src_w)
        h = max(1, min(size, int(round(src_h * scale))))
        w = max(1, min(size, int(round(src_w * scale))))
        return cls(src_h, src_w, size, scale, (size - h) // 2, (size - w) // 2, h, w)

    @property
    def padded(self) -> bool:
        return (self.h, self.w) != (self.size, self.size)

    def plane(self, p: np.ndarray, fill: float | None = None) -> np.ndarray:
        """One (src_h, src_w) plane -> (size, size); the margin is `fill` (default: the plane's mean)."""
        if p.shape != (self.src_h, self.src_w):
            raise ValueError(f"plane is {p.shape}, placement expects {(self.src_h, self.src_w)}")
        inner = resize_plane(p, self.h, self.w)
        if not self.padded:
            return inner
        out = np.full((self.size, self.size), float(inner.mean()) if fill is None else fill, np.float32)
        out[self.top:self.top + self.h, self.left:self.left + self.w] = inner
        return out

    def planes(self, planes: np.ndarray) -> np.ndarray:
        """(C, src_h, src_w) -> (C, size, size)."""
        return np.stack([self.plane(p) for p in planes]) if len(planes) else \
            np.zeros((0, self.size, self.size), np.float32)

    def mask(self, m: np.ndarray) -> np.ndarray:
        """Boolean mask -> (size, size): any covered fraction counts, so a 0.1 % defect survives shrinking."""
        out = np.zeros((self.size, self.size), bool)
        out[self.top:self.top + self.h, self.left:self.left + self.w] = resize_mask(m, self.h, self.w)
        return out

    def valid(self) -> np.ndarray:
        """(size, size) bool: where the frame is (False on the margin)."""
        v = np.zeros((self.size, self.size), bool)
        v[self.top:self.top + self.h, self.left:self.left + self.w] = True
        return v

    def box(self, b):
        """A Box in frame pixels -> model pixels."""
        sx, sy = self.w / self.src_w, self.h / self.src_h
        return type(b)(b.x0 * sx + self.left, b.y0 * sy + self.top, b.x1 * sx + self.left, b.y1 * sy + self.top,
                       b.name)

    def to_source(self, m: np.ndarray) -> np.ndarray:
        """A (size, size) map -> (src_h, src_w): the margin dropped, the rest resized to the frame."""
        inner = np.asarray(m, np.float32)[self.top:self.top + self.h, self.left:self.left + self.w]
        return cv2.resize(inner, (self.src_w, self.src_h), interpolation=cv2.INTER_LINEAR) \
            if inner.shape != (self.src_h, self.src_w) else inner.copy()


def tile_starts(length: int, tile: int, overlap: float = TILE_OVERLAP) -> list[int]:
    """Tile origins along one axis: evenly spread, the first at 0 and the last flush with the end."""
    if length <= tile:
        return [0]
    n = math.ceil((length - tile) / (tile * (1 - overlap))) + 1
    return [int(round(i * (length - tile) / (n - 1))) for i in range(n)]


def _window(tile: int) -> np.ndarray:
    """Blending weights of a tile: highest in the middle, small but positive at the edge, so overlapping
    tiles fade into each other instead of meeting at a seam."""
    r = 0.5 - np.abs((np.arange(tile) + 0.5) / tile - 0.5)          # 0 at the edge, 0.5 in the middle
    w1 = np.clip(r / 0.25, 0.05, 1.0)
    return np.outer(w1, w1).astype(np.float32)


@dataclass(frozen=True)
class Tiling:
    """A large frame scaled by `scale` (to the training images' pixel size) and cut into overlapping
    tile x tile crops; origins are in scaled pixels."""
    src_h: int
    src_w: int
    scale: float
    tile: int
    origins: tuple[tuple[int, int], ...]

    @classmethod
    def plan(cls, src_h: int, src_w: int, tile: int, scale: float, overlap: float = TILE_OVERLAP) -> "Tiling":
        h, w = max(tile, int(round(src_h * scale))), max(tile, int(round(src_w * scale)))
        origins = tuple((y, x) for y in tile_starts(h, tile, overlap) for x in tile_starts(w, tile, overlap))
        return cls(src_h, src_w, scale, tile, origins)

    @property
    def scaled_shape(self) -> tuple[int, int]:
        return max(self.tile, int(round(self.src_h * self.scale))), max(self.tile, int(round(self.src_w * self.scale)))

    def crops(self, planes: np.ndarray) -> np.ndarray:
        """(C, src_h, src_w) -> (T, C, tile, tile)."""
        h, w = self.scaled_shape
        scaled = np.stack([resize_plane(p, h, w) for p in planes])
        t = self.tile
        return np.stack([scaled[:, y:y + t, x:x + t] for y, x in self.origins])

    def box(self, k: int) -> tuple[int, int, int, int]:
        """Tile k as (x0, y0, x1, y1) in frame pixels."""
        y, x = self.origins[k]
        sy, sx = self.scaled_shape[0] / self.src_h, self.scaled_shape[1] / self.src_w
        return (int(x / sx), int(y / sy), int(math.ceil((x + self.tile) / sx)), int(math.ceil((y + self.tile) / sy)))

    def stitch(self, maps: np.ndarray) -> np.ndarray:
        """(T, tile, tile) per-tile maps -> one (src_h, src_w) map, overlaps blended by a window."""
        h, w = self.scaled_shape
        acc = np.zeros((h, w), np.float32)
        weight = np.zeros((h, w), np.float32)
        win = _window(self.tile)
        t = self.tile
        for (y, x), m in zip(self.origins, maps):
            acc[y:y + t, x:x + t] += win * m
            weight[y:y + t, x:x + t] += win
        return resize_plane(acc / np.maximum(weight, 1e-12), self.src_h, self.src_w)


def training_scale(manifest_input: dict) -> float | None:
    """Model pixels per frame pixel the model was trained at (median over its training images), or None
    for models trained on frames of the model's own size (the simulator's)."""
    src = manifest_input.get("source_size")
    if not src:
        return None
    return manifest_input["size"][0] / max(src)


def should_tile(src_h: int, src_w: int, manifest_input: dict) -> bool:
    """Is this frame much larger than the images the model was trained on? Larger than TILE_FACTOR times
    their typical long side, and than the largest of them where the manifest records it
    (`source_long_max`, whole-frame training): training letterboxed every image it had whole, so a frame
    within that range is read the way training read its like, and only a frame beyond it (a line
    camera's) is cut into tiles at the training scale."""
    scale = training_scale(manifest_input)
    if scale is None:
        return False
    long_side = max(src_h, src_w)
    return long_side * scale > TILE_FACTOR * manifest_input["size"][0] and \
        long_side > manifest_input.get("source_long_max", 0)


def longest_whole_side(manifest_input: dict) -> int | None:
    """The longest frame side `should_tile` still reads whole (letterboxed) for this manifest `input`; None
    where no frame is tiled (models trained on frames of their own size). What the audit's tiling keeps
    whole, so it cuts exactly the frames the served path cuts: 1.5x the training images' typical long side,
    or their largest where training letterboxed larger ones whole."""
    scale = training_scale(manifest_input)
    if scale is None:
        return None
    n = int(TILE_FACTOR * manifest_input["size"][0] / scale)
    while should_tile(n, n, manifest_input):         # float rounding either way: settle on should_tile's answer
        n -= 1
    while not should_tile(n + 1, n + 1, manifest_input):
        n += 1
    return n
