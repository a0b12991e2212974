"""A dataset folder as arrays at model resolution, for training and evaluation."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from edge.data import loader
from edge.data.preprocess import resize_image, resize_mask

# Ground-truth planes that must not be interpolated: wrapped/unwrapped phase pairs lose their exact
# 2*pi relation under resampling.
NO_RESIZE = ("phase", "unwrapped_phase")
# Per-frame scalars that a model may take as an input plane.
SCALAR_PLANES = ("pixel_pitch_mm",)


@dataclass
class Arrays:
    x: np.ndarray                       # (N, C, S, S) float32, physical units
    labels: list[str]
    masks: np.ndarray                   # (N, S, S) bool, False where a sample has no mask
    has_mask: np.ndarray                # (N,) bool
    channel_names: tuple[str, ...]
    targets: dict[str, np.ndarray] = field(default_factory=dict)  # (N, S, S) float32 each
    meta: list[dict] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)


def _plane(sample: loader.Sample, name: str) -> np.ndarray:
    if name in sample.channel_names:
        return sample.image[:, :, sample.channel_names.index(name)]
    if name in sample.extras:
        return sample.extras[name].astype(np.float32)
    if name in SCALAR_PLANES and name in sample.meta:
        # A per-frame scalar as a constant plane: the thermal model needs the pixel pitch to turn
        # height differences into slopes and curvatures.
        return np.full(sample.image.shape[:2], float(sample.meta[name]), np.float32)
    raise loader.DatasetError(f"{sample.path}: no channel or field named {name!r} "
                              f"(has {', '.join(sample.channel_names + tuple(sample.extras))})")


def model_planes(s: loader.Sample, names: Sequence[str], size: int, targets: Sequence[str] = ()) -> np.ndarray:
    """One sample's named planes at model resolution: (C, size, size) float32, physical units."""
    planes = [_plane(s, c) for c in names]
    h, w = planes[0].shape
    if (h, w) != (size, size) and any(p in NO_RESIZE for p in tuple(names) + tuple(targets)):
        raise loader.DatasetError(f"{s.path}: is {w}x{h}; phase data must be at the model size "
                                  f"{size}x{size} (wrapped phase cannot be interpolated)")
    out = np.zeros((len(names), size, size), np.float32)
    for j, p in enumerate(planes):
        if p.shape != (h, w):
            raise loader.DatasetError(f"{s.path}: channel {names[j]!r} is {p.shape}, expected {(h, w)}")
        out[j] = resize_image(p[:, :, None], size)[:, :, 0]
    return out


def load_input(path: Path, names: Sequence[str], size: int) -> tuple[np.ndarray, loader.Sample]:
    """One file in the dataset format (mask `<stem>.mask.png` beside it, if any) as a model batch
    (1, C, size, size), with the sample it came from."""
    path = Path(path)
    if not path.is_file():
        raise loader.DatasetError(f"{path}: no such file")
    stem = path.name.split(".")[0]
    mask = path.with_name(f"{stem}.mask.png")
    item = loader.DatasetItem(path, path.parent.name, mask if mask.is_file() else None)
    sample = loader.load_sample(item)
    return model_planes(sample, names, size)[None], sample


def resolve_channels(available: Sequence[str], request: str | Sequence[str] | None) -> tuple[str, ...]:
    """Channel names from a request: None (all), a count 'C' (the first C), or names."""
    if request is None:
        return tuple(available)
    if isinstance(request, str):
        if request.strip().isdigit():
            c = int(request)
            if not 1 <= c <= len(available):
                raise ValueError(f"--channels {c}: the data has {len(available)} channels ({', '.join(available)})")
            return tuple(available[:c])
        request = [r.strip() for r in request.split(",") if r.strip()]
    return tuple(request)


def load_arrays(root: Path, size: int, channels: str | Sequence[str] | None = None,
                targets: Sequence[str] = (), limit: int | None = None, seed: int = 0,
                progress: bool = True) -> Arrays:
    """Read a dataset folder into arrays resized to `size`; `limit` keeps a seeded random subset."""
    from tqdm import tqdm

    items = loader.scan(Path(root))
    if limit is not None and limit < len(items):
        keep = np.sort(np.random.default_rng(seed).permutation(len(items))[:limit])
        items = [items[i] for i in keep]
    first = loader.load_sample(items[0])
    names = resolve_channels(first.channel_names, channels)
    n = len(items)
    x = np.zeros((n, len(names), size, size), np.float32)
    masks = np.zeros((n, size, size), bool)
    has_mask = np.zeros(n, bool)
    tgt = {t: np.zeros((n, size, size), np.float32) for t in targets}
    labels, meta, paths = [], [], []
    for i, item in enumerate(tqdm(items, desc="load", unit="file", disable=not progress)):
        s = first if i == 0 else loader.load_sample(item)
        x[i] = model_planes(s, names, size, targets)
        for t in targets:
            tgt[t][i] = resize_image(_plane(s, t)[:, :, None], size)[:, :, 0]
        if s.mask is not None:
            masks[i], has_mask[i] = resize_mask(s.mask, size), True
        labels.append(item.label)
        meta.append(s.meta)
        paths.append(item.path)
    return Arrays(x, labels, masks, has_mask, names, tgt, meta, paths)
