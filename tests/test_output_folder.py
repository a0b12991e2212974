"""Output folders appear whole or not at all (edge.output_folder), and the commands that write them use it."""
from pathlib import Path

import pytest

from edge.errors import ExportError, OutputExists
from edge.output_folder import staged_output


def _entries(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_completed_block_publishes_the_folder_under_its_name(tmp_path):
    out = tmp_path / "model"
    with staged_output(out) as work:
        assert work.name == "model" and work.parent != tmp_path and not out.exists()
        (work / "a.txt").write_text("x")
    assert _entries(tmp_path) == ["model"] and (out / "a.txt").read_text() == "x"


@pytest.mark.parametrize("stop", [RuntimeError("boom"), KeyboardInterrupt()])
def test_an_error_or_ctrl_c_halfway_leaves_nothing(tmp_path, stop):
    out = tmp_path / "set"
    with pytest.raises(type(stop)), staged_output(out) as work:
        (work / "ok").mkdir()
        (work / "ok" / "s0.npz").write_bytes(b"half")
        raise stop
    assert _entries(tmp_path) == []


def test_an_existing_empty_folder_is_filled_and_a_non_empty_one_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with staged_output(tmp_path / "empty") as work:
        (work / "f").write_text("1")
    assert _entries(tmp_path / "empty") == ["f"]
    with pytest.raises(OutputExists, match="--data-out .*empty exists and is not empty"), \
            staged_output(tmp_path / "empty", "--data-out"):
        pass
    assert _entries(tmp_path / "empty") == ["f"]


def test_out_dot_fills_the_current_folder_which_stays_the_same_folder(tmp_path, monkeypatch):
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    inode = (tmp_path / "here").stat().st_ino
    with staged_output(Path(".")) as work:
        (work / "ok").mkdir()
        (work / "dataset.json").write_text("{}")
    assert _entries(tmp_path) == ["here"] and _entries(tmp_path / "here") == ["dataset.json", "ok"]
    assert Path.cwd().stat().st_ino == inode == (tmp_path / "here").stat().st_ino


def test_keep_on_publishes_what_was_written_before_re_raising(tmp_path):
    out = tmp_path / "m"
    with pytest.raises(ExportError), staged_output(out, keep_on=(ExportError,)) as work:
        (work / "weights.pt").write_bytes(b"w")
        raise ExportError("predict.onnx: differs")
    assert _entries(tmp_path) == ["m"] and _entries(out) == ["weights.pt"]


def test_an_empty_result_is_not_published_when_asked(tmp_path):
    with staged_output(tmp_path / "review", publish_empty=False):
        pass
    assert _entries(tmp_path) == []


def test_simulate_stopped_halfway_leaves_no_data_set(tmp_path, monkeypatch):
    from edge.sim import sample

    real = sample.simulate_sample

    def stop_at_third(i, seed, cfg):
        if i == 2:
            raise KeyboardInterrupt
        return real(i, seed, cfg)

    monkeypatch.setattr(sample, "simulate_sample", stop_at_third)
    with pytest.raises(KeyboardInterrupt):
        sample.write_dataset(tmp_path / "d", 6, seed=1, cfg=sample.SimConfig(size=32), progress=False)
    assert _entries(tmp_path) == []
    monkeypatch.setattr(sample, "simulate_sample", real)
    d = sample.write_dataset(tmp_path / "d", 6, seed=1, cfg=sample.SimConfig(size=32), progress=False)
    assert _entries(tmp_path) == ["d"] and (d / "dataset.json").is_file()
    assert sum(1 for _ in d.glob("*/*.npz")) == 6


def test_training_stopped_halfway_leaves_no_model_folder(sim_dataset, tmp_path, monkeypatch):
    from edge.train import train as train_module
    from edge.train.train import TrainConfig, train

    def stop(*args, **kwargs):
        raise KeyboardInterrupt            # Ctrl-C while the graphs are exported: weights and manifest written

    monkeypatch.setattr(train_module, "export_model_dir", stop)
    with pytest.raises(KeyboardInterrupt):
        train(sim_dataset, tmp_path / "m", TrainConfig(task="defect", size=32, epochs=1, width=4, threads=2,
                                                       limit=24), progress=False)
    assert _entries(tmp_path) == []


def test_a_store_data_set_stopped_halfway_leaves_neither_set(tmp_path, monkeypatch):
    from edge.serve import dataset as store_dataset

    class Store:
        def __init__(self, path):
            pass

        def verdicted(self):
            return [{"inspection_id": f"i{k}", "label": "crack", "agree": k == 0, "correct_class": "pit",
                     "model": "m", "operator": "o", "condition": "", "created_ms": 0} for k in range(3)]

        def frame(self, inspection_id):
            return b"frame"

        def count(self):
            return 3

    written = []

    def write_frame(frame, stem):
        if len(written) == 3:
            raise KeyboardInterrupt
        stem.parent.mkdir(parents=True, exist_ok=True)
        written.append(stem.with_suffix(".png"))
        written[-1].write_bytes(b"png")
        return written[-1]

    (tmp_path / "store.sqlite").write_bytes(b"")
    monkeypatch.setattr(store_dataset, "InspectionStore", Store)
    monkeypatch.setattr(store_dataset.pb.Frame, "FromString", staticmethod(lambda raw: raw))
    monkeypatch.setattr(store_dataset, "write_frame", write_frame)
    with pytest.raises(KeyboardInterrupt):
        store_dataset.dataset_from_store(tmp_path / "store.sqlite", tmp_path / "out", progress=False)
    # three frames were written (one into the review set), then all of it removed
    assert len(written) == 3 and not any(p.exists() for p in written)
    assert _entries(tmp_path) == ["store.sqlite"]


def test_a_file_written_atomically_is_the_old_one_or_the_new_one(tmp_path, monkeypatch):
    from edge.output_folder import atomic_file, write_text_atomic

    metrics = tmp_path / "metrics.json"
    write_text_atomic(metrics, '{"old": 1}')

    with pytest.raises(OSError), atomic_file(metrics) as f:
        f.write(b'{"new": 2, "pad')
        raise OSError(28, "No space left on device")        # the disk filled halfway
    assert metrics.read_text() == '{"old": 1}' and _entries(tmp_path) == ["metrics.json"]
    write_text_atomic(metrics, '{"new": 2}')
    assert metrics.read_text() == '{"new": 2}'
