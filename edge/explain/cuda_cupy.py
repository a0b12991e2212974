"""The same CUDA kernels (`kernels/gradcam.cu`, `kernels/ig.cu`) launched through CuPy instead of pycuda.

    k = CupyKernels()                                    # NVRTC compiles both sources once
    raw, heat = k.gradcam(acts, grads, (128, 128), "hirescam", shift)   # cupy arrays in and out

Why a second launcher: CuPy ships as wheels (Jetson included) and compiles with NVRTC, no nvcc at run
time, while pycuda is source-only and must be built on the target. The methods, arguments, launch
geometry and results are those of `edge.explain.cuda.CudaKernels` (pycuda: the launcher the TensorRT
engine's device buffers use); the NumPy twins in `edge.explain.cam` and `edge.explain.ig_math` are the
oracle for both.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.errors import InvalidInput, Unavailable
from edge.explain.cam import METHODS
from edge.resources import bundled

KERNELS = bundled("kernels")
BLOCK = 256


class CupyKernels:
    def __init__(self, stream=None, kernel_dir: Path = KERNELS):
        try:
            import cupy as cp
        except ImportError as e:
            raise Unavailable(f"the CUDA kernels through CuPy need cupy ({e})") from e
        self.cp, self.stream = cp, stream
        gradcam = cp.RawModule(code=(kernel_dir / "gradcam.cu").read_text(), options=("--std=c++17",))
        ig = cp.RawModule(code=(kernel_dir / "ig.cu").read_text(), options=("--std=c++17",))
        self.f_gradcam = gradcam.get_function("gradcam_fused")
        self.f_interp = ig.get_function("ig_interpolate")
        self.f_reduce = ig.get_function("ig_reduce")
        self.f_rowsum = ig.get_function("ig_row_sum")
        self.sm_count = cp.cuda.Device().attributes["MultiProcessorCount"]

    def check(self) -> None:
        (self.stream or self.cp.cuda.get_current_stream()).synchronize()

    def _grid(self, n: int) -> tuple[int, int, int]:
        return (int(min(max((n + BLOCK - 1) // BLOCK, 1), 32 * self.sm_count)), 1, 1)

    def _launch(self, f, grid, args, shared: int = 0) -> None:
        if self.stream is not None:
            with self.stream:
                f(grid, (BLOCK, 1, 1), args, shared_mem=shared)
        else:
            f(grid, (BLOCK, 1, 1), args, shared_mem=shared)

    def gradcam(self, acts, grads, size: tuple[int, int], method: str = "gradcam", shift: float = 0.0):
        """(N, K, h, w) float32 cupy arrays -> raw (N, h, w), heat (N, H, W); as CudaKernels.gradcam."""
        cp = self.cp
        if method not in METHODS:
            raise InvalidInput(f"unknown CAM method {method!r}; expected one of {', '.join(METHODS)}")
        if acts.shape != grads.shape or acts.ndim != 4:
            raise ValueError(f"activations {acts.shape} and gradients {grads.shape} must be equal (N, K, h, w)")
        n, k, h, w = (int(v) for v in acts.shape)
        H, W = size
        raw = cp.empty((n, h, w), cp.float32)
        heat = cp.empty((n, H, W), cp.float32)
        shared = (k + h * w + 2 * BLOCK) * 4
        if shared > 48 * 1024:
            raise InvalidInput(f"Grad-CAM layer of {k} channels at {h}x{w} needs {shared} B of shared memory (> 48 KiB)")
        self._launch(self.f_gradcam, (n, 1, 1),
                     (cp.ascontiguousarray(acts, cp.float32), cp.ascontiguousarray(grads, cp.float32), raw, heat,
                      np.int32(k), np.int32(h), np.int32(w), np.int32(H), np.int32(W),
                      np.int32(METHODS.index(method)), np.float32(shift)), shared)
        return raw, heat

    def ig_interpolate(self, x, baseline, alphas: np.ndarray):
        """x, baseline (N, C, H, W) cupy arrays; alphas (M,) -> (M*N, C, H, W), point-major."""
        cp = self.cp
        a = cp.asarray(np.asarray(alphas, np.float32))
        m, nd = len(alphas), int(np.prod(x.shape))
        out = cp.empty((m * x.shape[0], *x.shape[1:]), cp.float32)
        self._launch(self.f_interp, self._grid(m * nd), (x, baseline, a, out, np.int32(m), np.int64(nd)))
        return out

    def ig_reduce(self, grads, weights: np.ndarray, x, baseline):
        """Point-major gradients (M*N, C, H, W) -> attributions (N, C, H, W) and per-sample sums (N,)."""
        cp = self.cp
        wts = cp.asarray(np.asarray(weights, np.float32))
        m, nd, n = len(weights), int(np.prod(x.shape)), int(x.shape[0])
        attributions = cp.empty(x.shape, cp.float32)
        totals = cp.empty((n,), cp.float32)
        self._launch(self.f_reduce, self._grid(nd), (grads, wts, x, baseline, attributions, np.int32(m), np.int64(nd)))
        self._launch(self.f_rowsum, (n, 1, 1), (attributions, totals, np.int64(nd // n)), BLOCK * 4)
        return attributions, totals

