"""Large annotated frames cut into tiles, so a model trains at the camera's own pixel scale.

    edge-xai dataset --from-folder frames/train --tile 256 --out tiles/train

(`edge-xai train` makes the same cut by itself where the data needs it: `edge.train.tiled`.)

A line camera's 2–5 MPixel frame with a 20-pixel defect, letterboxed whole into a 256 px model input,
keeps that defect 2 pixels wide; training on the frames as they are teaches the model to look for
defects it can hardly see. Cut into tiles at the frame's own pixels, the same defect keeps its size, and
the served path then inspects a whole frame in tiles at that scale (the model's `input.source_size` is
the tiles', so `edge.data.geometry.should_tile` sends frames larger than that through `Tiling`).

Each tile is labelled from the frame's annotations (masks, VOC or COCO boxes), defect by defect (a
connected region of the mask, or a box):
- a defect is *in* a tile when at least half of it lies there, or the part that does spans at least half
  the tile's side (a scratch longer than a tile is in every tile it crosses);
- a tile with a defect in it takes the frame's class, its mask or clipped boxes going with it;
- a tile without any defect pixel is *clean*: the defect-free class (`ok_class`), or left out when the
  data set has none (NEU-DET has none: naming one keeps those tiles);
- a tile holding only slivers of defects (pixels, but no defect in it) is *ambiguous* and left out: neither
  label would be true.
Frames of the defect-free class give clean tiles whatever they hold. A defect frame without annotations
cannot be split (nothing says which tiles show its defect): an error naming it, unless such frames are to
be dropped; one that stays whole (no larger than a tile) needs none. Tiles overlap by the served path's overlap (`TILE_OVERLAP`), so a defect narrower than the
overlap lies whole in some tile. Tile the training and test splits separately: tiles of one frame on both
sides would be the same pixels twice. Frames no larger than a tile stay whole (one tile).

`edge-xai audit` and `edge-xai calibrate` apply the same cut to data whose frames the served path would
tile (`load_as_served`; `keep_whole`: the frames it letterboxes stay whole), so they judge and fit what
the model reads.

Files: 8/16-bit frames of one or three channels are written as PNG (lossless; a JPEG is not compressed a
second time), others as .npz with their channel names; pixel masks as `<stem>.mask.png`, boxes as VOC XML
(so the audit still judges against boxes); `tiles.csv` says where each tile came from, `dataset.json` what
was written and what was left out.
"""
from __future__ import annotations

import csv
import json
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from edge.data.annotations import Box
from edge.data.geometry import TILE_OVERLAP, longest_whole_side, tile_starts
from edge.data.loader import (
    EXTRA_FIELDS,
    SAFE_CLASS,
    DatasetError,
    DatasetItem,
    load_sample,
    read_image,
    scan,
    write_sample,
)
from edge.errors import InvalidInput
from edge.output_folder import check_output, staged_output

IN_SHARE = 0.5          # a defect is in a tile holding at least this share of it ...
IN_SPAN = 0.5           # ... or spanning at least this share of the tile's shorter side
MIN_TILE, MAX_TILE = 32, 4096
UNANNOTATED = ("error", "drop")


@dataclass(frozen=True)
class Window:
    """A tile's place in its frame: rows y..y+h, columns x..x+w."""
    y: int
    x: int
    h: int
    w: int


def windows(h: int, w: int, tile: int, overlap: float = TILE_OVERLAP) -> list[Window]:
    """Overlapping tile x tile windows covering an (h, w) frame, the last flush with each edge (as the served
    path tiles); a side shorter than the tile is taken whole."""
    th, tw = min(tile, h), min(tile, w)
    return [Window(y, x, th, tw) for y in tile_starts(h, tile, overlap) for x in tile_starts(w, tile, overlap)]


def mask_status(mask: np.ndarray, wins: list[Window]) -> list[str]:
    """'defect', 'ambiguous' or 'clean' for each window of a frame with this (H, W) bool defect mask, by its
    connected regions (8-connected): see the module's rules."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(np.asarray(mask, np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
    out = []
    for win in wins:
        sub = labels[win.y:win.y + win.h, win.x:win.x + win.w]
        counts = np.bincount(sub.ravel(), minlength=n)[1:]
        present = np.flatnonzero(counts)
        if not len(present):
            out.append("clean")
            continue
        side = min(win.h, win.w)
        found = False
        for k in present:
            if counts[k] >= IN_SHARE * areas[k]:
                found = True
                break
            ys, xs = np.nonzero(sub == k + 1)           # only a minority of it here: how far does it reach?
            if max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 >= IN_SPAN * side:
                found = True
                break
        out.append("defect" if found else "ambiguous")
    return out


def clip_box(b: Box, win: Window) -> Box | None:
    """The part of box b inside the window, in the tile's pixels; None where under a pixel of it is."""
    x0, y0 = max(b.x0, win.x) - win.x, max(b.y0, win.y) - win.y
    x1, y1 = min(b.x1, win.x + win.w) - win.x, min(b.y1, win.y + win.h) - win.y
    return Box(x0, y0, x1, y1, b.name) if x1 - x0 >= 1 and y1 - y0 >= 1 else None


def box_status(boxes: list[Box], wins: list[Window]) -> list[str]:
    """mask_status for defects given as boxes, each box one defect."""
    out = []
    for win in wins:
        status = "clean"
        for b in boxes:
            c = clip_box(b, win)
            if c is None:
                continue
            area = (b.x1 - b.x0) * (b.y1 - b.y0)
            if (c.x1 - c.x0) * (c.y1 - c.y0) >= IN_SHARE * area or \
                    max(c.x1 - c.x0, c.y1 - c.y0) >= IN_SPAN * min(win.h, win.w):
                status = "defect"
                break
            status = "ambiguous"
        out.append(status)
    return out


def write_voc(path: Path, filename: str, shape: tuple[int, int], depth: int, boxes: list[Box]) -> None:
    """Boxes (0-based, half-open) as Pascal VOC XML (1-based, inclusive), as `read_voc` reads them back."""
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    for tag, v in (("width", shape[1]), ("height", shape[0]), ("depth", depth)):
        ET.SubElement(size, tag).text = str(v)
    for b in boxes:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = b.name or "defect"
        bb = ET.SubElement(obj, "bndbox")
        for tag, v in (("xmin", b.x0 + 1), ("ymin", b.y0 + 1), ("xmax", b.x1), ("ymax", b.y1)):
            ET.SubElement(bb, tag).text = f"{v:.6g}"
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def tile_dataset(src: Path, out: Path, tile: int, ok_class: str | None, overlap: float = TILE_OVERLAP,
                 unannotated: str = "error", progress: bool = True, keep_whole: int = 0,
                 only: set[Path] | None = None, sizes_for: Callable[[dict], tuple[int, int]] | None = None) -> dict:
    """Cut the frames of data set `src` into tiles written as data set `out` (see the module's rules).
    ok_class: the defect-free class (clean tiles go there, created in `out` if `src` has no such folder);
    None leaves clean tiles of defect frames out. keep_whole: frames whose long side is at most this stay
    whole, as one sample (the served path letterboxes such frames instead of tiling them). only: cut just
    these frames (their files' paths; training tiles its own training and validation frames apart).
    sizes_for: a frame's (tile, keep_whole) from what its file records (the loader's meta: its pixel pitch),
    in place of `tile` and `keep_whole` (the audit's frames of several pitches; `load_as_served`). Returns
    what was written and left out, as also kept in OUT/dataset.json (`tile`: the sizes used, a list where
    `sizes_for` gave several)."""
    src, out = Path(src), Path(out)
    if not MIN_TILE <= tile <= MAX_TILE:
        raise InvalidInput(f"--tile {tile}: expected a tile side between {MIN_TILE} and {MAX_TILE} pixels")
    if not 0 <= overlap < 1:
        raise InvalidInput(f"--overlap {overlap}: expected a share of the tile in [0, 1)")
    if ok_class is not None and not SAFE_CLASS.match(ok_class):
        raise InvalidInput(f"--ok-class {ok_class!r}: not usable as a class folder's name")
    if unannotated not in UNANNOTATED:
        raise InvalidInput(f"--unannotated {unannotated!r}: expected one of {', '.join(UNANNOTATED)}")
    check_output(out)
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise InvalidInput(f"--out {out} lies inside the data set it tiles ({src}); choose a folder outside it")
    items = scan(src)
    if only is not None:
        items = [i for i in items if i.path in only]
    counts: dict[str, int] = {}
    left = {"ambiguous_tiles": 0, "clean_tiles_without_ok_class": 0, "unannotated_frames": 0,
            "defect_frames_without_a_defect_tile": 0}
    frames = 0
    rows = []
    used: set[int] = set()
    # written beside OUT and renamed at the end: a bad annotation found halfway leaves nothing behind
    with staged_output(out) as work:
        for item in tqdm(items, desc="frames", unit="frame", disable=not progress):
            written = _tile_frame(item, src, work, tile, overlap, ok_class, unannotated, counts, left, keep_whole,
                                  sizes_for, used)
            frames += written is not None
            rows += written or []
        with open(work / "tiles.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["tile", "source", "x", "y", "width", "height", "label"])
            w.writeheader()
            w.writerows(rows)
        if sizes_for is not None and used:
            tile = used.pop() if len(used) == 1 else sorted(used)
        summary = {"source": str(src), "tile": tile, "overlap": overlap, "ok_class": ok_class, "frames": frames,
                   "tiles": sum(counts.values()), "classes": dict(sorted(counts.items())), "left_out": left}
        (work / "dataset.json").write_text(json.dumps({"kind": "tiles", **summary}, indent=2) + "\n")
    return {**summary, "out": str(out)}


def _tile_frame(item: DatasetItem, src: Path, out: Path, tile: int, overlap: float, ok_class: str | None,
                unannotated: str, counts: dict[str, int], left: dict[str, int], keep_whole: int = 0,
                sizes_for: Callable[[dict], tuple[int, int]] | None = None, used: set[int] | None = None
                ) -> list[dict] | None:
    """Write one frame's tiles; their tiles.csv rows, or None for a defect frame left out unannotated (one
    that would be cut; a frame that stays whole keeps its class without annotations). The tile size planned
    for it (whether or not it was cut) goes into `used`."""
    # the loader's sample for its annotations (checked: boxes inside the image, sizes agree), the raw read
    # for the pixels: 8/16-bit frames keep their integers, so a tile is the frame's own pixels
    sample = load_sample(item)
    defect_frame = item.label != ok_class
    raw, names, extras, meta = read_image(item.path, scale=False)
    if sizes_for is not None:
        tile, keep_whole = sizes_for(meta)
    if used is not None:
        used.add(tile)
    h, w = raw.shape[:2]
    wins = [Window(0, 0, h, w)] if max(h, w) <= keep_whole else windows(h, w, tile, overlap)
    annotated = sample.mask is not None and sample.mask.any()
    if len(wins) == 1 and (wins[0].h, wins[0].w) == (h, w):
        # not cut: the frame is its own tile and keeps its class, with whatever annotation it has
        status = ["defect" if defect_frame else "clean"]
    elif defect_frame and not annotated:
        if unannotated == "error":
            raise DatasetError(f"{item.path}: a defect image without a mask or boxes (or with an empty mask): "
                               "nothing says which of its tiles show the defect. Annotate it (<stem>.mask.png, "
                               "<stem>.xml or COCO), or leave such images out with --unannotated drop")
        left["unannotated_frames"] += 1
        return None
    elif not defect_frame:
        status = ["clean"] * len(wins)
    elif sample.mask_kind == "box":
        status = box_status(sample.boxes, wins)
    else:
        status = mask_status(sample.mask, wins)
    if defect_frame and "defect" not in status:
        # a defect larger than the overlap, cut so that no tile holds half of it or half a tile's side of
        # it: counted, so a frame's defect never vanishes unsaid (a larger tile or overlap keeps it)
        left["defect_frames_without_a_defect_tile"] += 1
    rows = []
    for win, st in zip(wins, status):
        if st == "ambiguous":
            left["ambiguous_tiles"] += 1
            continue
        label = item.label if st == "defect" else ok_class
        if label is None:
            left["clean_tiles_without_ok_class"] += 1
            continue
        folder = out / label
        folder.mkdir(parents=True, exist_ok=True)
        stem = folder / f"{item.path.stem}__y{win.y:05d}_x{win.x:05d}"
        sl = (slice(win.y, win.y + win.h), slice(win.x, win.x + win.w))
        crops = {k: v[sl] for k, v in extras.items() if k in EXTRA_FIELDS and v.shape[:2] == (h, w)}
        crops |= {k: np.asarray(v) for k, v in meta.items() if k == "geometry"}
        path = write_sample(stem, names, [raw[sl][:, :, i] for i in range(raw.shape[2])],
                            meta.get("pixel_pitch_mm"), crops)
        # (a whole frame without annotations keeps its class only)
        if st == "defect" and annotated and sample.mask_kind == "box":
            kept = [c for c in (clip_box(b, win) for b in sample.boxes) if c is not None]
            write_voc(stem.with_name(stem.name + ".xml"), path.name, (win.h, win.w), raw.shape[2], kept)
        elif st == "defect" and annotated:
            mask_path = stem.with_name(stem.name + ".mask.png")
            if not cv2.imwrite(str(mask_path), sample.mask[sl].astype(np.uint8) * 255):
                raise OSError(f"{mask_path}: could not write the tile's mask")
        counts[label] = counts.get(label, 0) + 1
        rows.append({"tile": str(path.relative_to(out)), "source": str(item.path.relative_to(src)), "x": win.x,
                     "y": win.y, "width": win.w, "height": win.h, "label": label})
    return rows


def served_tile(manifest_input: dict) -> int:
    """The tile side, in frame pixels, the served path cuts a large frame into for a model whose manifest
    `input` this is: its training images' long side (`geometry.training_scale`)."""
    return round(max(manifest_input["source_size"]))


def load_as_served(data: Path, manifest_input: dict, ok_class: str | None, channels: list[str],
                   targets: list[str] | tuple = (), limit: int | None = None, seed: int = 0,
                   progress: bool = True, served_at: Callable[[dict], dict] | None = None):
    """Labelled data as the served path gives it to the model whose manifest `input` this is: the frames
    `should_tile` cuts (larger than TILE_FACTOR x its training images, and than the largest it read whole)
    cut into tiles of the training images' size (`served_tile`; labelled from their masks or boxes as above;
    defect frames without annotations dropped and counted), the others whole, all loaded at the model's
    input size. served_at: the `input` as a frame is served, from what its file records (the loader's meta:
    its pitch), for data whose frames are read at their own pitch (`edge.evaluate.served_at`); without it
    every frame is served `manifest_input`. Returns the arrays and `tile_dataset`'s summary
    (`tile`: a list where frames of several pitches were cut at several sizes); `left_out_text(summary)`
    says what was left out."""
    import tempfile

    from edge.data.arrays import load_arrays

    def sizes(spec: dict) -> tuple[int, int]:
        # whole: every frame `should_tile` reads whole, those up to the largest training image included
        return served_tile(spec), longest_whole_side(spec) or 0

    tile, keep_whole = sizes(manifest_input)
    sizes_for = None if served_at is None else (lambda meta: sizes(served_at(meta)))
    size = manifest_input["size"][0]
    tmp = Path(tempfile.mkdtemp(prefix="edge-xai-tiles-"))
    try:
        cut = tile_dataset(Path(data), tmp / "tiles", tile, ok_class, unannotated="drop", progress=progress,
                           keep_whole=keep_whole, sizes_for=sizes_for)
        # the simulator's ground-truth planes travel with its tiles (cropped), so edge maps stay usable
        arrays = load_arrays(tmp / "tiles", size, channels, targets=targets, limit=limit, seed=seed,
                             progress=progress)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return arrays, cut


def left_out_text(summary: dict) -> str:
    """'154 ambiguous tiles, 211 clean tiles without ok class' from a tiling summary; '' when nothing was."""
    return ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in summary["left_out"].items() if n)
