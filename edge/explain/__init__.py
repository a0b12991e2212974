"""Explanations computed from a model's exported graphs (no PyTorch): one file per method.

    from edge.explain import make_explainer, explain_frames, frame_view
    explainer = make_explainer("gradcam", Model.load("models/defect"))   # or the model's own: model.cam_method
    [e] = explainer.explain(x)           # x: (N, C, H, W) raw, as the loader gives it
    e.prediction.label, e.heatmap, e.details

The public surface is what `__all__` lists, plus `edge.explain.overlay` (drawing maps for people); the
other modules behind it (cam.py's maths, quadrature, Shapley estimators, sentence descriptors) are
internals that may change, imported directly only by their own tests. Names resolve on first use, so `import edge.explain`
stays light for the CLI's --help.
"""
from __future__ import annotations

from edge._lazy import lazy_exports

# = edge.explain.cam.METHODS (a test keeps them equal)
CAM_METHODS = ("gradcam", "gradcam++", "hirescam", "gradcam-elementwise")
METHODS = (*CAM_METHODS, "ig", "shap")

_PUBLIC = {
    "Explainer": "base", "Explanation": "base", "Prediction": "base", "CamDetails": "base", "IGDetails": "base",
    "ShapDetails": "base", "GradCAMExplainer": "gradcam", "IGExplainer": "ig", "PatchShapExplainer": "shap",
    "FrameView": "frame", "FrameResult": "frame", "explain_frames": "frame", "frame_view": "frame",
    "decide_frames": "frame",
    "add_sentences": "sentence", "explain_in_words": "sentence", "explanation_record": "report",
    "DISPLAY_NAMES": "cam", "PatchGrid": "patches", "parse_target": "targets", "per_sample_targets": "gradcam",
    "make_baseline": "baselines", "sensor_evidence": "sensors", "sensor_phrase": "sensors",
    "with_sensor_phrase": "sensors",
}
__all__ = ["CAM_METHODS", "METHODS", "make_explainer", *_PUBLIC]


__getattr__ = lazy_exports(__name__, _PUBLIC, globals())


def make_explainer(method: str, model, **options):
    """An explainer of `model` by `method` (gradcam, gradcam++, hirescam, gradcam-elementwise, ig, shap);
    options go to its constructor (see each class)."""
    from edge.errors import InvalidInput

    if method in CAM_METHODS:
        from edge.explain.gradcam import GradCAMExplainer

        return GradCAMExplainer(model, method, **options)
    if method == "ig":
        from edge.explain.ig import IGExplainer

        return IGExplainer(model, **options)
    if method == "shap":
        from edge.explain.shap import PatchShapExplainer

        return PatchShapExplainer(model, **options)
    raise InvalidInput(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
