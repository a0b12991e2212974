"""The evidence per sensor of an inline answer starts as soon as the map exists and runs beside the
sentence; the answer carries exactly what `sensor_evidence` says, and work that does not fit the budget
is not started early."""
from types import SimpleNamespace

import numpy as np
import pytest

from edge.explain import sensor_evidence
from edge.serve.inspector import Inspector
from edge.serve.servicer import build_job
from edge.serve.station import make_requests
from edge.v1 import inspection_pb2 as pb
from helpers import MODELS


@pytest.fixture(scope="module")
def inspector():
    ins = Inspector(MODELS, allow_unaudited=True, threads=2)
    yield ins
    ins.close()


def _job(inspector: Inspector, budget_ms: float):
    request = make_requests(6, seed=1000, station="s", explanations=(pb.GRADCAM, pb.SENTENCE, pb.SENSORS))[1]
    node = SimpleNamespace(inspector=inspector, config=SimpleNamespace(cycle_budget_ms=budget_ms))
    return build_job(request, node, None)                                  # a crack


def test_evidence_per_sensor_runs_beside_the_sentence_and_equals_the_measure(inspector):
    inspector.cost_ms[("sensors", "defect")] = 5.0
    job = _job(inspector, 1e4)
    [ins] = inspector.inspect_batch([job])
    assert ins.label == "crack" and ins.sensors_pending is not None       # started before the sentence
    model = inspector.models["defect"]
    # started, it is inline however costly it was measured: only a wait for it remains
    ins.sensors_pending.result()
    inspector.cost_ms[("sensors", "defect")] = 1e6
    assert inspector.plan(job, ins) == (["sensors"], [])
    extra = inspector.explain_extra(job, ins, ["sensors"])
    [want] = sensor_evidence(model, job.view.x[:1], ins.tile_heatmap[None], [model.classes.index("crack")],
                             ins.tile_logits[None])
    assert extra.sensors == pytest.approx(dict(zip(model.channels, want.tolist())), abs=1e-6)
    assert np.isclose(sum(extra.sensors.values()), 1.0)


def test_evidence_per_sensor_that_does_not_fit_is_not_started_early(inspector):
    inspector.cost_ms[("sensors", "defect")] = 1e6                        # more than any budget here
    job = _job(inspector, 1e4)
    [ins] = inspector.inspect_batch([job])
    assert ins.sensors_pending is None
    assert inspector.plan(job, ins) == ([], ["sensors"])
    # deferred, it is computed from the kept map all the same
    extra = inspector.explain_extra(job, ins, ["sensors"])
    assert max(extra.sensors, key=extra.sensors.get) in inspector.models["defect"].channels
