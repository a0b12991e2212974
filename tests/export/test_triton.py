"""export-triton: a model repository whose configs parse as Triton's ModelConfig and say what the graphs are."""
import hashlib
import json
import shutil

import pytest
from google.protobuf import text_format

from edge.cli import main
from edge.errors import InvalidInput, OutputExists
from edge.export.triton import export_triton
from helpers import MODELS

mc = pytest.importorskip("tritonclient.grpc.model_config_pb2")


def parse(path) -> "mc.ModelConfig":
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def test_one_triton_model_per_graph_with_batching_warmup_and_identity(tmp_path):
    written = export_triton(MODELS / "defect", tmp_path / "repo")
    assert sorted(p.parent.name for p in written) == ["defect_gradcam", "defect_guided_gradient", "defect_input_gradient",
                                                      "defect_predict"]
    manifest = json.loads((MODELS / "defect" / "manifest.json").read_text())
    cfg = parse(tmp_path / "repo" / "defect_gradcam" / "config.pbtxt")
    assert cfg.backend == "onnxruntime" and cfg.max_batch_size == 8
    ins = {i.name: list(i.dims) for i in cfg.input}
    outs = {o.name: list(o.dims) for o in cfg.output}
    assert ins == {"input": [3, 128, 128], "target": [6]}          # no batch dimension in dims
    assert set(outs) == {"logits", "activations", "activation_grad"} and outs["logits"] == [6]
    assert all(i.data_type == mc.TYPE_FP32 for i in cfg.input)
    q = cfg.dynamic_batching.default_queue_policy
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 2000
    assert q.timeout_action == mc.ModelQueuePolicy.REJECT and q.max_queue_size == 64
    assert cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert {i for i in cfg.model_warmup[0].inputs} == {"input", "target"}
    assert cfg.parameters["edge_xai_predict_sha256"].string_value == manifest["files"]["predict.onnx"]
    copied = (tmp_path / "repo" / "defect_gradcam" / "1" / "model.onnx").read_bytes()
    assert hashlib.sha256(copied).hexdigest() == manifest["files"]["gradcam.onnx"]


def test_regression_graphs_gpu_and_tensorrt_options(tmp_path):
    export_triton(MODELS / "thermal", tmp_path / "repo", gpu=True, tensorrt=True, max_batch=4)
    cfg = parse(tmp_path / "repo" / "thermal_input_gradient" / "config.pbtxt")
    assert {i.name: list(i.dims) for i in cfg.input} == {"input": [3, 128, 128], "target": [1, 128, 128]}
    assert cfg.max_batch_size == 4 and cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    [acc] = cfg.optimization.execution_accelerators.gpu_execution_accelerator
    assert acc.name == "tensorrt"
    with pytest.raises(InvalidInput, match="--tensorrt needs --gpu"):
        export_triton(MODELS / "thermal", tmp_path / "other", tensorrt=True)


def test_nothing_is_overwritten_and_the_cli_reports(tmp_path, capsys):
    assert main(["export-triton", "--model", str(MODELS / "phase"), "--out", str(tmp_path / "r")]) == 0
    assert "phase_predict/config.pbtxt" in capsys.readouterr().out
    with pytest.raises(OutputExists):
        export_triton(MODELS / "phase", tmp_path / "r")


def test_a_taken_name_or_a_stop_halfway_leaves_no_model_of_the_set(tmp_path, monkeypatch):
    from edge.export import triton

    graphs = list(json.loads((MODELS / "defect" / "manifest.json").read_text())["graphs"])
    (tmp_path / "r" / f"defect_{graphs[-1]}").mkdir(parents=True)
    (tmp_path / "r" / f"defect_{graphs[-1]}" / "config.pbtxt").write_text("theirs")
    with pytest.raises(OutputExists):
        export_triton(MODELS / "defect", tmp_path / "r")
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [f"defect_{graphs[-1]}"]   # only theirs

    copies, real_copy = [], shutil.copyfile

    def copy_then_stop(src, dst):
        copies.append(dst)
        if len(copies) == 2:
            raise KeyboardInterrupt
        return real_copy(src, dst)

    monkeypatch.setattr(triton.shutil, "copyfile", copy_then_stop)
    with pytest.raises(KeyboardInterrupt):
        export_triton(MODELS / "defect", tmp_path / "s")
    assert not (tmp_path / "s").exists() or list((tmp_path / "s").iterdir()) == []
