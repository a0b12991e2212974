"""The inspection domain: models loaded once, a batch of jobs in, inspections out, and the cycle-time
scheduler that decides which explanations come inline and which are deferred.

Prediction and Grad-CAM (one `gradcam` graph call for the whole micro-batch) and the Grad-CAM-based
sentence are always inline. The evidence per sensor, the guided map (thin defects drawn thin), IG
(regression models) and patch SHAP come inline only when their measured cost fits the job's remaining
cycle budget; otherwise they are deferred to a background worker and land later in the store and on
the watch stream. Costs are measured at warm-up and kept as moving averages of what they really took.
Evidence per sensor that fits is started as soon as the map exists and runs on its own thread beside the
sentence; the answer then waits only for what is left of it.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge.errors import NotFound, Refused
from edge.explain import (DISPLAY_NAMES, GradCAMExplainer, IGExplainer, PatchGrid, PatchShapExplainer, explain_frames,
                          explain_in_words, sensor_evidence, with_sensor_phrase)
from edge.explain import review
from edge.explain.overlay import heatmap8
from edge.record import Attribution, Inspection
from edge.runtime.manifest import ManifestError
from edge.runtime.model import Model
from edge.serve.domain import Job

log = logging.getLogger("edge.serve")


class UnknownName(NotFound):
    """An unknown model or class; the message names it and lists what exists."""


def png(image8: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image8)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return data.tobytes()


# Explanations that may be deferred (prediction, Grad-CAM and its sentence never are), cheapest first: the
# planner fits them into the cycle budget in this order.
OPTIONAL_KINDS = ("sensors", "guided", "ig", "shap")


@dataclass
class Extra:
    """What explain_extra adds to an inspection."""
    attributions: list[Attribution] = field(default_factory=list)
    sentence: str | None = None                 # replaces the inspection's sentence when set
    sensors: dict[str, float] | None = None     # evidence share per input channel


def plan(requested: tuple[str, ...], remaining_ms: float, costs: dict[str, list[float | None]]) -> tuple[list[str], list[str]]:
    """Which optional explanations fit the cycle budget left: (inline, deferred).

    costs: per kind, the measured cost (ms) of each model it would run (None: not measured yet, so it is
    deferred rather than risk the budget). Kinds are taken in OPTIONAL_KINDS order, each inline only if
    it fits what the ones before it left; a kind with no model to run is neither.
    """
    inline, deferred = [], []
    left = remaining_ms
    for kind in OPTIONAL_KINDS:
        per_model = costs.get(kind, [])
        if kind not in requested or not per_model:
            continue
        cost = sum(float("inf") if c is None else c for c in per_model)
        if cost <= left:
            inline.append(kind)
            left -= cost
        else:
            deferred.append(kind)
    return inline, deferred


class Inspector:
    def __init__(self, models_dir: Path, threads: int | None = None, backend: str = "ort-cpu",
                 default_model: str | None = None, ig_steps: int = 32, shap_budget: int = 512,
                 allow_unaudited: bool = False, spin: bool = False, review_budget: float | None = None,
                 deferred_backend: str | None = None):
        """deferred_backend: evidence per sensor, guided maps, IG and SHAP run there (e.g. a shared Triton
        server) while the inline prediction and Grad-CAM stay on `backend`."""
        self.models: dict[str, Model] = {}
        for d in sorted(Path(models_dir).iterdir()) if Path(models_dir).is_dir() else []:
            if (d / "manifest.json").is_file():
                try:
                    self.models[d.name] = Model.load(d, backend=backend, threads=threads, name=d.name, spin=spin)
                except ManifestError as e:
                    raise ManifestError(f"cannot serve {d}: {e}") from e
        self.audit = {n: m.audit_status for n, m in self.models.items()}
        unaudited = {n: st for n, st in self.audit.items() if st != "passed"}
        how = "run edge-xai audit, then edge-xai gate --record MODEL_DIR; or start with --allow-unaudited"
        # Models without a passing audit are left out, not the whole node: the line keeps its audited
        # classifier while, say, a thermal model that failed its physics check is withheld.
        self.withheld: dict[str, Model] = {}       # loaded, listed with served = false, never run
        if unaudited and not allow_unaudited:
            if not any(m.classes for n, m in self.models.items() if n not in unaudited):
                raise Refused("refusing to serve models without a passing audit: "
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
            raise NotFound(f"{models_dir}: no classifier model folder (with manifest.json) to serve")
        self.default_model = default_model or ("defect" if "defect" in classifiers else classifiers[0])
        if self.default_model not in classifiers:
            raise UnknownName(f"default model {self.default_model!r} is not a classifier here "
                              f"({', '.join(classifiers)})")
        explained = self.models
        if deferred_backend and deferred_backend != backend:
            explained = {n: Model.load(m.dir, backend=deferred_backend, threads=threads, name=n, spin=spin)
                         for n, m in self.models.items()}
        self.explained = explained          # where the optional kinds (sensors, guided, IG, SHAP) run
        self.ig = {n: IGExplainer(m, n_steps=ig_steps) for n, m in explained.items() if not m.classes}
        self.shap = {n: PatchShapExplainer(m, budget=shap_budget) for n, m in explained.items() if m.classes}
        # the guided map refines the inline map with the guided_gradient graph (GradCAMExplainer.guide: what
        # `edge-xai explain --guided` does after its map; a model exported before that graph existed has none)
        self.guided = {n: GradCAMExplainer(m) for n, m in explained.items()
                       if m.classes and "guided_gradient" in m.graphs}
        self.grids = {n: PatchGrid(*m.input_shape[1:]) for n, m in self.models.items() if m.classes}
        self.gradcam = {n: GradCAMExplainer(m) for n, m in self.models.items() if m.classes}
        # The review flag of each classifier that has one, thresholds for this node's budget.
        self.review = {n: review.policy_for(m, review_budget) for n, m in self.models.items() if m.classes}
        self.cost_ms: dict[tuple[str, str], float] = {}
        self._cost_lock = threading.Lock()
        # The evidence per sensor of an inline answer starts as soon as its map exists and runs here, beside
        # the sentence (ONNX Runtime and OpenCV release the GIL): the answer waits only for what is left of it.
        self.sensor_pool = ThreadPoolExecutor(1, thread_name_prefix="sensors")

    def close(self) -> None:
        """Stop the evidence-per-sensor worker (work not started yet is dropped)."""
        self.sensor_pool.shutdown(wait=False, cancel_futures=True)

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

    # -- costs -------------------------------------------------------------------------------------
    def _record(self, kind: str, model: str, ms: float) -> None:
        with self._cost_lock:
            old = self.cost_ms.get((kind, model))
            self.cost_ms[(kind, model)] = ms if old is None else 0.7 * old + 0.3 * ms

    def warm_up(self) -> None:
        """Create every session, run each graph once, and measure what IG and SHAP cost here."""
        for name, m in self.models.items():
            m.warm_up()
            for explainer in (self.ig.get(name), self.shap.get(name)):
                if explainer is not None and explainer.model is not m:
                    explainer.model.warm_up()          # a deferred backend's engine: connect, check, warm
            x = np.zeros((1, *m.input_shape), np.float32)
            if not m.classes:
                t = time.perf_counter()
                self.ig[name].explain(x)
                self._record("ig", name, (time.perf_counter() - t) * 1e3)
            else:
                # SHAP's cost is its evaluations: time one predict batch and scale.
                batch = np.zeros((64, *m.input_shape), np.float32)
                shap_model = self.shap[name].model           # the deferred backend's, where one is set
                shap_model.run("predict", {"input": batch})
                t = time.perf_counter()
                shap_model.run("predict", {"input": batch})
                per = (time.perf_counter() - t) * 1e3 / 64
                self._record("shap", name, per * self.shap[name].budget * 1.2)
                if name in self.guided:
                    t = time.perf_counter()
                    self.guided[name].guide(x, np.ones((1, *m.input_shape[1:]), np.float32), [0])
                    self._record("guided", name, (time.perf_counter() - t) * 1e3)
                if self.explains_sensors(m):
                    # a centred blob, so the refills (not only the predict call) are in the measured cost;
                    # logits given, as the served call has them from Grad-CAM
                    h, w = m.input_shape[1:]
                    yy, xx = np.mgrid[:h, :w]
                    blob = np.exp(-((yy - h / 2) ** 2 + (xx - w / 2) ** 2) / (2 * (min(h, w) / 8) ** 2))
                    t = time.perf_counter()
                    sensor_evidence(shap_model, x, blob[None], [0], np.zeros((1, len(m.classes)), np.float32))
                    self._record("sensors", name, (time.perf_counter() - t) * 1e3)

    def plan(self, job: Job, inspection: Inspection | None = None) -> tuple[list[str], list[str]]:
        """(inline, deferred) among the job's optional explanations. Called once its prediction and
        Grad-CAM have returned, so the job's remaining budget already has their time taken off. Evidence per
        sensor already started beside the sentence (`inspection.sensors_pending`) is inline: it was started
        because it fitted, and what is left of it is a wait."""
        models = {"ig": list(job.regression_inputs), "shap": [job.model],
                  "sensors": [job.model] if self.explains_sensors(self.models[job.model]) else [],
                  "guided": [job.model] if job.model in self.guided else []}
        with self._cost_lock:
            costs = {kind: [self.cost_ms.get((kind, m)) for m in names] for kind, names in models.items()}
        if inspection is not None and inspection.sensors_pending is not None:
            costs["sensors"] = [0.0]
        return plan(job.explanations, job.remaining_ms(), costs)

    @staticmethod
    def explains_sensors(model: Model) -> bool:
        """Evidence per sensor needs two channels or more (one channel carries all of it)."""
        return bool(model.classes) and len(model.channels) > 1

    def sensors_apply(self, model: Model, explained_class: str) -> bool:
        """Whether an answer explained for `explained_class` has evidence to split between sensors: a model of
        two channels or more, and a defect class (a defect-free answer has no defect evidence)."""
        return self.explains_sensors(model) and explained_class != model.ok_class

    # -- the work ----------------------------------------------------------------------------------
    def inspect_batch(self, jobs: list[Job]) -> list[Inspection]:
        """Prediction + Grad-CAM + sentence for jobs of one classifier: every frame's inputs (one, or its
        tiles) in one graph call through the model's Grad-CAM explainer; maps come back in each frame's
        own pixels."""
        model = self.classifier(jobs[0].model)
        t0 = time.perf_counter()
        targets = [self.target_index(model, j.target_class) for j in jobs]
        results = explain_frames(self.gradcam[model.name], [j.view for j in jobs], targets)
        t1 = time.perf_counter()
        graph_ms = results[0].explanation.timings_ms.get("graph", 0.0) + \
            results[0].explanation.timings_ms.get("preprocess", 0.0)
        grid = self.grids[model.name]
        out = []
        for j, r in zip(jobs, results):
            ts = time.perf_counter()
            e = r.explanation
            pending = None
            explained_class = j.target_class or e.prediction.label
            if "sensors" in j.explanations and self.sensors_apply(model, explained_class) \
                    and "sensors" in self.plan(j)[0]:
                pending = self.sensor_pool.submit(self.sensor_shares, model, j.view.x[r.tile or 0], e.heatmap,
                                                  model.classes.index(explained_class), e.details.logits)
            sentence = ""
            if "sentence" in j.explanations:
                sentence = self.sentence(model, j, r.tile, e.prediction.label, e.prediction.confidence,
                                         grid.pool(e.heatmap, "mean"), grid.boxes, DISPLAY_NAMES[e.method])
            policy = self.review[model.name]
            reasons = None if policy is None else policy.reasons_for(e, model.ok_class)
            out.append(Inspection(
                inspection_id=j.inspection_id, station_id=j.station_id, part_id=j.part_id, model=model.name,
                model_sha256=model.sha256, label=e.prediction.label, confidence=float(e.prediction.confidence),
                probabilities=dict(e.prediction.probabilities), heatmap=r.heatmap,
                heatmap_png=png(heatmap8(r.heatmap)), heatmap_target=e.target, heatmap_method=e.method,
                sentence=sentence, requested=j.explanations, received_ms=j.received_ms, tile=r.tile, tiles=r.tiles,
                # copies: the deciding tile's arrays are views into the whole batch's (121 tiles of a 1024 px
                # frame: 7.9 MB each), which the inspection would otherwise keep alive as long as it lives
                tile_box=r.tile_box, review=reasons, tile_heatmap=e.heatmap.copy(), tile_logits=e.details.logits.copy(),
                tile_map=e.attribution.copy(), sensors_pending=pending, pixel_pitch_mm=j.pixel_pitch_mm,
                timings_ms={"graph": graph_ms / len(jobs), "cam": ((t1 - t0) * 1e3 - graph_ms) / len(jobs),
                            "sentence": (time.perf_counter() - ts) * 1e3, "batch_size": float(len(jobs))}))
        return out

    @staticmethod
    def target_index(model: Model, target_class: str | None) -> int | None:
        if not target_class:
            return None
        if target_class not in model.classes:
            raise UnknownName(f"target_class {target_class!r}: model {model.name} has {', '.join(model.classes)}")
        return model.classes.index(target_class)

    @staticmethod
    def sentence(model: Model, job: Job, row: int | None, label: str, confidence: float, values: np.ndarray,
                 boxes: np.ndarray, method_name: str) -> str:
        """The sentence for one decision from per-patch evidence (Grad-CAM pooled, or SHAP values), with
        descriptors measured on the classifier input it came from and places said in frame pixels."""
        x = job.view.x[row or 0]
        channels = {n: x[c] for c, n in enumerate(model.channels)}
        text, _ = explain_in_words(label, confidence, values, boxes, channels,
                                   job.pixel_pitch_mm or model.pixel_pitch_mm, model.ok_class, method_name,
                                   frame=job.view.locator(row or 0))
        return text

    def sensor_shares(self, model: Model, x: np.ndarray, heatmap: np.ndarray, class_index: int,
                      logits: np.ndarray | None) -> dict[str, float]:
        """Evidence per sensor of one input (C, H, W) explained for `class_index` by its map (H, W); logits:
        the Grad-CAM call's, standing for the unchanged input (one predict row fewer)."""
        t = time.perf_counter()
        [shares] = sensor_evidence(self.explained[model.name], x[None], heatmap[None], [class_index],
                                   None if logits is None else logits[None])
        self._record("sensors", model.name, (time.perf_counter() - t) * 1e3)
        return {c: float(v) for c, v in zip(model.channels, shares)}

    def explain_extra(self, job: Job, inspection: Inspection, kinds: list[str]) -> Extra:
        """Evidence per sensor, the guided map, IG maps of the regression models and/or patch SHAP (with its
        SHAP-based sentence). The sentence, when asked for, ends with the evidence per sensor once it is
        known."""
        extra = Extra()
        model = self.classifier(job.model)
        row = inspection.tile or 0
        # the class the map explains (the target class when one was asked for, else the decision)
        explained_class = job.target_class or inspection.label
        if "sensors" in kinds and inspection.sensors_pending is not None:
            extra.sensors = inspection.sensors_pending.result()
        elif "sensors" in kinds and self.sensors_apply(model, explained_class) and inspection.tile_heatmap is not None:
            extra.sensors = self.sensor_shares(model, job.view.x[row], inspection.tile_heatmap,
                                               model.classes.index(explained_class), inspection.tile_logits)
        if "guided" in kinds and model.name in self.guided and inspection.tile_map is not None:
            t = time.perf_counter()
            # the served map of the deciding tile, refined for the class it explains; back in frame pixels
            [up], [heat] = self.guided[model.name].guide(job.view.x[row][None], inspection.tile_map[None],
                                                         [model.classes.index(explained_class)])
            self._record("guided", model.name, (time.perf_counter() - t) * 1e3)
            extra.attributions.append(Attribution(
                model=model.name, model_sha256=model.sha256, method=f"guided {inspection.heatmap_method}",
                target=inspection.heatmap_target, heat_png=png(heatmap8(job.view.to_frame(row, heat))),
                attribution=job.view.to_frame(row, up), completeness_delta=0.0,
                relative_completeness_delta=0.0, n_steps=0))
        if "ig" in kinds:
            for name, x in job.regression_inputs.items():
                t = time.perf_counter()
                [e] = self.ig[name].explain(x[None])
                self._record("ig", name, (time.perf_counter() - t) * 1e3)
                extra.attributions.append(Attribution(
                    model=name, model_sha256=self.models[name].sha256, method="ig", target=e.target,
                    heat_png=png(heatmap8(e.heatmap)), attribution=e.attribution,
                    completeness_delta=e.details.completeness_delta,
                    relative_completeness_delta=e.details.relative_completeness_delta, n_steps=e.details.n_steps))
        if "shap" in kinds:
            t = time.perf_counter()
            [e] = self.shap[model.name].explain(job.view.x[row][None], model.classes.index(inspection.label))
            self._record("shap", model.name, (time.perf_counter() - t) * 1e3)
            extra.sentence = self.sentence(model, job, row, inspection.label, inspection.confidence,
                                           e.details.patch_values, e.details.patch_boxes, "SHAP log-odds")
            extra.attributions.append(Attribution(
                model=model.name, model_sha256=model.sha256, method="shap", target=e.target,
                heat_png=png(heatmap8(job.view.to_frame(row, e.heatmap))),
                attribution=job.view.to_frame(row, e.attribution), completeness_delta=e.details.efficiency_gap,
                relative_completeness_delta=0.0, n_steps=e.details.evaluations, sentence=extra.sentence))
        shares = extra.sensors if extra.sensors is not None else inspection.sensors
        if "sentence" in job.explanations and shares is not None and (extra.sensors is not None or extra.sentence):
            extra.sentence = with_sensor_phrase(extra.sentence or inspection.sentence, model.channels,
                                                np.array([shares[c] for c in model.channels]))
        return extra
