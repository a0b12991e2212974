"""One interface over inference backends: run a named graph of a model folder on a dict of arrays.

    engine = make_engine("ort-cpu", {"predict": Path("models/defect/predict.onnx"), ...}, threads=2)
    logits, = engine.run("predict", {"input": x})

Backends, one file each: `ort.py` (onnxruntime on CPU, or with the CUDA / TensorRT execution providers)
and `tensorrt.py` (native TensorRT engines built from the same ONNX, run through pycuda). Every backend
creates its sessions once, warms them up, and checks inputs against the graph's declared inputs before
running, so a wrong shape or dtype fails with a message naming the input instead of deep in a kernel.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import InvalidInput, NotFound, Unavailable

BACKENDS = ("ort-cpu", "ort-cuda", "ort-tensorrt", "tensorrt")


class InputError(InvalidInput):
    """An input of the wrong name, shape, type or content; the message names the input."""


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]   # None where the graph leaves the dimension free (the batch)


def check_feeds(graph: str, specs: list[InputSpec], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Feeds matched against the graph's inputs: every input present, nothing extra, right rank, fixed
    dimensions equal, the same batch across inputs, the declared dtype (float64 is narrowed, since
    callers hand us NumPy's default; anything else is refused rather than silently cast)."""
    names = {s.name for s in specs}
    missing = [n for n in names if n not in feeds]
    extra = [n for n in feeds if n not in names]
    if missing or extra:
        raise InputError(f"graph {graph!r}: inputs {sorted(feeds)} given, expected {sorted(names)}"
                         + (f" (missing {', '.join(missing)})" if missing else "")
                         + (f" (unknown {', '.join(extra)})" if extra else ""))
    out, batch = {}, None
    for spec in specs:
        a = np.asarray(feeds[spec.name])
        want = "(" + ", ".join("N" if d is None else str(d) for d in spec.shape) + ")"
        if a.ndim != len(spec.shape) or any(d is not None and d != s for d, s in zip(spec.shape, a.shape)):
            raise InputError(f"graph {graph!r}, input {spec.name!r}: shape {tuple(a.shape)}, expected {want}")
        if a.dtype != spec.dtype:
            if a.dtype == np.float64 and spec.dtype == np.float32:
                a = a.astype(np.float32)
            else:
                raise InputError(f"graph {graph!r}, input {spec.name!r}: dtype {a.dtype}, expected {spec.dtype}")
        if spec.shape and spec.shape[0] is None:
            if batch is not None and a.shape[0] != batch:
                raise InputError(f"graph {graph!r}, input {spec.name!r}: batch {a.shape[0]} differs from the "
                                 f"other inputs' batch {batch}")
            batch = a.shape[0]
        if a.size == 0:
            raise InputError(f"graph {graph!r}, input {spec.name!r}: empty batch")
        out[spec.name] = np.ascontiguousarray(a)
    return out


class Engine(ABC):
    """The graphs of one model folder on one backend."""

    backend: str

    def __init__(self, graph_files: dict[str, Path]):
        self.graph_files = {k: Path(v) for k, v in graph_files.items()}

    @property
    def graphs(self) -> list[str]:
        return list(self.graph_files)

    @abstractmethod
    def input_specs(self, graph: str) -> list[InputSpec]:
        """The declared inputs of one graph."""

    @abstractmethod
    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run checked feeds; outputs in the graph's declared order, as host arrays."""

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if graph not in self.graph_files:
            raise NotFound(f"no {graph!r} graph here (have {', '.join(self.graph_files)})")
        return self._run(graph, check_feeds(graph, self.input_specs(graph), feeds))

    def warm_up(self, example_batch: int = 1) -> None:
        """One run of every graph on zeros, so first-request latency excludes lazy initialisation
        (memory arenas, kernel selection, TensorRT tactic loading)."""
        for graph in self.graph_files:
            feeds = {s.name: np.zeros([example_batch if d is None else d for d in s.shape], s.dtype)
                     for s in self.input_specs(graph)}
            self.run(graph, feeds)


def make_engine(backend: str, graph_files: dict[str, Path], threads: int | None = None,
                cache_dir: Path | None = None, spin: bool = False, model_name: str | None = None,
                expected_sha256: str | None = None) -> Engine:
    """An engine for `backend` (one of BACKENDS, or triton://HOST:PORT). GPU backends import their libraries
    only here, so the CPU install never needs them; a missing library fails with the package to install.
    `spin`: ONNX Runtime's thread pools busy-wait between calls (see OrtEngine). `model_name` and
    `expected_sha256`: which Triton models serve these graphs, and the identity they must have."""
    if backend.startswith("triton://"):
        try:
            from edge.runtime.triton import TritonEngine
        except ImportError as e:
            raise Unavailable(f"backend {backend!r} needs tritonclient: pip install 'edge-xai[triton]'") from e
        if not model_name:
            raise InvalidInput(f"backend {backend!r}: the Triton model name is missing")
        return TritonEngine(graph_files, backend, model_name, expected_sha256=expected_sha256)
    if backend in ("ort-cpu", "ort-cuda", "ort-tensorrt"):
        from edge.runtime.ort import OrtEngine, OrtGpuEngine

        cls = OrtEngine if backend == "ort-cpu" else OrtGpuEngine
        return cls(graph_files, backend, threads=threads, cache_dir=cache_dir, spin=spin)
    if backend == "tensorrt":
        from edge.runtime.tensorrt import TensorRTEngine

        return TensorRTEngine(graph_files, cache_dir=cache_dir)
    raise InvalidInput(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)} or triton://HOST:PORT")
