"""The transform between frames and model inputs, without a model: letterbox and back, tiles and stitching."""
import numpy as np
import pytest

from edge.data.geometry import Placement, Tiling, should_tile, training_scale


def test_letterbox_keeps_the_aspect_and_maps_back_to_the_frame():
    frame = np.zeros((100, 300), np.float32)
    frame[40:60, 200:220] = 1.0                          # a hot spot
    p = Placement.fit(100, 300, 96)
    assert (p.h, p.w, p.top, p.left) == (32, 96, 32, 0)
    x = p.plane(frame)
    assert x.shape == (96, 96) and np.allclose(x[:32], frame.mean())      # margin: the frame's mean
    back = p.to_source(x)
    assert back.shape == (100, 300)
    r, c = np.unravel_index(np.argmax(back), back.shape)
    assert 40 <= r < 60 and 200 <= c < 220                # the spot is where it was on the frame
    assert not p.valid()[:32].any() and p.valid()[32:64].all()


def test_a_square_frame_is_only_resized():
    p = Placement.fit(256, 256, 128)
    assert not p.padded and p.scale == 0.5 and (p.top, p.left) == (0, 0)


def test_tiles_cover_the_frame_and_stitch_without_seams():
    t = Tiling.plan(2048, 2448, tile=200, scale=1.0)
    ys = sorted({y for y, _ in t.origins})
    xs = sorted({x for _, x in t.origins})
    assert ys[0] == 0 and ys[-1] == 2048 - 200 and xs[0] == 0 and xs[-1] == 2448 - 200
    assert max(np.diff(ys)) <= 150 and max(np.diff(xs)) <= 150          # >= 25 % overlap everywhere
    # a smooth map cut into tiles and stitched back is the same map: no seams at tile borders
    yy, xx = np.mgrid[0:2048, 0:2448].astype(np.float32)
    smooth = np.sin(yy / 300) + np.cos(xx / 400)
    crops = t.crops(smooth[None])[:, 0]
    back = t.stitch(crops)
    assert np.abs(back - smooth).max() < 1e-4


def test_a_hot_tile_lands_in_its_place_on_the_frame():
    t = Tiling.plan(600, 900, tile=128, scale=0.5)       # the frame is shrunk to the training scale first
    assert t.scaled_shape == (300, 450)
    k = len(t.origins) // 2
    maps = np.zeros((len(t.origins), 128, 128), np.float32)
    maps[k, 60:68, 60:68] = 1.0
    frame_map = t.stitch(maps)
    x0, y0, x1, y1 = t.box(k)
    rows, cols = np.nonzero(frame_map > 0.5)
    r, c = rows.mean(), cols.mean()                       # the spot's centre on the frame
    assert y0 <= r < y1 and x0 <= c < x1
    y, x = t.origins[k]
    assert abs(r - (y + 64) / 0.5) <= 1.5 and abs(c - (x + 64) / 0.5) <= 1.5


@pytest.mark.parametrize("shape, tiled", [((200, 200), False), ((260, 300), False), ((2048, 2448), True)])
def test_tiling_applies_to_frames_much_larger_than_the_training_images(shape, tiled):
    inp = {"size": [200, 200], "source_size": [200, 200]}
    assert training_scale(inp) == 1.0
    assert should_tile(*shape, inp) is tiled
    assert not should_tile(4000, 4000, {"size": [128, 128]})     # simulator models: no source size recorded


def test_frames_within_the_training_images_range_are_letterboxed_as_training_did():
    # trained whole on images of long side 150-600 px (typical 200): a 500 px frame is one of them, not tiles
    inp = {"size": [192, 192], "source_size": [150, 200], "source_long_max": 600}
    assert not should_tile(500, 300, inp) and not should_tile(600, 600, inp)
    assert should_tile(2048, 2448, inp)                 # beyond anything it was trained on
    # without the record (tiled training, models from before it): 1.5 x the typical long side
    assert should_tile(500, 300, {"size": [192, 192], "source_size": [150, 200]})
