"""The request decoder: every dtype and encoding, errors that name the field, and no other exception
for any input (hypothesis)."""
import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.serve.frames import FieldError, decode_frame, encode_frame
from edge.v1 import inspection_pb2 as pb

CH = ["thermal", "phase", "intensity"]


def planes(h=32, w=32, seed=0):
    rng = np.random.default_rng(seed)
    return {"thermal": 340 + 5 * rng.random((h, w)), "phase": rng.uniform(-3, 3, (h, w)), "intensity": rng.random((h, w))}


@pytest.mark.parametrize("dtype, tol", [("float32", 0), ("float16", 0.2)])
def test_round_trip_of_raw_tensors(dtype, tol):
    p = planes()
    x = decode_frame(encode_frame(p, dtype), CH, (32, 32))
    for i, c in enumerate(CH):
        np.testing.assert_allclose(x[i], p[c], atol=tol + 1e-6)


def test_integer_tensors_and_encoded_images():
    img8 = (np.arange(32 * 32) % 256).astype(np.uint8).reshape(32, 32)
    img16 = (np.arange(32 * 32) * 50).astype(np.uint16).reshape(32, 32)
    for frame in (encode_frame({"g": img8}, "uint8"), encode_frame({"g": img16}, "uint16"),
                  encode_frame({"g": img16}, encoding="png"), encode_frame({"g": img8}, encoding="png"),
                  encode_frame({"g": img16.astype(np.float32)}, encoding="tiff")):
        x = decode_frame(frame, ["g"], (32, 32))
        assert x.dtype == np.float32 and x.shape == (1, 32, 32)
    np.testing.assert_array_equal(decode_frame(encode_frame({"g": img16}, encoding="png"), ["g"], (32, 32))[0], img16)


def test_resized_to_the_model_and_wrapped_phase_as_a_phasor():
    p = planes(64, 64)
    x = decode_frame(encode_frame({"thermal": p["thermal"]}), ["thermal"], (32, 32))
    assert x.shape == (1, 32, 32) and abs(x.mean() - p["thermal"].mean()) < 0.1
    # a tilt of 0.4 rad per pixel, wrapped: averaging the wrapped values would smear every 2 pi jump,
    # the phasor keeps the phase of the downsampled tilt (0.8 rad per output pixel)
    yy, xx = np.mgrid[0:64, 0:64]
    true = 0.4 * xx + 0.1 * yy
    wrapped = np.angle(np.exp(1j * true)).astype(np.float32)
    got = decode_frame(encode_frame({"phase": wrapped}), ["phase"], (32, 32))[0]
    want = np.angle(np.exp(1j * (0.4 * (2 * np.arange(32)[None] + 0.5) + 0.1 * (2 * np.arange(32)[:, None] + 0.5))))
    err = np.angle(np.exp(1j * (got - want)))
    assert np.abs(err).max() < 1e-3


def test_pixel_pitch_plane():
    f = encode_frame({"thermal": planes()["thermal"]}, pixel_pitch_mm=0.1)
    x = decode_frame(f, ["thermal", "pixel_pitch_mm"], (32, 32))
    assert np.allclose(x[1], 0.1)
    with pytest.raises(FieldError, match=r"frame.pixel_pitch_mm: must be > 0"):
        decode_frame(encode_frame({"thermal": planes()["thermal"]}), ["thermal", "pixel_pitch_mm"], (32, 32))


def _tensor_frame(**tensor):
    f = pb.Frame()
    f.channels.add(name="thermal", tensor=pb.Tensor(**tensor))
    return f


@pytest.mark.parametrize("frame, field, message", [
    (pb.Frame(), "frame.channels", "is empty"),
    (_tensor_frame(dtype=pb.FLOAT32, shape=[4, 4], data=b"\0" * 63), "frame.channels[0].tensor.data", "has 63 bytes"),
    (_tensor_frame(dtype=pb.DTYPE_UNSPECIFIED, shape=[4, 4], data=b"\0" * 64), "frame.channels[0].tensor.dtype", "must be"),
    (_tensor_frame(dtype=pb.FLOAT32, shape=[4, 4, 1], data=b"\0" * 64), "frame.channels[0].tensor.shape", "(H, W)"),
    (_tensor_frame(dtype=pb.UINT8, shape=[8192, 4096], data=b""), "frame.channels[0].tensor.shape", "exceeds"),
])
def test_errors_name_the_field(frame, field, message):
    with pytest.raises(FieldError) as e:
        decode_frame(frame, ["thermal"], (4, 4))
    assert e.value.field == field and message in str(e.value)


def test_more_errors():
    f = encode_frame({"thermal": np.full((4, 4), np.nan, np.float32)})
    with pytest.raises(FieldError, match="NaN or Inf"):
        decode_frame(f, ["thermal"], (4, 4))
    f = pb.Frame()
    f.channels.add(name="thermal", image=pb.EncodedImage(encoding=pb.PNG, data=b"\x89PNG\r\n\x1a\n broken"))
    with pytest.raises(FieldError, match=r"frame.channels\[0\].image.data: is not a readable"):
        decode_frame(f, ["thermal"], (4, 4))
    ok, rgb = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))
    f = pb.Frame()
    f.channels.add(name="thermal", image=pb.EncodedImage(encoding=pb.PNG, data=rgb.tobytes()))
    with pytest.raises(FieldError, match="must hold one channel"):
        decode_frame(f, ["thermal"], (4, 4))
    f = encode_frame({"thermal": np.zeros((4, 4)), "phase": np.zeros((5, 5))})
    with pytest.raises(FieldError, match="differ in size"):
        decode_frame(f, ["thermal"], (4, 4))
    f = encode_frame({"thermal": np.zeros((4, 4))})
    f.channels.add().CopyFrom(f.channels[0])
    with pytest.raises(FieldError, match="appears twice"):
        decode_frame(f, ["thermal"], (4, 4))


def _png_header(h, w):
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 0, 0, 0, 0)                   # 16-bit gray
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))


def _tiff_header(h, w, order=">", big=False):
    """A TIFF's first directory with only its width (LONG, or LONG8 in a BigTIFF) and length (SHORT), in the
    given byte order."""
    import struct

    if big:
        head = (b"MM\0+" if order == ">" else b"II+\0") + struct.pack(order + "HHQ", 8, 0, 16)
        return head + struct.pack(order + "Q", 2) + struct.pack(order + "HHQQ", 256, 16, 1, w) \
            + struct.pack(order + "HHQ", 257, 3, 1) + struct.pack(order + "H6x", h)
    head = (b"MM\0*" if order == ">" else b"II*\0") + struct.pack(order + "I", 8)
    return head + struct.pack(order + "H", 2) + struct.pack(order + "HHII", 256, 4, 1, w) \
        + struct.pack(order + "HHI", 257, 3, 1) + struct.pack(order + "H2x", h)


@pytest.mark.parametrize("data", [
    _png_header(20000, 20000), _tiff_header(20000, 20000), _tiff_header(20000, 20000, "<"),
    _tiff_header(20000, 20000, big=True), _tiff_header(1, 20_000_000, "<", big=True)])
def test_an_oversize_image_is_refused_from_its_header_before_decoding(data):
    # a 0.8 MB PNG of zeros can hold 20000 x 20000 16-bit pixels: OpenCV took 12 s and 800 MB to inflate it
    # before the size was checked. The header alone now decides, so these headers without any pixel data are
    # refused for their size, not as unreadable.
    f = pb.Frame()
    f.channels.add(name="thermal", image=pb.EncodedImage(encoding=pb.TIFF if data[:1] in b"IM" else pb.PNG, data=data))
    with pytest.raises(FieldError, match=r"frame.channels\[0\].image.data: \d+x\d+ exceeds the 16777216-pixel limit"):
        decode_frame(f, ["thermal"], (4, 4))


def test_only_the_channels_a_model_reads_are_decoded_and_each_once(monkeypatch):
    import edge.serve.frames as frames

    img = (np.arange(32 * 32) % 256).astype(np.uint8).reshape(32, 32)
    f = encode_frame({"thermal": img, "phase": img, "preview": img}, encoding="png")
    f.channels[2].image.data = f.channels[2].image.data[:60]      # its header intact, its pixels cut off
    with pytest.raises(FieldError, match=r"frame.channels\[2\].image.data: is not a readable PNG/TIFF image \(corrupt"):
        decode_frame(f, ["preview"], (32, 32))
    calls = []
    real = frames.cv2.imdecode
    monkeypatch.setattr(frames.cv2, "imdecode", lambda *a: calls.append(1) or real(*a))
    decoded = {}
    a = frames.decode_planes(f, ["thermal"], decoded=decoded)           # the cut channel is not read
    b = decode_frame(f, ["phase", "thermal"], (16, 16), decoded=decoded)  # another model: thermal not again
    assert len(calls) == 2 and sorted(decoded) == [0, 1]
    np.testing.assert_array_equal(a[0], img)
    assert b.shape == (2, 16, 16)
    f.channels[2].image.data = b"not an image"           # every channel is still checked from its header
    with pytest.raises(FieldError, match=r"frame.channels\[2\].image.data: is not a readable"):
        decode_frame(f, ["thermal"], (32, 32))


def test_image_sizes_read_from_headers_match_the_decoded_images():
    from edge.serve.frames import encoded_size

    for dtype, exts in ((np.uint8, (".png", ".tiff")), (np.uint16, (".png", ".tiff")), (np.float32, (".tiff",))):
        for ext in exts:
            _, data = cv2.imencode(ext, np.zeros((37, 53), dtype))
            assert encoded_size(data.tobytes()) == (37, 53) == cv2.imdecode(data, cv2.IMREAD_UNCHANGED).shape
    assert encoded_size(_tiff_header(37, 53)) == encoded_size(_tiff_header(37, 53, "<", big=True)) == (37, 53)
    for bad in (b"", b"GIF89a", b"\x89PNG\r\n\x1a\n", _tiff_header(37, 53)[:20]):
        with pytest.raises(ValueError):
            encoded_size(bad)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(["thermal", "", "x"]), dtype=st.integers(-1, 6),
       shape=st.lists(st.integers(-1, 70), max_size=4), data=st.binary(max_size=600),
       encoding=st.integers(-1, 3), use_image=st.booleans(), pitch=st.floats(allow_nan=True))
def test_decoder_only_ever_raises_field_errors(name, dtype, shape, data, encoding, use_image, pitch):
    f = pb.Frame(pixel_pitch_mm=pitch)
    if use_image:
        f.channels.add(name=name, image=pb.EncodedImage(encoding=encoding if encoding >= 0 else 0, data=data))
    else:
        f.channels.add(name=name, tensor=pb.Tensor(dtype=dtype if dtype >= 0 else 0,
                                                    shape=[max(s, 0) for s in shape], data=data))
    try:
        x = decode_frame(f, ["thermal", "pixel_pitch_mm"], (8, 8))
    except FieldError:
        return
    assert x.shape == (2, 8, 8) and np.isfinite(x).all()


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=2000))
def test_arbitrary_bytes_as_a_message_never_crash_the_decoder(raw):
    from google.protobuf.message import DecodeError

    try:
        f = pb.Frame.FromString(raw)
    except DecodeError:
        return           # gRPC itself refuses such a message before the servicer sees it
    try:
        decode_frame(f, ["thermal"], (8, 8))
    except FieldError:
        pass
