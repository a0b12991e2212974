"""ONNX Runtime backend: CPU (the default, what CI runs), or the CUDA / TensorRT execution providers
when onnxruntime-gpu is installed.

With a GPU provider the engine also has `run_device` (as the native TensorRT engine does): inputs bound
from the host or from device arrays, outputs left on the GPU by ONNX Runtime's I/O binding and handed
out as pycuda GPUArrays over ONNX Runtime's own buffers, so the Grad-CAM and IG kernels
(`edge.explain.cuda`) read them in place: no copy of activations, gradients or interpolation batches to
the host and back."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from edge.errors import Unavailable
from edge.runtime.engine import Engine, InputSpec

_PROVIDERS = {
    "ort-cpu": ["CPUExecutionProvider"],
    "ort-cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "ort-tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
# The CUDA provider's options, measured on an H200 (benchmarks/measured/device-nvidia-h200.json,
# ort_cuda_options). TF32 off: with it the gradient graphs' input gradients were 1.5e-2 off the CPU's
# (relative L2; 1.7e-6 without), which an explanation cannot afford; the prediction cost did not change
# measurably. cuDNN's exhaustive algorithm search (ONNX Runtime's default) gave the fastest steady state;
# its cost on a shape change is what OrtGpuEngine's session per batch size avoids.
_CUDA_OPTIONS = {"cudnn_conv_algo_search": "EXHAUSTIVE", "use_tf32": "0"}
# What OrtEngine does to the host's BLAS threads on the CPU backend (see host_blas_single_threaded).
HOST_BLAS_THREADS = 1
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
           "tensor(uint8)": np.uint8, "tensor(int32)": np.int32}


def host_blas_single_threaded() -> None:
    """Limit NumPy's BLAS (OpenBLAS) to HOST_BLAS_THREADS thread(s) for the rest of the process.

    Why: the host maths around an engine call (Grad-CAM's upsampling, IG's weighted sum, the review flag's
    Mahalanobis distance, SHAP's regression) are matrix products of a few hundred kB, which a second BLAS
    thread does not speed up; but OpenBLAS's workers busy-wait after each product and take the cores from
    ONNX Runtime's pool in the engine call that follows. Measured on the elpv model (224 px, 2 cores):
    the gradcam graph alone 5.4 ms, after Grad-CAM's upsampling 6.6 ms; with one BLAS thread 5.5 ms.
    Torch's own threads (OpenMP) are not BLAS threads here and are left alone (threadpoolctl)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=HOST_BLAS_THREADS, user_api="blas")


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
        if backend == "ort-cpu":         # the engine's pool owns the cores: host maths stay on one thread
            host_blas_single_threaded()
        wanted = _PROVIDERS[backend][0]
        if wanted not in ort.get_available_providers():
            raise Unavailable(f"backend {backend!r} needs {wanted}, which this onnxruntime lacks (has "
                              f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu "
                              f"(pip install -e '.[gpu]') on a machine with CUDA")
        providers: list = [("CUDAExecutionProvider", _CUDA_OPTIONS) if p == "CUDAExecutionProvider" else p
                           for p in _PROVIDERS[backend]]
        if backend == "ort-tensorrt" and cache_dir is not None:
            # Building TensorRT engines takes tens of seconds; cache them next to the model.
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            providers[0] = ("TensorrtExecutionProvider", {"trt_engine_cache_enable": True,
                                                          "trt_engine_cache_path": str(cache_dir)})
        opts = ort.SessionOptions()
        for pool in ("intra_op", "inter_op"):
            opts.add_session_config_entry(f"session.{pool}.allow_spinning", "1" if spin else "0")
        if threads:
            opts.intra_op_num_threads = threads
            # With few cores, a second pool spinning for inter-op work only steals time.
            opts.inter_op_num_threads = 1
        self._new_session = lambda graph: ort.InferenceSession(str(self.graph_files[graph]), opts, providers=providers)
        self._sessions = {graph: self._new_session(graph) for graph in self.graph_files}
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


class OrtGpuEngine(OrtEngine):
    """ONNX Runtime with the CUDA or TensorRT execution provider: `run` as on the CPU, and `run_device`.

    One session per batch size (the SESSIONS_PER_GRAPH most recent ones per graph): the CUDA provider keeps
    the cuDNN plans of a convolution's last input shape only, so a session that sees two shapes in turn
    re-plans on every call. IG does exactly that (its 2N endpoints, then its M*N points): 25 to 276 ms per
    call on an H200 depending on the search mode, against 3.2 ms for the 50 points at a fixed shape.
    """

    SESSIONS_PER_GRAPH = 4

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._by_batch: dict[str, OrderedDict] = {g: OrderedDict() for g in self._sessions}

    def _session(self, graph: str, batch: int):
        pool = self._by_batch[graph]
        if batch not in pool:
            # the session made at load serves the first batch size; later sizes get their own
            pool[batch] = self._sessions[graph] if not pool else self._new_session(graph)
            if len(pool) > self.SESSIONS_PER_GRAPH:
                pool.popitem(last=False)
        pool.move_to_end(batch)
        return pool[batch]

    @staticmethod
    def _batch(feeds: dict) -> int:
        """The batch size of a call's inputs (host arrays or device arrays alike)."""
        return int(next(iter(feeds.values())).shape[0])

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._session(graph, self._batch(feeds)).run(None, feeds)

    def run_device(self, graph: str, feeds: dict) -> dict:
        """Run with inputs given as host arrays or device arrays (anything with `gpudata`, `shape`, `dtype`:
        pycuda GPUArrays); returns {output name: pycuda GPUArray} over ONNX Runtime's output buffers, complete
        when this returns (bound outputs are synchronised). Device inputs must be complete when called."""
        from pycuda import gpuarray

        session = self._session(graph, self._batch(feeds))
        binding = session.io_binding()
        for name, value in feeds.items():
            if hasattr(value, "gpudata"):
                # written by our kernels on another stream: the caller synchronises before this call
                binding.bind_input(name, "cuda", 0, np.dtype(value.dtype).type, list(value.shape),
                                   int(value.gpudata))
            else:
                binding.bind_cpu_input(name, np.ascontiguousarray(value))
        for name in self._outputs[graph]:
            binding.bind_output(name, "cuda", 0)
        binding.synchronize_inputs()
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        outputs = {}
        for name, value in zip(self._outputs[graph], binding.get_outputs()):
            # base= keeps ONNX Runtime's buffer (the OrtValue) alive as long as the array, and the session
            # whose allocator owns it (a session evicted from the pool must not free it first)
            outputs[name] = gpuarray.GPUArray(tuple(value.shape()), _DTYPES[value.data_type()],
                                              gpudata=value.data_ptr(), base=(value, session))
        self._keep_alive = (session, binding, feeds)     # bound device inputs outlive the run
        return outputs
