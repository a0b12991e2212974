"""Ctrl-C during training: once finishes the model from the epochs done, twice aborts and writes nothing."""
import json
import os
import signal

import pytest

from edge.train import classifier
from edge.train.train import TrainConfig, train


def _ctrl_c_at(monkeypatch, module, name, call, presses=1):
    """Wrap module.name so that its `call`-th call is followed by `presses` SIGINTs, as Ctrl-C sends them
    (the weight average's update: once per optimiser step of the training loop, and nowhere else)."""
    real = getattr(module, name)
    calls = []

    def wrapped(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == call:
            for _ in range(presses):
                os.kill(os.getpid(), signal.SIGINT)
        return result

    monkeypatch.setattr(module, name, wrapped)
    return calls


def _cfg(task="defect", **kw):
    return TrainConfig(task=task, size=32, epochs=3, width=4, threads=2, batch_size=4, limit=24, **kw)


def test_one_ctrl_c_stops_training_and_finishes_the_model(sim_dataset, tmp_path, monkeypatch, capsys):
    calls = _ctrl_c_at(monkeypatch, classifier.WeightAverage, "update", 2)
    out = tmp_path / "m"
    train(sim_dataset, out, _cfg(), progress=True)
    assert len(calls) == 2                                   # not one optimiser step after the one under way
    manifest = json.loads((out / "manifest.json").read_text())
    t = manifest["training"]
    assert t["stopped"]["epoch"] == 1 and t["stopped"]["steps_done"] == 2 and t["stopped"]["epochs_planned"] == 3
    assert t["epochs"] == 1 and len(t["history"]) == 1 and t["best_epoch"] == 1
    assert "stopped by Ctrl-C in epoch 1 after 2 of its" in t["epochs_reason"]
    assert (out / "predict.onnx").is_file() and "calibration" in manifest
    said = capsys.readouterr()
    assert "Ctrl-C again aborts" in said.err and "stopped by Ctrl-C in epoch 1" in said.out
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler     # the usual handler again


def test_a_second_ctrl_c_aborts_and_leaves_no_model_folder(sim_dataset, tmp_path, monkeypatch):
    _ctrl_c_at(monkeypatch, classifier.WeightAverage, "update", 2, presses=2)
    with pytest.raises(KeyboardInterrupt):
        train(sim_dataset, tmp_path / "m", _cfg(), progress=False)
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_stops_a_regression_model_the_same_way(sim_dataset, tmp_path, monkeypatch):
    import torch

    class Pressed(torch.optim.AdamW):
        steps = 0

        def step(self, *args, **kwargs):
            result = super().step(*args, **kwargs)
            Pressed.steps += 1
            if Pressed.steps == 2:
                os.kill(os.getpid(), signal.SIGINT)
            return result

    monkeypatch.setattr(torch.optim, "AdamW", Pressed)
    out = tmp_path / "t"
    train(sim_dataset, out, _cfg("thermal"), progress=False)
    assert Pressed.steps == 2
    manifest = json.loads((out / "manifest.json").read_text())
    t = manifest["training"]
    assert t["stopped"] == {"epoch": 1, "steps_done": 2, "steps": t["stopped"]["steps"], "epochs_planned": 3}
    assert t["stopped"]["steps"] > 2 and t["epochs"] == 1 and len(t["history"]) == 1
    assert (out / "predict.onnx").is_file()


def test_a_process_that_ignores_ctrl_c_keeps_ignoring_it():
    # a script's background job starts with SIGINT ignored: training must not start listening to it
    from edge.train.stop import StopOnInterrupt

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopOnInterrupt():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
