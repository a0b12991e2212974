"""Real photographs with box annotations (24 NEU-DET images, tests/fixtures/neu-mini): train -> export ->
evaluate -> audit -> gate with default options (a short schedule), as a user would run them."""
import json
import shutil
from pathlib import Path

import pytest

from edge.cli import main
from edge.explain import DISPLAY_NAMES

pytestmark = pytest.mark.slow

NEU_MINI = Path(__file__).resolve().parents[1] / "fixtures" / "neu-mini"


def test_neu_subset_trains_exports_evaluates_and_audits_with_boxes(tmp_path, capsys):
    model = tmp_path / "model"
    assert main(["train", "--task", "defect", "--data", str(NEU_MINI), "--out", str(model), "--epochs", "3",
                 "--threads", "2", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert all(e < 1e-4 for e in summary["parity"]["relative_l2"].values())     # graphs equal autograd
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["ok_class"] is None and manifest["classes"] == ["inclusion", "patches", "scratches"]
    # NEU's defects are large: the size is chosen from them (not below 128 px), and the reason is kept
    assert manifest["input"]["size"] == [128, 128] and "10th percentile" in manifest["input"]["size_reason"]
    assert manifest["input"]["source_size"] == [200, 200] and manifest["input"]["integer_scaling"] is True
    assert manifest["training"]["augmentation"]["flips"] == [2, 3]
    # photographs from scratch: the dilated context layers before the Grad-CAM layer, in the exported model too
    assert manifest["training"]["recipe"]["context"] == 2 and "139 px" in manifest["training"]["context_reason"]
    assert manifest["target_layer"] == "features.7"         # 5 layers to 1/8, 2 context, then the target
    assert main(["evaluate", "--model", str(model), "--data", str(NEU_MINI), "--json", "--quiet"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["samples"] == 24 and set(metrics["per_class"]) == {"inclusion", "patches", "scratches"}
    report = tmp_path / "audit"
    assert main(["audit", "--model", str(model), "--data", str(NEU_MINI), "--out", str(report),
                 "--shap-samples", "4", "--quiet"]) == 0
    audit = json.loads((report / "metrics.json").read_text())
    for cls, row in audit.get("localisation", {}).items():
        assert row["ground_truth"] == "box" and 0 <= row["boxes_hit_mean"] <= 1 and 0 <= row["pointing_game"] <= 1
    # the audit judges, and its report names, the map the model is explained with (chosen at training)
    method = manifest["explain"]["cam_method"]
    assert audit["cam_method"] == method and audit["quality"]["sanity"]["method"] == method
    name = DISPLAY_NAMES[method]          # whichever of the four the validation split chose
    html = (report / "report.html").read_text()
    assert f"Localisation ({name} vs defect masks and boxes)" in html and f"{name} of the true class" in html
    main(["gate", str(report / "metrics.json")])
    out = capsys.readouterr().out
    assert "pointing_game" in out or "localisation" in out        # box classes are judged by the pointing game


def test_context_layers_can_be_turned_off_and_the_model_is_built_without_them(tmp_path, capsys):
    model = tmp_path / "model"
    assert main(["train", "--task", "defect", "--data", str(NEU_MINI), "--out", str(model), "--epochs", "1",
                 "--context", "0", "--threads", "2", "--quiet"]) == 0
    capsys.readouterr()
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["training"]["recipe"]["context"] == 0 and manifest["training"]["context_reason"] == "--context 0"
    assert manifest["target_layer"] == "features.5"


def test_a_data_set_with_a_broken_box_file_names_it(tmp_path, capsys):
    data = tmp_path / "neu"
    shutil.copytree(NEU_MINI, data)
    bad = sorted((data / "patches").glob("*.xml"))[0]
    bad.write_text("<annotation><object><name>patches</name><bndbox><xmin>10</xmin></bndbox></object></annotation>")
    assert main(["train", "--task", "defect", "--data", str(data), "--out", str(tmp_path / "m"), "--epochs", "1",
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert bad.name in err and "needs numeric xmin, ymin, xmax, ymax" in err
