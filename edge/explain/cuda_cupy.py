"""The same CUDA kernels (`kernels/gradcam.cu`, `kernels/ig.cu`) launched through CuPy instead of pycuda.

    k = CupyKernels()                                    # NVRTC compiles both sources once
    raw, heat = k.gradcam(acts, grads, (128, 128), "hirescam", shift)   # cupy arrays in and out

Why a second launcher: CuPy ships as wheels (Jetson included) and compiles with NVRTC, no nvcc at run
time, while pycuda is source-only and must be built on the target. Checks, allocation, launch geometry
and argument lists are `edge.explain.cuda.KernelLauncher`'s, shared with the pycuda launcher (the one the
TensorRT engine's device buffers use); the NumPy twins in `edge.explain.cam` and `edge.explain.ig_math` are the
oracle for both.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.errors import Unavailable
from edge.explain.cuda import BLOCK, KERNELS, KernelLauncher


class CupyKernels(KernelLauncher):
    """Through CuPy: cupy arrays in and out."""

    def __init__(self, stream=None, kernel_dir: Path = KERNELS):
        try:
            import cupy as cp
        except ImportError as e:
            raise Unavailable(f"the CUDA kernels through CuPy need cupy ({e})") from e
        super().__init__()
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

    def _empty(self, shape):
        return self.cp.empty(shape, self.cp.float32)

    def _upload(self, a: np.ndarray):
        return self.cp.asarray(a)

    def _arg(self, a):
        return self.cp.ascontiguousarray(a, self.cp.float32)   # a no-op for the arrays the kernels expect

    def _launch(self, f, grid, args, shared: int = 0) -> None:
        if self.stream is not None:
            with self.stream:
                f(grid, (BLOCK, 1, 1), args, shared_mem=shared)
        else:
            f(grid, (BLOCK, 1, 1), args, shared_mem=shared)

    def _copy(self, dst, src) -> None:
        if self.stream is not None:
            with self.stream:
                dst[...] = src
        else:
            dst[...] = src

    def _to_host(self, a) -> np.ndarray:
        self.check()
        return self.cp.asnumpy(a)
