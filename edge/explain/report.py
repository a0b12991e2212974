"""An explanation as a JSON-ready record: what the CLI prints and the service stores."""
from __future__ import annotations

from edge.explain.base import Explanation


def explanation_record(e: Explanation, model) -> dict:
    r = {"model": model.name, "model_sha256": model.manifest.get("files", {}).get(
             model.manifest["graphs"]["predict"]["file"]),
         "method": e.method, "target": e.target, "prediction": e.prediction.to_dict(),
         "explanation": e.sentence, "timings_ms": {k: round(v, 3) for k, v in e.timings_ms.items()}}
    x = e.extras
    if "completeness_delta" in x:
        r["completeness_delta"] = {"absolute": x["completeness_delta"], "relative": x["relative_completeness_delta"]}
        r.update({k: x[k] for k in ("n_steps", "quadrature", "gradient_evaluations", "converged", "baseline",
                                    "score", "baseline_score")})
    if "efficiency_gap" in x:
        r.update({k: x[k] for k in ("efficiency_gap", "evaluations", "estimator", "budget", "seed", "baseline",
                                    "value", "baseline_value")})
    if "evidence" in x:
        r["evidence"] = x["evidence"]
    return r
