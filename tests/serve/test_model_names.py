"""What the inspector says about the model it serves: the name of its folder under the models directory,
and the heatmap method the model was trained to be explained with."""
import json
import shutil
from types import SimpleNamespace

from helpers import MODELS
from edge.serve.inspector import Inspector
from edge.serve.servicer import build_job
from edge.serve.station import make_requests


def _inspect(inspector: Inspector):
    request = make_requests(6, seed=1000, station="s")[1]                  # a crack
    node = SimpleNamespace(inspector=inspector, config=SimpleNamespace(cycle_budget_ms=1e4))
    [ins] = inspector.inspect_batch([build_job(request, node, None)])
    return ins


def test_a_model_copied_under_another_folder_name_is_served_under_that_name(tmp_path):
    """A model trained into `out/model` and copied to `models/line3` keeps "model" in its manifest; the
    server must answer to the folder's name, and inspect with it."""
    shutil.copytree(MODELS / "defect", tmp_path / "models" / "line3", ignore=shutil.ignore_patterns(".engines"))
    inspector = Inspector(tmp_path / "models", allow_unaudited=True)
    assert inspector.models["line3"].manifest["name"] == "defect" and inspector.default_model == "line3"
    ins = _inspect(inspector)
    assert ins.model == "line3" and ins.label == "crack"


def test_the_sentence_quotes_the_heatmap_method_the_model_is_explained_with(tmp_path):
    folder = tmp_path / "models" / "defect"
    shutil.copytree(MODELS / "defect", folder, ignore=shutil.ignore_patterns(".engines"))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["explain"] = {"cam_method": "hirescam"}                         # as training records its choice
    (folder / "manifest.json").write_text(json.dumps(manifest))
    ins = _inspect(Inspector(tmp_path / "models", allow_unaudited=True))
    assert ins.heatmap_method == "hirescam" and "(HiResCAM +" in ins.sentence and "Grad-CAM" not in ins.sentence
