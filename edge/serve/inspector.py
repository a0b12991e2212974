"""The inspection domain: models loaded once, a batch of jobs in, inspections out, and the cycle-time
scheduler that decides which explanations come inline and which are deferred.

Prediction and Grad-CAM (one `gradcam` graph call for the whole micro-batch) and the Grad-CAM-based
sentence are always inline. IG (regression models) and patch SHAP come inline only when their
measured cost fits the job's remaining cycle budget; otherwise they are deferred to a background
worker and land later in the store and on the watch stream. Costs are measured at warm-up and kept
as moving averages of what they really took.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from edge.explain.cam import DISPLAY_NAMES
from edge.explain.frame import explain_frames
from edge.explain.gradcam import GradCAMExplainer
from edge.explain.ig import IGExplainer
from edge.explain.overlay import heatmap8
from edge.explain.patches import PatchGrid
from edge.explain.sentence import explain_in_words
from edge.explain.shap import PatchShapExplainer
from edge.runtime.manifest import ManifestError, predict_sha256
from edge.runtime.model import Model
from edge.serve.domain import Attribution, Inspection, Job

log = logging.getLogger("edge.serve")


class UnknownName(LookupError):
    """An unknown model or class; the message names it and lists what exists."""


def png(image8: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image8)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return data.tobytes()


class Inspector:
    def __init__(self, models_dir: Path, threads: int | None = None, backend: str = "ort-cpu",
                 default_model: str | None = None, ig_steps: int = 32, shap_budget: int = 512,
                 allow_unaudited: bool = False):
        from edge.audit.gate import audit_status

        self.models: dict[str, Model] = {}
        for d in sorted(Path(models_dir).iterdir()) if Path(models_dir).is_dir() else []:
            if (d / "manifest.json").is_file():
                try:
                    self.models[d.name] = Model.load(d, backend=backend, threads=threads, name=d.name)
                except ManifestError as e:
                    raise ManifestError(f"cannot serve {d}: {e}") from e
        self.audit = {n: audit_status(m.manifest) for n, m in self.models.items()}
        unaudited = {n: st for n, st in self.audit.items() if st != "passed"}
        how = "run edge-xai audit, then edge-xai gate --record MODEL_DIR; or start with --allow-unaudited"
        # Models without a passing audit are left out, not the whole node: the line keeps its audited
        # classifier while, say, a thermal model that failed its physics check is withheld.
        self.withheld: dict[str, Model] = {}       # loaded, listed with served = false, never run
        if unaudited and not allow_unaudited:
            if not any(m.classes for n, m in self.models.items() if n not in unaudited):
                raise PermissionError("refusing to serve models without a passing audit: "
                                      + "; ".join(f"{n}: {st}" for n, st in unaudited.items())
                                      + f", and no audited classifier is left to serve ({how})")
            for n, st in unaudited.items():
                self.withheld[n] = self.models.pop(n)
                log.warning("not serving %s: %s (%s)", n, st, how)
        else:
            for n, st in unaudited.items():
                log.warning("serving %s without a passing audit (%s)", n, st)
        classifiers = [n for n, m in self.models.items() if m.classes]
        if not classifiers:
            raise FileNotFoundError(f"{models_dir}: no classifier model folder (with manifest.json) to serve")
        self.default_model = default_model or ("defect" if "defect" in classifiers else classifiers[0])
        if self.default_model not in classifiers:
            raise UnknownName(f"default model {self.default_model!r} is not a classifier here "
                              f"({', '.join(classifiers)})")
        self.ig = {n: IGExplainer(m, n_steps=ig_steps) for n, m in self.models.items() if not m.classes}
        self.shap = {n: PatchShapExplainer(m, budget=shap_budget) for n, m in self.models.items() if m.classes}
        self.grids = {n: PatchGrid(*m.input_shape[1:]) for n, m in self.models.items() if m.classes}
        self.gradcam = {n: GradCAMExplainer(m) for n, m in self.models.items() if m.classes}
        self.cost_ms: dict[tuple[str, str], float] = {}
        self._cost_lock = threading.Lock()

    # -- lookup ------------------------------------------------------------------------------------
    def classifier(self, name: str) -> Model:
        name = name or self.default_model
        m = self.models.get(name)
        if m is None or not m.classes:
            raise UnknownName(f"model {name!r}: not served here{self.refusal(name)} (classifiers: "
                              f"{', '.join(n for n, x in self.models.items() if x.classes)})")
        return m

    def refusal(self, name: str) -> str:
        """Why a model is missing, for error messages: its audit status if it was withheld, else nothing."""
        return f" (withheld: audit {self.audit[name]})" if name in self.withheld else ""

    def regression_models(self) -> dict[str, Model]:
        return {n: m for n, m in self.models.items() if not m.classes}

    def sha256(self, name: str) -> str:
        m = self.models.get(name) or self.withheld[name]
        return predict_sha256(m.manifest)

    # -- costs -------------------------------------------------------------------------------------
    def _record(self, kind: str, model: str, ms: float) -> None:
        with self._cost_lock:
            old = self.cost_ms.get((kind, model))
            self.cost_ms[(kind, model)] = ms if old is None else 0.7 * old + 0.3 * ms

    def warm_up(self) -> None:
        """Create every session, run each graph once, and measure what IG and SHAP cost here."""
        for name, m in self.models.items():
            m.warm_up()
            x = np.zeros((1, *m.input_shape), np.float32)
            if not m.classes:
                t = time.perf_counter()
                self.ig[name].explain(x)
                self._record("ig", name, (time.perf_counter() - t) * 1e3)
            else:
                # SHAP's cost is its evaluations: time one predict batch and scale.
                batch = np.zeros((64, *m.input_shape), np.float32)
                m.run("predict", {"input": batch})
                t = time.perf_counter()
                m.run("predict", {"input": batch})
                per = (time.perf_counter() - t) * 1e3 / 64
                self._record("shap", name, per * self.shap[name].budget * 1.2)

    def plan(self, job: Job) -> tuple[list[str], list[str]]:
        """(inline, deferred) among the job's optional explanations, by cost against the budget left
        after the inline prediction and Grad-CAM (their cost is counted as already spent)."""
        inline, deferred = [], []
        left = job.remaining_ms() - self.cost_ms.get(("gradcam", job.model), 5.0)
        for kind in ("ig", "shap"):
            if kind not in job.explanations:
                continue
            models = list(job.regression_inputs) if kind == "ig" else [job.model]
            cost = sum(self.cost_ms.get((kind, m), float("inf")) for m in models)
            if models and cost <= left:
                inline.append(kind)
                left -= cost
            elif models:
                deferred.append(kind)
        return inline, deferred

    # -- the work ----------------------------------------------------------------------------------
    def inspect_batch(self, jobs: list[Job]) -> list[Inspection]:
        """Prediction + Grad-CAM + sentence for jobs of one classifier: every frame's inputs (one, or its
        tiles) in one graph call; maps come back in each frame's own pixels."""
        model = self.classifier(jobs[0].model)
        t0 = time.perf_counter()
        targets = []
        for j in jobs:
            if j.target_class and j.target_class not in model.classes:
                raise UnknownName(f"target_class {j.target_class!r}: model {model.name} has "
                                  f"{', '.join(model.classes)}")
            targets.append(model.classes.index(j.target_class) if j.target_class else None)
        results = explain_frames(self.gradcam[model.name], [j.view for j in jobs], targets)
        t1 = time.perf_counter()
        self._record("gradcam", model.name, (t1 - t0) * 1e3)
        graph_ms = results[0].explanation.timings_ms.get("graph", 0.0) + \
            results[0].explanation.timings_ms.get("preprocess", 0.0)
        grid = self.grids[model.name]
        out = []
        for j, r in zip(jobs, results):
            ts = time.perf_counter()
            e = r.explanation
            label, confidence = e.prediction.label, e.prediction.confidence
            sentence = ""
            if "sentence" in j.explanations:
                sentence, _ = explain_in_words(label, confidence, grid.pool(e.heatmap, "mean"), grid.boxes,
                                               self.row_channels(model, j, r.tile),
                                               j.pixel_pitch_mm or model.manifest.get("pixel_pitch_mm"),
                                               model.manifest.get("ok_class", "ok"), DISPLAY_NAMES[e.method],
                                               frame=r.view.locator(r.tile or 0))
            out.append(Inspection(
                inspection_id=j.inspection_id, station_id=j.station_id, part_id=j.part_id, model=model.name,
                model_sha256=self.sha256(model.name), label=label, confidence=float(confidence),
                probabilities=dict(e.prediction.probabilities), heatmap=r.heatmap,
                heatmap_png=png(heatmap8(r.heatmap)), heatmap_target=e.target, heatmap_method=e.method,
                sentence=sentence,
                requested=j.explanations, received_ms=j.received_ms, tile=r.tile, tiles=r.tiles,
                tile_box=r.tile_box,
                timings_ms={"graph": graph_ms / len(jobs), "cam": ((t1 - t0) * 1e3 - graph_ms) / len(jobs),
                            "sentence": (time.perf_counter() - ts) * 1e3, "batch_size": float(len(jobs))}))
        return out

    @staticmethod
    def row_channels(model: Model, job: Job, tile: int | None) -> dict[str, np.ndarray]:
        """The classifier input the decision came from, by channel name (model pixels)."""
        x = job.view.x[tile or 0]
        return {n: x[c] for c, n in enumerate(model.manifest["channels"])}

    def explain_extra(self, job: Job, inspection: Inspection, kinds: list[str]) -> tuple[list[Attribution], str | None]:
        """IG maps of the regression models and/or patch SHAP (with its SHAP-based sentence)."""
        attributions, sentence = [], None
        if "ig" in kinds:
            for name, x in job.regression_inputs.items():
                t = time.perf_counter()
                [e] = self.ig[name].explain(x[None])
                self._record("ig", name, (time.perf_counter() - t) * 1e3)
                attributions.append(Attribution(name, self.sha256(name), "ig", e.target, png(heatmap8(e.heatmap)),
                                                e.attribution, e.extras["completeness_delta"],
                                                e.extras["relative_completeness_delta"], e.extras["n_steps"]))
        if "shap" in kinds:
            model = self.classifier(job.model)
            t = time.perf_counter()
            row = inspection.tile or 0
            [e] = self.shap[model.name].explain(job.view.x[row][None], model.classes.index(inspection.label))
            self._record("shap", model.name, (time.perf_counter() - t) * 1e3)
            sentence, _ = explain_in_words(inspection.label, inspection.confidence, e.extras["patch_values"],
                                           e.extras["patch_boxes"], self.row_channels(model, job, row),
                                           job.pixel_pitch_mm or model.manifest.get("pixel_pitch_mm"),
                                           model.manifest.get("ok_class", "ok"), "SHAP log-odds",
                                           frame=job.view.locator(row))
            attribution = job.view.to_frame(row, e.attribution)
            attributions.append(Attribution(model.name, self.sha256(model.name), "shap", e.target,
                                            png(heatmap8(job.view.to_frame(row, e.heatmap))), attribution,
                                            e.extras["efficiency_gap"], 0.0, e.extras["evaluations"], sentence))
        return attributions, sentence
