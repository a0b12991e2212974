"""Verdicts back into training: stored frames become a data set the loader reads, with operators' classes."""
import json
from pathlib import Path

import numpy as np
import pytest

from edge.cli import main
from edge.data.arrays import load_arrays
from edge.errors import MissingFile, OutputExists
from edge.record import Inspection, InspectionStore
from edge.serve.dataset import dataset_from_store
from edge.serve.frames import encode_frame


def _inspection(i: int, label: str) -> Inspection:
    return Inspection(inspection_id=f"{i:04d}", station_id="s", part_id=f"p{i}", model="defect", model_sha256="x",
                      label=label, confidence=0.9, probabilities={label: 0.9}, heatmap=np.zeros((4, 4)),
                      heatmap_png=b"", heatmap_target=f"class {label}", sentence="", requested=("gradcam",),
                      received_ms=i)


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(0)
    s = InspectionStore(tmp_path / "inspections.sqlite")
    physical = {n: rng.normal(350, 5, (16, 20)).astype(np.float32) for n in ("thermal", "phase", "intensity")}
    gray = rng.integers(0, 255, (24, 30), dtype=np.uint8)
    for i, (label, verdict, frame) in enumerate([
            ("crack", (True, ""), encode_frame(physical, "float32", pixel_pitch_mm=0.1)),    # agreed
            ("ok", (False, "scratch"), encode_frame({"gray": gray}, "uint8")),              # disagreed
            ("pit", (True, ""), None),                                                      # no frame kept
            ("ok", None, encode_frame({"gray": gray}, "uint8"))]):                          # no verdict
        s.put_inspection(_inspection(i, label), frame=frame.SerializeToString() if frame else None)
        if verdict:
            s.put_verdict(f"{i:04d}", verdict[0], verdict[1], "anna")
    s.put_verdict("0000", False, "pit", "bob")          # changed mind...
    s.put_verdict("0000", True, "", "bob")              # ...the latest verdict counts
    s.close()
    return tmp_path / "inspections.sqlite", physical, gray


def test_verdicted_frames_become_a_data_set_labelled_by_the_operator(store, tmp_path):
    path, physical, gray = store
    r = dataset_from_store(path, tmp_path / "set", progress=False)
    assert r["inspections_with_verdicts"] == 3 and r["written"] == 2 and r["disagreements"] == 1
    assert r["classes"] == {"crack": 1, "scratch": 1} and r["left_out"]["no_frame"] == 1 and "store_frames" in r["note"]
    assert (tmp_path / "set" / "crack" / "0000.npz").is_file() and (tmp_path / "set" / "scratch" / "0001.png").is_file()
    # the loader reads them back: physical channels as sent, the 8-bit photograph scaled as image files are
    with np.load(tmp_path / "set" / "crack" / "0000.npz") as z:
        assert list(z["channel_names"]) == ["thermal", "phase", "intensity"] and float(z["pixel_pitch_mm"]) == 0.1
        np.testing.assert_array_equal(z["thermal"], physical["thermal"])
    photos = load_arrays(tmp_path / "set-review", 30, ["gray"], progress=False)      # the review set
    assert photos.labels == ["scratch"]
    import cv2

    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "set" / "scratch" / "0001.png"), cv2.IMREAD_UNCHANGED), gray)
    review = json.loads((tmp_path / "set-review" / "dataset.json").read_text())
    assert review["samples"][0]["model_class"] == "ok" and review["samples"][0]["operator_class"] == "scratch"
    assert json.loads((tmp_path / "set" / "dataset.json").read_text())["left_out_ids"]["no_frame"] == ["0002"]


def test_nothing_is_overwritten_and_a_missing_store_is_named(store, tmp_path):
    path, *_ = store
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("keep")
    with pytest.raises(OutputExists, match="--out"):
        dataset_from_store(path, tmp_path / "used", progress=False)
    with pytest.raises(MissingFile, match="no such inspection store"):
        dataset_from_store(tmp_path / "nope.sqlite", tmp_path / "new", progress=False)


def test_cli_reports_what_was_written_and_left_out(store, tmp_path, capsys):
    path, *_ = store
    assert main(["dataset", "--from-store", str(path), "--out", str(tmp_path / "d"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "wrote 2 of 3 verdicted inspections" in out and "1 no frame" in out and "store_frames" in out


def test_an_unreadable_stored_frame_is_left_out_and_listed(tmp_path):
    s = InspectionStore(tmp_path / "s.sqlite")
    s.put_inspection(_inspection(0, "crack"), frame=b"\xff\x00 not a protobuf")
    s.put_verdict("0000", True)
    s.close()
    r = dataset_from_store(tmp_path / "s.sqlite", tmp_path / "out", progress=False)
    assert r["written"] == 0 and r["left_out"]["unreadable_frame"] == 1
    assert json.loads((tmp_path / "out" / "dataset.json").read_text())["left_out_ids"]["unreadable_frame"][0].startswith("0000")


def test_a_store_without_verdicts_says_where_verdicts_come_from(tmp_path, capsys):
    s = InspectionStore(tmp_path / "s.sqlite")
    s.put_inspection(_inspection(0, "ok"))
    s.close()
    assert main(["dataset", "--from-store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "d"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "wrote 0 of 0 verdicted inspections" in out
    assert "none of the store's 1 inspections has an operator's verdict yet" in out and "Agree / Disagree" in out


def test_out_dot_writes_into_the_current_folder_and_the_review_set_beside_it(store, tmp_path, monkeypatch):
    path, *_ = store
    (tmp_path / "line").mkdir()
    monkeypatch.chdir(tmp_path / "line")
    r = dataset_from_store(path, Path("."), progress=False)
    assert (tmp_path / "line" / "dataset.json").is_file() and (tmp_path / "line-review" / "dataset.json").is_file()
    assert r["review"] == str(tmp_path / "line-review")
