"""The launchers' shared part (edge.explain.cuda.KernelLauncher: checks, allocation, geometry, argument lists)
on the CPU: a stand-in backend whose "kernels" are the NumPy twins reading the arguments in the order the
.cu signatures declare them. The real kernels against the twins are tests/explain/test_cuda.py (GPU)."""
import numpy as np
import pytest

from edge.explain.cam import METHODS, cam_raw, pool_activations, upsample_and_normalise, upsample_bilinear
from edge.explain.cuda import BLOCK, KernelLauncher
from edge.explain.ig_math import interpolation_batch, reduce_path
from edge.explain.quadrature import quadrature_rule


def gradcam_fused(acts, grads, raw, heat, up, emb, K, h, w, H, W, method, shift):
    raw[...] = cam_raw(acts, grads, METHODS[int(method)])
    heat[...] = upsample_and_normalise(raw, (int(H), int(W)), float(shift))
    if isinstance(up, np.ndarray):              # else the null pointer: not written
        up[...] = upsample_bilinear(raw, (int(H), int(W)), float(shift))
    if isinstance(emb, np.ndarray):
        emb[...] = pool_activations(acts)


def ig_interpolate(x, baseline, alphas, out, M, ND):
    out[...] = interpolation_batch(x, baseline, alphas)


def ig_reduce(grads, weights, x, baseline, attributions, M, ND):
    attributions[...] = reduce_path(grads, weights, x, baseline)[0]


def ig_row_sum(attributions, totals, per):
    totals[...] = attributions.reshape(len(totals), int(per)).sum(axis=1)


class NumpyLauncher(KernelLauncher):
    sm_count = 4
    f_gradcam, f_interp, f_reduce, f_rowsum = (staticmethod(f) for f in (gradcam_fused, ig_interpolate, ig_reduce,
                                                                          ig_row_sum))

    def __init__(self):
        super().__init__()
        self.launches = []

    def check(self):
        pass

    def _empty(self, shape):
        return np.full(shape, np.nan, np.float32)

    def _upload(self, a):
        return np.array(a)

    def _arg(self, a):
        return a

    def _launch(self, f, grid, args, shared=0):
        self.launches.append((f.__name__, grid, shared))
        f(*args)

    def _copy(self, dst, src):
        self.launches.append(("copy", None, 0))
        dst[...] = src

    def _to_host(self, a):
        self.launches.append(("to_host", None, 0))
        return a.copy()


def test_the_shared_launch_code_feeds_the_kernels_their_arguments_in_order():
    k = NumpyLauncher()
    rng = np.random.default_rng(0)
    acts = np.maximum(rng.normal(size=(3, 40, 13, 9)), 0).astype(np.float32)
    grads = (rng.normal(size=acts.shape) * 1e-3).astype(np.float32)
    raw, heat = k.gradcam(acts, grads, (100, 75), "hirescam", -0.4375)
    np.testing.assert_array_equal(raw, cam_raw(acts, grads, "hirescam"))
    np.testing.assert_array_equal(heat, upsample_and_normalise(raw, (100, 75), -0.4375))
    assert k.launches[-1] == ("gradcam_fused", (3, 1, 1), (40 + 13 * 9 + 2 * BLOCK) * 4)   # one block per image
    # what an answer needs, packed: one launch on the engine's buffers, one copy to the host
    logits = rng.normal(size=(3, 4)).astype(np.float32)
    k.launches.clear()
    out = k.gradcam_to_host(acts, grads, (100, 75), "hirescam", -0.4375, logits=logits)
    assert [n for n, _, _ in k.launches] == ["copy", "gradcam_fused", "to_host"]
    np.testing.assert_array_equal(out["raw"], raw)
    np.testing.assert_array_equal(out["heatmap"], heat)
    np.testing.assert_array_equal(out["attribution"], upsample_bilinear(raw, (100, 75), -0.4375))
    np.testing.assert_array_equal(out["embedding"], pool_activations(acts))
    np.testing.assert_array_equal(out["logits"], logits)
    assert {n: a.shape for n, a in out.items()} == {"raw": (3, 13, 9), "attribution": (3, 100, 75),
                                                     "heatmap": (3, 100, 75), "embedding": (3, 80), "logits": (3, 4)}
    # the next call of that shape reuses the device buffer; the answer handed out before stays as it was
    before = {n: a.copy() for n, a in out.items()}
    k._empty = None                   # any new allocation would fail
    k.gradcam_to_host(acts[::-1].copy(), grads[::-1].copy(), (100, 75), "hirescam", -0.4375, logits=logits[::-1].copy())
    assert all(np.array_equal(out[n], before[n]) for n in out)
    del k._empty
    assert set(k.gradcam_to_host(acts, grads, (100, 75), "hirescam")) == {"raw", "attribution", "heatmap", "embedding"}
    with pytest.raises(ValueError, match="float32"):
        k.gradcam_to_host(acts, grads, (100, 75), logits=logits.astype(np.float64))
    with pytest.raises(ValueError, match="shared memory"):
        k.gradcam(np.zeros((1, 12288, 16, 16), np.float32), np.zeros((1, 12288, 16, 16), np.float32), (128, 128))
    with pytest.raises(ValueError, match="unknown CAM method"):
        k.gradcam(acts, grads, (100, 75), "layercam")

    x = rng.normal(size=(2, 3, 8, 8)).astype(np.float32)
    base = np.zeros_like(x)
    alphas, weights = quadrature_rule("gausslegendre", 5)
    points = k.ig_interpolate(x, base, alphas)
    np.testing.assert_array_equal(points, interpolation_batch(x, base, alphas))
    g = rng.normal(size=points.shape).astype(np.float32)
    att, totals = k.ig_reduce(g, weights, x, base)
    want, want_totals = reduce_path(g, weights, x, base)
    np.testing.assert_allclose(att, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())      # stored as float32
    np.testing.assert_allclose(totals, want_totals, rtol=1e-5)
    assert [n for n, _, _ in k.launches[-3:]] == ["ig_interpolate", "ig_reduce", "ig_row_sum"]
    assert k.launches[-3][1] == ((5 * x.size + BLOCK - 1) // BLOCK, 1, 1)        # grid-stride, 8 blocks here
    assert k.launches[-2][1] == ((x.size + BLOCK - 1) // BLOCK, 1, 1)
    assert k.launches[-1][1:] == ((2, 1, 1), BLOCK * 4)                          # one block per sample
