"""Manifests refuse tampered model folders; the runtime path never imports torch."""
import json
import subprocess
import sys

import numpy as np
import pytest

from edge.runtime.manifest import ManifestError, load_manifest, record_evaluation, write_manifest
from edge.runtime.model import InputError, Model


@pytest.fixture
def model_dir(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "predict.onnx").write_bytes(b"graph bytes")
    (d / "weights.pt").write_bytes(b"weights")
    write_manifest(d, {"task": "defect", "channels": ["gray"], "opset": 18, "extra_files": ["weights.pt"],
                       "input": {"size": [8, 8], "normalisation": {"mode": "per_image"}},
                       "graphs": {"predict": {"file": "predict.onnx", "inputs": ["input"], "outputs": ["logits"]}}})
    return d


def test_a_matching_folder_loads(model_dir):
    m = load_manifest(model_dir)
    assert set(m["files"]) == {"predict.onnx", "weights.pt"}


def test_a_changed_file_is_refused_by_name(model_dir):
    (model_dir / "predict.onnx").write_bytes(b"other bytes")
    with pytest.raises(ManifestError, match=r"predict\.onnx: sha256 .* does not match"):
        load_manifest(model_dir)


def test_a_missing_file_is_refused_by_name(model_dir):
    (model_dir / "weights.pt").unlink()
    with pytest.raises(ManifestError, match=r"weights\.pt: listed in the manifest but missing"):
        load_manifest(model_dir)


def test_broken_or_absent_manifest(model_dir, tmp_path):
    with pytest.raises(ManifestError, match="no manifest"):
        load_manifest(tmp_path)
    (model_dir / "manifest.json").write_text("{")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(model_dir)


def test_evaluation_is_recorded_without_breaking_verification(model_dir):
    record_evaluation(model_dir, {"accuracy": 0.5})
    assert load_manifest(model_dir)["evaluation"]["metrics"]["accuracy"] == 0.5


def test_inputs_are_checked_by_name(model_dir):
    m = Model(model_dir, json.loads((model_dir / "manifest.json").read_text()))
    with pytest.raises(InputError, match=r"input: shape \(1, 3, 8, 8\), expected \(N, 1, 8, 8\)"):
        m.check_input(np.zeros((1, 3, 8, 8)))
    for values in ([np.inf], [np.nan], [-np.inf], [np.inf, -np.inf], [1e39]):   # 1e39: beyond float32
        bad = np.ones((1, 1, 8, 8))
        bad[0, 0, 0, :len(values)] = values
        with pytest.raises(InputError, match="NaN or Inf"), np.errstate(all="ignore"):   # numpy's own warnings
            m.check_input(bad)
    big = np.full((1, 1, 8, 8), np.finfo(np.float32).max, np.float32)     # finite, however large the sum
    assert m.check_input(big).dtype == np.float32
    for dtype in (bool, np.complex64):
        with pytest.raises(InputError, match="expected a numeric array"):
            m.check_input(np.zeros((1, 1, 8, 8), dtype))
    assert m.check_input(np.zeros((1, 1, 8, 8), np.uint16)).dtype == np.float32


def test_runtime_path_does_not_import_torch(tmp_path):
    code = ("import sys, edge.runtime.model, edge.runtime.manifest, edge.evaluate, edge.data.arrays, edge.cli\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
