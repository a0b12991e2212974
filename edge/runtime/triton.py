"""Triton Inference Server backend: a model folder's graphs run on a remote Triton over gRPC (KServe v2).

    engine = make_engine("triton://gpu-server:8001", files, model_name="defect", expected_sha256=sha)
    logits, = engine.run("predict", {"input": x})

The Triton models are the ones `edge-xai export-triton` writes: `<model>_<graph>` (defect_predict,
defect_gradcam, defect_input_gradient, defect_guided_gradient). The local model folder stays the source of the manifest (classes,
normalisation, calibration); only the graph calls travel. At start every graph's model must be ready on
the server and its metadata must declare the inputs and outputs the local graph has (names, types,
shapes, a free batch dimension): a server serving another export fails here with both sides named, not
at the first inspection. Where the server's config carries the predict graph's sha256 (export-triton
writes it as the parameter `edge_xai_predict_sha256`), it must equal the local manifest's.

Calls: a deadline per call (`timeout_s`), batches larger than the server's max_batch_size split into
several requests, and UNAVAILABLE (server restarting, overloaded queue) retried with a short backoff
before it becomes the node's UNAVAILABLE. Needs tritonclient's gRPC module (the `triton` extra; its
`grpc` extra is not needed and would pin protobuf below what edge-xai's own messages use).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from edge.errors import DeadlineExceeded, InvalidInput, NotFound, Unavailable
from edge.runtime.engine import Engine, InputSpec

log = logging.getLogger("edge.runtime")

SCHEME = "triton://"
_DTYPES = {"FP32": np.float32, "FP16": np.float16, "INT64": np.int64, "INT32": np.int32, "UINT8": np.uint8}


def parse_url(backend: str) -> str:
    """HOST:PORT from triton://HOST:PORT (Triton's gRPC port, 8001 by default)."""
    if not backend.startswith(SCHEME) or not backend[len(SCHEME):]:
        raise InvalidInput(f"backend {backend!r}: expected triton://HOST:PORT (Triton's gRPC endpoint)")
    address = backend[len(SCHEME):].rstrip("/")
    return address if ":" in address else f"{address}:8001"


def _onnx_io(path: Path) -> tuple[dict[str, tuple[str, tuple]], list[str]]:
    """The local graph's inputs {name: (Triton type, dims after the batch)} and output names (read with ONNX
    Runtime, a runtime dependency: no onnx package on the node)."""
    import onnxruntime as ort

    types = {"tensor(float)": "FP32", "tensor(float16)": "FP16", "tensor(int64)": "INT64", "tensor(int32)": "INT32",
             "tensor(uint8)": "UINT8"}
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL     # only the signature is read
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inputs = {i.name: (types.get(i.type, i.type), tuple(d if isinstance(d, int) else -1 for d in i.shape[1:]))
              for i in sess.get_inputs()}
    return inputs, [o.name for o in sess.get_outputs()]


class TritonEngine(Engine):
    def __init__(self, graph_files: dict[str, Path], backend: str, model_name: str,
                 expected_sha256: str | None = None, timeout_s: float = 10.0, retries: int = 3):
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        super().__init__(graph_files)
        self.backend = backend
        self.url = parse_url(backend)
        self.timeout_s, self.retries = timeout_s, retries
        self._grpc, self._error = grpcclient, InferenceServerException
        self.client = grpcclient.InferenceServerClient(self.url)
        self._names = {g: f"{model_name}_{g}" for g in graph_files}
        self._specs: dict[str, list[InputSpec]] = {}
        self._outputs: dict[str, list[str]] = {}
        self._max_batch: dict[str, int] = {}
        for graph, path in self.graph_files.items():
            name = self._names[graph]
            try:
                ready = self.client.is_model_ready(name)
                meta = self.client.get_model_metadata(name, as_json=True) if ready else None
                config = self.client.get_model_config(name, as_json=True)["config"] if ready else None
            except InferenceServerException as e:
                raise Unavailable(f"Triton at {self.url}: {e.message()} (model {name!r})") from e
            if not ready:
                raise NotFound(f"Triton at {self.url} has no ready model {name!r}: export it with edge-xai "
                               f"export-triton --model <dir> --out <repo> and load the repository there")
            self._check(graph, name, path, meta, config, expected_sha256)
            self._specs[graph] = [InputSpec(i["name"], np.dtype(_DTYPES[i["datatype"]]),
                                            tuple(None if int(d) < 0 else int(d) for d in i["shape"]))
                                  for i in meta["inputs"]]
            self._outputs[graph] = [o["name"] for o in meta["outputs"]]
            self._max_batch[graph] = int(config.get("max_batch_size", 0)) or 0

    def _check(self, graph: str, name: str, path: Path, meta: dict, config: dict, sha: str | None) -> None:
        local_inputs, local_outputs = _onnx_io(path)
        remote_inputs = {i["name"]: (i["datatype"], tuple(int(d) for d in i["shape"])[1:]) for i in meta["inputs"]}
        problems = []
        if remote_inputs != local_inputs:
            problems.append(f"inputs {remote_inputs} on the server, {local_inputs} in {path}")
        remote_outputs = [o["name"] for o in meta["outputs"]]
        if sorted(remote_outputs) != sorted(local_outputs):
            problems.append(f"outputs {remote_outputs} on the server, {local_outputs} in {path}")
        if any(int(i["shape"][0]) != -1 for i in meta["inputs"]):
            problems.append("no free batch dimension on the server")
        served_sha = config.get("parameters", {}).get("edge_xai_predict_sha256", {}).get("string_value")
        if sha and served_sha and served_sha != sha:
            problems.append(f"it serves predict graph sha256 {served_sha[:12]}…, the local manifest has {sha[:12]}…")
        if problems:
            raise InvalidInput(f"Triton at {self.url}, model {name!r} is not this model's {graph} graph: "
                               + "; ".join(problems))
        if sha and not served_sha:
            log.info("Triton model %s carries no edge_xai_predict_sha256; identity checked by inputs and outputs only",
                     name)

    def input_specs(self, graph: str) -> list[InputSpec]:
        return self._specs[graph]

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        n = next(iter(feeds.values())).shape[0]
        step = self._max_batch[graph] or n
        parts = [self._infer(graph, {k: v[i:i + step] for k, v in feeds.items()}) for i in range(0, n, step)]
        return [np.concatenate([p[j] for p in parts]) if len(parts) > 1 else parts[0][j]
                for j in range(len(self._outputs[graph]))]

    def _infer(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        from tritonclient.utils import np_to_triton_dtype

        name = self._names[graph]
        inputs = []
        for k, a in feeds.items():
            inp = self._grpc.InferInput(k, list(a.shape), np_to_triton_dtype(a.dtype))
            inp.set_data_from_numpy(a)
            inputs.append(inp)
        outputs = [self._grpc.InferRequestedOutput(o) for o in self._outputs[graph]]
        delay = 0.05
        for attempt in range(self.retries + 1):
            try:
                result = self.client.infer(name, inputs, outputs=outputs, client_timeout=self.timeout_s)
                return [result.as_numpy(o) for o in self._outputs[graph]]
            except self._error as e:
                status = str(e.status() or "")
                if "UNAVAILABLE" in status and attempt < self.retries:
                    time.sleep(delay)
                    delay *= 2
                    continue
                if "DEADLINE_EXCEEDED" in status:
                    raise DeadlineExceeded(f"Triton at {self.url}, model {name!r}: no answer within "
                                           f"{self.timeout_s:g} s") from e
                raise Unavailable(f"Triton at {self.url}, model {name!r}: {e.message()}"
                                  + (f" (after {attempt + 1} attempts)" if attempt else "")) from e
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.client.close()
