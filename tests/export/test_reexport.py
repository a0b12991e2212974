"""`edge-xai export --graphs`: some graphs re-exported from weights.pt, the others' files kept, so the
predict graph's sha256 (what an audit record is tied to) and a passed audit stay as they were."""
import json
import shutil

import pytest

from edge.cli import main
from edge.runtime.manifest import predict_sha256
from edge.runtime.model import Model
from helpers import MODELS

pytestmark = pytest.mark.slow


def test_reexporting_the_gradcam_graph_keeps_the_predict_graph_and_the_audit(tmp_path, capsys):
    folder = tmp_path / "defect"
    shutil.copytree(MODELS / "defect", folder, ignore=shutil.ignore_patterns(".engines"))
    before = json.loads((folder / "manifest.json").read_text())
    kept = {g: (folder / f"{g}.onnx").read_bytes() for g in ("predict", "input_gradient", "guided_gradient")}
    (folder / "gradcam.onnx").write_bytes(b"stale")           # so the re-export must write it
    assert main(["export", "--model", str(folder), "--graphs", "gradcam"]) == 0
    assert "exported gradcam to" in capsys.readouterr().out
    after = json.loads((folder / "manifest.json").read_text())
    assert all((folder / f"{g}.onnx").read_bytes() == b for g, b in kept.items())
    assert predict_sha256(after) == predict_sha256(before) and after["audit"] == before["audit"]
    assert list(after["graphs"]) == list(before["graphs"]) and after["parity"]["relative_l2"]["gradcam"] < 1e-4
    assert after["parity"]["relative_l2"]["predict"] == before["parity"]["relative_l2"]["predict"]
    model = Model.load(folder)                                 # every file's hash checks out
    assert model.audit_status == "passed" and "gradcam" in model.graphs


def test_an_unknown_graph_name_is_refused_with_the_model_s_graphs(tmp_path, capsys):
    folder = tmp_path / "defect"
    shutil.copytree(MODELS / "defect", folder, ignore=shutil.ignore_patterns(".engines"))
    assert main(["export", "--model", str(folder), "--graphs", "gradcam,shap"]) == 2
    err = capsys.readouterr().err
    assert "graphs shap: a defect model has gradcam, guided_gradient, head_gradient, input_gradient, predict" in err


def test_a_model_exported_before_the_head_graph_gains_it_alone_and_keeps_its_audit(tmp_path, capsys):
    """head_gradient (the head's backward from kept activations: a tiled frame's other-class tiles) is
    optional: a model exported before it serves without it, and `--graphs head_gradient` adds it alone."""
    folder = tmp_path / "defect"
    shutil.copytree(MODELS / "defect", folder, ignore=shutil.ignore_patterns(".engines"))
    before = json.loads((folder / "manifest.json").read_text())
    assert "head_gradient" not in before["graphs"]
    assert main(["export", "--model", str(folder), "--graphs", "head_gradient"]) == 0
    after = json.loads((folder / "manifest.json").read_text())
    assert list(after["graphs"]) == [*before["graphs"], "head_gradient"]
    assert predict_sha256(after) == predict_sha256(before) and after["audit"] == before["audit"]
    assert after["parity"]["relative_l2"]["head_gradient"] < 1e-4
    assert after["graphs"]["head_gradient"]["inputs"] == ["activations", "target"]
    assert Model.load(folder).audit_status == "passed"
