"""CUDA kernels against their NumPy twins, and the GPU backends against ONNX Runtime CPU.
Marked `gpu`: skipped on machines without an NVIDIA GPU (CI compiles the kernels with nvcc instead)."""
import numpy as np
import pytest

from edge.explain.cam import METHODS, cam_raw, pool_activations, upsample_and_normalise, upsample_bilinear
from edge.explain.ig_math import interpolation_batch, reduce_path
from edge.explain.quadrature import quadrature_rule

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module", params=["pycuda", "cupy"])
def kernels(request):
    """Both launchers of the same kernels (edge/explain/cuda.py, edge/explain/cuda_cupy.py), each where installed."""
    if request.param == "pycuda":
        pytest.importorskip("pycuda", reason="pycuda not installed (pip install -e '.[gpu]')")
        from edge.explain.cuda import CudaKernels

        return CudaKernels()
    pytest.importorskip("cupy", reason="cupy not installed")
    from edge.explain.cuda_cupy import CupyKernels

    return CupyKernels()


def to_device(kernels, a: np.ndarray):
    """A host array on the device, as the launcher's own array type (pycuda GPUArray or cupy ndarray)."""
    if type(kernels).__name__ == "CupyKernels":
        import cupy

        return cupy.asarray(a)
    from pycuda import gpuarray

    return gpuarray.to_gpu(a)


# The shipped layer (96 x 16 x 16 at 128 px) at batch 1, 5 and 64; odd map and frame sizes; a 1/4-resolution layer.
SHAPES = [((5, 96, 16, 16), (128, 128)), ((1, 96, 16, 16), (128, 128)), ((64, 96, 16, 16), (128, 128)),
          ((3, 40, 13, 9), (100, 75)), ((2, 64, 32, 32), (128, 128))]


@pytest.mark.parametrize("shape,size", SHAPES)
@pytest.mark.parametrize("shift", [0.0, -0.4375])
@pytest.mark.parametrize("method", METHODS)
def test_gradcam_kernel_equals_twin(kernels, method, shift, shape, size):
    rng = np.random.default_rng(0)
    acts = np.maximum(rng.normal(size=shape), 0).astype(np.float32)
    grads = (rng.normal(size=shape) * 1e-3).astype(np.float32)
    raw, heat = kernels.gradcam(to_device(kernels, acts), to_device(kernels, grads), size, method, shift)
    kernels.check()
    want_raw = cam_raw(acts, grads, method)
    np.testing.assert_allclose(raw.get(), want_raw, atol=1e-5 * np.abs(want_raw).max())
    np.testing.assert_allclose(heat.get(), upsample_and_normalise(want_raw, size, shift), atol=1e-5)
    # the served form: the same launch also writing the unnormalised map and the pooled embedding, and the
    # logits, into one buffer that comes back in one copy
    logits = rng.normal(size=(shape[0], 6)).astype(np.float32)
    out = kernels.gradcam_to_host(to_device(kernels, acts), to_device(kernels, grads), size, method, shift,
                                  logits=to_device(kernels, logits))
    want_up = upsample_bilinear(want_raw, size, shift)
    np.testing.assert_allclose(out["raw"], want_raw, atol=1e-5 * np.abs(want_raw).max())
    np.testing.assert_allclose(out["attribution"], want_up, atol=1e-5 * np.abs(want_up).max())
    np.testing.assert_allclose(out["heatmap"], heat.get(), atol=1e-6)
    np.testing.assert_allclose(out["embedding"], pool_activations(acts), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["logits"], logits)


def test_ig_kernels_equal_twins(kernels):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 3, 64, 64)).astype(np.float32)
    base = rng.normal(size=(3, 3, 64, 64)).astype(np.float32)
    alphas, weights = quadrature_rule("gausslegendre", 16)
    xg, bg = to_device(kernels, x), to_device(kernels, base)
    points = kernels.ig_interpolate(xg, bg, alphas)
    np.testing.assert_allclose(points.get(), interpolation_batch(x, base, alphas), atol=1e-5)
    grads = rng.normal(size=points.shape).astype(np.float32)
    att, totals = kernels.ig_reduce(to_device(kernels, grads), weights, xg, bg)
    kernels.check()
    want, want_totals = reduce_path(grads, weights, x, base)
    np.testing.assert_allclose(att.get(), want, atol=1e-5 * np.abs(want).max())
    np.testing.assert_allclose(totals.get(), want_totals, rtol=1e-5, atol=1e-5 * np.abs(want).sum(axis=(1, 2, 3)).max())


@pytest.mark.parametrize("backend", ["ort-cuda", "tensorrt"])
def test_gpu_backends_equal_ort_cpu_on_the_shipped_defect_model(backend):
    if backend == "tensorrt":
        pytest.importorskip("tensorrt", reason="tensorrt not installed")
        pytest.importorskip("pycuda", reason="pycuda not installed")
    else:
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            pytest.skip("onnxruntime-gpu not installed")
    from edge.runtime.model import Model
    from helpers import MODELS

    cpu, gpu = Model.load(MODELS / "defect"), Model.load(MODELS / "defect", backend=backend)
    x = np.random.default_rng(2).normal(size=(8, 3, 128, 128)).astype(np.float32)
    t = np.zeros((8, 6), np.float32)
    t[::2, 2] = 1          # half explicit class, half "predicted class" rows
    for graph, feeds in (("predict", {"input": x}), ("gradcam", {"input": x, "target": t}),
                         ("input_gradient", {"input": x, "target": np.eye(6, dtype=np.float32)[np.arange(8) % 6]})):
        for name, a, b in zip(gpu.engine.output_names(graph), cpu.run(graph, feeds), gpu.run(graph, feeds)):
            # TF32 is allowed on Ampere+ by default in cuDNN / TensorRT: relative L2 1e-3, not 1e-6.
            err = np.linalg.norm(a - b) / np.linalg.norm(a)
            assert err < 1e-3, f"{graph}.{name}: relative L2 {err:.2e}"


def test_the_explainer_maps_engine_device_outputs_through_the_pycuda_kernels(monkeypatch):
    """The served Grad-CAM path on a real GPU: an engine whose outputs stay on the device as pycuda GPUArrays
    (TensorRT's `run_device`; here ONNX Runtime's outputs uploaded, since the GPU machine has no TensorRT)
    gets its map from the real kernels that `device_kernels` picks, and its answers equal the host path's."""
    pytest.importorskip("pycuda", reason="pycuda not installed (pip install -e '.[gpu]')")
    from pycuda import gpuarray

    from edge.explain import gradcam as gradcam_module
    from edge.explain.gradcam import GradCAMExplainer
    from edge.runtime.model import Model
    from helpers import MODELS

    model = Model.load(MODELS / "defect")
    x = (20 + 2 * np.random.default_rng(3).normal(size=(5, *model.input_shape))).astype(np.float32)
    host = GradCAMExplainer(model).explain(x)
    engine, launched = model.engine, []

    def run_device(graph, feeds, consume=None):
        outs = engine._run(graph, feeds)
        outs = {n: gpuarray.to_gpu(np.ascontiguousarray(o))
                for n, o in zip(("logits", "activations", "activation_grad"), outs)}
        return outs if consume is None else consume(outs)

    def spy(e):
        launched.append(real(e))
        return launched[-1]

    real = gradcam_module.device_kernels
    monkeypatch.setattr(engine, "run_device", run_device, raising=False)
    monkeypatch.setattr(engine, "max_batch", 64, raising=False)
    monkeypatch.setattr(gradcam_module, "device_kernels", spy)
    device = GradCAMExplainer(model).explain(x)
    assert [type(k).__name__ for k in launched] == ["CudaKernels"]
    for a, b in zip(device, host):
        assert a.prediction.label == b.prediction.label
        np.testing.assert_allclose(a.heatmap, b.heatmap, atol=1e-5)
        np.testing.assert_allclose(a.details.raw, b.details.raw, atol=1e-5 * np.abs(b.details.raw).max())
        np.testing.assert_allclose(a.attribution, b.attribution, atol=1e-5 * np.abs(b.attribution).max())
        np.testing.assert_allclose(a.details.embedding, b.details.embedding, rtol=1e-5, atol=1e-6)


def test_ort_cuda_explanations_run_through_the_kernels_and_equal_the_cpu(monkeypatch):
    """ONNX Runtime's CUDA provider keeps the gradient graphs' outputs on the device (I/O binding,
    `OrtGpuEngine.run_device`): Grad-CAM and IG (M = 50, one batched call) run through the pycuda kernels on
    those buffers and equal ONNX Runtime on the CPU (TF32 convolutions: relative L2 1e-3)."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu not installed")
    pytest.importorskip("pycuda", reason="pycuda not installed (pip install -e '.[gpu]')")
    from edge.explain import gradcam as gradcam_module
    from edge.explain import ig as ig_module
    from edge.explain.gradcam import GradCAMExplainer
    from edge.explain.ig import IGExplainer
    from edge.runtime.model import Model
    from helpers import MODELS

    cpu, gpu = Model.load(MODELS / "defect"), Model.load(MODELS / "defect", backend="ort-cuda")
    launched = []
    for module in (gradcam_module, ig_module):
        real = module.device_kernels
        monkeypatch.setattr(module, "device_kernels", lambda e, real=real: launched.append(real(e)) or launched[-1])
    x = (20 + 2 * np.random.default_rng(4).normal(size=(4, *cpu.input_shape))).astype(np.float32)
    def rel(got, want):
        return np.linalg.norm(got.attribution - want.attribution) / np.linalg.norm(want.attribution)

    for want, got in zip(GradCAMExplainer(cpu).explain(x), GradCAMExplainer(gpu).explain(x)):
        assert rel(got, want) < 1e-3, f"Grad-CAM: relative L2 {rel(got, want):.2e}"
    for want, got in zip(IGExplainer(cpu, n_steps=50).explain(x[:1]), IGExplainer(gpu, n_steps=50).explain(x[:1])):
        assert rel(got, want) < 1e-3, f"IG: relative L2 {rel(got, want):.2e}"
        assert got.details.relative_completeness_delta <= want.details.relative_completeness_delta + 0.02
    # the CPU model's lookups answer None (no run_device); the GPU model's, one launcher per explainer
    assert [type(k).__name__ for k in launched if k is not None] == ["CudaKernels", "CudaKernels"]


def test_ort_cuda_bound_sessions_capture_and_answer_each_call():
    """The CUDA provider runs each graph at each batch size through a BoundSession with CUDA graphs: the
    shipped model's graphs are all captured (nothing left on the CPU), and replays read each call's own
    inputs: successive different frames, host or device inputs, each equal ONNX Runtime on the CPU, and an
    answer handed out (run_device's device arrays, run's host arrays) stays as it was after later calls."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu not installed")
    pytest.importorskip("pycuda", reason="pycuda not installed (pip install -e '.[gpu]')")
    import pycuda.autoprimaryctx  # noqa: F401
    from pycuda import gpuarray

    from edge.runtime.model import Model
    from edge.runtime.ort import BoundSession
    from helpers import MODELS

    cpu, gpu = Model.load(MODELS / "defect"), Model.load(MODELS / "defect", backend="ort-cuda")
    engine, rng = gpu.engine, np.random.default_rng(7)
    kept = []
    for batch in (1, 3, 1):
        for _ in range(3):
            x = gpu.normalisation.apply((20 + 2 * rng.normal(size=(batch, *gpu.input_shape))).astype(np.float32))
            t = np.eye(len(gpu.classes), dtype=np.float32)[rng.integers(0, len(gpu.classes), batch)]
            for graph, feeds in (("predict", {"input": x}), ("gradcam", {"input": x, "target": t})):
                want = cpu.engine.run(graph, feeds)
                for got in (engine.run(graph, feeds),
                            [v.get() for v in engine.run_device(graph, {k: gpuarray.to_gpu(v) for k, v in feeds.items()}).values()]):
                    for name, a, b in zip(engine.output_names(graph), got, want):
                        assert np.linalg.norm(a - b) <= 1e-4 * np.linalg.norm(b), f"{graph}.{name}, batch {batch}"
            # consume: the bound outputs themselves, read under the session's lock
            consumed = engine.run_device("gradcam", {"input": x, "target": t},
                                         consume=lambda outs: [v.get() for v in outs.values()])
            for name, a, b in zip(engine.output_names("gradcam"), consumed, cpu.engine.run("gradcam", {"input": x, "target": t})):
                assert np.linalg.norm(a - b) <= 1e-4 * np.linalg.norm(b), f"consumed gradcam.{name}, batch {batch}"
            out = engine.run_device("gradcam", {"input": x, "target": t})
            host = engine.run("gradcam", {"input": x, "target": t})[2]
            kept.append((out["activation_grad"], out["activation_grad"].get(), host, host.copy()))
    assert all(np.array_equal(dev.get(), snap) and np.array_equal(host, host_snap)
               for dev, snap, host, host_snap in kept)
    assert not engine.uncaptured and not engine.unbound
    bound = engine._session("gradcam", 1)
    assert isinstance(bound, BoundSession) and bound.capture
