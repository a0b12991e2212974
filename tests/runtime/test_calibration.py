"""Temperature scaling and calibration error on synthetic data: no model needed."""
import numpy as np
import pytest

from edge.errors import InvalidInput
from edge.runtime.calibration import (T_RANGE, calibration_report, ece_noise_floor, expected_calibration_error,
                                      fit_calibration, fit_temperature, nll, reliability, softmax_t)


def synthetic(n=4000, k=5, true_t=3.0, seed=0):
    """Labels drawn from softmax(z / true_t): the logits z are over-confident by exactly true_t."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 4, (n, k))
    p = softmax_t(z, true_t)
    y = np.array([rng.choice(k, p=row) for row in p])
    return z, y


def test_fit_recovers_the_temperature_that_generated_the_labels():
    z, y = synthetic()
    assert fit_temperature(z, y) == pytest.approx(3.0, rel=0.1)


def test_calibration_lowers_ece_and_nll_and_keeps_every_decision():
    z, y = synthetic(seed=1)
    t = fit_temperature(z, y)
    raw, cal = softmax_t(z, 1.0), softmax_t(z, t)
    assert expected_calibration_error(raw, y) > 0.1 > 0.03 > expected_calibration_error(cal, y)
    assert nll(z, y, t) < nll(z, y, 1.0)
    assert (raw.argmax(1) == cal.argmax(1)).all()


def test_reliability_bins_add_up_and_match_a_hand_computed_ece():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55]])
    labels = np.array([0, 1, 1, 0])
    r = reliability(probs, labels, bins=2)       # bins [0, .5], (.5, 1]: all four are in the upper one
    assert r["count"] == [4] and r["n"] == 4
    conf = np.mean([0.9, 0.8, 0.7, 0.55])
    assert r["ece"] == pytest.approx(abs(0.5 - conf))
    r10 = reliability(probs, labels, bins=10)    # each in its own bin (right-closed: 0.9 is in (0.8, 0.9])
    assert r10["count"] == [1, 1, 1, 1] and r10["bin_upper"] == pytest.approx([0.6, 0.7, 0.8, 0.9])
    assert r10["ece"] == pytest.approx((abs(1 - 0.9) + abs(0 - 0.8) + abs(1 - 0.7) + abs(0 - 0.55)) / 4)


def test_too_few_samples_give_no_temperature_and_say_why():
    z, y = synthetic(n=10)
    c = fit_calibration(z, y, "validation split")
    assert c["method"] == "none" and c["temperature"] == 1.0 and "at least 30" in c["reason"]
    with pytest.raises(InvalidInput, match="labelled samples"):
        fit_temperature(np.zeros((0, 3)), np.zeros(0))


def test_fit_calibration_records_what_it_did():
    z, y = synthetic(n=600, seed=2)
    c = fit_calibration(z, y, "validation split")
    assert c["method"] == "temperature" and c["n"] == 600 and c["ece_after"] < c["ece_before"]


def test_a_temperature_that_barely_lowers_the_nll_is_not_applied():
    z, y = synthetic(n=600, true_t=1.0, seed=3)         # already calibrated: T near 1 fits noise
    c = fit_calibration(z, y, "validation split")
    assert c["method"] == "none" and c["temperature"] == 1.0
    assert c["fitted_temperature"] == pytest.approx(1.0, abs=0.1) and "raw confidences are kept" in c["reason"]
    assert (c["nll_before"] - c["nll_after"]) / c["nll_before"] < 0.01


def test_a_model_answers_with_its_temperature(tmp_path):
    from edge.explain.base import predictions
    from edge.runtime.model import Model

    from helpers import MODELS

    model = Model.load(MODELS / "defect")
    logits = np.array([[4.0, 1.0, 0.0, 0.0, 0.0, 0.0]])
    model.manifest = {**model.manifest, "calibration": {"method": "temperature", "temperature": 2.0}}
    [p] = predictions(model, logits)
    assert p.confidence == pytest.approx(softmax_t(logits, 2.0).max())
    model.manifest = {k: v for k, v in model.manifest.items() if k != "calibration"}
    [raw] = predictions(model, logits)
    assert raw.confidence == pytest.approx(softmax_t(logits, 1.0).max()) and raw.confidence > p.confidence
    assert raw.label == p.label


def test_the_noise_floor_is_what_a_perfectly_calibrated_model_reads_and_shrinks_with_the_sample():
    """Labels drawn from the model's own probabilities: calibrated by construction, yet its binned ECE is
    not 0 on a few hundred samples; the floor says how far from 0 (mean), and the ECE lands under its
    95th percentile; ten times the samples, a floor about sqrt(10) lower."""
    z, y = synthetic(n=600, true_t=1.0, seed=4)
    p = softmax_t(z, 1.0)
    floor = ece_noise_floor(p)
    assert 0.01 < floor["mean"] < floor["p95"] < 0.1 and floor["draws"] == 200
    assert expected_calibration_error(p, y) < floor["p95"]
    big = ece_noise_floor(softmax_t(synthetic(n=6000, true_t=1.0, seed=5)[0], 1.0))
    assert 2 < floor["mean"] / big["mean"] < 4.5
    # certain answers leave no noise; the same call gives the same floor (seeded)
    assert ece_noise_floor(np.eye(3)[[0, 1, 2, 0]])["mean"] == 0.0
    assert ece_noise_floor(p) == floor
    assert calibration_report(z, y, 1.0)["ece_floor"] == floor


def test_a_validation_split_without_errors_gets_the_confidence_it_supports_not_100_percent():
    """Every held-out answer right: the likelihood fit runs to the end of T's range (every answer would
    then say 100 %); instead the mean confidence is set to (right + 1) / (n + 2)."""
    rng = np.random.default_rng(5)
    y = rng.integers(0, 4, 200)
    z = rng.normal(0, 1, (200, 4))
    z[np.arange(200), y] += 4.0                                  # every answer right, none certain
    assert fit_temperature(z, y) <= T_RANGE[0] * 1.01
    c = fit_calibration(z, y, "validation split")
    assert c["method"] == "temperature" and T_RANGE[0] * 2 < c["temperature"] < T_RANGE[1]
    assert softmax_t(z, c["temperature"]).max(axis=1).mean() == pytest.approx(201 / 202, abs=1e-6)
    assert "Laplace" in c["fit"] and "200 of 200" in c["fit"]
    assert c["nll_after"] < c["nll_before"]
