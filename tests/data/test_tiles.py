"""Large frames cut into tiles for training: which tile holds a defect, annotations that follow, files a
user can train on, and nothing written on bad input."""
import csv
import json

import cv2
import numpy as np
import pytest

from edge.cli import main
from edge.data.annotations import Box
from edge.data.geometry import Tiling
from edge.data.loader import DatasetError, load_sample, scan
from edge.data.tiles import Window, box_status, mask_status, tile_dataset, windows
from edge.errors import InvalidInput, OutputExists


def test_windows_cover_the_frame_like_the_served_tiling():
    wins = windows(600, 900, 256)
    served = Tiling.plan(600, 900, tile=256, scale=1.0).origins
    assert [(w.y, w.x) for w in wins] == list(served)
    covered = np.zeros((600, 900), bool)
    for w in wins:
        assert (w.h, w.w) == (256, 256)
        covered[w.y:w.y + w.h, w.x:w.x + w.w] = True
    assert covered.all()
    # a side shorter than the tile is taken whole; a frame smaller than a tile is one tile
    assert {(w.h, w.w) for w in windows(100, 900, 256)} == {(100, 256)}
    assert windows(200, 150, 256) == [Window(0, 0, 200, 150)]


def test_a_tile_holds_a_defect_when_it_holds_half_of_it_or_a_long_stretch():
    mask = np.zeros((300, 600), bool)
    mask[10:20, 10:20] = True           # a spot wholly in the first window
    mask[200:204, 20:580] = True        # a crack across every window
    mask[100:110, 296:306] = True       # a spot split 6/4 between the middle window's edge and the last
    wins = [Window(0, 0, 300, 300), Window(0, 150, 300, 300), Window(0, 300, 300, 300)]
    assert mask_status(mask, wins) == ["defect", "defect", "defect"]
    only_spot = np.zeros_like(mask)
    only_spot[100:110, 296:306] = True
    # 4 of its 10 columns in the first window: a sliver there; 6 in the last: in it
    assert mask_status(only_spot, [Window(0, 0, 300, 300), Window(0, 300, 300, 300), Window(0, 0, 300, 100)]) == \
        ["ambiguous", "defect", "clean"]
    # boxes by the same rules
    boxes = [Box(296, 100, 306, 110)]
    assert box_status(boxes, [Window(0, 0, 300, 300), Window(0, 300, 300, 300), Window(0, 0, 300, 100)]) == \
        ["ambiguous", "defect", "clean"]
    assert box_status([Box(20, 200, 580, 204)], wins) == ["defect"] * 3


def _frames(root, depth=np.uint8):
    """A 600x900 data set: a defect-free frame, a crack frame (long line + spot, pixel mask) and a spot
    frame annotated by a VOC box."""
    rng = np.random.default_rng(0)
    top = 255 if depth == np.uint8 else 65535
    base = (rng.random((600, 900)) * top * 0.2 + top * 0.4).astype(depth)
    for c in ("ok", "crack", "spot"):
        (root / c).mkdir(parents=True)
    assert cv2.imwrite(str(root / "ok" / "a.png"), base)
    m = np.zeros((600, 900), np.uint8)
    m[100:104, 50:850] = 255
    m[500:510, 700:710] = 255
    crack = base.copy()
    crack[m > 0] = 0
    assert cv2.imwrite(str(root / "crack" / "b.png"), crack) and cv2.imwrite(str(root / "crack" / "b.mask.png"), m)
    spot = base.copy()
    spot[300:320, 400:420] = top
    assert cv2.imwrite(str(root / "spot" / "c.png"), spot)
    (root / "spot" / "c.xml").write_text(
        "<annotation><size><width>900</width><height>600</height><depth>1</depth></size><object><name>spot</name>"
        "<bndbox><xmin>401</xmin><ymin>301</ymin><xmax>420</xmax><ymax>320</ymax></bndbox></object></annotation>")
    return base, crack, m > 0, spot


def test_tiles_keep_pixels_masks_and_boxes_and_say_where_they_came_from(tmp_path):
    base, crack, mask, spot = _frames(tmp_path / "src", np.uint16)
    r = tile_dataset(tmp_path / "src", tmp_path / "out", 256, "ok", progress=False)
    wins = windows(600, 900, 256)
    assert r["frames"] == 3 and r["tiles"] == sum(r["classes"].values())
    with open(tmp_path / "out" / "tiles.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == r["tiles"] and json.loads((tmp_path / "out" / "dataset.json").read_text())["kind"] == "tiles"
    frames = {"ok/a.png": base, "crack/b.png": crack, "spot/c.png": spot}
    for row in rows:
        x, y, w, h = (int(row[k]) for k in ("x", "y", "width", "height"))
        tile = cv2.imread(str(tmp_path / "out" / row["tile"]), cv2.IMREAD_UNCHANGED)
        assert tile.dtype == np.uint16 and (tile == frames[row["source"]][y:y + h, x:x + w]).all()
    # every crack tile carries its part of the mask; clean tiles of the crack frame became ok tiles
    by_label = {}
    for item in scan(tmp_path / "out"):
        by_label.setdefault(item.label, []).append(load_sample(item))
    assert {s.label for s in by_label["crack"]} == {"crack"} and all(s.mask_kind == "pixel" for s in by_label["crack"])
    for s in by_label["crack"]:
        y, x = (int(v) for v in s.path.stem.split("__")[1].replace("y", "").replace("x", "").split("_"))
        assert (s.mask == mask[y:y + 256, x:x + 256]).all() and s.mask.any()
    assert len(by_label["crack"]) == sum(s == "defect" for s in mask_status(mask, wins))
    clean_crack_tiles = sum(s == "clean" for s in mask_status(mask, wins))
    assert sum(row["source"] == "crack/b.png" and row["label"] == "ok" for row in rows) == clean_crack_tiles
    # the box follows as a clipped VOC box, read back by the loader as box ground truth
    spots = by_label["spot"]
    assert spots and all(s.mask_kind == "box" and len(s.boxes) == 1 for s in spots)
    for s in spots:
        y, x = (int(v) for v in s.path.stem.split("__")[1].replace("y", "").replace("x", "").split("_"))
        b = s.boxes[0]
        assert (b.x0 + x, b.y0 + y) == (max(400, x), 300) and b.x1 + x == min(420, x + 256) and b.y1 + y == 320
    assert len(by_label["ok"]) == len(wins) + clean_crack_tiles + sum(s == "clean" for s in box_status(
        [Box(400, 300, 420, 320)], wins))
    assert r["left_out"]["ambiguous_tiles"] == len(wins) * 2 - clean_crack_tiles - len(by_label["crack"]) - \
        (len(by_label["ok"]) - len(wins) - clean_crack_tiles) - len(spots)
    assert r["left_out"]["defect_frames_without_a_defect_tile"] == 0


def test_a_defect_no_tile_holds_is_counted_not_lost_unsaid(tmp_path):
    """A 60 px square centred where four 128 px tiles meet (no overlap): each holds a quarter of it, 30 px
    across, under half a tile's side; no tile may carry the frame's class, and the summary says so."""
    (tmp_path / "src" / "ok").mkdir(parents=True)
    (tmp_path / "src" / "stain").mkdir(parents=True)
    assert cv2.imwrite(str(tmp_path / "src" / "ok" / "a.png"), np.full((256, 256), 90, np.uint8))
    m = np.zeros((256, 256), np.uint8)
    m[98:158, 98:158] = 255                       # 60 x 60, centred on (128, 128)
    assert cv2.imwrite(str(tmp_path / "src" / "stain" / "b.png"), np.where(m > 0, 200, 90).astype(np.uint8))
    assert cv2.imwrite(str(tmp_path / "src" / "stain" / "b.mask.png"), m)
    r = tile_dataset(tmp_path / "src", tmp_path / "out", 128, "ok", overlap=0.0, progress=False)
    assert r["left_out"]["defect_frames_without_a_defect_tile"] == 1 and r["left_out"]["ambiguous_tiles"] == 4
    assert "stain" not in r["classes"]


def test_without_a_defect_free_class_clean_tiles_are_left_out_or_go_to_a_named_one(tmp_path, capsys):
    _frames(tmp_path / "src")
    (tmp_path / "src" / "ok" / "a.png").rename(tmp_path / "src" / "crack" / "a_copy.png")
    (tmp_path / "src" / "ok").rmdir()
    (tmp_path / "src" / "crack" / "a_copy.png").unlink()
    assert main(["dataset", "--from-folder", str(tmp_path / "src"), "--tile", "256", "--out", str(tmp_path / "o1"),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "defect-free class: none" in out and "clean tiles without ok class" in out and "--ok-class NAME" in out
    assert sorted(p.name for p in (tmp_path / "o1").iterdir() if p.is_dir()) == ["crack", "spot"]
    assert main(["dataset", "--from-folder", str(tmp_path / "src"), "--tile", "256", "--out", str(tmp_path / "o2"),
                 "--ok-class", "good", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["classes"]["good"] > 0 and r["left_out"]["clean_tiles_without_ok_class"] == 0


def test_an_unannotated_defect_frame_is_named_and_nothing_is_written(tmp_path):
    _frames(tmp_path / "src")
    (tmp_path / "src" / "crack" / "b.mask.png").unlink()
    with pytest.raises(DatasetError, match=r"crack/b\.png: a defect image without a mask or boxes"):
        tile_dataset(tmp_path / "src", tmp_path / "out", 256, "ok", progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["src"]        # neither OUT nor its hidden staging folder
    r = tile_dataset(tmp_path / "src", tmp_path / "out", 256, "ok", unannotated="drop", progress=False)
    assert r["left_out"]["unannotated_frames"] == 1 and r["frames"] == 2 and "crack" not in r["classes"]


def test_float_frames_keep_their_channels_and_values(tmp_path):
    (tmp_path / "src" / "dent").mkdir(parents=True)
    rng = np.random.default_rng(1)
    planes = {"thermal": rng.normal(350, 2, (300, 500)).astype(np.float32),
              "phase": rng.normal(0, 1, (300, 500)).astype(np.float32)}
    mask = np.zeros((300, 500), bool)
    mask[140:150, 240:250] = True
    np.savez(tmp_path / "src" / "dent" / "p.npz", channel_names=np.array(["thermal", "phase"]), mask=mask,
             pixel_pitch_mm=np.float64(0.1), **planes)
    tile_dataset(tmp_path / "src", tmp_path / "out", 200, None, progress=False)
    item = scan(tmp_path / "out")[0]
    s = load_sample(item)
    y, x = (int(v) for v in item.path.stem.split("__")[1].replace("y", "").replace("x", "").split("_"))
    assert s.channel_names == ("thermal", "phase") and s.meta["pixel_pitch_mm"] == pytest.approx(0.1)
    assert np.array_equal(s.image[:, :, 0], planes["thermal"][y:y + 200, x:x + 200])
    assert s.mask is not None and (s.mask == mask[y:y + 200, x:x + 200]).all()


@pytest.mark.parametrize("kwargs, error, message", [
    ({"tile": 8}, InvalidInput, "--tile 8: expected a tile side between 32 and 4096"),
    ({"overlap": 1.0}, InvalidInput, "--overlap 1.0"),
    ({"unannotated": "keep"}, InvalidInput, "--unannotated 'keep'"),
    ({"ok_class": "../x"}, InvalidInput, "--ok-class '../x'"),
])
def test_bad_options_are_named(tmp_path, kwargs, error, message):
    _frames(tmp_path / "src")
    args = {"tile": 256, "ok_class": "ok", **kwargs}
    with pytest.raises(error, match=message.replace("(", r"\(").replace(".", r"\.")):
        tile_dataset(tmp_path / "src", tmp_path / "out", **args, progress=False)
    assert not (tmp_path / "out").exists()


def test_outputs_that_would_overwrite_or_nest_are_refused(tmp_path, capsys):
    _frames(tmp_path / "src")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x.txt").write_text("keep me")
    with pytest.raises(OutputExists):
        tile_dataset(tmp_path / "src", tmp_path / "used", 256, "ok", progress=False)
    assert (tmp_path / "used" / "x.txt").read_text() == "keep me"
    with pytest.raises(InvalidInput, match="lies inside the data set"):
        tile_dataset(tmp_path / "src", tmp_path / "src" / "tiles", 256, "ok", progress=False)
    assert main(["dataset", "--from-folder", str(tmp_path / "src"), "--out", str(tmp_path / "o")]) == 2
    assert "--from-folder needs --tile SIZE" in capsys.readouterr().err
    assert main(["dataset", "--from-folder", str(tmp_path / "src"), "--tile", "256", "--ok-class", "good",
                 "--out", str(tmp_path / "o")]) == 2
    assert "'ok' looks like the defect-free class already" in capsys.readouterr().err
    assert main(["dataset", "--from-folder", str(tmp_path / "src"), "--tile", "256", "--review", "r",
                 "--out", str(tmp_path / "o")]) == 2
    assert "--review applies to --from-store" in capsys.readouterr().err
    assert main(["dataset", "--from-store", str(tmp_path / "s.sqlite"), "--tile", "256",
                 "--out", str(tmp_path / "o")]) == 2
    assert "--tile applies to --from-folder" in capsys.readouterr().err


def test_coco_annotations_follow_as_masks_or_boxes(tmp_path):
    """A COCO file at the root: a polygon becomes each tile's pixel mask, a box its clipped VOC box."""
    (tmp_path / "src" / "dent").mkdir(parents=True)
    for name in ("poly", "box"):
        assert cv2.imwrite(str(tmp_path / "src" / "dent" / f"{name}.png"), np.full((200, 300), 100, np.uint8))
    (tmp_path / "src" / "annotations.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "dent/poly.png", "height": 200, "width": 300},
                   {"id": 2, "file_name": "dent/box.png", "height": 200, "width": 300}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[20, 20, 40, 20, 40, 30, 20, 30]]},
                        {"id": 2, "image_id": 2, "category_id": 1, "bbox": [250, 150, 20, 10]}],
        "categories": [{"id": 1, "name": "dent"}]}))
    r = tile_dataset(tmp_path / "src", tmp_path / "out", 128, None, progress=False)
    assert r["classes"] == {"dent": 2} and not (tmp_path / "out" / "annotations.json").exists()
    tiles = {s.path.stem.split("__")[0]: s for s in map(load_sample, scan(tmp_path / "out"))}
    assert tiles["poly"].mask_kind == "pixel" and tiles["poly"].mask[20:30, 20:40].all()
    assert tiles["poly"].mask.sum() == tiles["poly"].mask[20:31, 20:41].sum()       # nothing outside the polygon
    [b] = tiles["box"].boxes
    y, x = (int(v) for v in tiles["box"].path.stem.split("__")[1].replace("y", "").replace("x", "").split("_"))
    assert tiles["box"].mask_kind == "box" and (b.x0 + x, b.y0 + y, b.x1 + x, b.y1 + y) == (250, 150, 270, 160)


def test_frames_the_service_letterboxes_stay_whole(tmp_path):
    """keep_whole (the audit's cut): a frame whose long side is within it stays one sample, as served."""
    _frames(tmp_path / "src")
    r = tile_dataset(tmp_path / "src", tmp_path / "whole", 256, "ok", keep_whole=900, progress=False)
    assert r["tiles"] == 3 and r["classes"] == {"crack": 1, "ok": 1, "spot": 1}
    assert tile_dataset(tmp_path / "src", tmp_path / "cut", 256, "ok", keep_whole=899, progress=False)["tiles"] > 3


def test_the_audit_keeps_whole_the_frames_a_model_letterboxed_whole_in_training(tmp_path):
    """900 px frames, a model whose typical training image is 500 px: over 1.5x it, so cut, unless training
    letterboxed images up to 900 px whole (`source_long_max`), as the served path then reads them whole."""
    from edge.data.tiles import load_as_served

    _frames(tmp_path / "src")
    spec = {"size": [64, 64], "source_size": [500, 500]}
    cut, _ = load_as_served(tmp_path / "src", spec, "ok", ["gray"], progress=False)
    whole, summary = load_as_served(tmp_path / "src", {**spec, "source_long_max": 900}, "ok", ["gray"], progress=False)
    assert len(cut.x) > 3 and len(whole.x) == 3 and summary["tiles"] == 3


def test_a_frame_no_larger_than_a_tile_needs_no_annotation(tmp_path):
    """A defect frame that stays whole keeps its class without a mask; only frames that are cut need one."""
    _frames(tmp_path / "src")
    (tmp_path / "src" / "crack" / "b.mask.png").unlink()
    r = tile_dataset(tmp_path / "src", tmp_path / "out", 1024, "ok", progress=False)
    assert r["classes"] == {"crack": 1, "ok": 1, "spot": 1} and r["left_out"]["unannotated_frames"] == 0
    crack = [s for s in map(load_sample, scan(tmp_path / "out")) if s.label == "crack"]
    assert len(crack) == 1 and crack[0].mask is None
