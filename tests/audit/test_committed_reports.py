"""The audit reports committed under docs/ must stay true of the models they describe: the shortcut
experiment's verdicts (docs/shortcut) and the shipped models' audits (docs/audits, recorded in the
manifests) are re-judged here with the current gate, and tied to the shipped graphs by sha256."""
import json
from pathlib import Path

import pytest
from helpers import MODELS

from edge.audit.gate import evaluate_gate, load_policy
from edge.runtime.manifest import audit_status, load_manifest
from edge.runtime.model import Model

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _checks(path: Path) -> dict[str, bool]:
    return {c.name: c.passed for c in evaluate_gate(json.loads(path.read_text()), load_policy(None))}


def test_the_gate_fails_the_shortcut_model_on_localisation_and_passes_the_shipped_one():
    shortcut = _checks(DOCS / "shortcut" / "shortcut" / "metrics.json")
    failed = {k for k, ok in shortcut.items() if not ok}
    assert failed and all(k.startswith("localisation ") for k in failed)
    assert {"localisation delamination", "localisation pit"} <= failed
    assert all(_checks(DOCS / "shortcut" / "shipped" / "metrics.json").values())
    shipped = json.loads((DOCS / "shortcut" / "shipped" / "metrics.json").read_text())
    assert shipped["model"]["sha256"] == load_manifest(MODELS / "defect")["files"]["predict.onnx"], \
        "docs/shortcut audited another classifier than models/defect: re-run docs/shortcut/run.sh"
    # the same weights explained with another map are another verdict (docs/shortcut/README.md)
    assert shipped["cam_method"] == Model.load(MODELS / "defect").cam_method, \
        "docs/shortcut judged other maps than models/defect serves: re-run docs/shortcut/run.sh"


@pytest.mark.parametrize("name", ["defect", "thermal", "phase"])
def test_each_shipped_model_carries_the_outcome_of_its_committed_audit(name):
    manifest = load_manifest(MODELS / name)
    metrics = DOCS / "audits" / name / "metrics.json"
    m = json.loads(metrics.read_text())
    assert m["model"]["sha256"] == manifest["files"]["predict.onnx"], \
        f"docs/audits/{name} audited other graphs than models/{name}: re-run the audit (docs/audits/README.md)"
    failed = [k for k, ok in _checks(metrics).items() if not ok]
    assert audit_status(manifest) == ("passed" if not failed else f"failed ({', '.join(failed)})")
    if "cam_method" in m:             # classifiers: the audit judged the maps the model serves
        assert m["cam_method"] == Model.load(MODELS / name).cam_method, \
            f"docs/audits/{name} judged other maps than models/{name} serves: re-run the audit (docs/audits/README.md)"
