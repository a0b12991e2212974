"""The `triton` engine against a real Triton Inference Server (nvidia-pytriton's tritonserver, the graphs run
by ONNX Runtime inside its Python backend): the same numbers as the local engine for every graph, batches
above the server's max_batch_size split, inputs checked against the server's metadata, errors that name
the model and the server, and a node that sends only its deferred explanations there."""
import asyncio
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from edge.errors import NotFound, Unavailable
from edge.explain import GradCAMExplainer, IGExplainer
from edge.runtime.model import Model
from edge.serve.station import make_requests
from edge.v1 import inspection_pb2 as pb
from edge.v1 import inspection_pb2_grpc as pb_grpc
from helpers.server import make_config, running_server
from helpers.triton import TritonServer

MODELS = Path(__file__).resolve().parents[2] / "models"
pytestmark = [pytest.mark.slow, pytest.mark.triton]


def defect_only(tmp_path: Path) -> Path:
    """A models folder with the classifier alone (the test server serves only its graphs)."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "defect").symlink_to(MODELS / "defect")
    return models


@pytest.fixture(scope="module")
def triton():
    with TritonServer(MODELS / "defect", max_batch=4) as server:
        yield server


def test_every_graph_gives_the_local_numbers_through_triton(triton):
    local = Model.load(MODELS / "defect", threads=2)
    remote = Model.load(MODELS / "defect", backend=triton.backend, name="defect")
    x = np.random.default_rng(0).standard_normal((10, *local.input_shape)).astype(np.float32)   # 10 > max batch 4
    np.testing.assert_allclose(remote.predict(x), local.predict(x), rtol=1e-6, atol=1e-6)
    for a, b in zip(GradCAMExplainer(remote).explain(x[:5]), GradCAMExplainer(local).explain(x[:5])):
        assert a.prediction.label == b.prediction.label
        np.testing.assert_allclose(a.heatmap, b.heatmap, atol=1e-6)
    [ig_remote] = IGExplainer(remote, n_steps=8).explain(x[:1])
    [ig_local] = IGExplainer(local, n_steps=8).explain(x[:1])
    np.testing.assert_allclose(ig_remote.attribution, ig_local.attribution, rtol=1e-4, atol=1e-6)
    assert triton.inference_count("defect_gradcam") >= 1 and triton.inference_count("defect_predict") >= 3


def test_a_missing_or_different_model_and_a_dead_server_are_named(triton, tmp_path):
    with pytest.raises(NotFound, match=r"no ready model 'thermal_predict'.*export-triton"):
        Model.load(MODELS / "thermal", backend=triton.backend, name="thermal").warm_up()
    # the thermal graphs served under the defect model's names: refused at start, both sides named
    with pytest.raises(ValueError, match=r"model 'defect_predict' is not this model's predict graph: .*outputs"):
        Model.load(MODELS / "thermal", backend=triton.backend, name="defect").warm_up()
    with pytest.raises(Unavailable, match=r"Triton at 127\.0\.0\.1:1: .*defect_predict"):
        Model.load(MODELS / "defect", backend="triton://127.0.0.1:1", name="defect").warm_up()


def test_a_node_sends_only_its_deferred_explanations_to_triton(triton, tmp_path):
    # SHAP (deferred here: 512 evaluations do not fit a 60 ms cycle) runs on Triton, the answer stays local
    cfg = make_config(tmp_path, hmi=None, models_dir=defect_only(tmp_path), deferred_backend=triton.backend,
                      shap_budget=512)

    async def run(port: int):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = pb_grpc.InspectionStub(ch)
            [r] = make_requests(1, seed=3, station="cell-0")
            r.explanations[:] = [pb.GRADCAM, pb.SENTENCE, pb.SHAP]
            r.regression_models[:] = []
            r.cycle_budget_ms = 60
            a = await stub.Inspect(r, timeout=30)
            for _ in range(300):
                got = await stub.GetInspection(pb.GetInspectionRequest(inspection_id=a.inspection_id), timeout=10)
                if not got.deferred:
                    return a, got
                await asyncio.sleep(0.05)
            raise AssertionError("the deferred SHAP never arrived")

    with running_server(cfg) as server:
        # counted after the node's start, which warms every graph on both backends
        before = {g: triton.inference_count(f"defect_{g}") for g in ("predict", "gradcam")}
        answer, complete = asyncio.run(run(server.grpc_port))
    assert list(answer.deferred) == [pb.SHAP]
    assert any(att.method == "shap" for att in complete.attributions)
    after = {g: triton.inference_count(f"defect_{g}") for g in ("predict", "gradcam")}
    assert after["predict"] > before["predict"]             # SHAP's evaluations went to Triton...
    assert after["gradcam"] == before["gradcam"]            # ...the inline Grad-CAM did not


def test_the_guided_map_runs_on_the_deferred_backend(triton, tmp_path):
    # GUIDED is an optional kind like SHAP: its graphs (gradcam + guided_gradient) run on Triton
    cfg = make_config(tmp_path, hmi=None, models_dir=defect_only(tmp_path), deferred_backend=triton.backend)
    [r] = make_requests(1, seed=4, station="cell-0")
    r.explanations[:] = [pb.GRADCAM, pb.GUIDED]
    r.cycle_budget_ms = 10000
    with running_server(cfg) as server:
        before = triton.inference_count("defect_guided_gradient")
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as ch:
            a = pb_grpc.InspectionStub(ch).Inspect(r, timeout=30)
            for _ in range(300):
                if not a.deferred:
                    break
                time.sleep(0.05)
                a = pb_grpc.InspectionStub(ch).GetInspection(pb.GetInspectionRequest(inspection_id=a.inspection_id))
    assert not a.deferred and [x.method for x in a.attributions] == ["guided hirescam"]
    assert triton.inference_count("defect_guided_gradient") > before


def test_four_stations_at_10_hz_with_every_graph_on_triton(triton, tmp_path):
    from edge.serve.station import run_stations

    cfg = make_config(tmp_path, hmi=None, models_dir=defect_only(tmp_path), backend=triton.backend)
    with running_server(cfg) as server:
        report = asyncio.run(run_stations(f"127.0.0.1:{server.grpc_port}", 10.0, 15, stations=4))
        stored = server.node.store.count()
    assert report.errors == 0 and report.ok == 60 and stored == 60
    print(f"4 x 10 Hz through Triton: p50 {np.percentile(report.latencies_ms, 50):.1f} ms, "
          f"p99 {np.percentile(report.latencies_ms, 99):.1f} ms")


def test_killing_triton_mid_run_gives_clear_errors_and_loses_no_acknowledged_inspection(tmp_path):
    from edge.serve.station import run_stations

    with TritonServer(MODELS / "defect") as triton:
        cfg = make_config(tmp_path, hmi=None, models_dir=defect_only(tmp_path), backend=triton.backend)
        with running_server(cfg) as server:
            async def run():
                async def kill_later():
                    await asyncio.sleep(1.0)
                    await asyncio.to_thread(triton.kill)
                killer = asyncio.create_task(kill_later())
                report = await run_stations(f"127.0.0.1:{server.grpc_port}", 10.0, 25, stations=4)
                await killer
                return report
            report = asyncio.run(run())
            stored = server.node.store.count()
    assert report.ok > 0 and report.errors > 0 and report.ok + report.errors == report.sent == 100
    assert all(k.startswith("UNAVAILABLE: ") and "Triton at 127.0.0.1" in k for k in report.error_messages), \
        report.error_messages
    assert stored == report.ok                     # every acknowledged inspection is in the store, no other
