"""The engine interface on ONNX Runtime CPU: sessions once, warm-up, inputs checked by name."""
import numpy as np
import pytest

from edge.errors import NotFound
from edge.runtime.engine import InputError, InputSpec, check_feeds, make_engine

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine(tiny_classifier):
    _, _, d, graphs = tiny_classifier
    e = make_engine("ort-cpu", {k: d / v["file"] for k, v in graphs.items()}, threads=1)
    e.warm_up()
    return e


def test_runs_every_graph_with_declared_specs(engine, tiny_classifier):
    model = tiny_classifier[0]
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    (logits,) = engine.run("predict", {"input": x})
    import torch
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(logits, ref, atol=1e-4 * np.abs(ref).max())
    assert [s.name for s in engine.input_specs("gradcam")] == ["input", "target"]
    assert engine.input_specs("predict")[0].shape == (None, 3, 32, 32)


@pytest.mark.parametrize("feeds, message", [
    ({"input": np.zeros((1, 2, 32, 32), np.float32)}, r"input 'input': shape \(1, 2, 32, 32\), expected \(N, 3, 32, 32\)"),
    ({"input": np.zeros((1, 3, 32, 32), np.int32)}, r"input 'input': dtype int32, expected float32"),
    ({"inp": np.zeros((1, 3, 32, 32), np.float32)}, r"missing input.*unknown inp"),
    ({"input": np.zeros((0, 3, 32, 32), np.float32)}, r"input 'input': empty batch"),
])
def test_bad_inputs_name_the_input(engine, feeds, message):
    with pytest.raises(InputError, match=message):
        engine.run("predict", feeds)


def test_batch_mismatch_between_inputs_is_refused(engine):
    with pytest.raises(InputError, match="batch 2 differs"):
        engine.run("gradcam", {"input": np.zeros((1, 3, 32, 32), np.float32), "target": np.zeros((2, 6), np.float32)})


def test_float64_is_narrowed_not_refused():
    spec = [InputSpec("input", np.dtype(np.float32), (None, 2))]
    out = check_feeds("g", spec, {"input": np.ones((3, 2))})
    assert out["input"].dtype == np.float32


def test_unknown_graph_and_backend(engine, tiny_classifier):
    with pytest.raises(NotFound, match="no 'shap' graph"):
        engine.run("shap", {})
    with pytest.raises(ValueError, match="unknown backend 'onnx'"):
        make_engine("onnx", {})


def test_gpu_backend_without_gpu_says_what_to_install(tiny_classifier):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    _, _, d, graphs = tiny_classifier
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        make_engine("ort-cuda", {"predict": d / graphs["predict"]["file"]})


def test_the_gpu_engine_keeps_a_session_per_batch_size(tiny_classifier):
    """OrtGpuEngine's session per batch size (the CUDA provider re-plans its convolutions whenever a session's
    input shape changes), exercised on the CPU provider: each batch size gets its own session, the most
    recent SESSIONS_PER_GRAPH are kept, and the answers do not depend on which session gave them."""
    from edge.runtime.ort import OrtGpuEngine

    _, _, d, graphs = tiny_classifier
    e = OrtGpuEngine({k: d / v["file"] for k, v in graphs.items()}, "ort-cpu", threads=1)
    x = np.random.default_rng(1).standard_normal((5, 3, 32, 32)).astype(np.float32)
    want = e.run("predict", {"input": x})[0]
    by_size = {n: e._session("predict", n) for n in (1, 2, 1)}
    assert by_size[1] is not by_size[2] and e._session("predict", 5) is e._sessions["predict"]
    for n in (1, 2, 3, 4, 2):
        np.testing.assert_allclose(e.run("predict", {"input": x[:n]})[0], want[:n], rtol=1e-5, atol=1e-6)
    assert list(e._by_batch["predict"]) == [1, 3, 4, 2]          # 5, the oldest, made room for 4


def test_the_cpu_engine_keeps_numpys_blas_on_one_thread(engine):
    # OpenBLAS workers busy-wait after a product and took the cores from the next engine call (Grad-CAM's
    # upsampling before the next request: 5.4 -> 6.6 ms on the elpv model); the engine limits them.
    from threadpoolctl import threadpool_info

    from edge.runtime import ort

    blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
    assert blas, "NumPy's BLAS is not visible to threadpoolctl"
    assert {i["num_threads"] for i in blas} == {ort.HOST_BLAS_THREADS}
