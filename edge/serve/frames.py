"""Frames on the wire <-> arrays: decoding with errors that name the field, and encoding for stations.

    planes = decode_frame(request.frame, ["thermal", "phase", "intensity"], (128, 128))   # (C, H, W)
    frame = encode_frame({"thermal": t, "phase": p, "intensity": i}, dtype="float16")

Raw tensors are little-endian row-major (H, W) of uint8/uint16/float16/float32; encoded images are
single-channel PNG (8/16-bit) or TIFF (16-bit/float32). Values are physical units; nothing is
rescaled except the resampling to the model's input size. Wrapped phase is resampled as a phasor
(cos and sin separately, then atan2): interpolating the wrapped values directly would average across
the 2 pi jumps and invent phase that is not there.
"""
from __future__ import annotations

import cv2
import numpy as np

from edge.data.arrays import NO_RESIZE, SCALAR_PLANES
from edge.v1 import inspection_pb2 as pb

DTYPES = {pb.UINT8: np.dtype("<u1"), pb.UINT16: np.dtype("<u2"), pb.FLOAT16: np.dtype("<f2"),
          pb.FLOAT32: np.dtype("<f4")}
DTYPE_NAMES = {"uint8": pb.UINT8, "uint16": pb.UINT16, "float16": pb.FLOAT16, "float32": pb.FLOAT32}
MAX_PIXELS = 4 * 1024 * 1024   # 4 MPixel per channel


class FieldError(ValueError):
    """A request field that cannot be used; `field` is its path in the message."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def _decode_channel(ch: pb.Channel, where: str, max_pixels: int) -> np.ndarray:
    kind = ch.WhichOneof("payload")
    if kind is None:
        raise FieldError(where, "has neither a tensor nor an image")
    if kind == "tensor":
        t = ch.tensor
        if t.dtype not in DTYPES:
            raise FieldError(f"{where}.tensor.dtype", f"must be one of {', '.join(DTYPE_NAMES)}")
        if len(t.shape) != 2 or min(t.shape) < 1:
            raise FieldError(f"{where}.tensor.shape", f"must be (H, W) with H, W >= 1, got {list(t.shape)}")
        h, w = t.shape
        if h * w > max_pixels:
            raise FieldError(f"{where}.tensor.shape", f"{h}x{w} exceeds the {max_pixels}-pixel limit")
        dtype = DTYPES[t.dtype]
        if len(t.data) != h * w * dtype.itemsize:
            raise FieldError(f"{where}.tensor.data", f"has {len(t.data)} bytes, expected {h}x{w}x{dtype.itemsize} "
                                                      f"= {h * w * dtype.itemsize}")
        return np.frombuffer(t.data, dtype).reshape(h, w).astype(np.float32)
    img = ch.image
    if img.encoding not in (pb.PNG, pb.TIFF):
        raise FieldError(f"{where}.image.encoding", "must be PNG or TIFF")
    if not img.data:
        raise FieldError(f"{where}.image.data", "is empty")
    # Read the header first so an oversize image is refused before it is decompressed.
    arr = cv2.imdecode(np.frombuffer(img.data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise FieldError(f"{where}.image.data", "is not a readable PNG/TIFF image (corrupt or truncated)")
    if arr.ndim != 2:
        raise FieldError(f"{where}.image.data", f"must hold one channel, holds {arr.shape[2]}")
    if arr.shape[0] * arr.shape[1] > max_pixels:
        raise FieldError(f"{where}.image.data", f"{arr.shape[0]}x{arr.shape[1]} exceeds the {max_pixels}-pixel limit")
    return arr.astype(np.float32)


def decode_frame(frame: pb.Frame, channels: list[str], size: tuple[int, int],
                 max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The named channels of a frame as (C, H, W) float32 at the model's size, or a FieldError."""
    if not frame.channels:
        raise FieldError("frame.channels", "is empty")
    planes: dict[str, np.ndarray] = {}
    for i, ch in enumerate(frame.channels):
        where = f"frame.channels[{i}]"
        if not ch.name:
            raise FieldError(f"{where}.name", "is empty")
        if ch.name in planes:
            raise FieldError(f"{where}.name", f"channel {ch.name!r} appears twice")
        planes[ch.name] = _decode_channel(ch, where, max_pixels)
    shapes = {n: p.shape for n, p in planes.items()}
    if len(set(shapes.values())) > 1:
        raise FieldError("frame.channels", f"channels differ in size: {shapes}")
    h, w = next(iter(shapes.values()))
    out = np.empty((len(channels), *size), np.float32)
    for c, name in enumerate(channels):
        if name in SCALAR_PLANES:
            if not frame.pixel_pitch_mm > 0:
                raise FieldError("frame.pixel_pitch_mm", f"must be > 0: this model takes {name!r} as an input")
            out[c] = frame.pixel_pitch_mm
            continue
        if name not in planes:
            raise FieldError("frame.channels", f"has no channel {name!r} (model needs {', '.join(channels)}; "
                                               f"got {', '.join(planes)})")
        p = planes[name]
        if not np.isfinite(p).all():
            raise FieldError(f"frame.channels[{list(planes).index(name)}]", f"channel {name!r} contains NaN or Inf")
        if (h, w) != tuple(size):
            interp = cv2.INTER_AREA if h > size[0] else cv2.INTER_LINEAR
            if name in NO_RESIZE:
                c_, s_ = (cv2.resize(f(p), (size[1], size[0]), interpolation=interp) for f in (np.cos, np.sin))
                p = np.arctan2(s_, c_)
            else:
                p = cv2.resize(p, (size[1], size[0]), interpolation=interp)
        out[c] = p
    return out


def encode_frame(planes: dict[str, np.ndarray], dtype: str = "float32", pixel_pitch_mm: float = 0.0,
                 encoding: str | None = None) -> pb.Frame:
    """Arrays (H, W) per channel -> a Frame of raw tensors (dtype) or encoded images ('png', 'tiff')."""
    frame = pb.Frame(pixel_pitch_mm=pixel_pitch_mm)
    for name, a in planes.items():
        a = np.asarray(a)
        if encoding:
            ext = {"png": ".png", "tiff": ".tiff"}[encoding]
            ok, data = cv2.imencode(ext, a)
            if not ok:
                raise ValueError(f"channel {name!r}: OpenCV cannot encode {a.dtype} as {encoding}")
            frame.channels.add(name=name, image=pb.EncodedImage(
                encoding=pb.PNG if encoding == "png" else pb.TIFF, data=data.tobytes()))
        else:
            d = DTYPES[DTYPE_NAMES[dtype]]
            frame.channels.add(name=name, tensor=pb.Tensor(dtype=DTYPE_NAMES[dtype], shape=list(a.shape),
                                                          data=np.ascontiguousarray(a, d).tobytes()))
    return frame
