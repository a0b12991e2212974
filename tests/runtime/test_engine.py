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


def test_the_gpu_engine_binds_a_session_per_batch_size(tiny_classifier):
    """OrtGpuEngine runs each graph at each batch size through its own BoundSession (fixed batch, buffers
    bound once: what CUDA graphs need; on a GPU the CUDA provider also re-plans its convolutions whenever a
    session's input shape changes), exercised on the CPU provider: each batch size gets its own, the most
    recent SESSIONS_PER_GRAPH are kept, and every call answers for its own inputs, as a plain session does."""
    from edge.runtime.ort import BoundSession, OrtGpuEngine

    _, _, d, graphs = tiny_classifier
    files = {k: d / v["file"] for k, v in graphs.items()}
    e, plain = OrtGpuEngine(files, "ort-cpu", threads=1), make_engine("ort-cpu", files, threads=1)
    rng = np.random.default_rng(1)
    by_size = {n: e._session("predict", n) for n in (1, 2, 1)}
    assert by_size[1] is not by_size[2] and all(isinstance(s, BoundSession) for s in by_size.values())
    assert by_size[2].session.get_inputs()[0].shape[0] == 2          # the batch is fixed in the session
    for n in (1, 2, 3, 4, 2, 2, 5):
        x = rng.standard_normal((n, 3, 32, 32)).astype(np.float32)
        np.testing.assert_allclose(e.run("predict", {"input": x})[0], plain.run("predict", {"input": x})[0],
                                   rtol=1e-5, atol=1e-6)
    assert list(e._by_batch["predict"]) == [3, 4, 2, 5]          # 1, the oldest, made room for 5
    assert not e.unbound and not e.uncaptured
    # run_device hands its arrays straight to the bound session (no check_feeds): it refuses what does not fit
    with pytest.raises(InputError, match="input 'input'.*float32 \\(2, 3, 32, 32\\)"):
        e._session("predict", 2).run({"input": np.zeros((2, 3, 32, 31), np.float32)})
    with pytest.raises(InputError, match="float64"):
        e._session("predict", 2).run({"input": np.zeros((2, 3, 32, 32))})


def test_cuda_graphs_follow_the_option_and_the_environment(monkeypatch):
    """Only the CUDA provider captures; EDGE_XAI_CUDA_GRAPHS=0 turns it off where no option is given."""
    from edge.runtime.ort import wants_cuda_graphs

    for env, option, want in ((None, None, True), ("0", None, False), (" 1", None, True), ("0", True, True),
                              (None, False, False)):
        if env is None:
            monkeypatch.delenv("EDGE_XAI_CUDA_GRAPHS", raising=False)
        else:
            monkeypatch.setenv("EDGE_XAI_CUDA_GRAPHS", env)
        assert wants_cuda_graphs("ort-cuda", option) is want, (env, option)
        assert not wants_cuda_graphs("ort-tensorrt", option) and not wants_cuda_graphs("ort-cpu", option)


def test_the_gpu_engines_bound_buffers_are_not_shared_between_threads(tiny_classifier):
    """The service calls one engine from several threads: each call, at the same batch size and so through
    the same bound buffers, answers for its own inputs."""
    from concurrent.futures import ThreadPoolExecutor

    from edge.runtime.ort import OrtGpuEngine

    _, _, d, graphs = tiny_classifier
    files = {k: d / v["file"] for k, v in graphs.items()}
    e, plain = OrtGpuEngine(files, "ort-cpu", threads=1), make_engine("ort-cpu", files, threads=1)
    xs = np.random.default_rng(2).standard_normal((48, 2, 3, 32, 32)).astype(np.float32)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda x: e.run("predict", {"input": x})[0], xs))
    for x, g in zip(xs, got):
        np.testing.assert_allclose(g, plain.run("predict", {"input": x})[0], rtol=1e-5, atol=1e-6)


def test_the_gpu_engine_runs_a_graph_it_cannot_bind_unbound(tmp_path, caplog):
    """A graph with a free dimension besides the batch cannot have its buffers allocated once: the engine
    says why (a warning, and `unbound`) and runs it with a plain session per batch size, correctly."""
    import onnx
    from onnx import TensorProto, helper

    from edge.runtime.ort import OrtGpuEngine

    free = ["batch", 3, "height", "width"]
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["out"])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, free)],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, free)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "g.onnx")
    e = OrtGpuEngine({"relu": tmp_path / "g.onnx"}, "ort-cpu", threads=1)
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 7)).astype(np.float32)
    with caplog.at_level("WARNING", logger="edge.runtime"):
        np.testing.assert_array_equal(e.run("relu", {"input": x})[0], np.maximum(x, 0))
    assert "free dimension besides the batch" in e.unbound["relu"] and "relu" in caplog.text
    np.testing.assert_array_equal(e.run("relu", {"input": x[:1, :, :3]})[0], np.maximum(x[:1, :, :3], 0))


def test_the_cpu_engine_keeps_numpys_blas_on_one_thread(engine):
    # OpenBLAS workers busy-wait after a product and took the cores from the next engine call (Grad-CAM's
    # upsampling before the next request: 5.4 -> 6.6 ms on the elpv model); the engine limits them.
    from threadpoolctl import threadpool_info

    from edge.runtime import ort

    blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
    assert blas, "NumPy's BLAS is not visible to threadpoolctl"
    assert {i["num_threads"] for i in blas} == {ort.HOST_BLAS_THREADS}
