"""A shipped model on ONNX Runtime: manifest verified, sessions created once, inputs checked.

No torch on this path: this is what runs on the edge device.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.data.preprocess import Normalisation
from edge.runtime.manifest import load_manifest


class InputError(ValueError):
    """An input of the wrong shape, type or content; the message names the input."""


class Model:
    def __init__(self, model_dir: Path, manifest: dict, providers: list[str] | None = None,
                 intra_op_threads: int | None = None):
        self.dir = Path(model_dir)
        self.manifest = manifest
        self.providers = providers or ["CPUExecutionProvider"]
        self.intra_op_threads = intra_op_threads
        self.normalisation = Normalisation(**manifest["input"]["normalisation"])
        self._sessions: dict = {}

    @classmethod
    def load(cls, model_dir: Path, verify: bool = True, **kwargs) -> "Model":
        return cls(model_dir, load_manifest(model_dir, verify=verify), **kwargs)

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @property
    def classes(self) -> list[str]:
        return list(self.manifest.get("classes", []))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        h, w = self.manifest["input"]["size"]
        return len(self.manifest["channels"]), h, w

    def session(self, graph: str):
        """The ONNX Runtime session of one graph (predict, gradcam, input_gradient), created once."""
        if graph not in self._sessions:
            import onnxruntime as ort

            if graph not in self.manifest["graphs"]:
                raise KeyError(f"model {self.dir} has no {graph!r} graph (has {', '.join(self.manifest['graphs'])})")
            opts = ort.SessionOptions()
            if self.intra_op_threads:
                opts.intra_op_num_threads = self.intra_op_threads
            path = self.dir / self.manifest["graphs"][graph]["file"]
            self._sessions[graph] = ort.InferenceSession(str(path), opts, providers=self.providers)
        return self._sessions[graph]

    def check_input(self, x: np.ndarray, name: str = "input") -> np.ndarray:
        """Validate a raw batch (N, C, H, W) against the manifest; returns it as float32."""
        x = np.asarray(x)
        expected = self.input_shape
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise InputError(f"{name}: shape {tuple(x.shape)}, expected (N, {expected[0]}, {expected[1]}, "
                             f"{expected[2]}) with channels {', '.join(self.manifest['channels'])}")
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise InputError(f"{name}: dtype {x.dtype}, expected a numeric array")
        x = x.astype(np.float32, copy=False)
        if not np.isfinite(x).all():
            raise InputError(f"{name}: contains NaN or Inf")
        return x

    def predict(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Raw physical-unit batch (N, C, H, W) -> logits (N, K) or dense output (N, 1, H, W)."""
        x = self.normalisation.apply(self.check_input(x))
        sess = self.session("predict")
        return np.concatenate([sess.run(None, {"input": x[i:i + batch_size]})[0]
                               for i in range(0, len(x), batch_size)])


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
