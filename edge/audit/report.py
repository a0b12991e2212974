"""The audit's HTML report: one self-contained file (figures as embedded PNGs), beside metrics.json."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import cv2
import numpy as np
from jinja2 import Environment

from edge.data.loader import sample_names
from edge.explain import DISPLAY_NAMES, GradCAMExplainer
from edge.explain.overlay import heatmap8, overlay
from edge.output_folder import write_text_atomic

TEMPLATE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>edge-xai audit: {{ m.model.name }}</title>
<style>body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:24px auto;color:#1f2328}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #d0d7de;padding:3px 8px;text-align:right}
th{background:#f6f8fa}td:first-child,th:first-child{text-align:left}.note{color:#9a6700}
figure{display:inline-block;margin:4px 8px 4px 0;text-align:center}figcaption{font-size:12px;color:#57606a}
pre{white-space:pre-wrap;background:#f6f8fa;padding:8px}</style></head><body>
<h1>Audit of {{ m.model.name }} <small>({{ m.model.task }}, predict graph sha256 {{ m.model.sha256[:16] }}…)</small></h1>
<p>Data: {{ m.data.dir }}, {{ m.data.samples }} samples{% if m.data.frames %} ({{ m.data.frames }} frames, the large ones in {{ m.data.tile_px }} px tiles as served){% endif %}. Took {{ "%.0f"|format(m.seconds) }} s.</p>
{% for n in m.notes %}<p class="note">Note: {{ n }}</p>{% endfor %}
{% if m.classification %}<h2>Classification</h2>
<p>Accuracy {{ "%.2f"|format(100 * m.classification.accuracy) }} %.</p>
<table><tr><th>class</th><th>precision</th><th>recall</th><th>support</th></tr>
{% for c, r in m.classification.per_class.items() %}<tr><td>{{ c }}</td><td>{{ "%.3f"|format(r.precision) }}</td>
<td>{{ "–" if r.recall is none else "%.3f"|format(r.recall) }}</td><td>{{ r.support }}</td></tr>{% endfor %}</table>
<table><tr><th>true \\ predicted</th>{% for c in m.classification.confusion.classes %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in m.classification.confusion.matrix %}<tr><td>{{ m.classification.confusion.classes[loop.index0] }}</td>
{% for v in row %}<td>{{ v }}</td>{% endfor %}</tr>{% endfor %}</table>{% endif %}
{% if m.calibration %}{% set c = m.calibration %}<h2>Confidence calibration</h2>
<p>Top-label expected calibration error over {{ c.bins }} equal-width confidence bins (the gap between how sure the
answers say they are and how often they are right, weighted by the share of answers in each bin), and the negative
log-likelihood of the true class, with the raw softmax and with the model's temperature
{{ "%.3f"|format(c.temperature) }}{% if c.fitted.fitted_on %} (fitted on {{ c.fitted.fitted_on }}, {{ c.fitted.n }}
samples){% endif %}.</p>
<table><tr><th></th><th>ECE</th><th>NLL</th></tr>
<tr><td>raw softmax</td><td>{{ "%.4f"|format(c.ece_before) }}</td><td>{{ "%.4f"|format(c.nll_before) }}</td></tr>
<tr><td>calibrated</td><td>{{ "%.4f"|format(c.ece_after) }}</td><td>{{ "%.4f"|format(c.nll_after) }}</td></tr></table>
{% if c.ece_floor %}<p>Noise floor: a perfectly calibrated model with these confidences would read an ECE of
{{ "%.4f"|format(c.ece_floor.mean) }} on these {{ c.n }} samples ({{ "%.4f"|format(c.ece_floor.p95) }} at the 95th
percentile of {{ c.ece_floor.draws }} draws): each bin's accuracy is a proportion over its few samples, so the
binned ECE cannot read lower than this here.</p>{% endif %}
{% if figures.reliability %}<figure><img src="data:image/png;base64,{{ figures.reliability }}" width="420">
<figcaption>Reliability diagram: accuracy per confidence bin (raw: pale, calibrated: strong; dot area ~ count).
On the diagonal, "90 %" means right 9 times in 10.</figcaption></figure>{% endif %}{% endif %}
{% if m.review %}{% set r = m.review %}<h2>Review flag</h2>
<p>Parts the flag sends to a person (budget {{ "%.0f"|format(100 * r.policy.budget) }} % of parts, thresholds fitted on
{{ r.policy.fitted_on }}{% if r.policy.budget_held is defined and not r.policy.budget_held %}: too few held-out parts to
hold the budget with {{ "%.0f"|format(100 * r.policy.budget_confidence) }} % probability, expect more flagged; refit the
flag on more held-out data with <code>edge-xai calibrate --data DIR</code>{% endif %}): below {{ "%.3f"|format(r.policy.min_confidence) }} calibrated confidence; a defect whose
Grad-CAM map puts under {{ "%.3f"|format(r.policy.min_concentration or 0) }} of its mass in its hottest 5 % of pixels;
an embedding farther than {{ "%.1f"|format(r.policy.max_distance) }} (Mahalanobis) from every class of the training data.</p>
<table><tr><th>flagged</th><th>misclassifications caught</th><th>correct answers flagged</th><th>error rate flagged</th>
<th>error rate not flagged</th><th>reasons</th></tr>
<tr><td>{{ "%.1f"|format(100 * r.flagged_share) }} % of {{ r.n }}</td>
<td>{% if r.misclassifications_caught is none %}– (no misclassification){% else %}{{ "%.1f"|format(100 * r.misclassifications_caught) }} % of {{ r.misclassified }}{% endif %}</td>
<td>{{ "–" if r.correct_flagged is none else "%.1f"|format(100 * r.correct_flagged) ~ " %" }}</td>
<td>{{ "–" if r.error_rate_flagged is none else "%.1f"|format(100 * r.error_rate_flagged) ~ " %" }}</td>
<td>{{ "–" if r.error_rate_not_flagged is none else "%.2f"|format(100 * r.error_rate_not_flagged) ~ " %" }}</td>
<td>{% for k, v in r.reasons.items() %}{{ k }}: {{ v }}{% if not loop.last %}; {% endif %}{% endfor %}</td></tr></table>
{% if r.out_of_distribution %}{% set o = r.out_of_distribution %}<p>Frames unlike the training data ({{ o.data }},
{{ o.n }} judged: {{ o.judged_on or "every frame" }}): {{ "%.1f"|format(100 * o.flagged) }} % flagged,
{{ "%.1f"|format(100 * o.flagged_as_unlike) }} % as unlike the training data.{% if o.tiled_frames %}
{{ o.tiled_frames }} of them are much larger than the training images: each is judged as the service
flags it, by its deciding tile.{% endif %}{% if o.ordinary %} The set's
{{ o.ordinary.n }} frames without it (ordinary parts): {{ "%.1f"|format(100 * o.ordinary.flagged) }} % flagged,
{{ "%.1f"|format(100 * o.ordinary.flagged_as_unlike) }} % as unlike.{% endif %}{% if o.answered_right is defined %}
The model answers {{ "%.1f"|format(100 * o.answered_right) }} % of them right; of its {{ o.errors }} wrong answers
there{% if o.errors %} {{ "%.1f"|format(100 * o.errors_flagged) }} % are flagged, {{ o.errors_let_through }} let
through{% else %}, none to catch{% endif %}; {{ "–" if o.right_flagged is none else "%.1f"|format(100 * o.right_flagged) ~ " %" }}
of its right answers are flagged. An unlike frame still read right costs nothing unflagged; a wrong answer let
through is the risk.{% endif %}</p>{% if o.by_geometry %}<table><tr><th>part geometry</th><th>n</th><th>flagged</th>
<th>as unlike</th><th>answered right</th></tr>{% for g, v in o.by_geometry.items() %}<tr><td>{{ g }}</td><td>{{ v.n }}</td>
<td>{{ "%.1f"|format(100 * v.flagged) }} %</td><td>{{ "%.1f"|format(100 * v.flagged_as_unlike) }} %</td>
<td>{{ "%.1f"|format(100 * v.answered_right) ~ " %" if v.answered_right is defined else "–" }}</td></tr>{% endfor %}</table>
{% endif %}{% endif %}
<p>Risk-coverage of the confidence ranking (answer only the most confident share; risk = their error rate):
{% for c in r.risk_coverage.coverage %}{% if loop.index % 5 == 0 %}coverage {{ "%.0f"|format(100 * c) }} %: risk
{{ "%.2f"|format(100 * r.risk_coverage.risk[loop.index0]) }} %{% if not loop.last %}; {% endif %}{% endif %}{% endfor %}.
The flag's own point: coverage {{ "%.1f"|format(100 * r.risk_coverage.flag_coverage) }} %, risk
{{ "–" if r.risk_coverage.flag_risk is none else "%.2f"|format(100 * r.risk_coverage.flag_risk) ~ " %" }}.</p>{% endif %}
{% if m.localisation %}<h2>Localisation ({{ cam_name }} vs defect masks and boxes)</h2><p>{{ m.protocols.localisation }}</p>
<table><tr><th>class</th><th>n</th><th>ground truth</th><th>IoU (pixel)</th><th>IoU std</th><th>tolerant IoU (gate)</th><th>tolerant std</th>
<th>IoU, grown mask</th><th>relevance mass</th>
<th>mask area</th><th>pointing game (gate for boxes)</th><th>boxes hit</th></tr>{% for c, r in m.localisation.items() %}<tr><td>{{ c }}</td><td>{{ r.n }}</td>
<td>{{ r.ground_truth or "pixel" }}</td>
<td>{{ "%.3f"|format(r.iou_mean) }}</td><td>{{ "%.3f"|format(r.iou_std) }}</td>
<td>{{ "%.3f"|format(r.iou_tolerant_mean) }}</td><td>{{ "%.3f"|format(r.iou_tolerant_std) }}</td><td>{{ "%.3f"|format(r.iou_grown_mean) }}</td>
<td>{{ "%.3f"|format(r.relevance_mass_mean) }}</td><td>{{ "%.3f"|format(r.mask_area_share) }}</td>
<td>{{ "%.3f"|format(r.pointing_game) }}</td><td>{{ "%.3f"|format(r.boxes_hit_mean) if r.boxes_hit_mean is defined else "–" }}</td></tr>{% endfor %}</table>
{% if figures.localisation %}<p>The two lowest and the two highest tolerant IoUs:</p>{% endif %}
{% for f in figures.localisation %}<figure><img src="data:image/png;base64,{{ f.png }}" width="192"><figcaption>{{ f.caption }}</figcaption></figure>{% endfor %}{% endif %}
{% if m.localisation_guided %}<h3>Guided maps (option: <code>edge-xai explain --guided</code>)</h3>
<p>The same protocol for {{ cam_name }} refined to input pixels by guided backpropagation from the exported
guided_gradient graph: the class map times |guided gradient × local contrast| (the pixel minus the surface
around it), smoothed by 1 px, to the power 0.5. Thin defects get thin maps; it costs a full backward pass, so the served default stays the map above, which the gate judges.
{% if m.localisation_guided_control %}The control is the same refinement without the guided gradient (the class map times the image's
local contrast alone: no model chooses those pixels); what the guided map scores above it is the model's pixel-level evidence,
what the control scores, the image's own edges inside the class map.{% endif %}</p>
{% set ctl = m.localisation_guided_control or {} %}
<table><tr><th>class</th><th>n</th><th>IoU (pixel)</th><th>IoU, default map</th><th>IoU, control</th><th>tolerant IoU</th><th>relevance mass</th>
<th>relevance mass, control</th><th>pointing game</th></tr>
{% for c, r in m.localisation_guided.items() %}<tr><td>{{ c }}</td><td>{{ r.n }}</td><td>{{ "%.3f"|format(r.iou_mean) }}</td>
<td>{{ "%.3f"|format(m.localisation[c].iou_mean) if c in m.localisation else "–" }}</td>
<td>{{ "%.3f"|format(ctl[c].iou_mean) if c in ctl else "–" }}</td>
<td>{{ "%.3f"|format(r.iou_tolerant_mean) }}</td><td>{{ "%.3f"|format(r.relevance_mass_mean) }}</td>
<td>{{ "%.3f"|format(ctl[c].relevance_mass_mean) if c in ctl else "–" }}</td>
<td>{{ "%.3f"|format(r.pointing_game) }}</td></tr>{% endfor %}</table>{% endif %}
{% if m.quality %}{% set q = m.quality %}<h2>Explanation quality</h2>
<table><tr><th>measure</th><th>value</th><th>reference</th><th>n</th></tr>
<tr><td>deletion AUC (lower is faithful)</td><td>{{ "%.3f"|format(q.faithfulness.deletion_auc) }}</td>
<td>random map order {{ "%.3f"|format(q.faithfulness.deletion_random_auc) }}{% if q.faithfulness.deletion_random_pixels_auc is defined %}
(random pixels {{ "%.3f"|format(q.faithfulness.deletion_random_pixels_auc) }}){% endif %}</td><td>{{ q.faithfulness.n }}</td></tr>
<tr><td>insertion AUC (higher is faithful)</td><td>{{ "%.3f"|format(q.faithfulness.insertion_auc) }}</td>
<td>random map order {{ "%.3f"|format(q.faithfulness.insertion_random_auc) }}{% if q.faithfulness.insertion_random_pixels_auc is defined %}
(random pixels {{ "%.3f"|format(q.faithfulness.insertion_random_pixels_auc) }}){% endif %}</td><td>{{ q.faithfulness.n }}</td></tr>
<tr><td>top SHAP patch in the defect</td><td>{{ "–" if q.shap.top_patch_in_defect is none else "%.3f"|format(q.shap.top_patch_in_defect) }}</td>
<td>share of defective samples</td><td>{{ q.shap.n_defects }}</td></tr>
<tr><td>top-5 patches' share of f(x) − f(baseline)</td><td>{{ "–" if q.shap.top5_completeness is none else "%.3f"|format(q.shap.top5_completeness) }}</td>
<td>median, log-odds</td><td>{{ q.shap.n }}</td></tr>
<tr><td>stability (cosine under {{ q.stability.noise * 100 }} % noise)</td><td>{{ "%.4f"|format(q.stability.cosine_mean) }}</td>
<td>min {{ "%.4f"|format(q.stability.cosine_min) }}</td><td>{{ q.stability.n }}</td></tr>
{% if q.sanity.rank_correlation_trained_vs_random is defined %}<tr><td>sanity: rank correlation trained vs randomised weights ({{ q.sanity.get("method", "gradcam") }} maps of both)</td><td>{{ "%.3f"|format(q.sanity.rank_correlation_trained_vs_random) }}</td>
<td>must be clearly below 1 (gate)</td><td>{{ q.sanity.n }}</td></tr>{% endif %}
<tr><td>sanity: cosine trained vs randomised weights</td><td>{{ "%.3f"|format(q.sanity.cosine_trained_vs_random) }}</td>
<td>reported only: broad maps have a large cosine even when unrelated</td><td>{{ q.sanity.n }}</td></tr></table>
{% for title, cons in [("the sentence served with every answer (" ~ q.sentences.evidence ~ ")", q.sentences.consistency if q.sentences else {}), ("the deferred SHAP sentence", q.shap.consistency)] %}{% if cons %}
<p>Descriptor consistency, {{ title }}: per class, over its correctly classified samples, the most common primary
descriptor and its share{% if cons.values()|selectattr("right_share", "defined")|list %}, and the share whose primary descriptor is the
class's physical signature (simulated data){% endif %}.</p>
<table><tr><th>class</th><th>primary descriptor</th><th>share</th><th>right descriptor</th><th>n</th></tr>{% for c, r in cons.items() %}
<tr><td>{{ c }}</td><td style="text-align:left">{{ r.primary_descriptor }}</td><td>{{ "%.2f"|format(r.share) }}</td>
<td>{% if r.right_share is defined %}{{ "%.2f"|format(r.right_share) }} ({{ r.expected }}){% else %}—{% endif %}</td><td>{{ r.n }}</td></tr>{% endfor %}</table>{% endif %}{% endfor %}
{% if figures.faithfulness %}<figure><img src="data:image/png;base64,{{ figures.faithfulness }}" width="520">
<figcaption>Mean deletion and insertion curves over {{ q.faithfulness.n }} samples{% if q.faithfulness.judged_on %} ({{ q.faithfulness.judged_on }}){% endif %}: pixels in {{ cam_name }} order (strong) and
in the order of a random map as smooth as the explained ones (pale: the same shape of perturbation, placed at
random). A faithful map makes deletion fall and insertion rise sooner than random.</figcaption></figure>{% endif %}
<details><summary>protocols</summary><pre>{{ m.protocols.quality }}</pre></details>{% endif %}
{% if m.sensors %}<h2>Evidence per sensor</h2>
<p>Share of the class evidence per input channel: the drop of the class logit when the heatmap's region
(its hottest half, grown by 5 px) is refilled in that channel alone from the surrounding surface, over the
sum of the drops (<code>edge-xai explain --sensors</code>). Right answers, up to 300, evenly spaced.</p>
<table><tr><th>class</th><th>n</th>{% for c in model_channels %}<th>{{ c }}: mean share</th>{% endfor %}{% for c in model_channels %}<th>{{ c }} largest</th>{% endfor %}</tr>
{% for lab, r in m.sensors.per_class.items() %}<tr><td>{{ lab }}</td><td>{{ r.n }}</td>{% for c in model_channels %}<td>{{ "%.2f"|format(r.mean_share[c]) }}</td>{% endfor %}{% for c in model_channels %}<td>{{ "%.2f"|format(r.largest[c]) }}</td>{% endfor %}</tr>{% endfor %}</table>
{% if m.sensors.single_sensor %}<p>Single-sensor check: simulated parts whose defect only one sensor sees (the others rendered from
the same part without it). Per class and sensor: the share of such parts the model still calls right, and
among those, how often that sensor carries the most evidence.</p>
<table><tr><th>class</th>{% for c in model_channels %}<th>{{ c }} only: called right</th><th>{{ c }} first</th>{% endfor %}</tr>
{% for lab, r in m.sensors.single_sensor.items() %}<tr><td>{{ lab }}</td>{% for c in model_channels %}<td>{{ "%.2f"|format(r[c].recognised) }}</td>
<td>{{ "–" if r[c].sensor_first_when_recognised is none else "%.2f"|format(r[c].sensor_first_when_recognised) }}</td>{% endfor %}</tr>{% endfor %}</table>{% endif %}{% endif %}
{% if m.failures %}<h2>Failure modes ({{ m.failures.misclassified }} misclassified)</h2>
<table><tr><th>mode</th><th>count</th><th>suggested remedy</th></tr>{% for k, r in m.failures.modes.items() %}
<tr><td>{{ k }}</td><td>{{ r.count }}</td><td style="text-align:left">{{ r.remedy }}</td></tr>{% endfor %}</table>
{% for f in figures.failures %}<figure><img src="data:image/png;base64,{{ f.png }}" width="192"><figcaption>{{ f.caption }}</figcaption></figure>{% endfor %}{% endif %}
{% if m.physics %}{% set pb = m.physics_baselines or {} %}<h2>Physics (thermal)</h2><p>{{ m.protocols.physics }}</p>
<p>Judged (gate): IG of the correction from the <b>{{ pb.physics or "uniform" }}</b> baseline{% if m.physics_uniform or m.physics_output %};
beside it, on an evenly spaced subset,{% if m.physics_uniform %} the same from the uniform baseline{% endif %}{% if m.physics_uniform and m.physics_output %} and{% endif %}{% if m.physics_output %} the earlier protocol (IG of the mean output, uniform){% endif %}{% endif %}.</p>
<table><tr><th>geometry</th><th>r (pixel)</th><th>std</th>
<th>r at physics scale (gate)</th><th>std</th><th>n</th><th>correction where the geometry needs none, K{% if pb.physics == "ambient" %} (gate, flat parts){% endif %}</th>{% if m.physics_uniform %}<th>correction from uniform: r at physics scale</th>{% endif %}
{% if m.physics_output %}<th>earlier protocol (IG of the mean output): r</th>
<th>r at physics scale</th>{% endif %}</tr>
{% for g, r in m.physics.items() %}<tr><td>{{ g }}</td><td>{{ "%.3f"|format(r.r) }}</td><td>{{ "%.3f"|format(r.r_std) }}</td>
<td>{{ "%.3f"|format(r.r_physics_scale) }}</td><td>{{ "%.3f"|format(r.r_physics_scale_std) }}</td><td>{{ r.n }}</td>
<td>{{ "%.4f"|format(r.correction_unneeded_k) if r.correction_unneeded_k is defined else "–" }}</td>
{% if m.physics_uniform %}<td>{{ "%.3f"|format(m.physics_uniform[g].r_physics_scale) if m.physics_uniform[g] else "–" }}</td>{% endif %}
{% if m.physics_output and m.physics_output[g] %}<td>{{ "%.3f"|format(m.physics_output[g].r) }}</td>
<td>{{ "%.3f"|format(m.physics_output[g].r_physics_scale) }}</td>{% endif %}</tr>{% endfor %}</table>
{% if figures.physics %}<p>One frame per geometry, the one with the geometry's median r:</p>{% endif %}
{% for f in figures.physics %}<figure><img src="data:image/png;base64,{{ f.png }}" width="480"><figcaption>{{ f.caption }}</figcaption></figure>{% endfor %}{% endif %}
{% if m.phase_physics %}<h2>Physics (phase unwrapping)</h2><p>{{ m.protocols.phase_physics }}</p><pre>{{ m.phase_physics | tojson(indent=2) }}</pre>{% endif %}
{% if m.operator_agreement %}<h2>Operator agreement</h2><table><tr><th>condition</th><th>agreement</th><th>95 % CI</th><th>n</th></tr>
{% for c, r in m.operator_agreement.items() %}<tr><td>{{ c }}</td><td>{{ "%.3f"|format(r.agreement) }}</td>
<td>{{ "%.3f–%.3f"|format(r.ci95[0], r.ci95[1]) }}</td><td>{{ r.n }}</td></tr>{% endfor %}</table>{% endif %}
</body></html>"""


def _png(img: np.ndarray) -> str:
    ok, data = cv2.imencode(".png", img)
    return base64.b64encode(data.tobytes()).decode()


CURVE_STYLE = {"deletion": ((40, 40, 200), 2), "deletion_random": ((150, 150, 235), 1),   # BGR, line width
               "insertion": ((200, 90, 20), 2), "insertion_random": ((235, 190, 150), 1)}


def curve_plot(curves: dict[str, list[float]], width: int = 520, height: int = 320) -> np.ndarray:
    """The mean deletion / insertion curves (true-class probability vs share of pixels changed) as a
    BGR image: explained order in strong colours, random order in pale ones."""
    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 56, 150, 30, 40
    pw, ph = width - left - right, height - top - bottom

    def xy(fx: float, fy: float) -> tuple[int, int]:
        return int(round(left + fx * pw)), int(round(top + (1 - fy) * ph))

    font = cv2.FONT_HERSHEY_SIMPLEX
    for t in np.linspace(0, 1, 6):
        cv2.line(img, xy(t, 0), xy(t, 1), (230, 230, 230), 1)
        cv2.line(img, xy(0, t), xy(1, t), (230, 230, 230), 1)
        cv2.putText(img, f"{t:.1f}", (xy(t, 0)[0] - 10, height - bottom + 16), font, 0.38, (60, 60, 60), 1, cv2.LINE_AA)
        cv2.putText(img, f"{t:.1f}", (left - 30, xy(0, t)[1] + 4), font, 0.38, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.rectangle(img, xy(0, 1), xy(1, 0), (90, 90, 90), 1)
    cv2.putText(img, "share of pixels deleted / inserted", (left + 40, height - 6), font, 0.42, (30, 30, 30), 1,
                cv2.LINE_AA)
    cv2.putText(img, "p(true class)", (8, top - 12), font, 0.4, (30, 30, 30), 1, cv2.LINE_AA)
    for k, (name, (colour, thickness)) in enumerate(CURVE_STYLE.items()):
        y = np.clip(np.asarray(curves.get(name, []), np.float64), 0, 1)
        if len(y) < 2:
            continue
        pts = np.array([xy(i / (len(y) - 1), v) for i, v in enumerate(y)], np.int32)
        cv2.polylines(img, [pts], False, colour, thickness, cv2.LINE_AA)
        ly = top + 14 + 20 * k
        cv2.line(img, (width - right + 10, ly - 4), (width - right + 34, ly - 4), colour, max(thickness, 2))
        cv2.putText(img, name.replace("_", " "), (width - right + 40, ly), font, 0.4, (30, 30, 30), 1, cv2.LINE_AA)
    return img


def reliability_plot(before: dict, after: dict, size: int = 420) -> np.ndarray:
    """Accuracy against mean confidence per bin, raw (pale) and calibrated (strong), as a BGR image."""
    img = np.full((size, size, 3), 255, np.uint8)
    m = 50
    span = size - 2 * m

    def xy(fx: float, fy: float) -> tuple[int, int]:
        return int(round(m + fx * span)), int(round(size - m - fy * span))

    font = cv2.FONT_HERSHEY_SIMPLEX
    for t in np.linspace(0, 1, 6):
        cv2.line(img, xy(t, 0), xy(t, 1), (230, 230, 230), 1)
        cv2.line(img, xy(0, t), xy(1, t), (230, 230, 230), 1)
        cv2.putText(img, f"{t:.1f}", (xy(t, 0)[0] - 10, size - m + 16), font, 0.38, (60, 60, 60), 1, cv2.LINE_AA)
        cv2.putText(img, f"{t:.1f}", (m - 30, xy(0, t)[1] + 4), font, 0.38, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.rectangle(img, xy(0, 1), xy(1, 0), (90, 90, 90), 1)
    cv2.line(img, xy(0, 0), xy(1, 1), (160, 160, 160), 1, cv2.LINE_AA)
    cv2.putText(img, "confidence", (size // 2 - 40, size - 12), font, 0.42, (30, 30, 30), 1, cv2.LINE_AA)
    cv2.putText(img, "accuracy", (8, m - 16), font, 0.42, (30, 30, 30), 1, cv2.LINE_AA)
    n = max(1, sum(before.get("count", [])))
    for r, colour in ((before, (235, 190, 150)), (after, (200, 90, 20))):
        pts = [xy(c, a) for c, a in zip(r.get("confidence", []), r.get("accuracy", []))]
        if len(pts) > 1:
            cv2.polylines(img, [np.array(pts, np.int32)], False, colour, 2, cv2.LINE_AA)
        for p, k in zip(pts, r.get("count", [])):
            cv2.circle(img, p, max(2, int(round(14 * np.sqrt(k / n)))), colour, -1, cv2.LINE_AA)
    return img


def _heat(img: np.ndarray) -> np.ndarray:
    peak = float(img.max())
    return cv2.applyColorMap(heatmap8(img / peak if peak > 0 else img), cv2.COLORMAP_INFERNO)


def _physics_figures(model, arrays, physics_metrics: dict, baseline: str) -> list[dict]:
    """Per geometry, its median-r frame: thermal image | physics importance | |IG of the correction| (from
    the judged protocol's baseline) at the physics scale."""
    from edge.audit.physics import PHYSICS_SCALE_PX, thermal_attribution

    out = []
    for geo, r in physics_metrics.items():
        i = r.get("example")
        if i is None:
            continue
        a = cv2.GaussianBlur(thermal_attribution(model, arrays.x[i:i + 1], baseline=baseline)[0], (0, 0),
                             PHYSICS_SCALE_PX)
        t = arrays.x[i, model.channels.index("thermal")]
        gray = cv2.cvtColor(cv2.normalize(t, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8), cv2.COLOR_GRAY2BGR)
        panels = [gray, _heat(arrays.targets["physics_importance"][i]), _heat(a)]
        strip = np.concatenate([cv2.resize(p, (160, 160), interpolation=cv2.INTER_AREA) for p in panels], axis=1)
        out.append({"png": _png(strip), "caption": f"{geo} (#{i}): thermal | physics importance |apparent - true| | "
                                                   f"|IG of the correction from {baseline}| at "
                                                   f"{PHYSICS_SCALE_PX:.0f} px"})
    return out


def write_report(out: Path, metrics: dict, model, arrays) -> Path:
    figures: dict = {"localisation": [], "failures": []}
    if model.classes:
        g = GradCAMExplainer(model)
        channel = model.channels[0]
        scores = metrics["examples"].get("localisation_iou_tolerant", {})
        idx = {"localisation": metrics["examples"].get("localisation", []),
               "failures": [i for r in metrics.get("failures", {}).get("modes", {}).values() for i in r["examples"]][:9]}
        names = sample_names(arrays.paths, Path(metrics["data"]["dir"])) if arrays.paths else None
        for section, indices in idx.items():
            for i in indices:
                [e] = g.explain(arrays.x[i:i + 1])
                img = overlay(arrays.x[i, 0], e.heatmap)
                if arrays.has_mask[i]:
                    contours, _ = cv2.findContours(arrays.masks[i].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
                    cv2.drawContours(img, contours, -1, (255, 255, 255), 1)
                score = f", tolerant IoU {scores[str(i)]:.2f}" if section == "localisation" and str(i) in scores else ""
                figures[section].append({"png": _png(cv2.resize(img, (192, 192), interpolation=cv2.INTER_NEAREST)),
                                         "caption": f"#{i}{' ' + names[i] if names else ''}: {arrays.labels[i]} -> "
                                                    f"{e.prediction.label}{score} ({channel}; white: mask)"})
    if metrics.get("physics") and "physics_importance" in arrays.targets:
        figures["physics"] = _physics_figures(model, arrays, metrics["physics"],
                                              metrics.get("physics_baselines", {}).get("physics", "uniform"))
    cal = metrics.get("calibration")
    if cal:
        figures["reliability"] = _png(reliability_plot(cal["reliability_before"], cal["reliability_after"]))
    curves = metrics.get("quality", {}).get("faithfulness", {}).get("curves")
    if curves:
        figures["faithfulness"] = _png(curve_plot(curves))
    env = Environment(autoescape=True)
    page = env.from_string(TEMPLATE).render(m=json.loads(json.dumps(metrics, default=float)), figures=figures,
                                            cam_name=DISPLAY_NAMES.get(metrics.get("cam_method"), "Grad-CAM"),
                                            model_channels=list(model.channels) if model is not None else [])
    # whole or not at all: re-auditing into a folder must not leave half a report beside the old metrics
    return write_text_atomic(Path(out) / "report.html", page)
