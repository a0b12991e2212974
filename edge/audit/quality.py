"""Explanation quality for the classifier (seed paper Table 4), each measure with its protocol:

- faithfulness: deletion and insertion curves of the true-class probability, pixels in Grad-CAM order
  (most important first) replaced by the blur baseline / restored into it, 20 steps; AUC of each
  (deletion low and insertion high is faithful), against the same curves in the order of a random map
  as smooth as Grad-CAM's (`random_map_order`: the same shape of perturbation, placed at random; the
  curves in a random pixel order are reported beside, `*_random_pixels_auc`);
  the mean curves are plotted in the report; judged on defect-class samples where the model has a
  defect-free class (its maps have nothing to point at);
- top SHAP patch in defect: share of defective samples whose most positive SHAP patch overlaps the
  mask (grown by 4 px);
- completeness: share of f(x) - f(baseline) (log-odds) carried by the top-5 SHAP patches;
- consistency: per defect class, share of correctly classified samples whose primary descriptor is the
  class's most common one, and on simulated data (whose classes have a known physical signature,
  edge.sim.defects.DESCRIPTOR_KEYWORDS) the share whose primary descriptor is the right one; measured for
  the sentence served with every answer (the model's CAM pooled on the patch grid, every sample of the
  audit) and for the deferred SHAP sentence (the SHAP subset);
- stability: cosine similarity of Grad-CAM maps under Gaussian noise of 1 % of each channel's spread;
- sanity (Adebayo et al., NeurIPS 2018): the model's CAM of the same model with every weight re-drawn
  at random (same std per tensor); its maps must differ clearly from the trained model's: mean Spearman
  rank correlation per sample (judged), mean cosine similarity (reported; biased upwards for broad
  non-negative maps, which have a large cosine even when unrelated). A flat (constant) map has no ranking:
  beside a map that has one it counts as unrelated (0: the two maps share nothing), a pair of flat maps
  says nothing and is left out; the counts are reported (a randomised copy's maps are often all zero).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from edge.audit.localisation import cell_tolerance
from edge.audit.metrics import auc, cosine_similarity, grow, perturbation_curve, random_map_order, rank_correlation
from edge.explain import GradCAMExplainer, PatchShapExplainer, explain_in_words, make_baseline
from edge.runtime.model import Model, softmax


def faithfulness(model, x: np.ndarray, heatmaps: np.ndarray, classes: np.ndarray, steps: int = 20,
                 seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    xn = model.normalisation.apply(x)
    base = make_baseline(xn, "blur", model.task)
    cell = cell_tolerance(model.manifest)
    curves: dict[str, list[np.ndarray]] = {k: [] for k in (
        "deletion", "insertion", "deletion_random", "insertion_random", "deletion_random_pixels",
        "insertion_random_pixels")}
    for i in range(len(x)):
        c = int(classes[i])

        def score(batch, c=c):
            return softmax(model.run("predict", {"input": batch})[0].astype(np.float64))[:, c]
        order = np.argsort(-heatmaps[i].ravel(), kind="stable")
        rand = random_map_order(heatmaps[i].shape, cell, rng)
        pixels = rng.permutation(order.size)
        for name, o in (("", order), ("_random", rand), ("_random_pixels", pixels)):
            for kind in ("deletion", "insertion"):
                curves[kind + name].append(perturbation_curve(score, xn[i], base[i], o, steps,
                                                              insertion=kind == "insertion"))
    # AUC of each sample's curve, averaged (= AUC of the mean curve: the trapezoid rule is linear);
    # the mean curves themselves go into the report's figure.
    return ({f"{k}_auc": float(np.mean([auc(v_i) for v_i in v])) for k, v in curves.items()}
            | {"curves": {k: np.mean(v, axis=0).tolist() for k, v in curves.items()}, "n": len(x), "steps": steps})


def stability(model, x: np.ndarray, noise: float = 0.01, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    g = GradCAMExplainer(model)
    clean = g.explain(x)
    spread = x.std(axis=(2, 3), keepdims=True)
    same = np.array([e.details.class_index for e in clean])      # explain the same classes again
    noisy = g.explain((x + noise * spread * rng.standard_normal(x.shape)).astype(np.float32), same)
    sims = [cosine_similarity(a.heatmap, b.heatmap) for a, b in zip(clean, noisy)]
    return {"cosine_mean": float(np.nanmean(sims)), "cosine_min": float(np.nanmin(sims)), "noise": noise, "n": len(x)}


def randomised_copy(model: Model, folder: Path, seed: int = 0) -> Model:
    """The model's gradcam graph with every conv kernel and dense weight re-drawn at random (same std per
    tensor), as a Model in `folder`: it runs on the same engine and is explained by the same explainer."""
    import onnx
    from onnx import numpy_helper

    rng = np.random.default_rng(seed)
    spec = model.manifest["graphs"]["gradcam"]
    graph = onnx.load(str(model.dir / spec["file"]))
    for init in graph.graph.initializer:
        w = numpy_helper.to_array(init)
        if w.ndim >= 2 and w.dtype == np.float32:       # conv kernels and dense weights
            init.CopyFrom(numpy_helper.from_array((rng.standard_normal(w.shape) * w.std()).astype(np.float32), init.name))
    onnx.save(graph, str(Path(folder) / "random.onnx"))
    manifest = dict(model.manifest, graphs={"gradcam": {**spec, "file": "random.onnx"}})
    return Model(folder, manifest, backend=model.backend, threads=model.threads, name=f"{model.name} (randomised)",
                 spin=model.spin)


def sanity(model: Model, x: np.ndarray, heatmaps: np.ndarray, classes: np.ndarray, seed: int = 0) -> dict:
    """Maps of a fully randomised copy of the model, made with the model's own CAM method by the same
    explainer as `heatmaps`: comparing HiResCAM maps with Grad-CAM maps of the random copy would measure
    the methods' difference, not the weights'."""
    with tempfile.TemporaryDirectory() as d:
        random_model = randomised_copy(model, Path(d), seed)
        random_maps = np.stack([e.heatmap for e in GradCAMExplainer(random_model).explain(x, np.asarray(classes))])
    sims = np.array([cosine_similarity(a, b) for a, b in zip(heatmaps, random_maps)], np.float64)
    rank = np.array([_map_rank_correlation(a, b) for a, b in zip(heatmaps, random_maps)], np.float64)
    compared = int(np.isfinite(rank).sum())
    return {"rank_correlation_trained_vs_random": float(np.nanmean(rank)) if compared else float("nan"),
            "cosine_trained_vs_random": float(np.nanmean(sims)) if np.isfinite(sims).any() else float("nan"),
            "n": len(x), "compared": compared, "flat_trained": _flat(heatmaps), "flat_random": _flat(random_maps),
            "method": model.cam_method}


def _map_rank_correlation(trained: np.ndarray, random: np.ndarray) -> float:
    """Spearman's correlation of two maps; 0 where exactly one is flat (a ranking against none: the randomised
    model's all-zero map shares nothing with a trained map that points somewhere), NaN where both are."""
    flat = (float(np.ptp(trained)) == 0.0, float(np.ptp(random)) == 0.0)
    if all(flat):
        return float("nan")
    return 0.0 if any(flat) else rank_correlation(trained, random)


def _flat(maps: np.ndarray) -> int:
    """How many maps are constant (no place stands out, e.g. all zero where nothing supports the class)."""
    return int(sum(float(np.ptp(m)) == 0.0 for m in maps))


def shap_quality(model, x: np.ndarray, masks: np.ndarray, has_mask: np.ndarray, labels: list[str],
                 predicted: list[str], pitch: list[float | None], budget: int = 256, progress=None,
                 expected: dict[str, str] | None = None) -> dict:
    explainer = PatchShapExplainer(model, budget=budget, seed=0)
    ok = model.ok_class
    in_defect, completeness, descriptors = [], [], {}
    for i in range(len(x)):
        [e] = explainer.explain(x[i:i + 1])
        v, boxes = e.details.patch_values, e.details.patch_boxes
        total = e.details.value - e.details.baseline_value
        if abs(total) > 1e-9:
            completeness.append(float(np.sort(v)[::-1][:5].sum() / total))
        if labels[i] != ok and has_mask[i] and masks[i].any():
            t, l, b, r = boxes[int(np.argmax(v))]
            in_defect.append(bool(grow(masks[i], 4)[t:b, l:r].any()))
        channels = {n: x[i, k] for k, n in enumerate(model.channels)}
        _, items = explain_in_words(predicted[i], e.prediction.confidence, v, boxes, channels, pitch[i], ok)
        if items and labels[i] == predicted[i] and labels[i] != ok:    # "same defect class, same descriptor"
            descriptors.setdefault(labels[i], []).append(items[0]["descriptor"])
        if progress:
            progress(1)
    return {"top_patch_in_defect": float(np.mean(in_defect)) if in_defect else None, "n_defects": len(in_defect),
            "top5_completeness": float(np.median(completeness)) if completeness else None,
            "consistency": descriptor_consistency(descriptors, expected), "budget": budget, "n": len(x)}


def descriptor_consistency(descriptors: dict[str, list[str]], expected: dict[str, str] | None = None) -> dict:
    """Per class, from the primary descriptors of its correctly classified samples: the most common one and
    its share, and with `expected` (class -> a keyword of its right descriptor) the share that is right."""
    out = {}
    for lab, ds in sorted(descriptors.items()):
        values, counts = np.unique(ds, return_counts=True)
        out[lab] = {"primary_descriptor": str(values[counts.argmax()]), "share": float(counts.max() / len(ds)),
                    "n": len(ds)}
        if expected and lab in expected:
            out[lab]["expected"] = expected[lab]
            out[lab]["right_share"] = float(np.mean([expected[lab] in d for d in ds]))
    return out
