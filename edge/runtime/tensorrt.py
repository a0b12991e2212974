"""Native TensorRT backend: engines built from the same ONNX graphs, run through pycuda.

Only exercised where a GPU is (tests marked `gpu`); nothing here is imported by the CPU path.
Outputs stay on the device as pycuda GPUArrays (`run_device`), so the Grad-CAM and IG kernels in
`edge.explain.cuda` consume them in place on the same stream; `run` copies them to the host.

Engines are cached as `<cache_dir>/<graph>.<sha-of-onnx>.plan`: building one takes tens of seconds and
a plan is only valid for the TensorRT version and GPU that built it (both go into the cache key).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from edge.errors import ExportError, InvalidInput, Unavailable
from edge.runtime.engine import Engine, InputSpec

MAX_BATCH = 64   # the optimisation profile's upper bound; IG chunks its path to fit (internal_batch_size)


class TensorRTEngine(Engine):
    backend = "tensorrt"

    def __init__(self, graph_files: dict[str, Path], cache_dir: Path | None = None, max_batch: int = MAX_BATCH):
        try:
            import pycuda.autoprimaryctx  # noqa: F401  (a context on device 0, shared with other libraries)
            import pycuda.driver as cuda
            import tensorrt as trt
        except ImportError as e:
            raise Unavailable(f"backend 'tensorrt' needs tensorrt and pycuda ({e}); "
                              "install them with pip install -e '.[gpu]' on a machine with CUDA") from e
        super().__init__(graph_files)
        self._trt, self._cuda = trt, cuda
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.stream = cuda.Stream()
        self.max_batch = max_batch
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._engines, self._contexts, self._specs, self._outputs = {}, {}, {}, {}
        for graph, path in self.graph_files.items():
            engine = trt.Runtime(self._logger).deserialize_cuda_engine(self._plan(path, graph))
            if engine is None:
                raise Unavailable(f"TensorRT could not deserialize the engine built from {path}")
            self._engines[graph] = engine
            self._contexts[graph] = engine.create_execution_context()
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            ins = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
            self._specs[graph] = [InputSpec(n, np.dtype(trt.nptype(engine.get_tensor_dtype(n))),
                                            tuple(None if d < 0 else d for d in engine.get_tensor_shape(n)))
                                  for n in ins]
            self._outputs[graph] = [n for n in names if n not in ins]

    def _plan(self, onnx_path: Path, graph: str) -> bytes:
        trt = self._trt
        data = onnx_path.read_bytes()
        key = hashlib.sha256(data + trt.__version__.encode()
                             + self._cuda.Device(0).name().encode()).hexdigest()[:16]
        cached = self.cache_dir / f"{graph}.{key}.plan" if self.cache_dir else None
        if cached is not None and cached.exists():
            return cached.read_bytes()
        builder = trt.Builder(self._logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse(data):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ExportError(f"TensorRT's ONNX parser refused {onnx_path}: {errors}")
        config = builder.create_builder_config()
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            t = network.get_input(i)
            rest = tuple(t.shape)[1:]
            profile.set_shape(t.name, (1, *rest), (1, *rest), (self.max_batch, *rest))
        config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise Unavailable(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
        plan = bytes(plan)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_bytes(plan)
        return plan

    def input_specs(self, graph: str) -> list[InputSpec]:
        return self._specs[graph]

    def run_device(self, graph: str, feeds: dict, consume=None):
        """Run with inputs given as host arrays or GPUArrays; returns {output name: GPUArray}, enqueued
        on `self.stream` (synchronise before reading them on the host), or consume(those arrays)'s result
        (kernels launched on the same stream read them in order)."""
        from pycuda import gpuarray

        ctx = self._contexts[graph]
        batch = next(iter(feeds.values())).shape[0]
        if batch > self.max_batch:
            raise InvalidInput(f"batch {batch} exceeds the engine's profile maximum {self.max_batch}; "
                               "split it (IG: internal_batch_size)")
        keep = []
        for name, value in feeds.items():
            dev = value if isinstance(value, gpuarray.GPUArray) else gpuarray.to_gpu_async(value, stream=self.stream)
            keep.append(dev)
            if not ctx.set_input_shape(name, tuple(dev.shape)):
                raise InvalidInput(f"graph {graph!r}: TensorRT refused shape {tuple(dev.shape)} for {name!r}")
            ctx.set_tensor_address(name, int(dev.gpudata))
        outputs = {}
        for name in self._outputs[graph]:
            shape = tuple(ctx.get_tensor_shape(name))
            dtype = np.dtype(self._trt.nptype(self._engines[graph].get_tensor_dtype(name)))
            outputs[name] = gpuarray.empty(shape, dtype)
            ctx.set_tensor_address(name, int(outputs[name].gpudata))
        if not ctx.execute_async_v3(self.stream.handle):
            raise RuntimeError(f"TensorRT failed to enqueue graph {graph!r}")
        self._keep_alive = keep   # inputs must outlive the enqueued work
        return outputs if consume is None else consume(outputs)

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        outs = []
        for i in range(0, len(next(iter(feeds.values()))), self.max_batch):
            dev = self.run_device(graph, {k: v[i:i + self.max_batch] for k, v in feeds.items()})
            outs.append([d.get_async(stream=self.stream) for d in dev.values()])
        self.stream.synchronize()
        return [np.concatenate([o[j] for o in outs]) for j in range(len(outs[0]))]
