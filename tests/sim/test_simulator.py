"""Simulator: determinism, physical sanity, defect masks, the planted artifact, the folder writer."""
import json

import numpy as np
import pytest

from edge.sim import geometry
from edge.sim.defects import CLASSES, DEFECT_CLASSES
from edge.sim.sample import CHANNELS, SimConfig, simulate_sample, write_dataset


def test_same_seed_and_index_give_identical_samples():
    a, b = simulate_sample(17, seed=3), simulate_sample(17, seed=3)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_other_seed_gives_other_samples():
    a, b = simulate_sample(17, seed=3), simulate_sample(17, seed=4)
    assert not np.array_equal(a["thermal"], b["thermal"])


def test_arrays_have_the_documented_shapes_and_types():
    s = simulate_sample(0, 1)
    for k in ("thermal", "phase", "intensity", "true_temperature", "unwrapped_phase", "physics_importance", "height"):
        assert s[k].shape == (128, 128) and s[k].dtype == np.float32, k
    assert tuple(s["channel_names"]) == CHANNELS
    assert s["mask"].dtype == np.uint8 and s["edge_map"].dtype == np.uint8
    assert str(s["geometry"]) in geometry.GEOMETRIES
    assert 0.05 < float(s["pixel_pitch_mm"]) < 0.2


def test_flat_defect_free_part_reads_true_temperature_up_to_noise():
    cfg = SimConfig()
    s = simulate_sample(0, 1, cfg, defect_class="ok", geometry_type="flat")
    diff = s["thermal"] - s["true_temperature"]
    assert abs(diff.mean()) < 0.01
    assert diff.std() == pytest.approx(cfg.netd_k, rel=0.1)
    assert np.all(s["physics_importance"] < 1e-3)  # no structure where geometry has none
    assert s["edge_map"].sum() == 0


@pytest.mark.parametrize("geom", ["cavity", "v_groove", "step"])
def test_concave_corners_and_sidewalls_make_apparent_differ_from_true(geom):
    s = simulate_sample(1, 2, defect_class="ok", geometry_type=geom)
    imp = s["physics_importance"]
    assert imp.max() > 0.5  # kelvin: a deviation a thermographer would see
    # It sits on the geometry: the edge pixels carry far more of it than the flat remainder.
    edges = s["edge_map"].astype(bool)
    assert edges.any()
    assert imp[edges].mean() > 5 * imp[~edges].mean()


@pytest.mark.parametrize("geom", ["cylinder", "cavity", "v_groove"])
def test_a_part_at_the_surroundings_temperature_reads_true_whatever_its_shape(geom):
    """What the `ambient` IG baseline rests on: emission and reflected surroundings balance, so the
    geometry's error vanishes as the part cools to ambient (here only the +-1.5 K gradient is left of it).
    The default parts (330-380 K) draw the same geometry and noise: only the level differs."""
    from edge.sim.sample import SimConfig
    hot = simulate_sample(0, 5, defect_class="ok", geometry_type=geom)
    cool = simulate_sample(0, 5, SimConfig(temperature_k=(293.15, 293.15)), defect_class="ok", geometry_type=geom)
    assert np.array_equal(hot["height"], cool["height"])
    assert 290 < cool["true_temperature"].mean() < 296.5 and hot["true_temperature"].mean() > 330
    assert cool["physics_importance"].max() < 0.1 * hot["physics_importance"].max()


def test_cavity_bottom_corner_reads_warmer_and_sidewall_colder_on_a_hot_part():
    s = simulate_sample(4, 2, defect_class="ok", geometry_type="cavity")
    dev = s["thermal"] - s["true_temperature"]
    assert dev.max() > 0.3 and dev.min() < -0.3  # cavity effect up, grazing sidewall down


def test_phase_ground_truth_is_exact_multiple_of_two_pi_from_measurement():
    s = simulate_sample(5, 2, geometry_type="cylinder")
    k = (s["unwrapped_phase"] - s["phase"]) / (2 * np.pi)
    np.testing.assert_allclose(k, np.round(k), atol=1e-3)
    assert s["phase"].min() > -np.pi - 1e-6 and s["phase"].max() <= np.pi + 1e-6


@pytest.mark.parametrize("cls", DEFECT_CLASSES)
def test_every_defect_has_a_mask_and_ok_has_none(cls):
    s = simulate_sample(0, 9, defect_class=cls)
    assert s["mask"].sum() > 0
    assert simulate_sample(0, 9, defect_class="ok")["mask"].sum() == 0


def test_contamination_changes_apparent_but_not_true_temperature():
    a = simulate_sample(0, 9, defect_class="contamination", geometry_type="flat")
    m = a["mask"].astype(bool)
    deviation = np.abs(a["thermal"] - a["true_temperature"])
    assert deviation[m].mean() > 10 * deviation[~m].mean()


def test_classes_are_balanced_by_index():
    labels = [str(simulate_sample(i, 0)["label"]) for i in range(12)]
    assert sorted(labels) == sorted(list(CLASSES) * 2)


def test_artifact_is_off_by_default_and_marks_defects_when_on():
    assert not any(bool(simulate_sample(i, 0)["artifact"]) for i in range(12))
    cfg = SimConfig(artifact=True, artifact_rate=1.0)
    on = [simulate_sample(i, 0, cfg) for i in range(12)]
    for s in on:
        assert bool(s["artifact"]) == (str(s["label"]) != "ok")
    marked = [s for s in on if s["artifact"]]
    assert all(s["intensity"][2:7].max() == 1.0 for s in marked)
    # The mark position encodes the class: two classes never share a column range.
    cols = {str(s["label"]): tuple(np.flatnonzero(s["intensity"][4] == 1.0)[:1]) for s in marked}
    assert len(set(cols.values())) == len(cols)


def test_write_dataset_layout_and_recipe(tmp_path):
    out = write_dataset(tmp_path / "d", 12, seed=1, cfg=SimConfig(size=32), progress=False)
    for cls in CLASSES:
        files = list((out / cls).glob("*.npz"))
        assert len(files) == 2
    recipe = json.loads((out / "dataset.json").read_text())
    assert recipe["seed"] == 1 and recipe["n"] == 12 and recipe["config"]["size"] == 32


def test_write_dataset_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        write_dataset(tmp_path / "d", 6, seed=1, progress=False)


def test_a_defect_seen_by_one_sensor_only():
    """defect_channels: the listed sensors see the defect exactly as by default; the others are the same part
    without it (equal to a render that no sensor sees it in); the default render is unchanged."""
    import numpy as np
    import pytest

    from edge.errors import InvalidInput
    from edge.sim.sample import CHANNELS, simulate_sample

    full = simulate_sample(4, 321, defect_class="delamination")
    everyone = simulate_sample(4, 321, defect_class="delamination", defect_channels=CHANNELS)
    nobody = simulate_sample(4, 321, defect_class="delamination", defect_channels=[])
    thermal = simulate_sample(4, 321, defect_class="delamination", defect_channels=["thermal"])
    for c in CHANNELS:
        np.testing.assert_array_equal(everyone[c], full[c])
        np.testing.assert_array_equal(thermal[c], full[c] if c == "thermal" else nobody[c])
    assert np.abs(nobody["thermal"] - full["thermal"]).max() > 1.0        # the subsurface defect's heat is gone
    np.testing.assert_array_equal(thermal["mask"], full["mask"])
    with pytest.raises(InvalidInput, match="defect_channels"):
        simulate_sample(4, 321, defect_channels=["x-ray"])


def test_a_slope_runs_on_to_the_frame_edge_without_a_line_there(monkeypatch):
    """The height map's softening blur must not flatten a surface that is still sloping where the frame cuts
    it (the blur's own mirror border did: a 3-4 px line along the edge of cylinder frames, which tiled
    inspection of large frames called a scratch). A tilted plane stays that plane up to the edge."""
    yy, xx = np.mgrid[0:96, 0:96].astype(np.float32)
    monkeypatch.setitem(geometry.GENERATORS, "flat", lambda size, pitch, rng: 0.02 * xx[:size, :size] - 0.01 * yy[:size, :size])
    h = geometry.height_map("flat", 96, 0.1, np.random.default_rng(0))
    np.testing.assert_allclose(h, 0.02 * xx - 0.01 * yy, atol=1e-5)
    # nor is the frame's edge a valley: a plane has no concavity anywhere (the mirror border made one there)
    assert np.abs(geometry.concavity(h, 0.1)).max() < 1e-3
    # and the rendered cylinder's shading near the left edge continues the interior's (no bright or dark line)
    s = simulate_sample(3, 11, SimConfig(size=256), defect_class="ok", geometry_type="cylinder")
    columns = s["intensity"].mean(axis=0)
    assert np.abs(np.diff(columns[:12])).max() < 3 * np.abs(np.diff(columns[12:40])).max() + 1e-3
