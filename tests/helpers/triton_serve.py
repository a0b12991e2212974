"""A real Triton Inference Server serving a model folder's graphs, for the `triton` engine's tests and
benchmark. Runs under its own interpreter (a virtual environment with nvidia-pytriton, whose pins on
numpy < 2 and tritonclient's protobuf conflict with edge-xai's; see tests/setup.sh):

    $EDGE_XAI_TRITON_PYTHON tests/helpers/triton_serve.py --model models/defect --grpc-port 8001

PyPI's nvidia-pytriton bundles `tritonserver` with the Python backend only, not the ONNX Runtime
backend: each graph is bound as a Python model `<name>_<graph>` (the names `edge-xai export-triton`
writes) whose function runs the graph with ONNX Runtime, with Triton's dynamic batching in front.
Prints READY when every model is loaded, serves until stdin closes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import sysconfig
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--name", default=None, help="Triton model name prefix (default: the folder's name)")
    ap.add_argument("--grpc-port", type=int, required=True)
    ap.add_argument("--http-port", type=int, required=True)
    ap.add_argument("--metrics-port", type=int, required=True)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    # The Python-backend stub links libpython3.11; under an interpreter other than the system's it must find
    # this interpreter's own library first (TECH-NOTES: "Triton Inference Server on this machine").
    libdir = sysconfig.get_config_var("LIBDIR")
    os.environ["LD_LIBRARY_PATH"] = ":".join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH")) if p)

    import numpy as np
    import onnxruntime as ort
    from pytriton.decorators import batch
    from pytriton.model_config import ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    model_dir = Path(args.model)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    name = args.name or model_dir.name
    types = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(float16)": np.float16}
    config = TritonConfig(grpc_port=args.grpc_port, http_port=args.http_port, metrics_port=args.metrics_port,
                          exit_on_error=True)
    with Triton(config=config) as triton:
        for graph, spec in manifest["graphs"].items():
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = args.threads
            session = ort.InferenceSession(str(model_dir / spec["file"]), opts, providers=["CPUExecutionProvider"])
            outputs = [o.name for o in session.get_outputs()]

            def make(sess=session, outs=outputs):
                @batch
                def infer(**inputs):
                    return dict(zip(outs, sess.run(outs, inputs)))
                return infer

            triton.bind(
                model_name=f"{name}_{graph}", infer_func=make(),
                inputs=[Tensor(name=i.name, dtype=types[i.type], shape=tuple(i.shape[1:]))
                        for i in session.get_inputs()],
                outputs=[Tensor(name=o.name, dtype=types[o.type],
                                shape=tuple(d if isinstance(d, int) else -1 for d in o.shape[1:]))
                         for o in session.get_outputs()],
                config=ModelConfig(max_batch_size=args.max_batch), strict=False)
        triton.run()
        print("READY", flush=True)
        sys.stdin.read()                 # until the test closes our stdin (or kills us)
    return 0


if __name__ == "__main__":
    sys.exit(main())
