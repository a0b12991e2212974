"""The evaluation's per-sample rows, without a model."""
import numpy as np

from edge.data.loader import sample_names
from edge.evaluate import prediction_rows


def test_prediction_rows_name_each_samples_answer_and_its_confidence():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    rows = prediction_rows(["ok/a.png", "pit/b.png"], ["ok", "pit"], ["ok", "crack", "pit"], probs)
    assert rows[0] == {"file": "ok/a.png", "true": "ok", "predicted": "ok", "correct": 1, "confidence": 0.7,
                       "p_true": 0.7, "read": "whole", "p_ok": 0.7, "p_crack": 0.2, "p_pit": 0.1}
    assert rows[1]["predicted"] == "pit" and rows[1]["correct"] == 1 and rows[1]["confidence"] == 0.6
    # a frame the served path read in tiles (much larger than the training images) says so
    assert [r["read"] for r in prediction_rows(["a", "b"], ["ok", "pit"], ["ok", "crack", "pit"], probs, [1])] == \
        ["whole", "tiles"]
    wrong = prediction_rows(["x.png"], ["crack"], ["ok", "crack", "pit"], probs[:1])[0]
    assert (wrong["predicted"], wrong["correct"], wrong["confidence"], wrong["p_true"]) == ("ok", 0, 0.7, 0.2)


def test_samples_are_named_relative_to_the_data_set_even_where_they_are_links(tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "cell1.png").write_bytes(b"x")
    (tmp_path / "set" / "p100").mkdir(parents=True)
    (tmp_path / "set" / "p100" / "cell1.png").symlink_to(tmp_path / "store" / "cell1.png")
    assert sample_names([tmp_path / "set" / "p100" / "cell1.png"], tmp_path / "set") == ["p100/cell1.png"]
    # outside the set (the audit's temporary tiles): class folder and name, not a path that is gone tomorrow
    assert sample_names([tmp_path / "tmp" / "pit" / "1__y00000_x00128.png"], tmp_path / "set") == \
        ["pit/1__y00000_x00128.png"]
