"""ONNX Runtime backend: CPU (the default, what CI runs), or the CUDA / TensorRT execution providers
when onnxruntime-gpu is installed.

With a GPU provider the engine also has `run_device` (as the native TensorRT engine does): inputs from
the host or from device arrays, outputs kept on the GPU and handed out as pycuda GPUArrays, so the
Grad-CAM and IG kernels (`edge.explain.cuda`) read them there: no copy of activations, gradients or
interpolation batches to the host and back. Each graph runs at each batch size through a BoundSession
(fixed batch, buffers bound once, CUDA graphs on the CUDA provider)."""
from __future__ import annotations

import functools
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from edge.errors import Unavailable
from edge.runtime.engine import Engine, InputError, InputSpec

log = logging.getLogger("edge.runtime")

_PROVIDERS = {
    "ort-cpu": ["CPUExecutionProvider"],
    "ort-cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "ort-tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
# The CUDA provider's options, measured on an H200 (benchmarks/measured/device-nvidia-h200-ort-options.json,
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


def _session_options(spin: bool, threads: int | None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    for pool in ("intra_op", "inter_op"):
        opts.add_session_config_entry(f"session.{pool}.allow_spinning", "1" if spin else "0")
    if threads:
        opts.intra_op_num_threads = threads
        # With few cores, a second pool spinning for inter-op work only steals time.
        opts.inter_op_num_threads = 1
    return opts


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
        opts = _session_options(spin, threads)

        def new_session(graph: str, fixed: dict[str, int] | None = None, capture: bool = False):
            """A session for the graph; fixed: free dimensions pinned by name (ONNX Runtime's override);
            capture: the CUDA provider's CUDA graphs (OrtGpuEngine's BoundSession)."""
            so = opts
            if fixed:
                so = _session_options(spin, threads)
                for name, value in fixed.items():
                    so.add_free_dimension_override_by_name(name, value)
            ps = [(p[0], {**p[1], "enable_cuda_graph": "1"}) if capture and isinstance(p, tuple)
                  and p[0] == "CUDAExecutionProvider" else p for p in providers]
            return ort.InferenceSession(str(self.graph_files[graph]), so, providers=ps)

        self._new_session = new_session
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


@functools.cache
def device_pool():
    """One pycuda memory pool for the arrays run_device hands out, so an answer's outputs reuse freed
    device memory instead of a cuMemAlloc (and a cuMemFree when the array goes) per output and call."""
    import pycuda.autoprimaryctx  # noqa: F401  (ONNX Runtime's context: the device's primary one)
    from pycuda.tools import DeviceMemoryPool

    return DeviceMemoryPool()


class BoundSession:
    """One graph at one batch size on a GPU provider, called through one I/O binding over input and output
    buffers allocated once on the device, in a session whose batch dimension is fixed (ONNX Runtime's
    free-dimension override), so its shape arithmetic folds away and every node runs on the GPU; with
    `capture`, the CUDA provider records the graph's launches on the first run and replays them in one
    on every later run (CUDA graphs: the buffers must not move, hence the binding made once).

    Why: at batch 1 on a GPU a call is bound by launches and bookkeeping, not arithmetic. Measured on an
    H200 (benchmarks/measured/device-nvidia-h200-2026-11-29.json, ort_cuda_graphs), the shipped classifier's gradcam
    graph: a new binding per call 0.80 ms, a plain call 0.71, bound and captured 0.25; its predict graph
    0.32 plain, 0.18 captured. Served (ort_cuda, batch 1): Grad-CAM 1.81 -> 0.79 ms, a prediction 0.61 ->
    0.23 ms, IG with M = 50 6.3 -> 5.0 ms (benchmarks/measured/device-nvidia-h200-before-bound-sessions.json
    for the first figures).

    A call copies its inputs in (host arrays: a host-to-device copy; device arrays: a device-to-device
    copy), runs, and copies the outputs out, all under the instance's lock, so two threads never see each
    other's buffers and an answer stays valid after the next call."""

    def __init__(self, make_session, specs: list[InputSpec], batch: int, device: str, capture: bool):
        import onnxruntime as ort

        for s in specs:
            if None in s.shape[1:]:
                raise ValueError(f"input {s.name!r} has a free dimension besides the batch: {s.shape}")
        self.batch, self.device, self.capture = batch, device, capture
        self.session = make_session(batch, capture)
        self.lock = threading.Lock()
        self.inputs = {s.name: ort.OrtValue.ortvalue_from_shape_and_type([batch, *s.shape[1:]], s.dtype, device, 0)
                       for s in specs}
        self.outputs = {}
        for o in self.session.get_outputs():
            shape = [batch if i == 0 and not isinstance(d, int) else d for i, d in enumerate(o.shape)]
            if not all(isinstance(d, int) for d in shape):
                raise ValueError(f"output {o.name!r} has a free dimension besides the batch: {o.shape}")
            self.outputs[o.name] = ort.OrtValue.ortvalue_from_shape_and_type(shape, _DTYPES[o.type], device, 0)
        # the bound inputs' shapes and dtypes, read once: asking the OrtValues costs calls into ONNX Runtime per
        # input and call (28 us per Grad-CAM for its two inputs in the H200 run's host profile, profiler included)
        self._input_specs = {name: (tuple(v.shape()), _DTYPES[v.data_type()]) for name, v in self.inputs.items()}
        self.binding = self.session.io_binding()
        self._views = None          # run_device(consume=...): GPUArrays over the bound outputs, made once
        for name, value in self.inputs.items():
            self.binding.bind_ortvalue_input(name, value)
        for name, value in self.outputs.items():
            self.binding.bind_ortvalue_output(name, value)
        # the first run selects the convolutions' algorithms and, with capture, records the graph: here,
        # so a provider that refuses shows it at load and the first request does not pay for it
        self._run({s.name: np.zeros([batch, *s.shape[1:]], s.dtype) for s in specs})

    def _run(self, feeds: dict) -> None:
        """Copy the feeds into the bound inputs and run (caller holds the lock)."""
        driver = None               # pycuda's, once a feed is a device array
        for name, value in feeds.items():
            bound = self.inputs[name]
            shape, dtype = self._input_specs[name]
            if tuple(value.shape) != shape or np.dtype(value.dtype) != dtype:
                # a copy by byte count would read past the array or misread it: refuse, naming the input
                raise InputError(f"input {name!r}: {np.dtype(value.dtype)} {tuple(value.shape)}, the bound "
                                 f"buffer is {dtype.__name__} {shape}")
            if hasattr(value, "gpudata"):
                from pycuda import driver

                driver.memcpy_dtod(int(bound.data_ptr()), int(value.gpudata), int(value.nbytes))
            else:
                bound.update_inplace(np.ascontiguousarray(value))
        if driver is not None:
            # the copies ran on the default stream; ONNX Runtime's stream does not wait for it
            driver.Context.synchronize()
        self.session.run_with_iobinding(self.binding)
        self.binding.synchronize_outputs()

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self.lock:
            self._run(feeds)
            # a device buffer's numpy() is a copy; a host buffer's is a view the next call would overwrite
            return [value.numpy().copy() if self.device == "cpu" else value.numpy() for value in self.outputs.values()]

    def run_device(self, feeds: dict, consume=None):
        """{output name: pycuda GPUArray}, each a copy of the bound output (complete when this returns); or,
        with `consume`, what consume({output name: GPUArray over the bound output itself}) returns, called
        under the lock: the caller's kernels read the outputs where the graph wrote them (no device copy,
        no allocation), and must be done with them when consume returns (the next call overwrites them)."""
        from pycuda import driver, gpuarray

        with self.lock:
            self._run(feeds)
            if consume is not None:
                if self._views is None:     # the bound buffers never move (CUDA graphs need that too)
                    self._views = {name: gpuarray.GPUArray(tuple(v.shape()), _DTYPES[v.data_type()],
                                                           gpudata=int(v.data_ptr()), base=v)
                                   for name, v in self.outputs.items()}
                return consume(self._views)
            allocate = device_pool().allocate
            out = {}
            for name, value in self.outputs.items():
                out[name] = gpuarray.empty(tuple(value.shape()), _DTYPES[value.data_type()], allocator=allocate)
                driver.memcpy_dtod(int(out[name].gpudata), int(value.data_ptr()), int(out[name].nbytes))
            driver.Context.synchronize()
            return out


def wants_cuda_graphs(backend: str, option: bool | None) -> bool:
    """Whether a GPU engine captures CUDA graphs: only on the CUDA provider (TensorRT's provider has its
    own); option None reads EDGE_XAI_CUDA_GRAPHS ("0" off, on otherwise), the escape hatch for a driver or
    provider that misbehaves with them, without a code change."""
    if backend != "ort-cuda":
        return False
    if option is None:
        return os.environ.get("EDGE_XAI_CUDA_GRAPHS", "1").strip() != "0"
    return bool(option)


class OrtGpuEngine(OrtEngine):
    """ONNX Runtime with the CUDA or TensorRT execution provider: `run` as on the CPU, and `run_device`.

    Each graph is called at each batch size through its own BoundSession (the SESSIONS_PER_GRAPH most
    recent batch sizes per graph are kept): a fixed batch lets every node run on the GPU and, on the CUDA
    provider, the graph be captured once and replayed (CUDA graphs); and the CUDA provider keeps the cuDNN
    plans of a convolution's last input shape only, so a session that saw two shapes in turn would re-plan
    on every call. IG does exactly that (its 2N endpoints, then its M*N points): 25 to 276 ms per call on an
    H200 depending on the search mode, against 3.2 ms for the 50 points at a fixed shape.

    cuda_graphs=False (or EDGE_XAI_CUDA_GRAPHS=0) keeps the fixed batch and the binding but not the capture. Where the provider refuses
    to capture a graph, `uncaptured` says why and the graph runs bound without; where a graph cannot be
    bound (a free dimension besides the batch), `unbound` says why and it runs with a session per batch
    size and a binding per call. Both are logged as warnings.
    """

    SESSIONS_PER_GRAPH = 4

    def __init__(self, *args, cuda_graphs: bool | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.capture = wants_cuda_graphs(self.backend, cuda_graphs)
        self.device = "cpu" if self.backend == "ort-cpu" else "cuda"     # ort-cpu: the tests' stand-in
        self._by_batch: dict[str, OrderedDict] = {g: OrderedDict() for g in self._sessions}
        self._pool_lock = threading.Lock()
        self.uncaptured: dict[str, str] = {}      # graph -> why it runs without CUDA graphs
        self.unbound: dict[str, str] = {}         # graph -> why it runs without a fixed binding

    def _session(self, graph: str, batch: int):
        """The graph's BoundSession for this batch size (or, for a graph that cannot be bound, a session)."""
        with self._pool_lock:          # the service's threads share the engine
            pool = self._by_batch[graph]
            if batch not in pool:
                pool[batch] = self._bind(graph, batch)
                if len(pool) > self.SESSIONS_PER_GRAPH:
                    pool.popitem(last=False)
            pool.move_to_end(batch)
            return pool[batch]

    def _bind(self, graph: str, batch: int):
        if graph in self.unbound:
            return self._new_session(graph)
        names = {i.shape[0] for i in self._sessions[graph].get_inputs() if i.shape and isinstance(i.shape[0], str)}
        capture = self.capture and graph not in self.uncaptured

        def make(batch: int, capture: bool):
            return self._new_session(graph, {n: batch for n in names}, capture)

        try:
            return BoundSession(make, self._specs[graph], batch, self.device, capture)
        except Exception as e:  # noqa: BLE001 - the provider's refusal is said and worked around, not fatal
            why = f"{type(e).__name__}: {e}"
            (self.uncaptured if capture else self.unbound)[graph] = why
            log.warning("graph %r: %s; %s", graph, why, "without CUDA graphs" if capture
                        else "a session per batch size and a binding per call")
        return self._bind(graph, batch)       # next without capture, then unbound

    @staticmethod
    def _batch(feeds: dict) -> int:
        """The batch size of a call's inputs (host arrays or device arrays alike)."""
        return int(next(iter(feeds.values())).shape[0])

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        session = self._session(graph, self._batch(feeds))
        if isinstance(session, BoundSession):
            return session.run(feeds)
        return session.run(None, feeds)

    def run_device(self, graph: str, feeds: dict, consume=None):
        """Run with inputs given as host arrays or device arrays (anything with `gpudata`, `shape`, `dtype`:
        pycuda GPUArrays; complete when called); returns {output name: pycuda GPUArray}, complete when this
        returns and the caller's to keep; or, with `consume`, consume(those outputs)'s result, where the
        outputs may be the engine's own buffers, valid only until consume returns (BoundSession.run_device)."""
        session = self._session(graph, self._batch(feeds))
        if isinstance(session, BoundSession):
            return session.run_device(feeds, consume)
        from pycuda import gpuarray

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
        # base= keeps ONNX Runtime's buffer (the OrtValue) alive as long as the array, and the session
        # whose allocator owns it (a session evicted from the pool must not free it first)
        outs = {name: gpuarray.GPUArray(tuple(v.shape()), _DTYPES[v.data_type()], gpudata=v.data_ptr(), base=(v, session))
                for name, v in zip(self._outputs[graph], binding.get_outputs())}
        return outs if consume is None else consume(outs)
