"""`edge-xai audit` and `edge-xai gate` on small simulated sets with the shipped models."""
import json
import re

import numpy as np
import pytest
from helpers import MODELS

from edge.audit.gate import evaluate_gate, load_policy
from edge.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def test_set(tmp_path_factory):
    from edge.sim.sample import write_dataset

    return write_dataset(tmp_path_factory.mktemp("audit") / "d", 36, seed=4242, progress=False)


def test_classifier_audit_writes_report_and_metrics(test_set, tmp_path, capsys):
    from edge.sim.sample import SimConfig, write_dataset

    # frames unlike the training data: the class-coding sensor mark, which the simulator plants on
    # defective parts only (the set's defect-free frames are ordinary parts)
    marked = write_dataset(tmp_path / "ood", 12, seed=4243, cfg=SimConfig(artifact=True, artifact_rate=1.0),
                           progress=False)
    out = tmp_path / "report"
    assert main(["audit", "--model", str(MODELS / "defect"), "--data", str(test_set), "--out", str(out),
                 "--shap-samples", "4", "--json", "--ood", str(marked)]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m == json.loads((out / "metrics.json").read_text())
    assert m["classification"]["accuracy"] > 0.8
    for cls in ("crack", "pit", "scratch", "contamination", "delamination"):
        r = m["localisation"][cls]
        assert r["n"] >= 1 and 0 <= r["iou_mean"] <= 1 and 0 <= r["pointing_game"] <= 1
        # judged at the map's resolution, the shipped model's maps cover the defects better than pixel IoU says
        assert r["iou_mean"] <= r["iou_tolerant_mean"] <= 1 and r["tolerance_px"] == 8
    # the guided option, and its control without the gradient, on the same classes and samples
    guided, control = m["localisation_guided"], m["localisation_guided_control"]
    assert set(guided) == set(control) == set(m["localisation"])
    assert all(control[c]["n"] == guided[c]["n"] and 0 <= control[c]["iou_mean"] <= 1 for c in guided)
    q = m["quality"]
    assert q["faithfulness"]["deletion_auc"] < q["faithfulness"]["deletion_random_auc"]
    assert q["faithfulness"]["judged_on"] == "defect classes"
    curves = q["faithfulness"]["curves"]
    assert {len(v) for v in curves.values()} == {q["faithfulness"]["steps"] + 1}
    assert curves["deletion"][0] == pytest.approx(curves["deletion_random"][0])   # both start from the frame
    assert {"load", "grad-cam", "patch SHAP", "report"} <= set(m["timings_s"])
    assert q["stability"]["cosine_mean"] > 0.9 and q["sanity"]["rank_correlation_trained_vs_random"] < 0.5
    assert "misclassified" in m["failures"]
    for mode in m["failures"]["modes"].values():     # examples by file, as the data set names them
        assert len(mode["files"]) == len(mode["examples"]) and all((test_set / f).is_file() for f in mode["files"])
    c = m["calibration"]
    assert 0 <= c["ece_after"] <= 1 and c["temperature"] == pytest.approx(m["calibration"]["fitted"].get("temperature", 1))
    assert sum(c["reliability_after"]["count"]) == m["data"]["samples"]
    r = m["review"]        # the shipped model's review flag, measured on the audit's data
    assert 0 <= r["flagged_share"] <= 1 and r["n"] == m["data"]["samples"] and r["policy"]["budget"] == 0.1
    assert len(r["risk_coverage"]["coverage"]) == len(r["risk_coverage"]["risk"]) == 20
    ood = r["out_of_distribution"]       # judged on the 10 marked frames, the 2 ordinary ones beside them
    assert ood["n"] == 10 and ood["judged_on"] == "the frames that carry the recorded artifact"
    assert ood["ordinary"]["n"] == 2 and ood["flagged_as_unlike"] >= 0.9
    # the marked frames are labelled in the model's classes: right and wrong answers are counted
    assert 0 <= ood["answered_right"] <= 1 and 0 <= ood["errors_let_through"] <= ood["errors"] <= 10
    assert sum(g["n"] for g in ood["by_geometry"].values()) == 10       # simulated parts record their geometry
    html = (out / "report.html").read_text()
    assert "Confidence calibration" in html and "Reliability diagram" in html and "Review flag" in html
    assert "Noise floor" in html and 0 <= c["ece_floor"]["mean"] <= c["ece_floor"]["p95"] + 1e-12 <= 1
    assert "10 judged: the frames that carry the recorded artifact" in html and "The set's\n2 frames without it" in html
    assert "a wrong answer let\nthrough is the risk" in html and "<th>part geometry</th>" in html
    assert "Localisation" in html and "data:image/png;base64," in html and "&amp;gt;" not in html
    # each example figure names its file: "#7 crack/000007.npz: crack -&gt; crack"
    captions = re.findall(r"<figcaption>#\d+ ([^:<]+): ", html)
    assert captions and all((test_set / f).is_file() for f in captions)
    assert "Mean deletion and insertion curves over 4 samples" in html and "tolerant IoU (gate)" in html
    assert "<th>IoU, control</th>" in html and "relevance mass, control" in html
    # the served sentence's descriptors, every right answer: simulated classes are judged by their signature
    cons = q["sentences"]["consistency"]
    assert set(cons) <= {"crack", "pit", "scratch", "contamination", "delamination"} and cons
    assert all(0 <= r["right_share"] <= r["share"] + 1e-12 for r in cons.values())   # share: the most common
    assert cons["crack"]["expected"] == "crack-like" and cons["crack"]["right_share"] >= 0.5
    assert sum(r["n"] for r in cons.values()) >= 0.5 * m["data"]["samples"]
    assert "the sentence served with every answer" in html and "(crack-like)" in html


def test_thermal_audit_reports_physics_per_geometry(test_set, tmp_path):
    out = tmp_path / "thermal"
    assert main(["audit", "--model", str(MODELS / "thermal"), "--data", str(test_set), "--out", str(out),
                 "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["physics"]) <= {"flat", "v_groove", "cavity", "cylinder", "step", "combined"}
    assert all(-1 <= r["r"] <= 1 and -1 <= r["r_physics_scale"] <= 1 and r["n"] >= 1 for r in m["physics"].values())
    html = (out / "report.html").read_text()
    assert html.count("physics importance |apparent - true|") == len(m["physics"])     # one example per geometry
    assert "For each frame, Integrated Gradients" in html
    # judged: the size of the correction; the earlier protocol (the mean output) beside it, same frames here
    assert set(m["physics_output"]) == set(m["physics"])
    assert sum(r["n"] for r in m["physics_output"].values()) == sum(r["n"] for r in m["physics"].values())
    assert m["physics_output"] != m["physics"] and "earlier protocol (IG of the mean output)" in html
    # the shipped radiometric model names its baseline: judged from ambient, the uniform protocol beside it,
    # and on flat parts (judged there) the correction it makes where the geometry needs none, in kelvin
    assert m["physics_baselines"] == {"physics": "ambient", "physics_uniform": "uniform", "physics_output": "uniform"}
    assert set(m["physics_uniform"]) == set(m["physics"])
    assert all(0 <= r["correction_unneeded_k"] < 0.2 for r in m["physics"].values())
    assert all("correction_unneeded_k" not in r for r in m["physics_uniform"].values())   # not kelvin from there
    assert "correction where the geometry needs none, K (gate, flat parts)" in html


def test_data_the_model_cannot_read_fails_naming_the_channel(tmp_path):
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    for cls in ("ok", "crack"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(tmp_path / "d" / cls / f"{i}.png"), (rng.random((32, 32)) * 255).astype(np.uint8))
    from edge.audit.run import audit

    # gray images, a 3-channel model: the file, what it has, and what the model reads
    with pytest.raises(ValueError, match=r"no channel or field named .thermal. \(has gray\); the channels asked "
                                         r"for are thermal, phase, intensity .*is this data for that model"):
        audit(MODELS / "defect", tmp_path / "d", tmp_path / "r", progress=False)


def test_a_class_the_model_was_not_trained_on_fails_before_anything_is_predicted(tmp_path):
    """evaluate, calibrate and the audit share one check: the data set's folder and the unknown class named."""
    from edge.audit.run import audit
    from edge.errors import InvalidInput
    from edge.evaluate import calibrate, evaluate
    from edge.sim.sample import write_dataset

    data = write_dataset(tmp_path / "d", 12, seed=5, progress=False)
    (data / "crack").rename(data / "dent")
    for run in (lambda: evaluate(MODELS / "defect", data, progress=False),
                lambda: calibrate(MODELS / "defect", data, progress=False),
                lambda: audit(MODELS / "defect", data, tmp_path / "r", progress=False)):
        with pytest.raises(InvalidInput, match=rf"{data}: classes \['dent'\] are not among the model's"):
            run()
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_gate_policy_and_exit_codes(tmp_path, capsys):
    metrics = {"classification": {"accuracy": 1.0},
               "localisation": {"crack": {"iou_mean": 0.03, "iou_tolerant_mean": 0.6, "iou_grown_mean": 0.7, "n": 5},
                                "pit": {"iou_mean": 0.05, "iou_tolerant_mean": 0.2, "iou_grown_mean": 0.6, "n": 5}},
               "physics": {"cylinder": {"r": 0.6, "r_physics_scale": 0.8, "n": 3},
                           "flat": {"r": 0.1, "r_physics_scale": 0.5, "n": 3}},
               "phase_physics": {"concentration_mean": 1.4, "n": 4},
               "quality": {"faithfulness": {"deletion_auc": 0.2, "deletion_random_auc": 0.5, "insertion_auc": 0.9,
                                            "insertion_random_auc": 0.6},
                           "sanity": {"rank_correlation_trained_vs_random": 0.1, "cosine_trained_vs_random": 0.7}}}
    checks = {c.name: c.passed for c in evaluate_gate(metrics, load_policy(None))}
    assert checks == {"localisation crack": True, "localisation pit": False, "physics cylinder": True,
                      "physics flat": False, "phase physics (attribution on jumps)": False,
                      "faithfulness": True, "sanity (randomised weights)": True}
    f = tmp_path / "metrics.json"
    f.write_text(json.dumps(metrics))
    assert main(["gate", str(f)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  localisation pit: iou_tolerant_mean 0.200 (bar > 0.5, n 5)" in out and "gate FAILED: 4 of 7" in out
    policy = tmp_path / "policy.toml"
    policy.write_text('[localisation]\nmetric = "iou_grown_mean"\n[physics]\nflat_abs_r_max = 0.6\n'
                      '[phase_physics]\nconcentration_min = 1.2\n')
    assert main(["gate", str(tmp_path), "--policy", str(policy)]) == 0
    policy.write_text('[localisation]\nmetric = "iou_grown_mean"\n[physics]\nmetric = "r"\n'
                      '[phase_physics]\nconcentration_min = 1.2\n')     # pixel r: cylinder fails, flat passes
    assert main(["gate", str(tmp_path), "--policy", str(policy)]) == 1
    assert "FAIL  physics cylinder: r 0.600 (bar > 0.7, n 3)" in capsys.readouterr().out
    policy.write_text('[localisation]\nmetric = "iou_grown_mean"\n[physics]\nflat_abs_r_max = 0.6\n'
                      '[phase_physics]\nconcentration_min = 1.2\n')
    assert main(["gate", str(tmp_path), "--policy", str(policy)]) == 0
    policy.write_text('[localisation]\nmetric = "iou_mean"\n')           # the paper's pixel IoU fails both
    assert main(["gate", str(f), "--policy", str(policy)]) == 1
    assert "FAIL  localisation crack: iou_mean 0.030" in capsys.readouterr().out
    policy.write_text('[localisation]\nmetric = "iou_best"\n')
    assert main(["gate", str(f), "--policy", str(policy)]) == 2
    assert "no localisation 'iou_best' for crack" in capsys.readouterr().err
    policy.write_text("[localisation]\niou = 0.3\n")
    assert main(["gate", str(f), "--policy", str(policy)]) == 2
    assert "unknown setting [localisation] 'iou'" in capsys.readouterr().err
    assert main(["gate", str(tmp_path / "none.json")]) == 2
    policy.write_text('[localisation]\nmetric = "iou_grown_mean"\n[sanity]\nmetric = "cosine_trained_vs_random"\n')
    assert main(["gate", str(f), "--policy", str(policy)]) == 1
    assert "FAIL  sanity (randomised weights): cosine similarity trained vs random 0.700 (bar < 0.5)" in capsys.readouterr().out
    del metrics["quality"]["sanity"]["rank_correlation_trained_vs_random"]          # written by an older audit
    f.write_text(json.dumps(metrics))
    assert main(["gate", str(f)]) == 2
    assert "no sanity 'rank_correlation_trained_vs_random'" in capsys.readouterr().err


def test_gate_judges_flat_parts_in_kelvin_for_a_model_judged_from_ambient(tmp_path, capsys):
    """From `ambient` a flat part's r is reported only (the exact physics reads 0.55-0.62 there); what is
    judged is the correction the model makes where the geometry needs none."""
    physics = {"cylinder": {"r": 0.9, "r_physics_scale": 0.95, "correction_unneeded_k": 0.05, "n": 3},
               "flat": {"r": 0.5, "r_physics_scale": 0.46, "correction_unneeded_k": 0.007, "n": 3}}
    metrics = {"physics": physics, "physics_baselines": {"physics": "ambient"}}
    checks = {c.name: c for c in evaluate_gate(metrics, load_policy(None))}
    assert checks["physics flat"].passed and checks["physics cylinder"].passed
    assert "0.0070 K from ambient (bar < 0.03 K" in checks["physics flat"].detail
    physics["flat"]["correction_unneeded_k"] = 0.04                 # a model inventing geometry on flat parts
    assert not {c.name: c for c in evaluate_gate(metrics, load_policy(None))}["physics flat"].passed
    metrics["physics_baselines"]["physics"] = "uniform"           # the paper's negative control, |r| < 0.3
    assert not {c.name: c for c in evaluate_gate(metrics, load_policy(None))}["physics flat"].passed
    physics["flat"]["r_physics_scale"] = 0.2
    assert {c.name: c for c in evaluate_gate(metrics, load_policy(None))}["physics flat"].passed
    del physics["flat"]["correction_unneeded_k"]                   # an audit before 2026-12-01, from ambient
    metrics["physics_baselines"]["physics"] = "ambient"
    f = tmp_path / "metrics.json"
    f.write_text(json.dumps(metrics))
    assert main(["gate", str(f)]) == 2
    assert "no physics 'correction_unneeded_k' for flat" in capsys.readouterr().err


def test_unneeded_correction_is_the_correction_in_kelvin_where_the_physics_map_is_quiet():
    from edge.audit.physics import unneeded_correction_k

    importance = np.zeros((4, 4), np.float32)
    importance[0, :] = 1.0                                       # geometry needs correcting on the first row
    correction = np.full((4, 4), 0.02, np.float32)
    correction[0, :] = 1.0
    # IG of the mean correction from ambient: each pixel holds its correction over the pixel count
    assert unneeded_correction_k(correction / 16, importance) == pytest.approx(0.02)
    assert np.isnan(unneeded_correction_k(correction / 16, np.ones((4, 4))))


def test_gate_records_the_outcome_and_the_server_withholds_unaudited_models(tmp_path, capsys):
    import shutil

    from edge.runtime.manifest import audit_status, load_manifest
    from edge.serve.inspector import Inspector

    models = tmp_path / "models"
    for name in ("defect", "phase"):
        shutil.copytree(MODELS / name, models / name, ignore=shutil.ignore_patterns("weights.pt", ".engines"))
        m = json.loads((models / name / "manifest.json").read_text())
        m["files"].pop("weights.pt", None)
        m["extra_files"] = []
        m.pop("audit", None)                     # start from models nobody has audited
        (models / name / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(PermissionError, match="defect: not audited; phase: not audited.*no audited classifier"):
        Inspector(models)
    sha = load_manifest(models / "defect")["files"]["predict.onnx"]
    good = {"model": {"sha256": sha}, "localisation": {"crack": {"iou_tolerant_mean": 0.7, "n": 3}}}
    (tmp_path / "good.json").write_text(json.dumps(good))
    assert main(["gate", str(tmp_path / "good.json"), "--record", str(models / "defect")]) == 0
    assert audit_status(load_manifest(models / "defect")) == "passed"
    bad = {"model": {"sha256": sha}, "localisation": {"crack": {"iou_tolerant_mean": 0.1, "n": 3}}}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert main(["gate", str(tmp_path / "bad.json"), "--record", str(models / "phase")]) == 2
    assert "audited another model" in capsys.readouterr().err
    phase_sha = load_manifest(models / "phase")["files"]["predict.onnx"]
    (tmp_path / "bad.json").write_text(json.dumps(bad | {"model": {"sha256": phase_sha}}))
    assert main(["gate", str(tmp_path / "bad.json"), "--record", str(models / "phase")]) == 1
    assert audit_status(load_manifest(models / "phase")) == "failed (localisation crack)"
    # the audited classifier is served; the model that failed its audit is withheld, and says why
    served = Inspector(models)
    assert list(served.models) == ["defect"] and list(served.withheld) == ["phase"]
    with pytest.raises(LookupError, match=r"'phase': not served here \(withheld: audit failed \(localisation crack\)\)"):
        served.classifier("phase")
    served = Inspector(models, allow_unaudited=True)
    assert served.audit == {"defect": "passed", "phase": "failed (localisation crack)"} and not served.withheld
    assert list(served.models) == ["defect", "phase"]


def test_operator_agreement_per_condition_with_wilson_intervals(tmp_path):
    import numpy as np

    from edge.audit.agreement import operator_agreement
    from edge.record import Inspection, InspectionStore

    store = InspectionStore(tmp_path / "a.sqlite")
    png = __import__("cv2").imencode(".png", np.zeros((4, 4), np.uint8))[1].tobytes()
    for i in range(10):
        store.put_inspection(Inspection(inspection_id=f"{i:04d}", station_id="s", part_id="p", model="defect",
                                        model_sha256="x", label="crack", confidence=0.9, probabilities={},
                                        heatmap=np.zeros((4, 4)), heatmap_png=png, heatmap_target="class crack",
                                        sentence="", requested=("gradcam",), received_ms=i))
        cond = "map only" if i < 4 else "map + sentence"
        store.put_verdict(f"{i:04d}", agree=(i % 4 != 0), correct_class="" if i % 4 else "ok", condition=cond)
    store.put_verdict("0001", agree=True, condition="")           # outside the study: map + sentence
    r = operator_agreement(tmp_path / "a.sqlite")
    assert r["map only"]["n"] == 4 and r["map only"]["agreement"] == 0.75
    assert r["map + sentence"]["n"] == 7 and abs(r["map + sentence"]["agreement"] - 5 / 7) < 1e-9
    lo, hi = r["map only"]["ci95"]
    assert 0 < lo < 0.75 < hi < 1
    with pytest.raises(FileNotFoundError, match="no such inspection store"):
        operator_agreement(tmp_path / "none.sqlite")


def test_box_annotated_classes_are_gated_on_the_pointing_game(capsys, tmp_path):
    """Loose boxes (a box around a diagonal scratch is mostly clean steel) cannot be filled by a map: a class
    whose ground truth is boxes is judged by the pointing game, a policy can pick another measure."""
    metrics = {"classification": {"accuracy": 1.0},
               "localisation": {"scratches": {"iou_tolerant_mean": 0.3, "pointing_game": 0.95, "boxes_hit_mean": 0.7,
                                              "n": 20, "ground_truth": "box"},
                                "inclusion": {"iou_tolerant_mean": 0.6, "pointing_game": 0.7, "boxes_hit_mean": 0.5,
                                              "n": 20, "ground_truth": "box"}}}
    checks = {c.name: c for c in evaluate_gate(metrics, load_policy(None))}
    assert checks["localisation scratches"].passed and not checks["localisation inclusion"].passed
    assert "pointing_game 0.700 (bar > 0.8, n 20, boxes)" in checks["localisation inclusion"].detail
    policy = tmp_path / "policy.toml"
    policy.write_text('[localisation]\nbox_metric = "boxes_hit_mean"\nbox_min = 0.6\n')
    checks = {c.name: c.passed for c in evaluate_gate(metrics, load_policy(policy))}
    assert checks == {"localisation scratches": True, "localisation inclusion": False}


def test_the_sanity_check_compares_maps_of_the_models_own_cam_method(test_set, monkeypatch):
    import numpy as np

    from edge.audit import quality
    from edge.data.arrays import load_arrays
    from edge.explain import GradCAMExplainer
    from edge.runtime.model import Model

    model = Model.load(MODELS / "defect")
    model.manifest = {**model.manifest, "explain": {"cam_method": "hirescam"}}
    arrays = load_arrays(test_set, model.input_shape[1], model.channels, limit=6, progress=False)
    classes = np.array([model.classes.index(lab) for lab in arrays.labels])
    heat = np.stack([e.heatmap for e in GradCAMExplainer(model).explain(arrays.x, classes)])
    import edge.explain.gradcam

    used = []      # the randomised copy goes through the same explainer, hence the same CAM step
    real_cam_raw = edge.explain.gradcam.cam_raw
    monkeypatch.setattr(edge.explain.gradcam, "cam_raw",
                        lambda a, g, method="gradcam": used.append(method) or real_cam_raw(a, g, method))
    s = quality.sanity(model, arrays.x, heat, classes)
    assert used == ["hirescam"] and s["method"] == "hirescam" and -1 <= s["rank_correlation_trained_vs_random"] <= 1
    assert s["n"] == 6 and 0 <= s["flat_random"] <= 6 and s["compared"] == 6 - min(s["flat_trained"], s["flat_random"])


def test_a_flat_map_beside_one_that_points_somewhere_is_unrelated_and_two_flat_maps_say_nothing(capsys):
    """A randomised copy's maps are often all zero (19 of 60 for the shipped classifier): such a map shares
    no ranking with the trained model's, which the sanity check counts as 0, not as a sample to drop; two
    flat maps are left out, and a check left with nothing says why instead of printing nan."""
    import numpy as np

    from edge.audit.quality import _map_rank_correlation

    peak, flat = np.zeros((8, 8)), np.zeros((8, 8))
    peak[2, 3] = 1.0
    assert _map_rank_correlation(peak, flat) == 0.0 == _map_rank_correlation(flat, peak)
    assert np.isnan(_map_rank_correlation(flat, flat + 0.5))
    assert _map_rank_correlation(peak, peak) == pytest.approx(1.0)
    metrics = {"quality": {"faithfulness": {"deletion_auc": 0.2, "deletion_random_auc": 0.5, "insertion_auc": 0.9,
                                            "insertion_random_auc": 0.6},
                           "sanity": {"rank_correlation_trained_vs_random": float("nan"), "n": 10, "compared": 0,
                                      "flat_trained": 10, "flat_random": 10}}}
    [_, check] = evaluate_gate(metrics, load_policy(None))
    assert not check.passed and "not measurable" in check.detail and "all flat (10 samples)" in check.detail



def test_frames_the_served_path_tiles_are_audited_in_tiles(tmp_path):
    """500 px frames for the NEU-DET model, trained on 200 px images: the service reads them in 200 px tiles,
    so the audit judges those tiles (labelled from the frames' masks) and reports the frames' own decisions
    beside them, as evaluate makes them."""
    import cv2
    import numpy as np

    from edge.audit.run import audit
    from edge.evaluate import evaluate

    model = MODELS.parent / "docs" / "real" / "neu-det" / "model"
    rng = np.random.default_rng(7)
    for k, cls in enumerate(["inclusion", "inclusion", "scratches", "scratches"]):
        (tmp_path / "frames" / cls).mkdir(parents=True, exist_ok=True)
        img = rng.normal(128, 12, (500, 500)).clip(0, 255).astype(np.uint8)
        mask = np.zeros((500, 500), np.uint8)
        if cls == "inclusion":
            cv2.circle(mask, (100 + 300 * (k % 2), 380), 6, 255, -1)
        else:
            cv2.line(mask, (60, 100 + 250 * (k % 2)), (440, 130 + 250 * (k % 2)), 255, 2)
        img[mask > 0] = 40
        assert cv2.imwrite(str(tmp_path / "frames" / cls / f"f{k}.png"), img)
        assert cv2.imwrite(str(tmp_path / "frames" / cls / f"f{k}.mask.png"), mask)
    m = audit(model, tmp_path / "frames", tmp_path / "report", shap_samples=4, progress=False,
              ood=tmp_path / "frames")
    d = m["data"]
    assert d["frames"] == 4 and d["tile_px"] == 200 and d["samples"] == d["tiles"] >= 4
    # no defect-free class in NEU-DET: tiles without defect pixels are left out, and said
    assert d["tiles_left_out"]["clean_tiles_without_ok_class"] > 0
    ev = evaluate(model, tmp_path / "frames", progress=False)
    assert m["frames"]["tiled_frames"] == ev["tiled_frames"] == 4 and m["frames"]["accuracy"] == ev["accuracy"]
    # the same frames as unlike ones: flagged and decided as the service does, by their deciding tile
    ood = m["review"]["out_of_distribution"]
    assert ood["tiled_frames"] == 4 and ood["n"] == 4 and ood["answered_right"] == ev["accuracy"]
    from edge.data import loader
    from edge.data.arrays import frame_planes
    from edge.explain import GradCAMExplainer, explain_frames, frame_view, review
    from edge.runtime.model import Model

    served = Model.load(model)
    policy, explainer = review.policy_for(served), GradCAMExplainer(served)
    flagged = []
    for item in loader.scan(tmp_path / "frames"):
        [r] = explain_frames(explainer, [frame_view(frame_planes(loader.load_sample(item), served.channels), served)])
        flagged.append(bool(policy.reasons_for(r.explanation, served.ok_class)))
    # (shrunk whole into one input, these noise frames would all be flagged; their deciding tiles are not)
    assert ood["flagged"] == np.mean(flagged)
    assert any("this audit judges what the model reads" in n and "tiles of 200 px" in n for n in m["notes"])
    assert sum(c["support"] for c in m["classification"]["per_class"].values()) == d["tiles"]
    html = (tmp_path / "report" / "report.html").read_text()
    assert "(4 frames, the large ones in 200 px tiles as served)" in html
    assert "4 of them are much larger than the training images: each is judged as the service\nflags it" in html


def test_calibrate_fits_large_frames_on_the_tiles_the_service_reads(tmp_path, capsys):
    """The temperature and the review flag's thresholds are fitted on what the model reads: 500 px frames for
    the NEU-DET model (trained on 200 px images) as 200 px tiles, not shrunk whole into one input."""
    import shutil

    import cv2
    import numpy as np

    from edge.cli import main
    from edge.data.tiles import tile_dataset
    from edge.evaluate import calibrate
    from edge.runtime.manifest import load_manifest

    model = tmp_path / "model"
    shutil.copytree(MODELS.parent / "docs" / "real" / "neu-det" / "model", model)
    rng = np.random.default_rng(11)
    for k in range(12):
        cls = ("inclusion", "scratches")[k % 2]
        (tmp_path / "frames" / cls).mkdir(parents=True, exist_ok=True)
        img = rng.normal(128, 12, (500, 500)).clip(0, 255).astype(np.uint8)
        mask = np.zeros((500, 500), np.uint8)
        if cls == "inclusion":
            for c in range(3):
                cv2.circle(mask, (int(rng.integers(40, 460)), int(rng.integers(40, 460))), 6, 255, -1)
        else:
            y = int(rng.integers(60, 440))
            cv2.line(mask, (30, y), (470, y + int(rng.integers(-40, 40))), 255, 2)
        img[mask > 0] = 40
        assert cv2.imwrite(str(tmp_path / "frames" / cls / f"f{k}.png"), img)
        assert cv2.imwrite(str(tmp_path / "frames" / cls / f"f{k}.mask.png"), mask)
    expected = tile_dataset(tmp_path / "frames", tmp_path / "cut", 200, None, unannotated="drop", progress=False,
                            keep_whole=300)
    c = calibrate(model, tmp_path / "frames", progress=False)
    t = c["tiles"]
    assert t == {"frames": 12, "tile_px": 200, "inputs": expected["tiles"], "left_out": t["left_out"]}
    assert "clean tiles without ok class" in t["left_out"]
    assert c["n"] == expected["tiles"] >= 30                      # fitted on the tiles, one input each
    stored = load_manifest(model, verify=False)
    assert stored["calibration"]["tiles"] == t and stored["review"]["n_held_out"] == expected["tiles"] - expected["tiles"] // 2
    assert main(["calibrate", "--model", str(model), "--data", str(tmp_path / "frames"), "--quiet"]) == 0
    said = capsys.readouterr().out
    assert "frames much larger than the training images: fitted as the service reads them, 12 frames in 200 px " \
           f"tiles ({expected['tiles']} inputs; left out: " in said


def test_calibrate_can_choose_the_heatmap_method_on_held_out_masks(tmp_path, capsys):
    """`calibrate --choose-cam` applies training's rule to held-out annotated data: a model left on plain
    Grad-CAM (whose class-averaged gradients light up the whole part on this classifier) takes up a map that
    points at the defects, recorded with what it replaced; the review flag is then fitted on those maps. Data
    without an annotated defect is refused by name, the model untouched."""
    import shutil

    from edge.audit.localisation import choose_cam
    from edge.cli import main
    from edge.errors import InvalidInput
    from edge.evaluate import calibrate
    from edge.runtime.manifest import load_manifest, save_manifest
    from edge.runtime.model import Model
    from edge.sim.sample import write_dataset

    model = tmp_path / "model"
    shutil.copytree(MODELS / "defect", model)
    save_manifest(model, dict(load_manifest(model, verify=False), explain={"cam_method": "gradcam", "reason": "test"}))
    data = write_dataset(tmp_path / "d", 60, seed=7, progress=False)
    c = calibrate(model, data, progress=False, choose_cam=choose_cam)
    cam = c["cam"]
    assert cam["previous"] == "gradcam" and cam["cam_method"] in ("hirescam", "gradcam-elementwise")
    assert cam["samples"] == 50 and "chosen on held-out data, 50 annotated defect samples" in cam["reason"]
    assert f"best pointing game on the masks/boxes of {data} (gradcam worst class" in cam["reason"]
    stored = load_manifest(model, verify=False)
    assert stored["explain"] == {"cam_method": cam["cam_method"], "reason": cam["reason"]}
    assert Model.load(model).cam_method == cam["cam_method"]

    assert main(["calibrate", "--model", str(model), "--data", str(data), "--choose-cam", "--quiet"]) == 0
    assert f"heatmaps: {cam['cam_method']} (was {cam['cam_method']}; chosen on held-out data" in capsys.readouterr().out

    for cls in [p for p in data.iterdir() if p.is_dir() and p.name != "ok"]:
        shutil.rmtree(cls)
    before = (model / "manifest.json").read_text()
    with pytest.raises(InvalidInput, match=rf"{data}: --choose-cam needs defect samples with masks or boxes; none "
                                           r"of its 10 samples has one"):
        calibrate(model, data, progress=False, choose_cam=choose_cam)
    assert (model / "manifest.json").read_text() == before
