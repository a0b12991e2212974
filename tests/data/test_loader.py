"""Folder datasets: every format the README promises, and a clear error for every broken input."""
import io
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.data import loader
from edge.data.arrays import load_arrays, resolve_channels
from edge.data.geometry import resize_mask
from edge.data.preprocess import Normalisation


def _png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), arr)
    return path


@pytest.fixture
def user_dataset(tmp_path) -> Path:
    """Grayscale 8/16-bit images of various sizes with masks, like a user's surface-defect set."""
    rng = np.random.default_rng(0)
    root = tmp_path / "user"
    for i, (h, w) in enumerate([(200, 300), (256, 256), (90, 120)]):
        img = rng.integers(0, 255, (h, w), dtype=np.uint8)
        _png(root / "ok" / f"a{i}.png", img)
        img16 = rng.integers(0, 65535, (h, w), dtype=np.uint16)
        _png(root / "scratch" / f"b{i}.png", img16)
        mask = np.zeros((h, w), np.uint8)
        mask[h // 2, w // 3: w // 3 + 2] = 255  # a defect of ~0.01 % of the image
        _png(root / "scratch" / f"b{i}.mask.png", mask)
    np.save(root / "scratch" / "c.npy", rng.random((64, 64)).astype(np.float32))
    cv2.imwrite(str(root / "ok" / "d.tif"), rng.integers(0, 65535, (50, 70), dtype=np.uint16))
    return root


def test_reads_user_images_of_mixed_depth_and_size(user_dataset):
    items = loader.scan(user_dataset)
    assert {i.label for i in items} == {"ok", "scratch"}
    assert sum(i.mask_path is not None for i in items) == 3
    a = load_arrays(user_dataset, 32, progress=False)
    assert a.x.shape == (len(items), 1, 32, 32)
    assert 0.0 <= a.x.min() and a.x.max() <= 1.0  # integers scaled by their type's range
    assert a.has_mask.sum() == 3
    # The 2-pixel defect survives shrinking 300 px to 32 px.
    assert all(a.masks[i].any() for i in np.flatnonzero(a.has_mask))


def test_reads_simulator_npz_with_named_channels_and_ground_truth(sim_dataset):
    a = load_arrays(sim_dataset, 32, channels=("thermal", "height"), targets=("true_temperature",), progress=False)
    assert a.channel_names == ("thermal", "height")
    assert a.x[:, 0].mean() > 300  # kelvin, not rescaled
    assert a.targets["true_temperature"].shape == (60, 32, 32)
    assert a.has_mask.all() and "geometry" in a.meta[0]


def _cut_npz(path):
    """An .npz whose zip is whole but whose array stops short: what a copy or a write stopped halfway leaves
    (numpy reads .npz members lazily, so only reading the array finds it)."""
    buf = io.BytesIO()
    np.save(buf, np.zeros((8, 8), np.uint8))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("image.npy", buf.getvalue()[:-20])


@pytest.mark.parametrize("setup, message", [
    (lambda r: (r / "ok" / "x.png").write_bytes(b"not a png"), "unreadable image"),
    (lambda r: (r / "ok" / "x.gif").write_bytes(b"GIF89a"), "unknown extension"),
    (lambda r: (r / "ok" / "x.bmp").write_bytes(b"BM"), "unreadable image"),
    (lambda r: (r / "empty").mkdir(), "empty class folder"),
    (lambda r: (r / "y.png").write_bytes(b""), "outside a class folder"),
    (lambda r: (r / "ok" / "z.npz").write_bytes(b"PK broken"), "unreadable array file"),
    (lambda r: _cut_npz(r / "ok" / "t.npz"), r"t\.npz: unreadable \.npz \(truncated or corrupt"),
    (lambda r: _png(r / "ok" / "good_mask.png", np.zeros((8, 8), np.uint8)), "looks like the mask of 'good'"),
    (lambda r: _png(r / "ok" / "good_label.png", np.zeros((8, 8), np.uint8)), "rename it good.mask.png"),
    (lambda r: cv2.imwrite(str(r / "ok" / "good.jpg"), np.zeros((8, 8), np.uint8)), "share the stem 'good'"),
])
def test_broken_inputs_name_the_file_and_the_problem(tmp_path, setup, message):
    root = tmp_path / "d"
    _png(root / "ok" / "good.png", np.zeros((8, 8), np.uint8))
    setup(root)
    with pytest.raises(loader.DatasetError, match=message):
        load_arrays(root, 8, progress=False)


def test_a_set_split_into_train_and_test_folders_is_named_as_such(tmp_path):
    # root/train/<class>/, root/test/<class>/ given as one data set: not "empty class folder"
    for split in ("test", "train"):
        for cls in ("good", "scratch"):
            _png(tmp_path / "d" / split / cls / "a.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(loader.DatasetError, match=r"d/test: holds folders of samples \(good, scratch\).*split into "
                                                  r"test, train; point the command at one split.*e\.g\. .*d/train\)"):
        loader.scan(tmp_path / "d")


def test_samples_one_level_deeper_in_every_class_folder_are_named_as_such(tmp_path):
    # the magnetic-tile layout, MT_<class>/Imgs/<stem>.jpg: not a split (pointing at MT_Blowhole would make
    # "Imgs" the only class), so the message says to move the samples up
    for cls in ("MT_Blowhole", "MT_Free"):
        _png(tmp_path / "d" / cls / "Imgs" / "a.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(loader.DatasetError, match=r"d/MT_Blowhole: its samples sit one level deeper, in "
                                                  r".*MT_Blowhole/Imgs.*move them up into the class folders"):
        loader.scan(tmp_path / "d")


def test_mask_of_another_size_is_refused_with_both_sizes(tmp_path):
    root = tmp_path / "d"
    _png(root / "pit" / "a.png", np.zeros((20, 30), np.uint8))
    _png(root / "pit" / "a.mask.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(loader.DatasetError, match=r"a\.mask\.png: mask is 10x10 but its image is 30x20"):
        load_arrays(root, 8, progress=False)


def test_nan_in_a_float_image_is_refused(tmp_path):
    root = tmp_path / "d"
    bad = np.zeros((8, 8), np.float32)
    bad[1, 1] = np.nan
    (root / "ok").mkdir(parents=True)
    np.save(root / "ok" / "n.npy", bad)
    with pytest.raises(loader.DatasetError, match="n.npy: image contains NaN"):
        load_arrays(root, 8, progress=False)


def test_missing_folder_and_missing_class_folders(tmp_path):
    with pytest.raises(loader.DatasetError, match="not found"):
        loader.scan(tmp_path / "nope")
    with pytest.raises(loader.DatasetError, match="no class folders"):
        loader.scan(tmp_path)


def test_pixel_pitch_as_a_constant_input_plane(sim_dataset):
    a = load_arrays(sim_dataset, 32, channels=("thermal", "pixel_pitch_mm"), limit=5, progress=False)
    for i, meta in enumerate(a.meta):
        np.testing.assert_allclose(a.x[i, 1], meta["pixel_pitch_mm"])


def test_phase_data_at_another_size_is_refused(sim_dataset):
    with pytest.raises(loader.DatasetError, match="phase data must be at the model size"):
        load_arrays(sim_dataset, 16, channels=("phase",), targets=("unwrapped_phase",), progress=False)


def test_channel_requests():
    names = ("thermal", "phase", "intensity")
    assert resolve_channels(names, None) == names
    assert resolve_channels(names, "2") == ("thermal", "phase")
    assert resolve_channels(names, "intensity,thermal") == ("intensity", "thermal")
    with pytest.raises(ValueError, match="has 3 channels"):
        resolve_channels(names, "5")


def test_normalisation_modes():
    x = np.random.default_rng(0).normal(5, 3, (4, 2, 8, 8)).astype(np.float32)
    per = Normalisation("per_image").apply(x)
    np.testing.assert_allclose(per.mean(axis=(2, 3)), 0, atol=1e-5)
    ds = Normalisation.fit(x)
    np.testing.assert_allclose(ds.apply(x).mean(axis=(0, 2, 3)), 0, atol=1e-4)
    centred = Normalisation.fit(x, "centred")
    assert centred.mode == "centred" and centred.mean is None
    c = centred.apply(x)
    np.testing.assert_allclose(c.mean(axis=(2, 3)), 0, atol=1e-5)
    # A contrast keeps its size relative to the dataset's spread, whatever the image's own level.
    shifted = x.copy()
    shifted[0] += 100.0
    np.testing.assert_allclose(centred.apply(shifted), c, atol=1e-4)
    assert np.array_equal(Normalisation("in_graph").apply(x), x)
    with pytest.raises(ValueError, match="channels"):
        ds.apply(x[:, :1])


def test_resize_mask_keeps_tiny_defects_and_nearest_when_growing():
    m = np.zeros((512, 512), bool)
    m[100, 100] = True
    assert resize_mask(m, 64, 64).sum() == 1
    assert resize_mask(np.eye(4, dtype=bool), 8, 8).sum() == 16


def test_a_mask_without_its_image_is_named(tmp_path):
    root = tmp_path / "d"
    _png(root / "pit" / "a.png", np.zeros((8, 8), np.uint8))
    _png(root / "pit" / "b.mask.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(loader.DatasetError, match=r"b\.mask\.png: mask without an image of stem 'b'"):
        loader.scan(root)


def test_a_bmp_reads_like_a_png_and_a_single_file_of_unknown_type_is_named(tmp_path):
    img = (np.arange(12 * 16, dtype=np.uint8).reshape(12, 16) % 200)
    cv2.imwrite(str(tmp_path / "a.bmp"), img)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    bmp, names, _, _ = loader.read_image(tmp_path / "a.bmp")
    np.testing.assert_array_equal(bmp, loader.read_image(tmp_path / "a.png")[0])
    assert bmp.shape == (12, 16, 1) and names == ("gray",)
    (tmp_path / "a.gif").write_bytes(b"GIF89a")
    with pytest.raises(loader.DatasetError, match=r"a.gif: unknown extension '.gif'; expected one of .png"):
        loader.read_image(tmp_path / "a.gif")


def test_a_name_that_only_ends_like_a_mask_is_an_image(tmp_path):
    """'valve_gt.png' with no 'valve' image beside it is a sample, not a foreign mask."""
    root = tmp_path / "d"
    _png(root / "ok" / "valve_gt.png", np.zeros((8, 8), np.uint8))
    _png(root / "pit" / "a.png", np.zeros((8, 8), np.uint8))
    assert len(load_arrays(root, 8, progress=False).labels) == 2


def test_only_the_simulators_recipe_says_a_folder_is_simulated(tmp_path):
    """The audit looks for the simulator's ground-truth planes only in folders the simulator wrote: a
    dataset.json from dataset --tile or --from-store says nothing of the kind."""
    import json

    from edge.data.loader import simulator_recipe
    from edge.sim.sample import SimConfig, write_dataset

    write_dataset(tmp_path / "sim", 2, 0, SimConfig(size=32), progress=False)
    assert simulator_recipe(tmp_path / "sim")["seed"] == 0
    for name, recipe in (("tiles", {"kind": "tiles", "tile": 256}), ("store", {"source": "a.sqlite"})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "dataset.json").write_text(json.dumps(recipe))
        assert simulator_recipe(tmp_path / name) is None
    assert simulator_recipe(tmp_path) is None                       # no dataset.json at all
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "dataset.json").write_text("{not json")
    with pytest.raises(loader.DatasetError, match=r"broken/dataset.json: unreadable dataset.json"):
        simulator_recipe(tmp_path / "broken")


@pytest.mark.parametrize("pitch", [float("nan"), -0.1, float("inf"), 0.0])
def test_an_npz_with_an_impossible_pitch_is_refused_by_name(tmp_path, pitch):
    (tmp_path / "ok").mkdir()
    np.savez(tmp_path / "ok" / "a.npz", image=np.zeros((8, 8), np.float32), pixel_pitch_mm=np.float64(pitch))
    [item] = loader.scan(tmp_path)
    if pitch == 0:                       # not recorded, as the service's Frame.pixel_pitch_mm says it
        assert "pixel_pitch_mm" not in loader.load_sample(item).meta
        return
    with pytest.raises(loader.DatasetError, match=r"a\.npz: pixel_pitch_mm"):
        loader.load_sample(item)
