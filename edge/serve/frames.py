"""Frames on the wire <-> arrays: decoding with errors that name the field, and encoding for stations.

    planes = decode_planes(request.frame, ["thermal", "phase", "intensity"])        # (C, H, W), frame size
    x = decode_frame(request.frame, ["phase"], (128, 128))                           # resampled to a size
    frame = encode_frame({"thermal": t, "phase": p, "intensity": i}, dtype="float16")

Raw tensors are little-endian row-major (H, W) of uint8/uint16/float16/float32; encoded images are
single-channel PNG (8/16-bit) or TIFF (16-bit/float32). Values are physical units; nothing is
rescaled except the resampling to a regression model's input size, and 8/16-bit values for models
trained on photographs (scaled to [0, 1] by the type's range, as the loader does). Wrapped phase is resampled as a phasor
(cos and sin separately, then atan2): interpolating the wrapped values directly would average across
the 2 pi jumps and invent phase that is not there.
"""
from __future__ import annotations

import struct

import cv2
import numpy as np

from edge.data.arrays import NO_RESIZE, SCALAR_PLANES
from edge.errors import InvalidInput
from edge.explain.overlay import to_gray8
from edge.serve.inspector import png
from edge.v1 import inspection_pb2 as pb

DTYPES = {pb.UINT8: np.dtype("<u1"), pb.UINT16: np.dtype("<u2"), pb.FLOAT16: np.dtype("<f2"),
          pb.FLOAT32: np.dtype("<f4")}
DTYPE_NAMES = {"uint8": pb.UINT8, "uint16": pb.UINT16, "float16": pb.FLOAT16, "float32": pb.FLOAT32}
MAX_PIXELS = 16 * 1024 * 1024  # 16 MPixel per channel: line cameras' 2-5 MPixel frames and 8000x2000 lines
# The HMI's and the store's picture of a channel: large frames are shrunk to this long side (the
# heatmap keeps the frame's full size and is drawn scaled over it).
PREVIEW_MAX_PX = 1024


class FieldError(InvalidInput):
    """A request field that cannot be used; `field` is its path in the message."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def channel_shape(ch: pb.Channel, where: str, max_pixels: int) -> tuple[int, int]:
    """(H, W) of one channel, and every check that needs no decoding: the tensor's dtype, shape and byte
    count; the image's encoding and its header's size. An oversize image is refused here, before it is
    decompressed: a 0.8 MB PNG of zeros can hold 20000 x 20000 16-bit pixels, which OpenCV spent 12 s and
    800 MB inflating."""
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
        size = DTYPES[t.dtype].itemsize
        if len(t.data) != h * w * size:
            raise FieldError(f"{where}.tensor.data", f"has {len(t.data)} bytes, expected {h}x{w}x{size} = {h * w * size}")
        return h, w
    img = ch.image
    if img.encoding not in (pb.PNG, pb.TIFF):
        raise FieldError(f"{where}.image.encoding", "must be PNG or TIFF")
    if not img.data:
        raise FieldError(f"{where}.image.data", "is empty")
    try:
        h, w = encoded_size(img.data)
    except ValueError as e:
        raise FieldError(f"{where}.image.data", f"is not a readable PNG/TIFF image ({e})") from None
    if h * w > max_pixels:
        raise FieldError(f"{where}.image.data", f"{h}x{w} exceeds the {max_pixels}-pixel limit")
    return h, w


def decode_channel(ch: pb.Channel, where: str, max_pixels: int) -> np.ndarray:
    """One channel as stored (uint8 / uint16 / float16 / float32), (H, W)."""
    h, w = channel_shape(ch, where, max_pixels)
    if ch.WhichOneof("payload") == "tensor":
        return np.frombuffer(ch.tensor.data, DTYPES[ch.tensor.dtype]).reshape(h, w)
    arr = cv2.imdecode(np.frombuffer(ch.image.data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise FieldError(f"{where}.image.data", "is not a readable PNG/TIFF image (corrupt or truncated)")
    if arr.ndim != 2:
        raise FieldError(f"{where}.image.data", f"must hold one channel, holds {arr.shape[2]}")
    if arr.shape != (h, w):
        raise FieldError(f"{where}.image.data", f"decodes to {arr.shape[0]}x{arr.shape[1]} where its header says {h}x{w}")
    return arr


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TIFF_SIZE_TAGS = (256, 257)          # ImageWidth, ImageLength
TIFF_MAX_TAGS = 4096


def encoded_size(data: bytes) -> tuple[int, int]:
    """(H, W) of a PNG's or a TIFF's (first page's) image from its header alone, or ValueError saying what is
    wrong. PNG: the IHDR chunk that must open the stream; TIFF: the first image file directory (classic
    and BigTIFF, either byte order)."""
    if data[:8] == PNG_SIGNATURE:
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ValueError("no PNG header")
        w, h = struct.unpack(">II", data[16:24])
        return h, w
    if data[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return _tiff_size(data)
    raise ValueError("neither a PNG nor a TIFF signature")


def _tiff_size(data: bytes) -> tuple[int, int]:
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\0", b"\0+")                       # BigTIFF: 8-byte offsets and counts
    try:
        if big:
            (ifd,) = struct.unpack_from(order + "Q", data, 8)
            (count,) = struct.unpack_from(order + "Q", data, ifd)
            first, size, entry = ifd + 8, 20, order + "HHQ8s"
        else:
            (ifd,) = struct.unpack_from(order + "I", data, 4)
            (count,) = struct.unpack_from(order + "H", data, ifd)
            first, size, entry = ifd + 2, 12, order + "HHI4s"
        found: dict[int, int] = {}
        # real directories hold a few dozen tags; a crafted count must not make this a long loop
        for i in range(min(count, (len(data) - first) // size, TIFF_MAX_TAGS)):
            tag, kind, n, value = struct.unpack_from(entry, data, first + i * size)
            if tag in TIFF_SIZE_TAGS and n == 1:
                # SHORT, LONG or LONG8, left-justified in the value field
                fmt = {3: "H", 4: "I", 16: "Q"}.get(kind)
                if fmt is None or struct.calcsize(fmt) > len(value):
                    raise ValueError(f"TIFF tag {tag} of type {kind}")
                found[tag] = struct.unpack_from(order + fmt, value)[0]
                if len(found) == len(TIFF_SIZE_TAGS):
                    break
    except struct.error:
        raise ValueError("truncated TIFF header") from None
    if set(found) != set(TIFF_SIZE_TAGS):
        raise ValueError("TIFF without its image width and length")
    return found[257], found[256]


def _as_float(p: np.ndarray, integer_scaling: bool) -> np.ndarray:
    # Models trained on 8/16-bit photographs saw values scaled to [0, 1] by the type's range (the
    # loader's rule); a station sending the same camera's raw integers must reach the model the same way.
    if integer_scaling and p.dtype in (np.uint8, np.uint16):
        return p.astype(np.float32) / np.float32(np.iinfo(p.dtype).max)
    return p.astype(np.float32)


def preview_plane(p: np.ndarray) -> np.ndarray:
    """A channel shrunk (area averaging) to at most PREVIEW_MAX_PX on its long side, aspect kept."""
    h, w = p.shape
    if max(h, w) <= PREVIEW_MAX_PX:
        return p
    f = PREVIEW_MAX_PX / max(h, w)
    return cv2.resize(p, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)


def preview_pngs(planes: dict[str, np.ndarray]) -> dict[str, bytes]:
    """channel -> 8-bit PNG of its (preview_plane-shrunk) plane, stretched between its 1st and 99th
    percentiles: what the store keeps beside an inspection and the HMI shows under its heatmap."""
    return {name: png(to_gray8(p)) for name, p in planes.items()}


def decode_planes(frame: pb.Frame, channels: list[str], integer_scaling: bool = False,
                  max_pixels: int = MAX_PIXELS, decoded: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """The named channels of a frame as (C, H, W) float32 at the frame's own size, or a FieldError.
    Per-frame scalars a model takes as planes (pixel pitch) come as constant planes. Every channel of the
    frame is checked and sized from its header; only the named ones are decoded (a station may send
    channels another model reads). `decoded`: channel index -> decoded array, shared by the calls for one
    request so that a frame read by several models is decoded once."""
    if not frame.channels:
        raise FieldError("frame.channels", "is empty")
    index: dict[str, int] = {}
    shapes: dict[str, tuple[int, int]] = {}
    for i, ch in enumerate(frame.channels):
        where = f"frame.channels[{i}]"
        if not ch.name:
            raise FieldError(f"{where}.name", "is empty")
        if ch.name in index:
            raise FieldError(f"{where}.name", f"channel {ch.name!r} appears twice")
        index[ch.name] = i
        shapes[ch.name] = channel_shape(ch, where, max_pixels)
    if len(set(shapes.values())) > 1:
        raise FieldError("frame.channels", f"channels differ in size: {shapes}")
    h, w = next(iter(shapes.values()))
    decoded = {} if decoded is None else decoded
    out = np.empty((len(channels), h, w), np.float32)
    for c, name in enumerate(channels):
        if name in SCALAR_PLANES:
            if not frame.pixel_pitch_mm > 0:
                raise FieldError("frame.pixel_pitch_mm", f"must be > 0: this model takes {name!r} as an input")
            out[c] = frame.pixel_pitch_mm
            continue
        if name not in index:
            raise FieldError("frame.channels", f"has no channel {name!r} (model needs {', '.join(channels)}; "
                                               f"got {', '.join(index)})")
        i = index[name]
        if i not in decoded:
            decoded[i] = decode_channel(frame.channels[i], f"frame.channels[{i}]", max_pixels)
        p = _as_float(decoded[i], integer_scaling)
        if not np.isfinite(p).all():
            raise FieldError(f"frame.channels[{i}]", f"channel {name!r} contains NaN or Inf")
        out[c] = p
    return out


def decode_frame(frame: pb.Frame, channels: list[str], size: tuple[int, int],
                 max_pixels: int = MAX_PIXELS, decoded: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """The named channels of a frame as (C, H, W) float32 resampled to `size` (the regression models'
    input: dense outputs at the model's own grid), or a FieldError. `decoded` as for decode_planes."""
    planes = decode_planes(frame, channels, max_pixels=max_pixels, decoded=decoded)
    h, w = planes.shape[1:]
    if (h, w) == tuple(size):
        return planes
    out = np.empty((len(channels), *size), np.float32)
    interp = cv2.INTER_AREA if h > size[0] else cv2.INTER_LINEAR
    for c, (name, p) in enumerate(zip(channels, planes)):
        if name in NO_RESIZE:
            c_, s_ = (cv2.resize(f(p), (size[1], size[0]), interpolation=interp) for f in (np.cos, np.sin))
            out[c] = np.arctan2(s_, c_)
        else:
            out[c] = cv2.resize(p, (size[1], size[0]), interpolation=interp)
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
                raise InvalidInput(f"channel {name!r}: OpenCV cannot encode {a.dtype} as {encoding}")
            frame.channels.add(name=name, image=pb.EncodedImage(
                encoding=pb.PNG if encoding == "png" else pb.TIFF, data=data.tobytes()))
        else:
            d = DTYPES[DTYPE_NAMES[dtype]]
            frame.channels.add(name=name, tensor=pb.Tensor(dtype=DTYPE_NAMES[dtype], shape=list(a.shape),
                                                          data=np.ascontiguousarray(a, d).tobytes()))
    return frame
