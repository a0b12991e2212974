"""Frames from a camera of another resolution: with its pixel pitch and the model's known, a frame is judged
and tiled in the training images' pixels (`frame_view`), and its map still comes back in its own pixels.
No trained model needed: `frame_view` reads only the model's input spec and pitch."""
from types import SimpleNamespace

import numpy as np
import pytest

from edge.errors import InvalidInput
from edge.explain.frame import frame_view, pitch_ratio

SIZE = 48


def model(pitch=0.1, source=SIZE):
    """A model trained on SIZE px photographs of `source` px at `pitch` mm per pixel."""
    return SimpleNamespace(input_spec={"size": [SIZE, SIZE], "source_size": [source, source]}, pixel_pitch_mm=pitch,
                           manifest={"pixel_pitch_range_mm": None if pitch is None else [pitch, pitch]})


def planes(h, w):
    return np.random.default_rng(0).random((1, h, w), dtype=np.float32)


def test_the_ratio_is_the_frames_pitch_over_the_models_and_one_where_either_is_unknown():
    assert pitch_ratio(model(0.1), 0.05) == pytest.approx(0.5)
    assert pitch_ratio(model(0.1), None) == 1.0 and pitch_ratio(model(None), 0.05) == 1.0
    ranged = SimpleNamespace(manifest={"pixel_pitch_range_mm": [0.06, 0.12]})     # trained over a range
    assert pitch_ratio(ranged, 0.09) == 1.0 and pitch_ratio(ranged, 0.24) == pytest.approx(2.0)
    assert pitch_ratio(ranged, 0.03) == pytest.approx(0.5)
    for bad in (float("nan"), float("inf"), -0.1):
        with pytest.raises(InvalidInput, match="pixel_pitch_mm"):
            pitch_ratio(model(0.1), bad)


def test_a_finer_cameras_frame_of_the_same_field_is_read_whole_as_training_read_its_images():
    # 3x the resolution over a training image's field: 144 px at a third of the pitch
    assert frame_view(planes(144, 144), model(0.1)).tiling is not None            # taken at the training pitch
    view = frame_view(planes(144, 144), model(0.1), pixel_pitch_mm=0.1 / 3)
    assert view.tiling is None and view.x.shape == (1, 1, SIZE, SIZE) and view.shape == (144, 144)


def test_a_large_frame_at_a_finer_pitch_is_tiled_at_the_training_pitch_and_maps_back_to_its_own_pixels():
    frame = planes(480, 480)
    same = frame_view(frame, model(0.1), pixel_pitch_mm=0.1)
    finer = frame_view(frame, model(0.1), pixel_pitch_mm=0.05)      # the same 480 px cover half the field
    assert same.tiling.scale == pytest.approx(1.0) and finer.tiling.scale == pytest.approx(0.5)
    assert finer.tiling.scaled_shape == (240, 240) and len(finer.x) < len(same.x)
    x0, y0, x1, y1 = finer.tiling.box(0)
    assert (x1 - x0, y1 - y0) == (2 * SIZE, 2 * SIZE)               # a tile covers 96 of the frame's pixels
    m = np.zeros((SIZE, SIZE), np.float32)
    m[10, 20] = 1.0
    back = finer.to_frame(0, m)
    assert back.shape == (480, 480)
    r, c = np.unravel_index(np.argmax(back), back.shape)
    assert abs(r - 20) <= 2 and abs(c - 40) <= 2                     # the tile's pixel (10, 20) in frame pixels
    assert finer.scale == pytest.approx(0.5)                         # what sentences turn into millimetres


def test_simulator_models_read_their_model_sized_frames_as_before_whatever_the_pitch():
    sim = SimpleNamespace(input_spec={"size": [SIZE, SIZE]}, pixel_pitch_mm=0.09,   # no source_size
                          manifest={"pixel_pitch_range_mm": [0.06, 0.12]})
    view = frame_view(planes(SIZE, SIZE), sim, pixel_pitch_mm=0.18)
    assert view.tiling is None and view.x.shape == (1, 1, SIZE, SIZE)


def test_the_longest_side_read_whole_is_the_one_should_tile_reads_whole():
    from edge.data.geometry import longest_whole_side, should_tile

    for spec in ({"size": [SIZE, SIZE], "source_size": [100, 100]},                          # 1.5x the typical
                 {"size": [SIZE, SIZE], "source_size": [100, 60], "source_long_max": 230},    # the largest read whole
                 {"size": [64, 64], "source_size": [196.4, 98.2]}):                         # float scales
        n = longest_whole_side(spec)
        assert not should_tile(n, 1, spec) and not should_tile(1, n, spec)
        assert should_tile(n + 1, 1, spec) and should_tile(1, n + 1, spec)
    assert longest_whole_side({"size": [SIZE, SIZE], "source_size": [100, 60], "source_long_max": 230}) == 230
    assert longest_whole_side({"size": [SIZE, SIZE]}) is None                                 # never tiled


def test_each_file_is_served_at_its_own_recorded_pitch_else_the_data_sets():
    from edge.evaluate import frame_pitch, served_inputs

    meta = [{"pixel_pitch_mm": 0.05}, {}, {"geometry": "flat"}]
    assert [frame_pitch(m) for m in meta] == [0.05, None, None]
    assert [frame_pitch(m, 0.2) for m in meta] == [0.05, 0.2, 0.2]
    specs = served_inputs(model(0.1), meta, 0.2)
    assert [s["source_size"] for s in specs] == [[SIZE * 2, SIZE * 2], [SIZE / 2, SIZE / 2], [SIZE / 2, SIZE / 2]]
