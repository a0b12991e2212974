"""ONNX Runtime backend: CPU (the default, what CI runs), or the CUDA / TensorRT execution providers
when onnxruntime-gpu is installed."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.errors import Unavailable
from edge.runtime.engine import Engine, InputSpec

_PROVIDERS = {
    "ort-cpu": ["CPUExecutionProvider"],
    "ort-cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "ort-tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
           "tensor(uint8)": np.uint8, "tensor(int32)": np.int32}


class OrtEngine(Engine):
    def __init__(self, graph_files: dict[str, Path], backend: str = "ort-cpu", threads: int | None = None,
                 cache_dir: Path | None = None, spin: bool = False):
        """spin: let ONNX Runtime's worker threads busy-wait after a call (its own default). Off here: each
        graph has its own session and thread pool, and a pool still spinning after one call took the
        cores from the next session's call (Grad-CAM right after a prediction 1.09 ms instead of 0.58 on
        2 cores). See benchmarks/attribution.py --spin for the measurement on a machine."""
        import onnxruntime as ort

        super().__init__(graph_files)
        self.backend = backend
        wanted = _PROVIDERS[backend][0]
        if wanted not in ort.get_available_providers():
            raise Unavailable(f"backend {backend!r} needs {wanted}, which this onnxruntime lacks (has "
                              f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu "
                              f"(pip install -e '.[gpu]') on a machine with CUDA")
        providers: list = list(_PROVIDERS[backend])
        if backend == "ort-tensorrt" and cache_dir is not None:
            # Building TensorRT engines takes tens of seconds; cache them next to the model.
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            providers[0] = ("TensorrtExecutionProvider", {"trt_engine_cache_enable": True,
                                                          "trt_engine_cache_path": str(cache_dir)})
        self._sessions = {}
        for graph, path in self.graph_files.items():
            opts = ort.SessionOptions()
            for pool in ("intra_op", "inter_op"):
                opts.add_session_config_entry(f"session.{pool}.allow_spinning", "1" if spin else "0")
            if threads:
                opts.intra_op_num_threads = threads
                # With few cores, a second pool spinning for inter-op work only steals time.
                opts.inter_op_num_threads = 1
            self._sessions[graph] = ort.InferenceSession(str(path), opts, providers=providers)
        self._specs = {g: [InputSpec(i.name, np.dtype(_DTYPES[i.type]),
                                     tuple(d if isinstance(d, int) else None for d in i.shape))
                           for i in s.get_inputs()] for g, s in self._sessions.items()}
        self._outputs = {g: [o.name for o in s.get_outputs()] for g, s in self._sessions.items()}

    def input_specs(self, graph: str) -> list[InputSpec]:
        return self._specs[graph]

    def output_names(self, graph: str) -> list[str]:
        return self._outputs[graph]

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._sessions[graph].run(None, feeds)
