"""An explanation as a JSON-ready record: what `edge-xai explain` prints (as JSON with --json, else as text).
The service does not use it: its answers and the inspection store carry `edge.record.Inspection`."""
from __future__ import annotations

from edge.explain.base import CamDetails, Explanation, IGDetails, ShapDetails


def explanation_record(e: Explanation, model) -> dict:
    r = {"model": model.name, "model_sha256": model.sha256,
         "method": e.method, "target": e.target, "prediction": e.prediction.to_dict(),
         "explanation": e.sentence, "timings_ms": {k: round(v, 3) for k, v in e.timings_ms.items()}}
    d = e.details
    if isinstance(d, IGDetails):
        r["completeness_delta"] = {"absolute": d.completeness_delta, "relative": d.relative_completeness_delta}
        r.update({k: getattr(d, k) for k in ("n_steps", "quadrature", "gradient_evaluations", "converged", "baseline",
                                             "score", "baseline_score")})
    if isinstance(d, CamDetails) and d.guided:
        r["guided"] = True          # the map is refined to input pixels by guided backpropagation
    if isinstance(d, ShapDetails):
        r.update({k: getattr(d, k) for k in ("efficiency_gap", "evaluations", "estimator", "budget", "seed", "baseline",
                                             "value", "baseline_value")})
    if e.evidence is not None:
        r["evidence"] = e.evidence
    return r
