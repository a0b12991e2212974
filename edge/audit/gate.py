"""`edge-xai gate REPORT_DIR/metrics.json [--policy FILE]`: every check of the policy, pass or fail.

The default policy uses the seed paper's thresholds: Grad-CAM IoU > 0.5 for every defect class, thermal
physics r > 0.7 for every non-flat geometry and |r| < 0.3 on flat parts (for a model judged from
`ambient`, whose attribution at a pixel is the correction it made there: under 0.03 K of correction, the
simulated camera's noise, where the geometry needs none; see below), faithful explanations (deletion
AUC below that of a random map as smooth as the explained ones, insertion AUC above it) and a passed
sanity check (maps of a randomised model differ: Spearman rank correlation < 0.5, as Adebayo et al. 2018
compare them). The IoU judged by
default is the tolerant one (a map pixel within one Grad-CAM cell of the mask counts as a hit; see
audit.localisation): pixel IoU is bounded far
below 0.5 for defects thinner than a cell, whatever the model attends to. Likewise the physics r judged
is the one at the physics' own 3-px scale (see audit.physics). Phase unwrapping, which the paper does
not gate, must put its attribution at least twice as densely on the wrapped-phase jumps as elsewhere.
A policy file (TOML) overrides any threshold:

    [localisation]
    iou_min = 0.5
    metric = "iou_mean"      # the paper's pixel IoU; or "iou_tolerant_mean" (default), "iou_grown_mean"
    box_min = 0.8            # classes annotated with boxes (VOC, COCO): boxes are loose, so
    box_metric = "pointing_game"   # judged by the pointing game (or "boxes_hit_mean", "iou_tolerant_mean")
    [physics]
    r_min = 0.7
    flat_abs_r_max = 0.3
    flat_unneeded_k_max = 0.03   # judged from `ambient`: K of correction where the geometry needs none
    metric = "r"             # pixel-by-pixel r; or "r_physics_scale" (default)

Why flat parts are judged differently from `ambient`: the |r| bar is the paper's negative control for a
path that changes the shape. A flat part's physics map is its defects' own shape (cracks, pits and
scratches are cavities too), and from `ambient` the exact physics itself reads r 0.55-0.62 there
(docs/audits/thermal/physics_ceiling.json): a more faithful model fails an |r| bar. What the control asks,
"does the model correct where no geometry calls for it?", is then answered in kelvin: the mean correction
on the pixels whose physics map is under 0.01 K (audit.physics.unneeded_correction_k).
    [phase_physics]
    concentration_min = 2.0
    [sanity]
    max = 0.5
    metric = "rank_correlation_trained_vs_random"   # or "cosine_trained_vs_random" (biased for broad maps)
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from edge.errors import InvalidInput
from edge.runtime.manifest import record_audit_status
from edge.toml_file import read_toml

DEFAULT_POLICY = {"localisation": {"iou_min": 0.5, "metric": "iou_tolerant_mean",
                                  "box_metric": "pointing_game", "box_min": 0.8},
                  "physics": {"r_min": 0.7, "flat_abs_r_max": 0.3, "flat_unneeded_k_max": 0.03,
                              "metric": "r_physics_scale"},
                  "phase_physics": {"concentration_min": 2.0},
                  "faithfulness": {"required": True},
                  "sanity": {"max": 0.5, "metric": "rank_correlation_trained_vs_random"}}


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


def load_policy(path: Path | None) -> dict:
    policy = json.loads(json.dumps(DEFAULT_POLICY))
    if path is not None:
        data = read_toml(path, "--policy")
        for section, values in data.items():
            if section not in policy:
                raise InvalidInput(f"--policy {path}: unknown section [{section}] (known: {', '.join(policy)})")
            for k, v in values.items():
                if k not in policy[section]:
                    raise InvalidInput(f"--policy {path}: unknown setting [{section}] {k!r}")
                policy[section][k] = v
    return policy


def _measure(row: dict, key: str, section: str, name: str) -> float:
    if key not in row:
        raise InvalidInput(f"metrics.json has no {section} {key!r} for {name} (it has {', '.join(sorted(row))}); "
                           f"re-run `edge-xai audit` with this version, or name one of those with "
                           f"[{section}] metric in --policy")
    return row[key]


def evaluate_gate(metrics: dict, policy: dict) -> list[Check]:
    checks = []
    loc = metrics.get("localisation")
    if loc is not None:
        for cls, r in loc.items():
            if r.get("ground_truth") == "box":
                key, bar = policy["localisation"]["box_metric"], policy["localisation"]["box_min"]
            else:
                key, bar = policy["localisation"]["metric"], policy["localisation"]["iou_min"]
            v = _measure(r, key, "localisation", cls)
            truth = ", boxes" if r.get("ground_truth") == "box" else ""
            checks.append(Check(f"localisation {cls}", v > bar, f"{key} {v:.3f} (bar > {bar}, n {r['n']}{truth})"))
    elif "classification" in metrics:
        # Without ground truth nothing shows where the model looks, and the gate exists to show it.
        checks.append(Check("localisation", False,
                            "no localisation measured: the audit data has no masks or boxes; annotate some "
                            "defective images of it (<stem>.mask.png, Pascal VOC <stem>.xml or COCO) and audit again"))
    phys = metrics.get("physics")
    if phys is not None:
        key = policy["physics"]["metric"]
        ambient = metrics.get("physics_baselines", {}).get("physics") == "ambient"
        for geo, r in phys.items():
            if geo == "flat" and ambient:
                bar, v = policy["physics"]["flat_unneeded_k_max"], _measure(r, "correction_unneeded_k", "physics", geo)
                checks.append(Check("physics flat", v < bar,
                                    f"correction where the geometry needs none {v:.4f} K from ambient (bar < {bar} K; "
                                    f"{key} {r.get(key, float('nan')):.3f}, reported only: the exact physics reads "
                                    f"0.55-0.62 there, n {r['n']})"))
                continue
            v = _measure(r, key, "physics", geo)
            if geo == "flat":
                bar = policy["physics"]["flat_abs_r_max"]
                checks.append(Check("physics flat", abs(v) < bar, f"|{key}| {abs(v):.3f} (bar < {bar}, n {r['n']})"))
            else:
                bar = policy["physics"]["r_min"]
                checks.append(Check(f"physics {geo}", v > bar, f"{key} {v:.3f} (bar > {bar}, n {r['n']})"))
    pp = metrics.get("phase_physics")
    if pp is not None:
        bar, v = policy["phase_physics"]["concentration_min"], pp.get("concentration_mean")
        checks.append(Check("phase physics (attribution on jumps)", v is not None and v > bar,
                            "no frame with phase jumps" if v is None else
                            f"|IG| {v:.2f}x denser on jumps than on average (bar > {bar}, n {pp['n']})"))
    q = metrics.get("quality")
    if q is not None:
        f = q["faithfulness"]
        if policy["faithfulness"]["required"]:
            ok = f["deletion_auc"] < f["deletion_random_auc"] and f["insertion_auc"] > f["insertion_random_auc"]
            checks.append(Check("faithfulness", ok, f"deletion AUC {f['deletion_auc']:.3f} vs random "
                                                    f"{f['deletion_random_auc']:.3f}; insertion {f['insertion_auc']:.3f} "
                                                    f"vs random {f['insertion_random_auc']:.3f}"))
        metric, bar = policy["sanity"]["metric"], policy["sanity"]["max"]
        s = _measure(q["sanity"], metric, "sanity", "the randomised-weights check")
        what = "rank correlation" if metric.startswith("rank") else "cosine similarity"
        if math.isnan(s):
            sq = q["sanity"]
            flat = (f": the trained model's and its randomised copy's maps are all flat ({sq['n']} samples)"
                    if "flat_trained" in sq else "")
            checks.append(Check("sanity (randomised weights)", False,
                                f"not measurable, no pair of maps to compare{flat}; audit on data with parts the "
                                "model finds defects in"))
        else:
            checks.append(Check("sanity (randomised weights)", s < bar, f"{what} trained vs random {s:.3f} (bar < {bar})"))
    if not checks:
        checks.append(Check("metrics", False, "nothing to judge in this metrics file"))
    return checks


def record_audit(model_dir: Path, metrics: dict, checks: list[Check], metrics_path: Path, policy: str | None) -> dict:
    """Write the gate's outcome into the model's manifest, tied to the audited predict graph's sha256."""
    import datetime

    failed = [c.name for c in checks if not c.passed]
    audit = {"status": "passed" if not failed else "failed", "failed_checks": failed,
             "sha256": metrics.get("model", {}).get("sha256"), "metrics": str(metrics_path),
             "policy": policy or "default",
             "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    record_audit_status(model_dir, audit)
    return audit
