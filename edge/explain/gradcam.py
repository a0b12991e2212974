"""Grad-CAM, Grad-CAM++ and HiResCAM from the exported `gradcam` graph: one engine call gives the
logits, the target layer's activations A and dscore/dA; the rest is `cam.py` (or `kernels/gradcam.cu`).

    [e] = GradCAMExplainer(Model.load("models/defect")).explain(x)          # the model's CAM, predicted class
    [e] = GradCAMExplainer(model, "gradcam++").explain(x, target="crack")   # any class

Maps are placed by the layer's measured receptive-field alignment (manifest `gradcam_alignment`);
`align=False` gives the half-pixel placement of pytorch-grad-cam and Captum, for comparisons.

`guided=True` sharpens the map to input pixels with the exported `guided_gradient` graph (guided
backpropagation; see `cam.guided_refine`): thin defects get a thin map. It costs a full backward pass
(3.8x a bare prediction in all, benchmarks/attribution.py), so it is an option for audits and
`edge-xai explain --guided` and the service's GUIDED explanation kind, not the inline default.

On an engine that keeps its outputs on the GPU (`run_device`: TensorRT, ONNX Runtime with a GPU
provider), the activations and gradients stay there: `kernels/gradcam.cu` (through `edge.explain.cuda`)
reads them in the engine's own output buffers (`run_device(consume=...)`) and turns them into the layer
map, the frame-size map and heatmap and the review flag's pooled embedding on the device; these and the
logits come back in one copy. Elsewhere the NumPy twins in `cam.py` do the same maths on the host; they are the
oracle of the GPU tests.
"""
from __future__ import annotations

import numpy as np

from edge.errors import InvalidInput
from edge.explain.base import CamDetails, Explainer, Explanation, Timer, class_indices, predictions
from edge.explain.cam import METHODS, alignment_shift, cam_raw, guided_refine, normalise_minmax, upsample_bilinear
from edge.explain.cuda import device_kernels
from edge.explain.targets import class_target
from edge.runtime.engine import check_feeds
from edge.runtime.model import Model


def map_shift(model: Model, align: bool = True) -> float:
    """Upsampling shift (map cells) for this model's Grad-CAM layer; 0 without a recorded alignment."""
    a = model.gradcam_alignment
    return alignment_shift(a["stride"], a["centre_px"]) if (align and a) else 0.0


def per_sample_targets(model: Model, target, n: int) -> np.ndarray:
    """(n,) class indices, -1 where the sample's predicted class is meant."""
    if target is None:
        return np.full(n, -1, np.int64)
    if not isinstance(target, str) and np.ndim(target) == 1:
        t = np.asarray(target, np.int64)
        if len(t) != n:
            raise InvalidInput(f"{len(t)} targets for {n} samples")
        rows = t >= 0
        out = t.copy()
        out[rows] = class_indices(model, t[rows], np.zeros(int(rows.sum()), np.int64))
        return out
    return class_indices(model, target, np.zeros(n, np.int64)).copy()


def _require_guided_graph(model: Model) -> None:
    """Guided maps need the model's guided_gradient graph; a model exported before it existed is refused by name."""
    if "guided_gradient" not in model.graphs:
        raise InvalidInput(f"model {model.dir} has no guided_gradient graph (exported before it existed); "
                           f"re-export it with `edge-xai export --model {model.dir}`")


class GradCAMExplainer(Explainer):
    def __init__(self, model: Model, method: str | None = None, align: bool = True, guided: bool = False):
        """method: gradcam, gradcam++, hirescam or gradcam-elementwise; None: the model's own
        (`Model.cam_method`). guided: refine the map with guided backpropagation (needs the model's
        guided_gradient graph)."""
        method = method or model.cam_method
        if method not in METHODS:
            raise InvalidInput(f"unknown CAM method {method!r}; expected one of {', '.join(METHODS)}")
        if "gradcam" not in model.graphs:
            raise InvalidInput(f"model {model.dir} has no gradcam graph: class activation maps need a "
                               f"classifier (this is a {model.task} model; use ig or shap)")
        if guided:
            _require_guided_graph(model)
        super().__init__(model)
        self.method = method
        self.guided = guided
        self.shift = map_shift(model, align)
        self._kernels = None                 # decided on the first call (the engine is created lazily)

    def _device(self, batch: int):
        """The kernels when this model's engine keeps outputs on the GPU and the batch fits one engine call."""
        if self._kernels is None:
            self._kernels = device_kernels(self.model.engine) or False
        if not self._kernels or batch > getattr(self.model.engine, "max_batch", batch):
            return None
        return self._kernels

    def explain(self, x: np.ndarray, target=None) -> list[Explanation]:
        """target: None (each sample's predicted class), a class name or index for all, or one index per
        sample where -1 means that sample's predicted class."""
        timer = Timer()
        xn = self.prepare(x, timer)
        k = len(self.model.classes)
        with timer.stage("graph"):
            # Zero rows: the graph picks the predicted class itself, so any mix of targets is one call.
            onehot = np.zeros((len(xn), k), np.float32)
            wanted = None if target is None else per_sample_targets(self.model, target, len(xn))
            if wanted is not None:
                rows = np.flatnonzero(wanted >= 0)
                if len(rows):
                    onehot[rows] = class_target(k, wanted[rows])
            kernels = self._device(len(xn))
            if kernels is None:
                logits, acts, grads = self.model.run("gradcam", {"input": xn, "target": onehot})
            else:
                engine = self.model.engine
                feeds = check_feeds("gradcam", engine.input_specs("gradcam"), {"input": xn, "target": onehot})

                def on_device(outs):
                    # inside the engine call, on its own output buffers (no copy of them on the device)
                    with timer.stage("cam"):
                        return kernels.gradcam_to_host(outs["activations"], outs["activation_grad"], xn.shape[2:],
                                                       self.method, self.shift, logits=outs["logits"])

                mapped = engine.run_device("gradcam", feeds, consume=on_device)
                logits = mapped["logits"]
        if kernels is not None:
            timer.ms["graph"] -= timer.ms["cam"]       # the map stage ran within the graph stage's clock
        preds = predictions(self.model, logits)
        explained = logits.argmax(axis=1) if wanted is None else np.where(wanted >= 0, wanted, logits.argmax(axis=1))
        pooled = None
        if kernels is None:
            with timer.stage("cam"):
                raw, up = self._host_map(acts, grads, xn.shape[2:])
                heat = None if self.guided else normalise_minmax(up)    # guided: normalised once refined
        else:
            raw, up, heat, pooled, acts = (mapped["raw"], mapped["attribution"], mapped["heatmap"],
                                           mapped["embedding"], None)
        if self.guided:
            with timer.stage("guided"):
                up = self._guided_maps(xn, up, explained)
                heat = normalise_minmax(up)
        return self._explanations(preds, explained, raw, up, heat, acts, pooled, logits, self.guided, timer)

    def _host_map(self, acts: np.ndarray, grads: np.ndarray, shape) -> tuple[np.ndarray, np.ndarray]:
        """The map at the target layer and upsampled to `shape`, on the host (the kernels' twin)."""
        raw = cam_raw(acts, grads, self.method)
        return raw, upsample_bilinear(raw, shape, self.shift)

    def _explanations(self, preds, classes, raw, up, heat, acts, pooled, logits, guided: bool,
                      timer: Timer) -> list[Explanation]:
        """One Explanation per sample (per-sample arrays indexed here; acts / pooled may be None)."""
        return [Explanation(self.method, p, f"class {self.model.classes[c]}", up[i], heat[i],
                            CamDetails(raw=raw[i], class_index=int(c), shift_cells=self.shift,
                                       activations=None if acts is None else acts[i],
                                       pooled=None if pooled is None else pooled[i], guided=guided,
                                       logits=logits[i]),
                            timings_ms=dict(timer.ms))
                for i, (p, c) in enumerate(zip(preds, classes))]

    def retarget(self, explanations: list[Explanation], classes) -> list[Explanation] | None:
        """The same inputs explained for other classes (one index per explanation), from the activations
        their Grad-CAM call returned: the head's backward alone (the `head_gradient` graph), not a second
        pass through the network. Predictions stay those of the inputs. None where that cannot be done
        (a model exported before the graph existed, activations kept on the GPU by the kernels, guided
        maps): the caller runs `explain` again."""
        if (self.guided or "head_gradient" not in self.model.graphs or not explanations
                or any(getattr(e.details, "activations", None) is None for e in explanations)):
            return None
        timer = Timer()
        classes = np.asarray(classes, np.int64)
        acts = np.stack([e.details.activations for e in explanations])
        with timer.stage("graph"):
            _, grads = self.model.run("head_gradient", {"activations": acts, "target": class_target(
                len(self.model.classes), classes)})
        with timer.stage("cam"):
            raw, up = self._host_map(acts, grads, explanations[0].attribution.shape)
            heat = normalise_minmax(up)
        return self._explanations([e.prediction for e in explanations], classes, raw, up, heat, acts, None,
                                  [e.details.logits for e in explanations], False, timer)

    def _guided_maps(self, xn: np.ndarray, cam_up: np.ndarray, classes: np.ndarray) -> np.ndarray:
        _, guided_grad = self.model.run("guided_gradient", {"input": xn, "target": class_target(len(self.model.classes),
                                                                                               classes)})
        return guided_refine(cam_up, guided_grad, xn)

    def guide(self, x: np.ndarray, cam_up: np.ndarray, classes) -> tuple[np.ndarray, np.ndarray]:
        """The guided maps of frames whose plain maps are known: raw x (N, C, H, W), their unnormalised class
        maps at input resolution (an Explanation's `attribution`) and the classes they explain. One
        guided_gradient call, no second gradcam call: what `explain` does after its own map when guided.
        Returns (attribution, heatmap), each (N, H, W)."""
        _require_guided_graph(self.model)
        xn = self.model.normalisation.apply(self.model.check_input(x))
        cam_up = np.asarray(cam_up, np.float32)
        if cam_up.shape != (len(xn), *xn.shape[2:]):
            raise InvalidInput(f"class maps {cam_up.shape}: expected one (H, W) map per frame, {(len(xn), *xn.shape[2:])}")
        up = self._guided_maps(xn, cam_up, np.asarray(classes, np.int64))
        return up, normalise_minmax(up)
