"""Served models answer to the name of their folder under the models directory."""
from conftest import MODELS


def test_a_model_copied_under_another_folder_name_is_served_under_that_name(tmp_path):
    """A model trained into `out/model` and copied to `models/line3` keeps "model" in its manifest; the
    server must answer to the folder's name, and inspect with it."""
    import shutil
    from types import SimpleNamespace

    from edge.serve.inspector import Inspector
    from edge.serve.servicer import build_job
    from edge.serve.station import make_requests

    shutil.copytree(MODELS / "defect", tmp_path / "models" / "line3", ignore=shutil.ignore_patterns(".engines"))
    inspector = Inspector(tmp_path / "models", allow_unaudited=True)
    assert inspector.models["line3"].manifest["name"] == "defect" and inspector.default_model == "line3"
    request = make_requests(6, seed=1000, station="s")[1]
    [ins] = inspector.inspect_batch([build_job(request, SimpleNamespace(inspector=inspector, config=SimpleNamespace(cycle_budget_ms=1e4)), None)])
    assert ins.model == "line3" and ins.label == "crack"
