"""A shipped model: manifest verified, its graphs on one engine (created once, on first use), raw
inputs checked against the manifest.

No torch on this path: this is what runs on the edge device.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.data.preprocess import Normalisation
from edge.errors import InvalidInput, NotFound
from edge.runtime.calibration import softmax_t
from edge.runtime.engine import Engine, InputError, make_engine
from edge.runtime.manifest import audit_status, load_manifest, predict_sha256

__all__ = ["InputError", "Model", "softmax"]


class Model:
    def __init__(self, model_dir: Path, manifest: dict, backend: str = "ort-cpu", threads: int | None = None,
                 name: str | None = None, spin: bool = False):
        """name: what the model is called where it is served (the server passes its folder's name, so a
        model copied to models/<name> answers to <name>); default the manifest's name, else the folder's."""
        self.dir = Path(model_dir)
        self._name = name
        self.manifest = manifest
        self.backend = backend
        self.threads = threads
        self.spin = spin      # ONNX Runtime thread pools busy-wait between calls (off: see OrtEngine)
        self.normalisation = Normalisation(**manifest["input"]["normalisation"])
        self._engine: Engine | None = None

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
    def channels(self) -> list[str]:
        """Input channel names, in the graph's channel order."""
        return list(self.manifest["channels"])

    def class_indices(self, labels: list[str], source: object) -> np.ndarray:
        """Each label's index in `classes`; InvalidInput naming `source` (the data set) and every label the
        model was not trained on, before anything is predicted."""
        classes = self.classes
        unknown = sorted(set(labels) - set(classes))
        if unknown:
            raise InvalidInput(f"{source}: classes {unknown} are not among the model's {classes}")
        return np.array([classes.index(label) for label in labels], dtype=np.int64)

    @property
    def ok_class(self) -> str:
        """The class that means "no defect" (classifiers)."""
        return self.manifest.get("ok_class", "ok")

    @property
    def ok_index(self) -> int | None:
        """The defect-free class's index, or None for a classifier without one (NEU-DET has none)."""
        return self.classes.index(self.ok_class) if self.ok_class in self.classes else None

    @property
    def pixel_pitch_mm(self) -> float | None:
        """Millimetres per input pixel when the training data said so (sentences give sizes in mm)."""
        return self.manifest.get("pixel_pitch_mm")

    @property
    def units(self) -> str | None:
        """Units of a regression model's output map."""
        return self.manifest.get("output", {}).get("units")

    @property
    def residual_channel(self) -> int | None:
        """For a regression model whose output is an input channel plus a learnt correction (output =
        input[c] + correction, manifest `output.residual_channel`): that channel c; else None."""
        c = self.manifest.get("output", {}).get("residual_channel")
        return None if c is None else int(c)

    @property
    def ambient(self) -> tuple[int, float] | None:
        """(residual channel, the surroundings' temperature in its units) for a regression model whose
        output corrects a temperature reading: what the `ambient` IG baseline sets that channel to. From the
        manifest's `output.ambient`, else the simulator's `env_temperature_k` in the training data's
        recipe; None where neither says it, and for any other model (the phase model's corrected channel
        is a phase: nothing to set to a temperature)."""
        c = self.residual_channel
        if c is None or self.units != "K":
            return None
        value = self.manifest.get("output", {}).get("ambient")
        if value is None:
            value = self.manifest.get("training", {}).get("data", {}).get("config", {}).get("env_temperature_k")
        return None if value is None else (c, float(value))

    @property
    def explained_baseline(self) -> str | None:
        """The IG baseline the manifest names for this model (`explain.baseline`), or None: the task's
        default (`edge.explain.baselines.default_baseline` resolves it)."""
        return self.manifest.get("explain", {}).get("baseline")

    @property
    def explained_quantity(self) -> str:
        """What Integrated Gradients explains by default for this model (manifest `explain.quantity`):
        "output", or "correction" (the size of output - input[residual_channel]; see IGExplainer)."""
        return self.manifest.get("explain", {}).get("quantity", "output")

    @property
    def input_spec(self) -> dict:
        """The manifest's input section: size, normalisation, and for photographs integer_scaling and
        the training scale (what framing a frame of another size needs)."""
        return self.manifest["input"]

    @property
    def graphs(self) -> list[str]:
        return list(self.manifest["graphs"])

    @property
    def sha256(self) -> str:
        """The predict graph's sha256: the identity inspections and audits are tied to."""
        return predict_sha256(self.manifest)

    @property
    def audit_status(self) -> str:
        """passed | failed (checks) | not audited, from the gate's record in the manifest."""
        return audit_status(self.manifest)

    @property
    def gradcam_alignment(self) -> dict | None:
        """The Grad-CAM layer's stride and receptive-field centre, measured at export."""
        return self.manifest.get("gradcam_alignment")

    @property
    def temperature(self) -> float:
        """The classifier's calibration temperature (manifest `calibration`, fitted on held-out data);
        1.0 for a model without one: its confidences are the raw softmax."""
        return float(self.manifest.get("calibration", {}).get("temperature", 1.0))

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities from logits (N, K): softmax(logits / T). Same argmax as the raw
        softmax; every answer's confidence comes from here."""
        return softmax_t(logits, self.temperature)

    @property
    def cam_method(self) -> str:
        """The Grad-CAM-family map this classifier is explained with: chosen at training time as the one
        that localised best on the validation split (manifest `explain.cam_method`), else Grad-CAM."""
        return self.manifest.get("explain", {}).get("cam_method", "gradcam")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        h, w = self.manifest["input"]["size"]
        return len(self.channels), h, w

    @property
    def name(self) -> str:
        return self._name or self.manifest.get("name", self.dir.name)

    @property
    def engine(self) -> Engine:
        """All graphs of the model on the chosen backend, created on first use."""
        if self._engine is None:
            files = {g: self.dir / spec["file"] for g, spec in self.manifest["graphs"].items()}
            # a remote server must serve this very model: its predict graph's identity is checked there
            remote = self.backend.startswith("triton://") and "predict" in self.manifest["graphs"]
            self._engine = make_engine(self.backend, files, threads=self.threads, cache_dir=self.dir / ".engines",
                                       spin=self.spin, model_name=self.name,
                                       expected_sha256=predict_sha256(self.manifest) if remote else None)
        return self._engine

    def warm_up(self) -> None:
        self.engine.warm_up()

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run one graph (predict, gradcam, input_gradient) on already normalised inputs."""
        if graph not in self.manifest["graphs"]:
            raise NotFound(f"model {self.dir} has no {graph!r} graph (has {', '.join(self.graphs)})")
        return self.engine.run(graph, feeds)

    def check_input(self, x: np.ndarray, name: str = "input") -> np.ndarray:
        """Validate a raw batch (N, C, H, W) against the manifest; returns it as float32."""
        x = np.asarray(x)
        expected = self.input_shape
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise InputError(f"{name}: shape {tuple(x.shape)}, expected (N, {expected[0]}, {expected[1]}, "
                             f"{expected[2]}) with channels {', '.join(self.channels)}")
        if x.dtype.kind not in "fiu":            # floating or integer (np.issubdtype's, without its cost)
            raise InputError(f"{name}: dtype {x.dtype}, expected a numeric array")
        x = x.astype(np.float32, copy=False)
        # one reduction instead of a boolean image and its all(): a float64 sum of float32 values cannot
        # overflow, and any NaN or Inf makes it non-finite
        if not np.isfinite(x.sum(dtype=np.float64)):
            raise InputError(f"{name}: contains NaN or Inf")
        return x

    def predict(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Raw physical-unit batch (N, C, H, W) -> logits (N, K) or dense output (N, 1, H, W)."""
        x = self.normalisation.apply(self.check_input(x))
        return np.concatenate([self.run("predict", {"input": x[i:i + batch_size]})[0]
                               for i in range(0, len(x), batch_size)])


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
