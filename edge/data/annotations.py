"""Localisation ground truth as users have it: Pascal VOC boxes beside each image, a COCO instances file
at the data set's root, or a pixel mask (`<stem>.mask.png`, read by the loader).

    boxes = read_voc(Path("train/crazing/crazing_10.xml"), (200, 200))
    coco = CocoIndex.read(Path("data/annotations.json"), Path("data"))
    mask = rasterise((h, w), boxes)                  # filled boxes, the mask a box annotation implies

The folder is the class; the object names in an annotation only say "defective surface here" (real
labels disagree with their folders now and then, and the class decision is the folder's). Every
problem is reported with the file and what is wrong in it.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge.errors import InvalidInput

# Annotation tools round box corners outwards and VOC counts pixels from 1: a corner up to this many
# pixels outside the image is clipped; farther out is an error (the box belongs to another image size).
EDGE_SLACK_PX = 2.0
COCO_NAMES = ("annotations.json", "instances.json", "coco.json")


class AnnotationError(InvalidInput):
    """An unusable annotation; the message names the file and the problem."""


@dataclass(frozen=True)
class Box:
    """A defect box in pixel coordinates of its image: [x0, x1) x [y0, y1), floats."""
    x0: float
    y0: float
    x1: float
    y1: float
    name: str = ""

    def scaled(self, scale: float, left: float = 0.0, top: float = 0.0) -> "Box":
        return Box(self.x0 * scale + left, self.y0 * scale + top, self.x1 * scale + left, self.y1 * scale + top,
                   self.name)

    def as_list(self) -> list[float]:
        return [self.x0, self.y0, self.x1, self.y1]


@dataclass
class Annotation:
    """One image's ground truth: boxes always (a polygon's or mask's bounding box), polygons when given."""
    boxes: list[Box] = field(default_factory=list)
    polygons: list[np.ndarray] = field(default_factory=list)   # (K, 2) x, y
    rle_masks: list[np.ndarray] = field(default_factory=list)  # (H, W) bool, decoded COCO RLE
    source: str = ""

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """The defect mask these annotations imply: polygons and RLE masks where given, else filled boxes."""
        out = rasterise(shape, [] if (self.polygons or self.rle_masks) else self.boxes, self.polygons)
        for m in self.rle_masks:
            out |= m
        return out


def _checked_box(x0: float, y0: float, x1: float, y1: float, shape: tuple[int, int], where: str, name: str) -> Box:
    h, w = shape
    if not (x1 > x0 and y1 > y0):
        raise AnnotationError(f"{where}: box {name!r} [{x0:g}, {y0:g}, {x1:g}, {y1:g}] is empty "
                              "(xmax must exceed xmin and ymax ymin)")
    if x0 < -EDGE_SLACK_PX or y0 < -EDGE_SLACK_PX or x1 > w + EDGE_SLACK_PX or y1 > h + EDGE_SLACK_PX:
        raise AnnotationError(f"{where}: box {name!r} [{x0:g}, {y0:g}, {x1:g}, {y1:g}] lies outside the "
                              f"{w}x{h} image")
    return Box(max(x0, 0.0), max(y0, 0.0), min(x1, float(w)), min(y1, float(h)), name)


def read_voc(path: Path, shape: tuple[int, int]) -> Annotation:
    """Pascal VOC XML (LabelImg, CVAT): every <object>'s <bndbox>, 1-based inclusive corners, as boxes in
    0-based half-open pixel coordinates of an image of `shape` (H, W)."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise AnnotationError(f"{path}: unreadable VOC XML ({exc})") from None
    if root.tag != "annotation":
        raise AnnotationError(f"{path}: not a Pascal VOC annotation (root element <{root.tag}>)")
    size = root.find("size")
    if size is not None and size.findtext("width") and size.findtext("height"):
        try:
            declared = (int(float(size.findtext("height"))), int(float(size.findtext("width"))))
        except ValueError:
            raise AnnotationError(f"{path}: <size> is not numeric") from None
        # 0x0 is what some exporters write when they did not know; anything else must match.
        if declared != (0, 0) and declared != tuple(shape):
            raise AnnotationError(f"{path}: declares a {declared[1]}x{declared[0]} image but the image is "
                                  f"{shape[1]}x{shape[0]}")
    boxes = []
    for k, obj in enumerate(root.iter("object")):
        name = obj.findtext("name", default="")
        bb = obj.find("bndbox")
        if bb is None:
            raise AnnotationError(f"{path}: object {k} ({name!r}) has no <bndbox>")
        try:
            x0, y0, x1, y1 = (float(bb.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            raise AnnotationError(f"{path}: object {k} ({name!r}) needs numeric xmin, ymin, xmax, ymax") from None
        # VOC corners are 1-based and inclusive: pixel columns xmin..xmax -> [xmin - 1, xmax).
        boxes.append(_checked_box(x0 - 1, y0 - 1, x1, y1, shape, str(path), name))
    return Annotation(boxes=boxes, source=str(path))


def decode_rle(counts, shape: tuple[int, int], where: str) -> np.ndarray:
    """COCO run-length encoding (list of counts, or the compressed string) -> (H, W) bool, column-major."""
    h, w = shape
    if isinstance(counts, str):
        counts = _rle_string_counts(counts, where)
    runs = np.asarray(counts, np.int64)
    if runs.ndim != 1 or (runs < 0).any() or runs.sum() != h * w:
        raise AnnotationError(f"{where}: RLE counts do not cover a {w}x{h} image")
    values = np.zeros(len(runs), bool)
    values[1::2] = True
    flat = np.repeat(values, runs)
    return flat.reshape(w, h).T.copy()


def _rle_string_counts(s: str, where: str) -> list[int]:
    """The compressed COCO RLE string (pycocotools' LEB128-like encoding with deltas)."""
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            if p >= len(s):
                raise AnnotationError(f"{where}: truncated compressed RLE string")
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


class CocoIndex:
    """A COCO instances file: annotations per image file, looked up by path relative to the data root
    (or by file name where that is unique)."""

    def __init__(self, path: Path, by_name: dict[str, dict], annotations: dict[int, list[dict]]):
        self.path = path
        self._by_name = by_name
        self._annotations = annotations

    @staticmethod
    def find(root: Path) -> Path | None:
        """The COCO file at a data set's root, if it has one."""
        for name in COCO_NAMES:
            if (Path(root) / name).is_file():
                return Path(root) / name
        return None

    @classmethod
    def read(cls, path: Path) -> "CocoIndex":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise AnnotationError(f"{path}: unreadable COCO JSON ({exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
                or not isinstance(data.get("annotations"), list):
            raise AnnotationError(f"{path}: not a COCO instances file (needs 'images' and 'annotations' lists)")
        by_name: dict[str, dict] = {}
        for k, im in enumerate(data["images"]):
            if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
                raise AnnotationError(f"{path}: images[{k}] needs 'id' and 'file_name'")
            rel = str(im["file_name"]).replace("\\", "/").lstrip("./")
            by_name[rel] = im
            base = rel.rsplit("/", 1)[-1]
            # a bare file name matches only when no other image has it
            by_name[base] = im if base not in by_name or by_name[base] is im else {"ambiguous": True}
        annotations: dict[int, list[dict]] = {}
        for k, a in enumerate(data["annotations"]):
            if not isinstance(a, dict) or "image_id" not in a:
                raise AnnotationError(f"{path}: annotations[{k}] has no 'image_id'")
            annotations.setdefault(a["image_id"], []).append(a)
        return cls(path, by_name, annotations)

    def lookup(self, image: Path, root: Path) -> Annotation | None:
        """The annotations of one image file of the data set (None if the file is not listed)."""
        rel = Path(image).relative_to(root).as_posix()
        im = self._by_name.get(rel) or self._by_name.get(Path(image).name)
        if im is None:
            return None
        if im.get("ambiguous"):
            raise AnnotationError(f"{self.path}: several images are named {Path(image).name!r}; give file_name "
                                  "relative to the data set's root")
        return self._annotation(im)

    def _annotation(self, im: dict) -> Annotation:
        where = f"{self.path} (image {im['file_name']!r})"
        shape = (int(im.get("height", 0)), int(im.get("width", 0)))
        out = Annotation(source=str(self.path))
        for a in self._annotations.get(im["id"], []):
            seg = a.get("segmentation")
            if isinstance(seg, dict) and "counts" in seg:
                size = tuple(seg.get("size", shape))
                out.rle_masks.append(decode_rle(seg["counts"], size, where))
                ys, xs = np.nonzero(out.rle_masks[-1])
                if len(xs):
                    out.boxes.append(Box(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)))
                continue
            polygons = []
            if isinstance(seg, list) and seg:
                for poly in seg:
                    pts = np.asarray(poly, np.float64)
                    if pts.ndim != 1 or len(pts) < 6 or len(pts) % 2:
                        raise AnnotationError(f"{where}: annotation {a.get('id')} has a polygon with "
                                              f"{len(pts)} coordinates (needs x, y pairs, at least 3 points)")
                    polygons.append(pts.reshape(-1, 2))
            out.polygons += polygons
            bbox = a.get("bbox")
            if bbox is None and polygons:
                pts = np.concatenate(polygons)
                out.boxes.append(Box(*pts.min(axis=0), *pts.max(axis=0)))
            if bbox is not None:
                if not (isinstance(bbox, list) and len(bbox) == 4):
                    raise AnnotationError(f"{where}: annotation {a.get('id')} bbox must be [x, y, width, height]")
                x, y, bw, bh = (float(v) for v in bbox)
                out.boxes.append(Box(x, y, x + bw, y + bh, str(a.get("category_id", ""))))
        return out

    def check_size(self, ann: Annotation, image: Path, shape: tuple[int, int]) -> Annotation:
        """Boxes checked against the real image size (and clipped within the slack)."""
        where = f"{self.path} (image {Path(image).name!r})"
        for m in ann.rle_masks:
            if m.shape != tuple(shape):
                raise AnnotationError(f"{where}: RLE mask is {m.shape[1]}x{m.shape[0]}, the image {shape[1]}x{shape[0]}")
        ann.boxes = [_checked_box(b.x0, b.y0, b.x1, b.y1, shape, where, b.name) for b in ann.boxes]
        return ann


def rasterise(shape: tuple[int, int], boxes: list[Box] = (), polygons: list[np.ndarray] = ()) -> np.ndarray:
    """(H, W) bool: filled boxes (every pixel a box touches) and filled polygons."""
    h, w = shape
    out = np.zeros((h, w), np.uint8)
    for b in boxes:
        x0, y0 = int(np.floor(b.x0)), int(np.floor(b.y0))
        x1, y1 = int(np.ceil(b.x1)), int(np.ceil(b.y1))
        out[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)] = 1
    if len(polygons):
        cv2.fillPoly(out, [np.round(p).astype(np.int32) for p in polygons], 1)
    return out.astype(bool)
