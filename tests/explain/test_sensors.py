"""Evidence per sensor: the refill maths without a model, then the shipped classifier on simulated parts
whose defect only one sensor sees."""
import numpy as np
import pytest
from helpers import MODELS

from edge.explain import GradCAMExplainer, sensor_evidence, sensor_phrase
from edge.explain.sensors import drop_shares, evidence_region, fill_region, leading_channel
from edge.runtime.model import Model
from edge.sim.sample import simulate_sample


def test_evidence_region_is_the_hot_half_grown():
    h = np.zeros((32, 32), np.float32)
    h[10, 10], h[20, 20] = 1.0, 0.4
    r = evidence_region(h, grow_px=2)
    assert r[8:13, 8:13].all() and r.sum() == 25 and not r[20, 20]
    assert not evidence_region(np.zeros((8, 8))).any()


def test_fill_region_removes_a_local_bump_and_nothing_else():
    rng = np.random.default_rng(0)
    c = (np.linspace(0, 1, 64)[None, :] * np.ones((64, 1)) + 0.01 * rng.standard_normal((64, 64))).astype(np.float32)
    bumped = c.copy()
    bumped[30:34, 30:34] += 5.0
    region = np.zeros((64, 64), bool)
    region[27:37, 27:37] = True
    filled = fill_region(bumped, region)
    assert np.array_equal(filled[~region], bumped[~region])
    assert np.abs(filled[region] - c[region]).max() < 0.15           # back to the surface around it
    np.testing.assert_array_equal(fill_region(bumped, np.ones_like(region)), bumped)
    np.testing.assert_array_equal(fill_region(bumped, np.zeros_like(region)), bumped)


def test_drop_shares_and_phrase():
    np.testing.assert_allclose(drop_shares(5.0, [1.0, 5.0, 6.0]), [1.0, 0.0, 0.0])
    np.testing.assert_allclose(drop_shares(5.0, [4.0, 2.0, 5.0]), [0.25, 0.75, 0.0])
    assert not drop_shares(1.0, [1.0, 2.0]).any()
    assert sensor_phrase(["thermal", "phase", "intensity"], [0.25, 0.05, 0.70]) == \
        "evidence by sensor: 70 % intensity, 25 % thermal, 5 % phase"
    assert sensor_phrase(["a", "b"], [0.0, 0.0]) == ""
    np.testing.assert_array_equal(leading_channel([[0.2, 0.8], [0.0, 0.0], [1.0, 0.0]]), [1, -1, 0])


@pytest.fixture(scope="module")
def defect():
    return Model.load(MODELS / "defect", threads=2)


@pytest.mark.parametrize("label, sensor", [("crack", "intensity"), ("scratch", "intensity"),
                                           ("delamination", "thermal"), ("pit", "thermal")])
def test_a_defect_only_one_sensor_sees_gets_its_evidence_from_that_sensor(defect, label, sensor):
    """Parts rendered with the defect in one channel only (seed 9000, not the one the measure was developed
    on): where the classifier still names the class, that channel carries the most evidence."""
    k, c = defect.classes.index(label), defect.channels.index(sensor)
    x = np.stack([np.stack([d[n] for n in defect.channels]) for d in (
        simulate_sample(i, 9000, defect_class=label, defect_channels=[sensor]) for i in range(6))]).astype(np.float32)
    es = GradCAMExplainer(defect).explain(x, np.full(len(x), k))
    called = np.array([e.prediction.label == label for e in es])
    assert called.sum() >= 4
    shares = sensor_evidence(defect, x, [e.heatmap for e in es], [k] * len(x))
    np.testing.assert_allclose(shares[called].sum(axis=1), 1.0, atol=1e-6)
    assert (shares[called].argmax(axis=1) == c).all()
    assert shares[called, c].mean() > 0.7


def test_sensor_evidence_checks_its_inputs(defect):
    x = np.zeros((1, 3, 128, 128), np.float32)
    with pytest.raises(ValueError, match="heatmaps"):
        sensor_evidence(defect, x, np.zeros((2, 128, 128)), [1])
