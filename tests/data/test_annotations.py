"""Localisation ground truth as users have it: Pascal VOC boxes, COCO instances, pixel masks, mixed sizes,
classes without any annotation, and annotations that are wrong (named file, named problem)."""
import json

import cv2
import numpy as np
import pytest

from edge.data import loader
from edge.data.annotations import decode_rle, rasterise, read_voc, Box
from edge.data.arrays import load_arrays, survey


def voc(path, boxes, size=None, name="defect"):
    objs = "".join(f"<object><name>{name}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>"
                   f"<ymax>{b[3]}</ymax></bndbox></object>" for b in boxes)
    sz = f"<size><width>{size[1]}</width><height>{size[0]}</height><depth>1</depth></size>" if size else ""
    path.write_text(f"<annotation><filename>{path.stem}.png</filename>{sz}{objs}</annotation>")


def image(path, h, w, value=100):
    cv2.imwrite(str(path), np.full((h, w), value, np.uint8))


def test_voc_boxes_are_one_based_inclusive_and_become_filled_masks(tmp_path):
    (tmp_path / "scratch").mkdir()
    image(tmp_path / "scratch" / "a.png", 40, 60)
    voc(tmp_path / "scratch" / "a.xml", [(11, 21, 20, 25)], size=(40, 60))   # columns 11..20, rows 21..25 (1-based)
    [item] = loader.scan(tmp_path)
    s = loader.load_sample(item)
    assert s.mask_kind == "box" and s.boxes == [Box(10, 20, 20, 25, "defect")]
    assert s.mask.sum() == 10 * 5 and s.mask[20, 10] and s.mask[24, 19] and not s.mask[25, 19]


@pytest.mark.parametrize("xml, message", [
    ("<annotation><object><name>x</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>90</xmax><ymax>5</ymax>"
     "</bndbox></object></annotation>", "lies outside the 60x40 image"),
    ("<annotation><object><name>x</name><bndbox><xmin>9</xmin><ymin>1</ymin><xmax>4</xmax><ymax>5</ymax>"
     "</bndbox></object></annotation>", "is empty"),
    ("<annotation><object><name>x</name></object></annotation>", "has no <bndbox>"),
    ("<annotation><size><width>200</width><height>200</height></size></annotation>", "declares a 200x200 image"),
    ("<annotation><object>", "unreadable VOC XML"),
    ("<labels/>", "not a Pascal VOC annotation"),
])
def test_bad_voc_files_are_named_with_the_problem(tmp_path, xml, message):
    (tmp_path / "pit").mkdir()
    image(tmp_path / "pit" / "b.png", 40, 60)
    (tmp_path / "pit" / "b.xml").write_text(xml)
    [item] = loader.scan(tmp_path)
    with pytest.raises(loader.DatasetError, match=message) as e:
        loader.load_sample(item)
    assert "b.xml" in str(e.value)


def test_a_voc_file_without_its_image_is_named(tmp_path):
    (tmp_path / "pit").mkdir()
    image(tmp_path / "pit" / "b.png", 40, 60)
    voc(tmp_path / "pit" / "c.xml", [(1, 1, 4, 4)])
    with pytest.raises(loader.DatasetError, match="c.xml: VOC annotation without an image"):
        loader.scan(tmp_path)


def test_a_box_a_pixel_past_the_edge_is_clipped_not_refused(tmp_path):
    (tmp_path / "pit").mkdir()
    image(tmp_path / "pit" / "b.png", 40, 60)
    voc(tmp_path / "pit" / "b.xml", [(50, 30, 61, 41)])      # LabelImg rounds outwards at the border
    [item] = loader.scan(tmp_path)
    assert loader.load_sample(item).boxes[0].as_list() == [49, 29, 60, 40]


def _coco(root, images, annotations):
    (root / "annotations.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                       "categories": [{"id": 1, "name": "defect"}]}))


def test_coco_polygons_rle_and_boxes(tmp_path):
    for cls in ("crack", "ok"):
        (tmp_path / cls).mkdir()
    image(tmp_path / "crack" / "p.png", 20, 30)
    image(tmp_path / "crack" / "r.png", 20, 30)
    image(tmp_path / "crack" / "b.png", 20, 30)
    image(tmp_path / "ok" / "n.png", 20, 30)
    rle = np.zeros((20, 30), bool)
    rle[5:8, 10:12] = True
    flat = rle.T.ravel()                                     # COCO RLE runs are column-major
    runs, cur, n = [], False, 0
    for v in flat:
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    _coco(tmp_path, [{"id": 1, "file_name": "crack/p.png", "height": 20, "width": 30},
                     {"id": 2, "file_name": "r.png", "height": 20, "width": 30},
                     {"id": 3, "file_name": "b.png", "height": 20, "width": 30},
                     {"id": 4, "file_name": "ok/n.png", "height": 20, "width": 30}],
          [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[2, 2, 12, 2, 12, 6, 2, 6]]},
           {"id": 2, "image_id": 2, "category_id": 1, "segmentation": {"size": [20, 30], "counts": runs}},
           {"id": 3, "image_id": 3, "category_id": 1, "bbox": [3, 4, 5, 6]}])
    samples = {i.path.name: loader.load_sample(i) for i in loader.scan(tmp_path)}
    p, r, b, n = samples["p.png"], samples["r.png"], samples["b.png"], samples["n.png"]
    assert p.mask_kind == "pixel" and p.mask[4, 7] and not p.mask[10, 7] and p.boxes[0].as_list() == [2, 2, 12, 6]
    assert r.mask_kind == "pixel" and np.array_equal(r.mask, rle) and r.boxes[0].as_list() == [10, 5, 12, 8]
    assert b.mask_kind == "box" and b.mask.sum() == 30 and b.boxes[0].as_list() == [3, 4, 8, 10]
    assert n.mask is None and n.mask_kind is None          # a class without masks is fine


def test_coco_compressed_rle_string_decodes():
    """pycocotools' string form: 5-bit groups with a continuation bit, and counts after the second stored
    as deltas to the count two before (here runs 5, 2, 5, 3, 1 -> "5251L", the last delta negative)."""
    m = decode_rle("5251L", (4, 4), "test")
    flat = np.repeat([False, True, False, True, False], [5, 2, 5, 3, 1])
    assert np.array_equal(m, flat.reshape(4, 4).T)
    assert np.array_equal(decode_rle([5, 2, 5, 3, 1], (4, 4), "test"), m)


def test_coco_problems_are_named(tmp_path):
    (tmp_path / "crack").mkdir()
    image(tmp_path / "crack" / "p.png", 20, 30)
    (tmp_path / "annotations.json").write_text("{not json")
    with pytest.raises(loader.DatasetError, match="annotations.json: unreadable COCO JSON"):
        loader.scan(tmp_path)
    _coco(tmp_path, [{"id": 1, "file_name": "p.png"}], [{"id": 9, "image_id": 1, "bbox": [25, 0, 40, 5]}])
    [item] = loader.scan(tmp_path)
    with pytest.raises(loader.DatasetError, match=r"annotations.json \(image 'p.png'\): box .* lies outside"):
        loader.load_sample(item)


def test_mixed_sizes_keep_their_aspect_and_boxes_follow(tmp_path):
    """A 40x160 strip with a 4x4 defect box: letterboxed into 32x32 it stays 8 px tall (not stretched to
    32), the box moves with it, and the survey reports the true shapes."""
    for cls in ("ok", "dent"):
        (tmp_path / cls).mkdir()
    image(tmp_path / "ok" / "a.png", 64, 64)
    img = np.full((40, 160), 100, np.uint8)
    img[18:22, 78:82] = 250
    cv2.imwrite(str(tmp_path / "dent" / "s.png"), img)
    voc(tmp_path / "dent" / "s.xml", [(79, 19, 82, 22)])
    a = load_arrays(tmp_path, 32, progress=False)
    i = a.paths.index(tmp_path / "dent" / "s.png")
    p = a.placements[i]
    assert (p.h, p.w, p.top, p.left) == (8, 32, 12, 0)
    assert a.mask_kind[i] == "box" and a.masks[i].any() and not a.masks[i][:12].any()
    rows, cols = np.nonzero(a.masks[i])
    assert 12 <= rows.min() and rows.max() < 20 and 14 <= cols.min() and cols.max() <= 17
    b = a.boxes[i][0]
    assert (b.x0, b.y0, b.x1, b.y1) == pytest.approx((15.6, 15.6, 16.4, 16.4))
    assert abs(a.x[i, 0, 0, 0] - a.x[i, 0, 12:20].mean()) < 0.05     # margin: the image's mean
    found = survey(tmp_path, progress=False)
    assert sorted(found.shapes) == [(40, 160), (64, 64)] and found.defect_widths_px == [4.0] and found.photographs


def test_rasterise_fills_every_pixel_a_box_touches():
    m = rasterise((10, 10), [Box(1.5, 2.2, 3.1, 4.0)])
    assert m[2:4, 1:4].all() and m.sum() == 6


def test_read_voc_reads_neu_style_files(tmp_path):
    f = tmp_path / "crazing_1.xml"
    voc(f, [(60, 20, 194, 69), (9, 84, 197, 198)], size=(200, 200), name="inclusion")
    ann = read_voc(f, (200, 200))
    assert [b.as_list() for b in ann.boxes] == [[59, 19, 194, 69], [8, 83, 197, 198]]
    assert ann.boxes[0].name == "inclusion"     # the object's name is kept; the folder is the class


def test_a_gray_photograph_saved_as_rgb_is_one_channel_and_mixes_with_true_gray(tmp_path):
    for cls in ("ok", "pit"):
        (tmp_path / cls).mkdir()
    image(tmp_path / "ok" / "gray.png", 20, 20, 90)
    cv2.imwrite(str(tmp_path / "pit" / "rgb.jpg"), np.full((20, 20, 3), 140, np.uint8))
    a = load_arrays(tmp_path, 16, progress=False)
    assert a.channel_names == ("gray",) and a.x.shape == (2, 1, 16, 16)
    colour = np.zeros((20, 20, 3), np.uint8)
    colour[..., 2] = 200                                     # a real colour image keeps its channels
    cv2.imwrite(str(tmp_path / "pit" / "red.png"), colour)
    [s] = [loader.load_sample(i) for i in loader.scan(tmp_path) if i.path.name == "red.png"]
    assert s.channel_names == ("c0", "c1", "c2")
