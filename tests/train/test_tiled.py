"""Training cuts large frames into tiles by itself where their defects would vanish letterboxed whole:
training and validation frames apart, clean tiles thinned with their counts given back, nothing left
behind, and a model whose served path reads frames in tiles at the training scale."""
import json

import cv2
import numpy as np
import pytest

from edge.cli import main
from edge.data.arrays import survey
from edge.train.tiled import TrainingTiles
from edge.train.train import _split


def _frames(root, n=5, shape=(200, 240)):
    """n frames per class of `shape`: defect-free, a 3 px crack and a 4 px spot, with pixel masks."""
    rng = np.random.default_rng(1)
    h, w = shape
    for c in ("ok", "crack", "spot"):
        (root / c).mkdir(parents=True)
        for i in range(n):
            img = (rng.random((h, w)) * 40 + 100).astype(np.uint8)
            m = np.zeros((h, w), np.uint8)
            y, x = int(rng.integers(20, h - 24)), int(rng.integers(20, w - 100))
            if c == "crack":
                m[y:y + 3, x:x + 80] = 255
            elif c == "spot":
                m[y:y + 4, x:x + 4] = 255
            img[m > 0] = 10
            assert cv2.imwrite(str(root / c / f"{c}{i}.png"), img)
            if c != "ok":
                assert cv2.imwrite(str(root / c / f"{c}{i}.mask.png"), m)


def _sources(folder):
    rows = (folder / "tiles.csv").read_text().splitlines()[1:]
    return {r.split(",")[1] for r in rows}


def test_training_and_validation_frames_are_cut_apart_and_the_tiles_removed_after(tmp_path):
    _frames(tmp_path / "data")
    found = survey(tmp_path / "data", progress=False)
    tr, va = _split(found.labels, 0.2, 0)
    with TrainingTiles.cut(tmp_path / "data", found, 64, "ok", tr, va, 0, tmp_path / "work", progress=False) as tiles:
        train_src, val_src = _sources(tiles.root / "train"), _sources(tiles.root / "val")
        assert train_src and val_src and not train_src & val_src        # no frame's pixels on both sides
        assert len(val_src) == len(va) == 3                              # one frame per class
        arrays, tri, vai = tiles.load(64, None, progress=False)
        assert arrays.x.shape[1:] == (1, 64, 64) and len(tri) == tiles.describe()["train"]["tiles"]
        assert len(vai) == tiles.describe()["val"]["tiles"] and set(arrays.labels[len(tri):]) == {"ok", "crack", "spot"}
        assert all(tiles.root / "train" in p.parents for p in arrays.paths[:len(tri)])
        assert all(tiles.root / "val" in p.parents for p in arrays.paths[len(tri):])
        assert tiles.survey.shapes[0] == (64, 64) and tiles.clean_share == 1.0
    assert not (tmp_path / "work").exists()


def test_clean_tiles_beyond_the_cap_are_thinned_on_both_sides_and_counted_back(tmp_path):
    _frames(tmp_path / "data")
    found = survey(tmp_path / "data", progress=False)
    tr, va = _split(found.labels, 0.2, 0)
    with TrainingTiles.cut(tmp_path / "data", found, 64, "ok", tr, va, 0, tmp_path / "work", progress=False) as full:
        whole = full.describe()
    with TrainingTiles.cut(tmp_path / "data", found, 64, "ok", tr, va, 0, tmp_path / "work", progress=False,
                           max_tiles=100) as thin:
        d = thin.describe()
        defects = whole["train"]["classes"]["crack"] + whole["train"]["classes"]["spot"]
        clean = whole["train"]["classes"]["ok"]
        assert thin.clean_share == pytest.approx((100 - defects) / clean)
        kept = sum(1 for _ in (thin.root / "train" / "ok").iterdir())
        assert kept + defects == 100 and d["train"]["clean_tiles_removed"] == clean - kept
        assert d["val"]["clean_tiles_removed"] > 0                       # the same share on the other side
        counts = thin.class_counts(np.array([kept, 10, 12]), ["ok", "crack", "spot"], "ok")
        assert counts.tolist() == [clean, 10, 12]                        # the prior the frames hold
    # a cap below the defect tiles alone keeps as many clean tiles as defect tiles, not none
    with TrainingTiles.cut(tmp_path / "data", found, 64, "ok", tr, va, 0, tmp_path / "work", progress=False,
                           max_tiles=5) as few:
        assert sum(1 for _ in (few.root / "train" / "ok").iterdir()) == defects


def test_a_failure_while_cutting_leaves_nothing_behind(tmp_path):
    _frames(tmp_path / "data")
    found = survey(tmp_path / "data", progress=False)
    (tmp_path / "data" / "crack" / "crack0.mask.png").write_bytes(b"not a png")
    tr, va = _split(found.labels, 0.2, 0)
    with pytest.raises(Exception, match="crack0"):
        TrainingTiles.cut(tmp_path / "data", found, 64, "ok", tr, va, 0, tmp_path / "work", progress=False)
    assert not (tmp_path / "work").exists()


@pytest.mark.slow
def test_a_model_trained_on_tiles_reads_whole_frames_in_tiles(tmp_path, capsys):
    _frames(tmp_path / "data")
    # 3 px cracks letterboxed from 240 px into 64 px would be 0.8 px: 64 px tiles at the frames' pixels
    assert main(["train", "--task", "defect", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "m"),
                 "--size", "64", "--epochs", "1", "--quiet"]) == 0
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    tiles = manifest["training"]["tiles"]
    assert tiles["tile"] == 64 and "cut into 64 px tiles" in tiles["reason"] and tiles["train"]["frames"] == 15
    assert manifest["input"]["source_size"] == [64, 64]            # the served path's tile scale
    assert manifest["training"]["samples"] == tiles["train"]["tiles"]
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tmp_path / "m"), "--data", str(tmp_path / "data"), "--json",
                 "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["samples"] == 15 and "tiles" in json.dumps(report)
    # and whole frames when asked
    assert main(["train", "--task", "defect", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "w"),
                 "--size", "64", "--epochs", "1", "--tile", "off", "--quiet"]) == 0
    whole = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert whole["training"]["tiles"] == {"tile": None, "reason": "--tile off: frames trained whole"}
    assert whole["input"]["source_size"] == [200, 240] and whole["training"]["samples"] == 15
    assert whole["input"]["source_long_max"] == 240 and "source_long_max" not in manifest["input"]
