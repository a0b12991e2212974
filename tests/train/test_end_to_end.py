"""Train -> export -> evaluate on tiny sets, for all three tasks and for a user's image folder."""
import csv
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from edge.cli import main
from edge.train.train import TrainConfig, train

pytestmark = pytest.mark.slow


def _train(data, out, task, **kw):
    cfg = TrainConfig(task=task, size=32, epochs=kw.pop("epochs", 1), width=kw.pop("width", 4), threads=2, **kw)
    return train(data, out, cfg, progress=False)


@pytest.mark.parametrize("task", ["defect", "thermal", "phase"])
def test_train_export_evaluate(sim_dataset, tmp_path, capsys, task):
    summary = _train(sim_dataset, tmp_path / task, task)
    assert all(e < 1e-4 for e in summary["parity"]["relative_l2"].values())
    manifest = json.loads((tmp_path / task / "manifest.json").read_text())
    assert manifest["task"] == task and manifest["training"]["data"]["seed"] == 5
    assert set(manifest["files"]) >= {"predict.onnx", "input_gradient.onnx", "weights.pt"}
    capsys.readouterr()
    rows_csv = tmp_path / "review" / f"{task}.csv"          # its folder does not exist yet: made
    assert main(["evaluate", "--model", str(tmp_path / task), "--data", str(sim_dataset), "--json",
                 "--predictions", str(rows_csv)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["task"] == task and metrics["samples"] == 60 and metrics["predictions"] == str(rows_csv)
    with rows_csv.open() as f:
        rows = list(csv.DictReader(f))
    # one row per sample, named as the data set names it, in its order
    assert len(rows) == 60 and all((sim_dataset / r["file"]).is_file() for r in rows)
    assert len({r["file"] for r in rows}) == 60
    if task == "defect":
        cm = np.array(metrics["confusion"]["matrix"])
        assert sum(int(r["correct"]) for r in rows) == np.trace(cm)
        assert all(r["file"].split("/")[0] == r["true"] for r in rows)   # DIR/<class>/<stem>
        for r in rows:
            probs = {c: float(r[f"p_{c}"]) for c in manifest["classes"]}
            # the predicted class has the highest probability (rounding keeps that, ties aside)
            assert abs(sum(probs.values()) - 1) < 1e-3 and probs[r["predicted"]] == max(probs.values())
            assert float(r["confidence"]) == probs[r["predicted"]] and float(r["p_true"]) == probs[r["true"]]
    else:
        assert all(float(r["mae"]) >= 0 for r in rows)
    if task == "defect":
        assert set(metrics["per_class"]) == {"ok", "crack", "pit", "contamination", "delamination", "scratch"}
        # the run's summary names every class's validation recall and count (the log says it in words)
        val = summary["validation"]
        assert set(val["val_recall"]) == set(manifest["classes"]) == set(val["val_support"])
        assert np.array(metrics["confusion"]["matrix"]).sum() == 60
        c = metrics["calibration"]         # too few validation samples here: raw softmax, said so
        assert manifest["calibration"]["method"] == "none" and c["temperature"] == 1.0
        assert c["ece_before"] == c["ece_after"] and 0 <= c["ece_before"] <= 1
    elif task == "thermal":
        assert metrics["mae"] > 0 and metrics["baseline_mae"] > 0
    else:
        assert 0 <= metrics["fringe_order_accuracy"] <= 1


def test_training_is_deterministic_given_the_seed(sim_dataset, tmp_path):
    _train(sim_dataset, tmp_path / "a", "defect", limit=24)
    _train(sim_dataset, tmp_path / "b", "defect", limit=24)
    wa = torch.load(tmp_path / "a" / "weights.pt", weights_only=True)["state_dict"]
    wb = torch.load(tmp_path / "b" / "weights.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    _train(sim_dataset, tmp_path / "c", "defect", limit=24, seed=1)
    wc = torch.load(tmp_path / "c" / "weights.pt", weights_only=True)["state_dict"]
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_classifier_learns_something_on_the_simulator(tmp_path):
    """Not a quality bar (that is `edge-xai evaluate` on 1000+ samples); a check that training trains."""
    from edge.sim.sample import SimConfig, write_dataset

    data = write_dataset(tmp_path / "d", 240, seed=11, cfg=SimConfig(size=32), progress=False)
    s = _train(data, tmp_path / "m", "defect", epochs=20, width=8, val_fraction=0.25)
    assert s["validation"]["val_accuracy"] > 0.4  # chance is 1/6
    # the confidence calibration is fitted on the 60 validation samples and recorded
    c = json.loads((tmp_path / "m" / "manifest.json").read_text())["calibration"]
    assert c["method"] == "temperature" and c["n"] == 60 and c["fitted_on"] == "validation split"
    assert c["nll_after"] <= c["nll_before"] + 1e-9 and 0.05 <= c["temperature"] <= 20
    # and the review flag: embeddings from the training samples, thresholds from the validation split
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["review"]["budget"] == 0.1 and "review.npz" in manifest["files"]
    assert 0 < manifest["review"]["min_confidence"] <= 1 and manifest["review"]["max_distance"] > 0
    assert manifest["review"]["budget_held"] is False      # 60 validation samples: too few to hold 10 % surely


def test_trains_on_a_users_grayscale_folder_with_masks(tmp_path):
    """Data unlike the simulator's: one channel, 8-bit, various sizes, two user-named classes (the defect-free
    one called "good", as in MVTec AD: found by its name, no --ok-class needed)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "user"
    for cls in ("good", "dent"):
        (root / cls).mkdir(parents=True)
        for i in range(12):
            h, w = int(rng.integers(40, 90)), int(rng.integers(40, 90))
            img = (rng.normal(120, 20, (h, w))).clip(0, 255).astype(np.uint8)
            if cls == "dent":
                cv2.circle(img, (w // 2, h // 2), 5, 250, -1)
                mask = np.zeros((h, w), np.uint8)
                if i >= 2:            # the first two dents' masks were exported blank: they mark nothing
                    cv2.circle(mask, (w // 2, h // 2), 5, 255, -1)
                cv2.imwrite(str(root / cls / f"{i}.mask.png"), mask)
            cv2.imwrite(str(root / cls / f"{i}.png"), img)
    s = _train(root, tmp_path / "m", "defect", epochs=2)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["classes"] == ["good", "dent"] and manifest["ok_class"] == "good"
    assert manifest["training"]["ok_class_reason"] == "named so; --ok-class NAME overrides"
    assert manifest["channels"] == ["gray"]
    assert manifest["input"]["normalisation"]["mode"] == "per_image"  # auto for image files
    # photographs with masks and a defect-free class: small dents are also shown on the good parts' surfaces
    training = manifest["training"]
    assert training["augmentation"]["paste"] > 0 and "pasted onto defect-free" in training["augmentation_reason"]
    assert training["paste"]["surfaces"] > 0 and training["paste"]["donors"] > 0
    assert training["unmarked_masks"] == 2        # not taught "no defect here" on a dent
    assert s["parity"]["relative_l2"]["gradcam"] < 1e-4


def test_cli_train_reports_bad_data_without_traceback(tmp_path):
    (tmp_path / "d" / "ok").mkdir(parents=True)
    r = subprocess.run([sys.executable, "-m", "edge.cli", "train", "--task", "defect", "--data",
                        str(tmp_path / "d"), "--out", str(tmp_path / "m")], capture_output=True, text=True)
    assert r.returncode == 2
    assert "empty class folder" in r.stderr and "Traceback" not in r.stderr


def test_an_export_that_fails_after_training_keeps_the_weights_and_says_how_to_finish(sim_dataset, tmp_path,
                                                                                      monkeypatch):
    from edge.errors import ExportError
    from edge.train import train as train_module

    def refuse(*args, **kwargs):
        raise ExportError("predict.onnx: differs from autograd")

    monkeypatch.setattr(train_module, "export_model_dir", refuse)
    out = tmp_path / "m"
    with pytest.raises(ExportError) as e:
        _train(sim_dataset, out, "defect", limit=24)
    said = str(e.value)
    assert said.startswith("predict.onnx: differs from autograd. The trained weights are kept in")
    assert f"edge-xai export --model {out}" in said and f"edge-xai calibrate --model {out}" in said
    assert (out / "weights.pt").is_file()
