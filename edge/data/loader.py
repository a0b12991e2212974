"""Folder datasets: what the simulator writes and what users bring.

    DIR/<class>/<stem>.{png,jpg,jpeg,tif,tiff,npy,npz}   one sample
    DIR/<class>/<stem>.mask.png                           optional mask (non-zero = defect)
    DIR/<class>/<stem>.xml                                optional Pascal VOC boxes (LabelImg, CVAT)
    DIR/annotations.json                                  optional COCO instances (boxes, polygons, RLE)

Boxes are localisation ground truth too: they become filled-box masks (`mask_kind` "box") and are kept
as boxes for the audit's box measures. A pixel mask, where one exists, wins over boxes.

Images may have 1..N channels, 8/16-bit or float, any size. Integers are scaled to [0, 1] by their
type's range (so 8- and 16-bit files of one line mix); floats are kept in their units. Simulator `.npz`
files carry named channels and physical ground truth. Every problem is reported with the file at fault.
"""
from __future__ import annotations

import json
import math
import re
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge.data.annotations import Annotation, AnnotationError, Box, CocoIndex, rasterise, read_voc
from edge.errors import InvalidInput

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")   # .bmp: many line cameras save it
ARRAY_EXTENSIONS = (".npy", ".npz")
EXTENSIONS = IMAGE_EXTENSIONS + ARRAY_EXTENSIONS
MASK_SUFFIX = ".mask.png"
# How other tools name masks beside their images (MVTec AD "_mask", KolektorSDD "_label", "_gt"...): such a
# file next to its image would otherwise be trained on as one more image of the class.
FOREIGN_MASK_ENDINGS = ("_mask", "-mask", ".mask", "_label", "-label", "_gt", "-gt", "_seg", "_segmentation")
VOC_SUFFIX = ".xml"
# Files that may sit in a dataset without being samples.
IGNORED_NAMES = {"dataset.json", "README.md", "README.txt", ".DS_Store", "Thumbs.db"}
SAFE_CLASS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")     # a class folder's name on every file system
# `generator` of the recipe the simulator writes as DIR/dataset.json. Other tools write a dataset.json too
# (dataset --from-store, --tile): only the simulator's says the samples carry its ground-truth planes.
SIMULATOR = "edge-xai simulate"
# Simulator ground truth carried beside the channels (all optional for user data).
EXTRA_FIELDS = ("true_temperature", "unwrapped_phase", "physics_importance", "height", "edge_map")


class DatasetError(InvalidInput):
    """A dataset problem; the message names the file or folder at fault."""


@dataclass
class DatasetItem:
    path: Path
    label: str
    mask_path: Path | None = None
    voc_path: Path | None = None
    coco: Annotation | None = None     # this image's entry of the data set's COCO file
    coco_index: CocoIndex | None = None


@dataclass
class Sample:
    image: np.ndarray                 # (H, W, C) float32
    channel_names: tuple[str, ...]
    label: str
    mask: np.ndarray | None = None    # (H, W) bool
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # simulator ground truth
    meta: dict[str, object] = field(default_factory=dict)        # geometry, pixel_pitch_mm, ...
    path: Path | None = None
    boxes: list[Box] = field(default_factory=list)               # annotated defect boxes, frame pixels
    mask_kind: str | None = None                                  # "pixel", "box" or None (no ground truth)


def _has_image(folder: Path, stem: str) -> bool:
    """Whether `folder` holds a sample file of this stem (any of the sample extensions)."""
    return any((folder / (stem + ext)).exists() for ext in EXTENSIONS)


def scan(root: Path) -> list[DatasetItem]:
    """List a dataset folder's samples, checking its structure before anything is read."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    items: list[DatasetItem] = []
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DatasetError(f"{root}: no class folders; expected DIR/<class>/<stem>.<ext>")
    for f in root.iterdir():
        if f.is_file() and f.name not in IGNORED_NAMES and f.suffix.lower() in EXTENSIONS:
            raise DatasetError(f"{f}: sample outside a class folder; move it to DIR/<class>/")
    coco_path = CocoIndex.find(root)
    try:
        coco = CocoIndex.read(coco_path) if coco_path else None
    except AnnotationError as e:
        raise DatasetError(str(e)) from None
    for d in class_dirs:
        found = 0
        stems: dict[str, Path] = {}
        for f in sorted(d.iterdir()):
            name = f.name
            if f.is_dir() or name.startswith(".") or name in IGNORED_NAMES:
                continue
            if name.lower().endswith(MASK_SUFFIX) or name.lower().endswith(VOC_SUFFIX):
                suffix = MASK_SUFFIX if name.lower().endswith(MASK_SUFFIX) else VOC_SUFFIX
                stem = name[: -len(suffix)]
                if not _has_image(d, stem):
                    what = "mask" if suffix == MASK_SUFFIX else "VOC annotation"
                    raise DatasetError(f"{f}: {what} without an image of stem {stem!r}")
                continue
            ext = f.suffix.lower()
            if ext not in EXTENSIONS:
                raise DatasetError(f"{f}: unknown extension {f.suffix!r}; expected one of "
                                   f"{', '.join(EXTENSIONS)} (masks: <stem>{MASK_SUFFIX}, boxes: <stem>{VOC_SUFFIX})")
            stem = f.name[: -len(f.suffix)]
            if stem in stems:
                # e.g. the magnetic-tile set keeps each mask as <stem>.png beside its <stem>.jpg
                raise DatasetError(f"{stems[stem]} and {f.name} share the stem {stem!r}: if one is the other's mask, "
                                   f"rename it {stem}{MASK_SUFFIX}; otherwise give them different names")
            stems[stem] = f
            for ending in FOREIGN_MASK_ENDINGS:
                image = stem[: -len(ending)] if stem.lower().endswith(ending) else None
                if image and _has_image(d, image):
                    raise DatasetError(f"{f}: looks like the mask of {image!r} named another tool's way; rename it "
                                       f"{image}{MASK_SUFFIX} (edge-xai reads masks as <stem>{MASK_SUFFIX}), or move "
                                       "it out of the data set if it is an image")
            mask, voc = d / (stem + MASK_SUFFIX), d / (stem + VOC_SUFFIX)
            try:
                entry = coco.lookup(f, root) if coco else None
            except AnnotationError as e:
                raise DatasetError(str(e)) from None
            items.append(DatasetItem(f, d.name, mask if mask.exists() else None, voc if voc.exists() else None,
                                     entry, coco if entry else None))
            found += 1
        if found == 0:
            nested = sorted(sub.name for sub in d.iterdir() if sub.is_dir() and any(
                f.is_file() and f.suffix.lower() in EXTENSIONS for f in sub.iterdir()))
            deeper = _one_level_deeper(class_dirs)
            if deeper:
                # <class>/Imgs/...: each class's samples in one sub-folder of the same name (the magnetic-tile
                # set's MT_<class>/Imgs/), not a split: pointing at one folder would make that folder the class
                raise DatasetError(f"{d}: its samples sit one level deeper, in {d / deeper}, as in every class "
                                   f"folder of {root}: move them up into the class folders "
                                   f"(DIR/<class>/<stem>.<ext>), e.g. {d / deeper}/* into {d}/")
            if nested:
                # root/train/<class>/..., root/test/<class>/...: the layout many published sets come in
                example = next((p for p in class_dirs if p.name.lower() == "train"), d)
                raise DatasetError(f"{d}: holds folders of samples ({', '.join(nested[:4])}"
                                   f"{', ...' if len(nested) > 4 else ''}), not samples: {root} looks like a data set "
                                   f"split into {', '.join(p.name for p in class_dirs)}; point the command at one "
                                   f"split, whose folders are the classes (e.g. {example})")
            raise DatasetError(f"{d}: empty class folder (no samples with {', '.join(EXTENSIONS)})")
    return items


def sample_names(paths: Sequence[Path], root: Path) -> list[str]:
    """Each sample's file as the data set names it: relative to its root ("crack/017.png"). Links are not
    followed: a set of links to files elsewhere is named by its links. A file outside the root (a tile the
    audit cut into a temporary folder, "crack/017__y00256_x00512.png": the frame's stem and the tile's
    corner) is named by its class folder and name."""
    base = Path(root).absolute()
    out = []
    for p in paths:
        p = Path(p).absolute()
        try:
            out.append(p.relative_to(base).as_posix())
        except ValueError:
            out.append("/".join(p.parts[-2:]))
    return out


def _one_level_deeper(class_dirs: list[Path]) -> str | None:
    """The name of the one sub-folder every class folder holds its samples in (and nothing else), or None:
    a split set's folders each hold several class folders, one per class."""
    names = set()
    for d in class_dirs:
        subs = [p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")]
        files = [p for p in d.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS]
        if len(subs) != 1 or files:
            return None
        names.add(subs[0].name)
    return names.pop() if len(names) == 1 and len(class_dirs) > 1 else None


def simulator_recipe(root: Path) -> dict | None:
    """The simulator's recipe of data set `root` (DIR/dataset.json written by edge-xai simulate); None for
    any other folder, including those whose dataset.json another tool wrote."""
    path = Path(root) / "dataset.json"
    if not path.is_file():
        return None
    try:
        recipe = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable dataset.json ({exc})") from None
    return recipe if isinstance(recipe, dict) and recipe.get("generator") == SIMULATOR else None


def write_sample(stem: Path, names: Sequence[str], planes: Sequence[np.ndarray], pixel_pitch_mm: float | None = None,
                 extra: dict[str, np.ndarray] | None = None) -> Path:
    """One sample in the data set format at `stem` + .png or .npz; returns the path written. 8/16-bit planes
    of one type named as image files name them (`gray`, or c0..c2) become a PNG, as photographs are read;
    anything else an .npz with `channel_names`, each plane under its name, `pixel_pitch_mm` when given and
    `extra` arrays (e.g. the simulator's ground truth)."""
    planes = [np.asarray(p) for p in planes]
    integer = all(p.dtype in (np.uint8, np.uint16) for p in planes) and len({p.dtype for p in planes}) == 1
    stem.parent.mkdir(parents=True, exist_ok=True)
    if integer and tuple(names) in (("gray",), ("c0", "c1", "c2")) and not extra:
        path = stem.with_suffix(".png")
        img = planes[0] if len(planes) == 1 else np.stack(planes[::-1], axis=-1)     # OpenCV writes BGR
        if not cv2.imwrite(str(path), img):
            raise OSError(f"{path}: could not write the image")
        return path
    path = stem.with_suffix(".npz")
    pitch = {"pixel_pitch_mm": np.float64(pixel_pitch_mm)} if pixel_pitch_mm else {}
    np.savez_compressed(path, channel_names=np.array(list(names)), **dict(zip(names, planes)), **pitch,
                        **(extra or {}))
    return path


def generic_channel_names(count: int) -> tuple[str, ...]:
    """Names for channels of files that do not name them: 'gray' for one, c0..cN-1 otherwise."""
    return ("gray",) if count == 1 else tuple(f"c{i}" for i in range(count))


def _as_float(img: np.ndarray, path: Path) -> np.ndarray:
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0
    if np.issubdtype(img.dtype, np.floating):
        out = img.astype(np.float32)
        if not np.isfinite(out).all():
            raise DatasetError(f"{path}: image contains NaN or Inf")
        return out
    raise DatasetError(f"{path}: unsupported pixel type {img.dtype}; expected 8/16-bit or float")


def _hwc(img: np.ndarray, path: Path) -> np.ndarray:
    if img.ndim == 2:
        return img[:, :, None]
    if img.ndim == 3:
        # Channel-first arrays (C, H, W) with few channels are common in .npy files.
        if img.shape[0] <= 8 < img.shape[2]:
            img = np.transpose(img, (1, 2, 0))
        return img
    raise DatasetError(f"{path}: expected a 2-D or 3-D image, got shape {img.shape}")


def read_image(path: Path, scale: bool = True) -> tuple[np.ndarray, tuple[str, ...], dict, dict]:
    """Read one sample: (image HWC float32, channel names, extras, meta). scale=False: an 8/16-bit image
    keeps its integers (what a camera sends; the server scales them as this does)."""
    path = Path(path)
    ext = path.suffix.lower()
    extras: dict[str, np.ndarray] = {}
    meta: dict[str, object] = {}
    if ext in IMAGE_EXTENSIONS:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise DatasetError(f"{path}: unreadable image (corrupt or not a {ext} file)")
        img = _hwc(img, path)
        if img.shape[2] >= 3:  # OpenCV reads colour as BGR(A); report channels as stored
            img = np.concatenate([img[:, :, 2::-1], img[:, :, 3:]], axis=2)
        if img.shape[2] == 4 and ext in (".png",):
            img = img[:, :, :3]  # alpha is no measurement
        if img.shape[2] == 3 and (img[:, :, 0] == img[:, :, 1]).all() and (img[:, :, 0] == img[:, :, 2]).all():
            # A grayscale photograph saved as RGB (common for JPEG): one channel, not three copies of it
            # (three would triple the stem's work and give the model nothing new).
            img = img[:, :, :1]
        if not scale and img.dtype in (np.uint8, np.uint16):
            return img, generic_channel_names(img.shape[2]), extras, meta
        return _as_float(img, path), generic_channel_names(img.shape[2]), extras, meta
    if ext not in ARRAY_EXTENSIONS:
        raise DatasetError(f"{path}: unknown extension {path.suffix!r}; expected one of {', '.join(EXTENSIONS)}")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises several types for broken files
        raise DatasetError(f"{path}: unreadable array file ({exc})") from None
    if ext == ".npy":
        img = _hwc(np.asarray(data), path)
        return _as_float(img, path), generic_channel_names(img.shape[2]), extras, meta
    try:
        return _read_npz(data, path)
    except DatasetError:
        raise
    except (EOFError, OSError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
        # .npz members are read lazily: a truncated file (a copy or a run stopped halfway) fails only here
        raise DatasetError(f"{path}: unreadable .npz (truncated or corrupt: {type(exc).__name__}"
                           f"{': ' + str(exc) if str(exc) else ''})") from None


def _read_npz(data, path: Path) -> tuple[np.ndarray, tuple[str, ...], dict, dict]:
    extras: dict[str, np.ndarray] = {}
    meta: dict[str, object] = {}
    with data:
        keys = set(data.files)
        if "channel_names" in keys:
            names = tuple(str(n) for n in data["channel_names"])
            missing = [n for n in names if n not in keys]
            if missing:
                raise DatasetError(f"{path}: channel_names lists {missing} but the file has no such arrays")
            img = np.stack([np.asarray(data[n]) for n in names], axis=-1)
        elif "image" in keys:
            img = _hwc(np.asarray(data["image"]), path)
            names = generic_channel_names(img.shape[2])
        else:
            raise DatasetError(f"{path}: .npz needs 'channel_names' + named arrays, or an 'image' array; "
                               f"found {sorted(keys)}")
        for k in EXTRA_FIELDS:
            if k in keys:
                extras[k] = np.asarray(data[k])
        if "mask" in keys:
            extras["mask"] = np.asarray(data["mask"])
        for k in ("geometry", "pixel_pitch_mm", "artifact"):
            if k in keys:
                meta[k] = data[k].item()
        pitch = meta.get("pixel_pitch_mm")
        if pitch == 0:
            del meta["pixel_pitch_mm"]          # 0: not recorded, as in the service's Frame.pixel_pitch_mm
        elif pitch is not None and not (isinstance(pitch, (int, float)) and math.isfinite(pitch) and pitch > 0):
            # read as the frame's pitch everywhere (training's range, the served tiles): refused here, by name
            raise DatasetError(f"{path}: pixel_pitch_mm {pitch!r}: expected a positive number of mm per pixel "
                               "(0 where it is not known)")
    return _as_float(img, path), names, extras, meta


def read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if m is None:
        raise DatasetError(f"{path}: unreadable mask image")
    if m.ndim == 3:
        m = m.max(axis=2)
    if m.shape != shape:
        raise DatasetError(f"{path}: mask is {m.shape[1]}x{m.shape[0]} but its image is {shape[1]}x{shape[0]}")
    return m != 0


def read_boxes(item: DatasetItem, shape: tuple[int, int]) -> tuple[list[Box], np.ndarray | None]:
    """An item's annotated boxes (VOC and/or COCO) and, where COCO gives polygons or RLE, their pixel mask."""
    boxes: list[Box] = []
    pixel = None
    try:
        if item.voc_path is not None:
            boxes += read_voc(item.voc_path, shape).boxes
        if item.coco is not None:
            ann = item.coco_index.check_size(item.coco, item.path, shape)
            boxes += ann.boxes
            if ann.polygons or ann.rle_masks:
                pixel = ann.mask(shape)
    except AnnotationError as e:
        raise DatasetError(str(e)) from None
    return boxes, pixel


def load_sample(item: DatasetItem) -> Sample:
    img, names, extras, meta = read_image(item.path)
    shape = img.shape[:2]
    boxes, coco_mask = read_boxes(item, shape)
    mask, kind = None, None
    if item.mask_path is not None:
        mask, kind = read_mask(item.mask_path, shape), "pixel"
    elif "mask" in extras:
        mask, kind = extras.pop("mask") != 0, "pixel"
        if mask.shape != shape:
            raise DatasetError(f"{item.path}: mask array {mask.shape} differs from the image {shape}")
    elif coco_mask is not None:
        mask, kind = coco_mask, "pixel"
    elif boxes:
        mask, kind = rasterise(shape, boxes), "box"
    return Sample(img, names, item.label, mask, extras, meta, item.path, boxes, kind)
