"""A Triton Inference Server model repository from a model folder: one Triton model per exported graph.

    edge-xai export-triton --model models/defect --out triton-repo [--max-batch 8] [--gpu] [--tensorrt]

    triton-repo/defect_predict/config.pbtxt    + 1/model.onnx
    triton-repo/defect_gradcam/...             (logits, activations, activation_grad: Grad-CAM on Triton)
    triton-repo/defect_input_gradient/...      (IG's gradients)
    triton-repo/defect_guided_gradient/...     (guided maps, classifiers)

Each config is built as Triton's own `ModelConfig` message (tritonclient's model_config_pb2) and written
with protobuf's text format, so it parses as Triton parses it. What it says, and why:
- the ONNX Runtime backend, `max_batch_size` > 0 with `dims` that leave the batch dimension out (as Triton
  requires); input and output names, dtypes and shapes read from the graph itself;
- dynamic batching with a bounded queue delay, and a bounded queue that rejects what times out (a line
  prefers a fast refusal to a late answer; REJECT is the enum's default, so the text format omits it);
- instance groups (CPU, or GPU with --gpu); with --tensorrt, ONNX Runtime's TensorRT accelerator under
  `optimization.execution_accelerators` (JetPack 6's Triton; on JetPack 5 plans go through the TensorRT
  backend instead);
- a zero-input warm-up, so the model is not ready until it has run once;
- the predict graph's sha256 and the manifest's sha256 as parameters: the identity inspections and
  audits are tied to travels with the repository.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from edge.errors import InvalidInput, OutputExists, Unavailable
from edge.runtime.manifest import MANIFEST, load_manifest, predict_sha256

ONNX_TO_TRITON = {1: "TYPE_FP32", 10: "TYPE_FP16", 11: "TYPE_FP64", 6: "TYPE_INT32", 7: "TYPE_INT64", 2: "TYPE_UINT8"}


def _model_config():
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError as e:
        raise Unavailable(f"export-triton builds Triton's own config messages and needs tritonclient ({e}); "
                          "pip install 'edge-xai[triton]'") from e
    return model_config_pb2


def graph_io(path: Path) -> tuple[list[tuple[str, str, list[int]]], list[tuple[str, str, list[int]]]]:
    """(inputs, outputs) of an ONNX graph as (name, Triton data type, dims without the batch dimension)."""
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph

    def spec(v) -> tuple[str, str, list[int]]:
        t = v.type.tensor_type
        if t.elem_type not in ONNX_TO_TRITON:
            raise InvalidInput(f"{path}: {v.name!r} has ONNX element type {t.elem_type}, which has no Triton type here")
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        if not dims or dims[0] != -1:
            raise InvalidInput(f"{path}: {v.name!r} has no dynamic batch dimension ({dims}); re-export the model")
        return v.name, ONNX_TO_TRITON[t.elem_type], dims[1:]
    initialisers = {i.name for i in g.initializer}
    return [spec(v) for v in g.input if v.name not in initialisers], [spec(v) for v in g.output]


def model_config(name: str, onnx_path: Path, manifest: dict, max_batch: int = 8, queue_delay_us: int = 2000,
                 queue_timeout_us: int = 100_000, max_queue: int = 64, instances: int = 1, gpu: bool = False,
                 tensorrt: bool = False):
    """Triton's ModelConfig for one graph (see the module docstring)."""
    mc = _model_config()
    if max_batch < 1:
        raise InvalidInput(f"--max-batch {max_batch}: Triton's dynamic batching needs at least 1")
    if tensorrt and not gpu:
        raise InvalidInput("--tensorrt needs --gpu: TensorRT runs on the GPU")
    inputs, outputs = graph_io(onnx_path)
    cfg = mc.ModelConfig(name=name, backend="onnxruntime", max_batch_size=max_batch)
    cfg.version_policy.latest.num_versions = 1
    for n, t, d in inputs:
        cfg.input.add(name=n, data_type=getattr(mc, t), dims=d)
    for n, t, d in outputs:
        cfg.output.add(name=n, data_type=getattr(mc, t), dims=d)
    db = cfg.dynamic_batching
    db.max_queue_delay_microseconds = queue_delay_us
    db.default_queue_policy.timeout_action = mc.ModelQueuePolicy.REJECT
    db.default_queue_policy.default_timeout_microseconds = queue_timeout_us
    db.default_queue_policy.allow_timeout_override = True
    db.default_queue_policy.max_queue_size = max_queue
    cfg.instance_group.add(count=instances, kind=mc.ModelInstanceGroup.KIND_GPU if gpu else mc.ModelInstanceGroup.KIND_CPU)
    if tensorrt:
        acc = cfg.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        acc.parameters["precision_mode"] = "FP32"       # the explain graphs are checked against autograd in FP32
    warm = cfg.model_warmup.add(name="zeros", batch_size=1)
    for n, t, d in inputs:
        warm.inputs[n].CopyFrom(mc.ModelWarmup.Input(data_type=getattr(mc, t), dims=d, zero_data=True))
    cfg.parameters["edge_xai_predict_sha256"].string_value = predict_sha256(manifest)
    cfg.parameters["edge_xai_graph"].string_value = onnx_path.stem
    return cfg


def export_triton(model_dir: Path, out: Path, name: str | None = None, **options) -> list[Path]:
    """Write one Triton model per graph of `model_dir` into the repository `out`; returns the config paths."""
    from google.protobuf import text_format

    model_dir, out = Path(model_dir), Path(out)
    manifest = load_manifest(model_dir)
    name = name or model_dir.name
    manifest_sha = hashlib.sha256((model_dir / MANIFEST).read_bytes()).hexdigest()
    folders = {graph: out / f"{name}_{graph}" for graph in manifest["graphs"]}
    for folder in folders.values():      # all checked before any is written: no half-exported model set
        if folder.exists() and any(folder.iterdir()):
            raise OutputExists(f"{folder} exists and is not empty; choose a new --out or remove it")
    written = []
    try:
        for graph, spec in manifest["graphs"].items():
            folder = folders[graph]
            cfg = model_config(folder.name, model_dir / spec["file"], manifest, **options)
            cfg.parameters["edge_xai_manifest_sha256"].string_value = manifest_sha
            (folder / "1").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(model_dir / spec["file"], folder / "1" / "model.onnx")
            (folder / "config.pbtxt").write_text(text_format.MessageToString(cfg))
            written.append(folder / "config.pbtxt")
    except BaseException:
        # an error or Ctrl-C halfway: a server polling the repository must not find a model missing its
        # file or configuration (staged folders would sit in the repository too, where Triton scans)
        for folder in folders.values():
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return written
