"""A dataset folder as arrays at model resolution, for training and evaluation."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from edge.data import loader
from edge.data.annotations import Box
from edge.data.geometry import Placement
from edge.errors import InvalidInput

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
    boxes: list[list[Box]] = field(default_factory=list)          # per sample, in model pixels
    mask_kind: list[str | None] = field(default_factory=list)    # "pixel", "box" or None per sample
    source_shapes: list[tuple[int, int]] = field(default_factory=list)   # (H, W) of each file
    placements: list[Placement] = field(default_factory=list)


class MissingChannel(loader.DatasetError):
    """A sample lacks a channel or field asked for."""


def _plane(sample: loader.Sample, name: str) -> np.ndarray:
    if name in sample.channel_names:
        return sample.image[:, :, sample.channel_names.index(name)]
    # A set that mixes grayscale files with gray-as-RGB ones (c0, c1, c2 all equal): the same picture.
    if name == "gray" and sample.channel_names == ("c0", "c1", "c2"):
        return sample.image.mean(axis=2)
    if name in ("c0", "c1", "c2") and sample.channel_names == ("gray",):
        return sample.image[:, :, 0]
    if name in sample.extras:
        return sample.extras[name].astype(np.float32)
    if name in SCALAR_PLANES and name in sample.meta:
        # A per-frame scalar as a constant plane: the thermal model needs the pixel pitch to turn
        # height differences into slopes and curvatures.
        return np.full(sample.image.shape[:2], float(sample.meta[name]), np.float32)
    raise MissingChannel(f"{sample.path}: no channel or field named {name!r} "
                         f"(has {', '.join(sample.channel_names + tuple(sample.extras))})")


def model_planes(s: loader.Sample, names: Sequence[str], size: int, targets: Sequence[str] = ()
                 ) -> tuple[np.ndarray, Placement]:
    """One sample's named planes at model resolution, aspect kept (see `geometry.Placement`):
    ((C, size, size) float32 in physical units, where the frame sits)."""
    planes = frame_planes(s, names)
    h, w = planes.shape[1:]
    if (h, w) != (size, size) and any(p in NO_RESIZE for p in tuple(names) + tuple(targets)):
        raise loader.DatasetError(f"{s.path}: is {w}x{h}; phase data must be at the model size "
                                  f"{size}x{size} (wrapped phase cannot be interpolated)")
    placement = Placement.fit(h, w, size)
    return placement.planes(planes), placement


def frame_planes(s: loader.Sample, names: Sequence[str]) -> np.ndarray:
    """One sample's named planes at its own size: (C, H, W) float32, physical units."""
    planes = [_plane(s, c) for c in names]
    for j, p in enumerate(planes):
        if p.shape != planes[0].shape:
            raise loader.DatasetError(f"{s.path}: channel {names[j]!r} is {p.shape}, expected {planes[0].shape}")
    return np.stack(planes)


def load_input(path: Path, names: Sequence[str], size: int) -> tuple[np.ndarray, loader.Sample]:
    """One file in the dataset format (mask `<stem>.mask.png` beside it, if any) as a model batch
    (1, C, size, size), with the sample it came from."""
    path = Path(path)
    if path.is_dir():
        raise loader.DatasetError(f"{path}: a folder; this reads one file (a folder of frames goes through a "
                                  "running node with `edge-xai station --input FOLDER`, a labelled data set "
                                  "through `edge-xai evaluate` or `audit`)")
    if not path.is_file():
        raise loader.DatasetError(f"{path}: no such file")
    stem = path.name.split(".")[0]
    mask = path.with_name(f"{stem}.mask.png")
    item = loader.DatasetItem(path, path.parent.name, mask if mask.is_file() else None)
    sample = loader.load_sample(item)
    x, placement = model_planes(sample, names, size)
    sample.meta["placement"] = placement
    return x[None], sample


def resolve_channels(available: Sequence[str], request: str | Sequence[str] | None) -> tuple[str, ...]:
    """Channel names from a request: None (all), a count 'C' (the first C), or names."""
    if request is None:
        return tuple(available)
    if isinstance(request, str):
        if request.strip().isdigit():
            c = int(request)
            if not 1 <= c <= len(available):
                raise InvalidInput(f"--channels {c}: the data has {len(available)} channels ({', '.join(available)})")
            return tuple(available[:c])
        request = [r.strip() for r in request.split(",") if r.strip()]
    return tuple(request)


def load_arrays(root: Path | Sequence[Path], size: int, channels: str | Sequence[str] | None = None,
                targets: Sequence[str] = (), limit: int | None = None, seed: int = 0,
                progress: bool = True) -> Arrays:
    """Read a dataset folder (or several, one after the other: training's tiled training and validation
    splits, in one array rather than two joined at twice the memory) into arrays resized to `size`;
    `limit` keeps a seeded random subset."""
    from tqdm import tqdm

    roots = [Path(root)] if isinstance(root, (str, Path)) else [Path(r) for r in root]
    items = _subset([item for r in roots for item in loader.scan(r)], limit, seed)
    first = loader.load_sample(items[0])
    names = resolve_channels(first.channel_names, channels)
    n = len(items)
    x = np.zeros((n, len(names), size, size), np.float32)
    masks = np.zeros((n, size, size), bool)
    has_mask = np.zeros(n, bool)
    tgt = {t: np.zeros((n, size, size), np.float32) for t in targets}
    out = Arrays(x, [], masks, has_mask, names, tgt)
    for i, item in enumerate(tqdm(items, desc="load", unit="file", disable=not progress)):
        s = first if i == 0 else loader.load_sample(item)
        try:
            x[i], placement = model_planes(s, names, size, targets)
        except MissingChannel as e:
            if channels is None:
                raise
            # the names came from a model (evaluate, audit, calibrate) or from --channels: say which
            raise MissingChannel(f"{e}; the channels asked for are {', '.join(names)} (a model's inputs, or "
                                 f"--channels): is this data for that model?") from None
        for t in targets:
            tgt[t][i] = placement.plane(_plane(s, t))
        if s.mask is not None:
            masks[i], has_mask[i] = placement.mask(s.mask), True
        out.labels.append(item.label)
        out.meta.append(s.meta)
        out.paths.append(item.path)
        out.boxes.append([placement.box(b) for b in s.boxes])
        out.mask_kind.append(s.mask_kind)
        out.source_shapes.append(s.image.shape[:2])
        out.placements.append(placement)
    return out


@dataclass
class Survey:
    """What a data set looks like before it is loaded at a size: image shapes and defect widths."""
    shapes: list[tuple[int, int]]
    defect_widths_px: list[float]           # the smaller side of each annotated defect, image pixels
    photographs: bool                       # image files (8/16-bit), not the simulator's physical arrays
    labels: list[str] = field(default_factory=list)
    channel_names: tuple[str, ...] = ()     # of the first sample
    paths: list[Path] = field(default_factory=list)       # each sample's file
    annotated: list[bool] = field(default_factory=list)   # has a non-empty mask or boxes


def defect_widths(sample: loader.Sample) -> list[float]:
    """The smaller side of each annotated defect: boxes as given, masks per connected region."""
    if sample.mask_kind == "box":
        return [min(b.x1 - b.x0, b.y1 - b.y0) for b in sample.boxes]
    if sample.mask is None or not sample.mask.any():
        return []
    import cv2

    n, _, stats, _ = cv2.connectedComponentsWithStats(sample.mask.astype(np.uint8), connectivity=8)
    return [float(min(stats[k, cv2.CC_STAT_WIDTH], stats[k, cv2.CC_STAT_HEIGHT])) for k in range(1, n)]


def survey(root: Path, limit: int | None = None, seed: int = 0, progress: bool = True) -> Survey:
    """Read every sample once (no resizing) for the choices training makes from the data."""
    from tqdm import tqdm

    items = _subset(loader.scan(Path(root)), limit, seed)
    shapes, widths, names, annotated = [], [], (), []
    for item in tqdm(items, desc="survey", unit="file", disable=not progress):
        s = loader.load_sample(item)
        shapes.append(s.image.shape[:2])
        found = defect_widths(s)
        widths += found
        annotated.append(bool(found))
        names = names or s.channel_names
    photographs = all(i.path.suffix.lower() in loader.IMAGE_EXTENSIONS for i in items)
    return Survey(shapes, widths, photographs, [i.label for i in items], names, [i.path for i in items], annotated)


def _subset(items: list, limit: int | None, seed: int) -> list:
    if limit is not None and limit < len(items):
        keep = np.sort(np.random.default_rng(seed).permutation(len(items))[:limit])
        items = [items[i] for i in keep]
    return items
