"""The thermal model's radiometric head: the camera's inversion in the graph, the emissivity ratio from the
part's shape only. Checked against the simulator's own radiometry, for locality by construction, and
through the exported graphs."""
import numpy as np
import pytest
import torch

from edge.sim.thermal import apparent_temperature
from edge.train.models import RadiometricUNet, SurfaceFeatures, fold_batchnorm

ENV = 293.15


def net(width: int = 4, surface: bool = False) -> RadiometricUNet:
    torch.manual_seed(0)
    return fold_batchnorm(RadiometricUNet(3, 0, 2.0, [340.0, 0.0, 0.1], [15.0, 0.2, 0.03], width=width,
                                          env_k=ENV, surface={"height": 1, "pitch": 2} if surface else None)).eval()


def frames(n: int = 2, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    t = 330 + 50 * torch.rand(n, 1, size, size, generator=g)
    h = 0.3 * torch.randn(n, 1, size, size, generator=g)
    return torch.cat([t, h, torch.full((n, 1, size, size), 0.1)], 1)


def test_the_head_inverts_the_simulators_camera_for_a_known_emissivity_ratio():
    """With the network's ratio equal to the surface's (emissivity / calibrated emissivity), the output is
    the true temperature the simulator rendered the reading from: the 4 Newton steps reach the root."""
    m = net()
    true = np.linspace(300.0, 400.0, 64, dtype=np.float32).reshape(1, 1, 8, 8)
    for ratio in (0.45, 0.7, 1.0, 1.1, 1.5):
        reading = apparent_temperature(true, np.float32(0.9 * ratio), 0.9, ENV)
        m.emissivity_ratio = lambda x, r=ratio: torch.full((x.shape[0], 1, *x.shape[2:]), r)
        x = torch.cat([torch.from_numpy(reading), torch.zeros(1, 2, 8, 8)], 1)
        with torch.no_grad():
            got = m(x).numpy()
        np.testing.assert_allclose(got, true, atol=2e-3)        # float32 at ~1e10 (T^4): a few mK


def test_the_surface_features_are_the_slopes_and_curvatures_numpy_computes():
    """Slopes by central differences and one-sided ones at the borders (numpy.gradient, the simulator's
    `geometry.slopes`), their own derivatives the curvatures, for any frame size (training crops, served
    frames) and pitch."""
    from edge.sim.geometry import slopes

    g = np.random.default_rng(0)
    for h, w, pitch in ((9, 13, 0.07), (32, 32, 0.12), (5, 40, 0.09)):
        height = g.normal(0, 0.2, (h, w)).cumsum(0).cumsum(1) * 0.01
        x = torch.from_numpy(np.stack([np.full((h, w), 350.0), height, np.full((h, w), pitch)])[None])
        got = SurfaceFeatures(3, height=1, pitch=2).double().raw(x)[0].numpy()
        sx, sy = slopes(height, pitch)
        np.testing.assert_allclose(got[0], np.gradient(height, pitch, axis=1), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got[1], np.gradient(height, pitch, axis=0), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got[:2], np.stack([sx, sy]), rtol=1e-5, atol=1e-6)   # the simulator's, float32
        np.testing.assert_allclose(got[2], got[0] ** 2 + got[1] ** 2, rtol=1e-12)
        cxx, cyy = np.gradient(got[0], pitch, axis=1), np.gradient(got[1], pitch, axis=0)
        np.testing.assert_allclose(got[3:6], np.stack([cxx, cyy, cxx + cyy]), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(got[6], pitch)


@pytest.mark.parametrize("surface", [False, True], ids=["shape planes", "surface features"])
def test_the_correction_at_a_pixel_follows_only_that_pixels_reading(surface):
    """Locality by construction: the ratio never reads the temperature, so raising one pixel's reading moves
    the output at that pixel only; the shape moves it around."""
    m = net(surface=surface)
    x = frames(1)
    with torch.no_grad():
        base = m(x)
        hot = x.clone()
        hot[0, 0, 10, 12] += 2.0
        moved = (m(hot) - base)[0, 0]
        bumped = x.clone()
        bumped[0, 1, 10, 12] += 0.5
        shape_moved = (m(bumped) - base)[0, 0]
    assert moved[10, 12] > 1.0 and moved.abs().sum() == moved[10, 12].abs()
    assert (shape_moved.abs() > 1e-4).sum() > 1                 # the emissivity estimate reads the shape around


def test_at_the_surroundings_temperature_nothing_is_corrected_whatever_the_shape():
    m = net()
    x = frames(1)
    x[:, 0] = ENV
    with torch.no_grad():
        assert torch.allclose(m(x)[:, 0], x[:, 0], atol=1e-3)


@pytest.mark.slow
def test_trained_from_simulator_data_ig_from_ambient_hands_each_pixel_its_correction(sim_dataset, tmp_path):
    """Through training and the exported graphs: the manifest says the head, the surroundings' temperature
    and the baseline; IG of the correction's size from ambient (the default) gives each pixel exactly the
    correction the model made there (|out - reading| / pixels), up to the quadrature."""
    import json

    from edge.explain import IGExplainer
    from edge.runtime.model import Model
    from edge.train.train import TrainConfig, train

    train(sim_dataset, tmp_path / "m", TrainConfig(task="thermal", size=32, epochs=1, width=4, threads=2,
                                                   head="radiometric"), progress=False)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["output"]["head"] == "radiometric" and manifest["output"]["ambient"] == ENV
    assert manifest["output"]["emissivity_from"] == ["height", "pixel_pitch_mm"]
    # the net reads the surface's slopes and curvatures, normalised by their training statistics
    surface = torch.load(tmp_path / "m" / "weights.pt", weights_only=True)["meta"]["kwargs"]["surface"]
    assert surface["height"] == 1 and surface["pitch"] == 2 and len(surface["std"]) == SurfaceFeatures.COUNT
    assert manifest["explain"] == {"quantity": "correction", "baseline": "ambient"}
    model = Model.load(tmp_path / "m")
    x = frames(2).numpy()
    for e, xi in zip(IGExplainer(model, n_steps=16).explain(x), x):
        assert e.details.per_channel[1:].max() == 0 == e.details.per_channel[1:].min()   # shape: same both ends
        correction = np.abs(np.squeeze(e.prediction.output) - xi[0]) / xi[0].size
        got = e.details.per_channel[0]
        assert np.abs(got - correction).max() <= 1e-3 * correction.max() + 1e-7
    # the audit judges such a model from its own baseline, the uniform protocol beside it
    from edge.audit.run import audit

    m = audit(tmp_path / "m", sim_dataset, tmp_path / "audit", progress=False)
    assert m["physics_baselines"] == {"physics": "ambient", "physics_uniform": "uniform", "physics_output": "uniform"}
    assert set(m["physics_uniform"]) == set(m["physics"])
    html = (tmp_path / "audit" / "report.html").read_text()
    assert "IG of the correction from the <b>ambient</b> baseline" in html and "correction from uniform" in html


def test_the_radiometric_head_is_for_the_thermal_model_with_a_known_surroundings_temperature(tmp_path):
    import json

    from edge.errors import InvalidInput
    from edge.sim.sample import write_dataset
    from edge.train.train import TrainConfig, train

    with pytest.raises(InvalidInput, match="only the thermal model"):
        train(tmp_path, tmp_path / "m", TrainConfig(task="phase", head="radiometric"), progress=False)
    with pytest.raises(InvalidInput, match="expected auto, residual, radiometric"):
        train(tmp_path, tmp_path / "m", TrainConfig(task="thermal", head="planck"), progress=False)
    data = write_dataset(tmp_path / "d", 12, seed=3, progress=False)
    recipe = json.loads((data / "dataset.json").read_text())
    del recipe["config"]["env_temperature_k"]
    (data / "dataset.json").write_text(json.dumps(recipe))
    with pytest.raises(InvalidInput, match="no surroundings' temperature"):
        train(data, tmp_path / "m", TrainConfig(task="thermal", size=32, epochs=1, width=4, head="radiometric"),
              progress=False)


def test_auto_chooses_the_radiometric_head_where_the_data_allows_it_and_says_why():
    from edge.train.train import choose_head

    full = ["thermal", "height", "pixel_pitch_mm"]
    head, why = choose_head("auto", "thermal", ENV, full)
    assert head == "radiometric" and f"{ENV} K" in why
    head, why = choose_head("auto", "thermal", None, full)
    assert head == "residual" and "env_temperature_k" in why
    head, why = choose_head("auto", "thermal", ENV, ["thermal", "height"])
    assert head == "residual" and "no pixel_pitch_mm plane" in why
    assert choose_head("residual", "thermal", ENV, full) == ("residual", "--head residual")
    assert choose_head("auto", "phase", ENV, full) == ("residual", "")
