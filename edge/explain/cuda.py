"""Launchers for `kernels/gradcam.cu` and `kernels/ig.cu` through pycuda, on device pointers.

    k = CudaKernels()                                   # compiles both .cu files once (nvcc via pycuda)
    raw, heat = k.gradcam(acts_gpu, grads_gpu, (128, 128), "gradcam")      # GPUArrays in and out
    points = k.ig_interpolate(x_gpu, base_gpu, alphas)                    # (M*N, C, H, W) on the device
    attributions, totals = k.ig_reduce(grads_gpu, weights, x_gpu, base_gpu)

Inputs are pycuda GPUArrays, such as `TensorRTEngine.run_device` returns, so activations, gradients
and interpolation batches never leave the device; every launch goes on the given stream (the engine's,
by default none = the legacy stream) and every CUDA error raises (pycuda checks each driver call and
we synchronise-check after launches in `check`). The NumPy twins with the same semantics are
`edge.explain.cam` (gradcam) and `edge.explain.ig_math` (IG): the CPU path and the test oracle.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from edge.errors import InvalidInput, Unavailable
from edge.explain.cam import METHODS
from edge.resources import bundled

KERNELS = bundled("kernels")
BLOCK = 256
log = logging.getLogger("edge.explain")


def device_kernels(engine):
    """The CUDA kernels for an engine whose outputs can stay on the device (it has `run_device`, returning
    pycuda GPUArrays, and maybe a `stream`: TensorRT, ONNX Runtime with a GPU provider), else None: the host
    path. A GPU engine without a kernel launcher installed falls back to the host path, with a warning."""
    if not callable(getattr(engine, "run_device", None)):
        return None
    try:
        return CudaKernels(stream=getattr(engine, "stream", None))
    except Unavailable as e:
        log.warning("explanations on the host: %s", e)
        return None


class KernelLauncher:
    """What every launcher of these kernels shares: argument checks, output allocation, launch geometry and
    the kernels' argument lists, written once so that they cannot drift apart between launchers. A
    launcher supplies the backend: `_empty(shape)` (a float32 device array), `_upload(host array)`,
    `_arg(device array)` (what its kernel call takes for a pointer), `_launch(f, grid, args, shared)`,
    `_copy(device dst, device src)` (on the launcher's stream), `_to_host(device array)` (after the
    stream's work), `check()`, the compiled functions `f_gradcam`, `f_interp`, `f_reduce`, `f_rowsum` and
    `sm_count`; and calls `KernelLauncher.__init__`."""

    sm_count: int
    PACKED_SHAPES = 8         # gradcam_to_host's buffers kept (one per batch size and frame size in use)

    def __init__(self):
        self._packed: dict = {}
        self._packed_lock = threading.Lock()

    def _grid(self, n: int) -> tuple[int, int, int]:
        return (int(min(max((n + BLOCK - 1) // BLOCK, 1), 32 * self.sm_count)), 1, 1)

    def _launch_gradcam(self, acts, grads, size: tuple[int, int], method: str, shift: float, raw, heat,
                        up=None, emb=None) -> None:
        if method not in METHODS:
            raise InvalidInput(f"unknown CAM method {method!r}; expected one of {', '.join(METHODS)}")
        if tuple(acts.shape) != tuple(grads.shape) or len(acts.shape) != 4:
            raise ValueError(f"activations {acts.shape} and gradients {grads.shape} must be equal (N, K, h, w)")
        n, k, h, w = (int(v) for v in acts.shape)
        H, W = size
        shared = (k + h * w + 2 * BLOCK) * 4
        if shared > 48 * 1024:
            raise InvalidInput(f"Grad-CAM layer of {k} channels at {h}x{w} needs {shared} B of shared memory (> 48 KiB)")
        null = np.uintp(0)
        self._launch(self.f_gradcam, (n, 1, 1),
                     (self._arg(acts), self._arg(grads), self._arg(raw), self._arg(heat),
                      null if up is None else self._arg(up), null if emb is None else self._arg(emb),
                      np.int32(k), np.int32(h), np.int32(w), np.int32(H), np.int32(W),
                      np.int32(METHODS.index(method)), np.float32(shift)),
                     shared)

    def gradcam(self, acts, grads, size: tuple[int, int], method: str = "gradcam", shift: float = 0.0):
        """(N, K, h, w) float32 device arrays -> raw (N, h, w), heat (N, H, W) device arrays; `shift` as in
        cam.upsample_bilinear."""
        n, _, h, w = (int(v) for v in acts.shape)
        raw, heat = self._empty((n, h, w)), self._empty((n, *size))
        self._launch_gradcam(acts, grads, size, method, shift, raw, heat)
        return raw, heat

    def gradcam_to_host(self, acts, grads, size: tuple[int, int], method: str = "gradcam", shift: float = 0.0,
                        logits=None) -> dict[str, np.ndarray]:
        """What an answer needs from the device, in one launch and one copy to the host: {"raw" (N, h, w),
        "attribution" (N, H, W: the upsampled map before normalisation), "heatmap" (N, H, W), "embedding"
        (N, 2K: CamDetails.embedding), and "logits" (N, classes) when given}, host arrays.

        Why one buffer: at batch 1 on a GPU, each copy to the host and each synchronisation costs about as
        much as the kernel itself (H200: 0.02-0.06 ms each against 0.05 ms), and the activations (the
        largest output) need not come back at all once the kernel has pooled them. The inputs are read
        where they are, so an engine can hand over its own output buffers (`run_device(consume=...)`)."""
        n, k, h, w = (int(v) for v in acts.shape)
        key = (n, k, h, w, *size, None if logits is None else tuple(int(v) for v in logits.shape))
        if logits is not None and np.dtype(logits.dtype) != np.float32:
            raise ValueError(f"logits are {np.dtype(logits.dtype)}; the packed copy takes float32")
        with self._packed_lock:          # one answer at a time per buffer: it is reused, call after call
            if key not in self._packed:
                self._packed[key] = self._packed_buffer(n, k, h, w, size, key[-1])
                if len(self._packed) > self.PACKED_SHAPES:
                    self._packed.pop(next(iter(self._packed)))
            buf, view, slices = self._packed[key]
            if logits is not None:
                self._copy(view["logits"], logits)
            self._launch_gradcam(acts, grads, size, method, shift, view["raw"], view["heatmap"],
                                 view["attribution"], view["embedding"])
            host = self._to_host(buf)
        return {name: host[a:b].reshape(shape) for name, (a, b, shape) in slices.items()}

    def _packed_buffer(self, n: int, k: int, h: int, w: int, size: tuple[int, int], logits_shape) -> tuple:
        """gradcam_to_host's device buffer for one shape, its device views and the host slices. Made once per
        shape and reused: making device array objects costs more host time than the kernel takes (the first
        H200 run of this path, which allocated and sliced its pycuda GPUArrays per call, spent 0.51 ms in the
        map stage against 0.06-0.08 ms for the kernel alone)."""
        parts = {"raw": (n, h, w), "attribution": (n, *size), "heatmap": (n, *size), "embedding": (n, 2 * k)}
        if logits_shape is not None:
            parts["logits"] = logits_shape
        slices, total = {}, 0
        for name, shape in parts.items():
            slices[name] = (total, total + int(np.prod(shape)), shape)
            total += int(np.prod(shape))
        buf = self._empty((total,))
        return buf, {name: self._view(buf, a, shape) for name, (a, _, shape) in slices.items()}, slices

    @staticmethod
    def _view(buf, offset: int, shape):
        """A view of shape `shape` into a flat device array from element `offset` (pycuda and CuPy alike)."""
        return buf[offset:offset + int(np.prod(shape))].reshape(shape)

    def upload(self, a: np.ndarray):
        """A host array on the device, float32 and contiguous, as this launcher's array type."""
        return self._upload(np.ascontiguousarray(a, np.float32))

    def ig_interpolate(self, x, baseline, alphas: np.ndarray):
        """x, baseline (N, C, H, W) device arrays; alphas (M,) -> (M*N, C, H, W) point-major device array."""
        a = self._upload(np.asarray(alphas, np.float32))
        m, nd = len(alphas), int(np.prod(x.shape))
        out = self._empty((m * int(x.shape[0]), *(int(v) for v in x.shape[1:])))
        self._launch(self.f_interp, self._grid(m * nd),
                     (self._arg(x), self._arg(baseline), self._arg(a), self._arg(out), np.int32(m), np.int64(nd)))
        self._keep = a            # alive until the asynchronous launch has read it
        return out

    def ig_reduce(self, grads, weights: np.ndarray, x, baseline):
        """Point-major gradients (M*N, C, H, W) -> attributions (N, C, H, W) and per-sample sums (N,)."""
        wts = self._upload(np.asarray(weights, np.float32))
        m, nd, n = len(weights), int(np.prod(x.shape)), int(x.shape[0])
        attributions = self._empty(tuple(int(v) for v in x.shape))
        totals = self._empty((n,))
        self._launch(self.f_reduce, self._grid(nd), (self._arg(grads), self._arg(wts), self._arg(x),
                                                     self._arg(baseline), self._arg(attributions), np.int32(m),
                                                     np.int64(nd)))
        self._launch(self.f_rowsum, (n, 1, 1), (self._arg(attributions), self._arg(totals), np.int64(nd // n)),
                     BLOCK * 4)
        self._keep = wts
        return attributions, totals


class CudaKernels(KernelLauncher):
    """Through pycuda: GPUArrays in and out (what the TensorRT engine's `run_device` returns)."""

    def __init__(self, stream=None, kernel_dir: Path = KERNELS):
        try:
            import pycuda.autoprimaryctx  # noqa: F401  (share the primary context with TensorRT / ORT)
            import pycuda.driver as cuda
            from pycuda import gpuarray
            from pycuda.compiler import SourceModule
            from pycuda.tools import DeviceMemoryPool
        except ImportError as e:
            raise Unavailable(f"the CUDA kernels need pycuda ({e}); pip install -e '.[gpu]' on a CUDA machine") from e
        super().__init__()
        self.cuda, self.gpuarray, self.stream = cuda, gpuarray, stream
        # outputs reuse freed device memory instead of a cuMemAlloc and cuMemFree per array and call
        self._allocate = DeviceMemoryPool().allocate
        opts = ["-O3"]   # no --use_fast_math: the NumPy twins are the oracle, to 1e-5
        self._gradcam = SourceModule((kernel_dir / "gradcam.cu").read_text(), no_extern_c=True, options=opts)
        self._ig = SourceModule((kernel_dir / "ig.cu").read_text(), no_extern_c=True, options=opts)
        self.f_gradcam = self._gradcam.get_function("gradcam_fused")
        self.f_interp = self._ig.get_function("ig_interpolate")
        self.f_reduce = self._ig.get_function("ig_reduce")
        self.f_rowsum = self._ig.get_function("ig_row_sum")
        self.sm_count = cuda.Context.get_device().get_attribute(cuda.device_attribute.MULTIPROCESSOR_COUNT)

    def check(self) -> None:
        """Surface asynchronous launch errors here rather than at some later, unrelated call."""
        (self.stream.synchronize() if self.stream is not None else self.cuda.Context.synchronize())

    def _empty(self, shape):
        return self.gpuarray.empty(shape, np.float32, allocator=self._allocate)

    def _upload(self, a: np.ndarray):
        return self.gpuarray.to_gpu(a, allocator=self._allocate)

    def _arg(self, a):
        # a pointer as a number: GPUArrays over another library's buffer (ONNX Runtime's outputs) hold an int
        return np.uintp(int(a.gpudata))

    def _launch(self, f, grid, args, shared: int = 0) -> None:
        # prepared once per kernel: pycuda's plain call rebuilds the argument format from the arguments'
        # types on every launch (40 us per Grad-CAM in the H200 run's host profile, profiler included); the
        # format is the one it builds (each argument is a NumPy scalar: its dtype's struct code)
        if getattr(f, "arg_format", None) is None:
            f.prepare("".join(a.dtype.char for a in args))
        f.prepared_async_call(grid, (BLOCK, 1, 1), self.stream, *args, shared_size=shared)

    def _copy(self, dst, src) -> None:
        self.cuda.memcpy_dtod_async(int(dst.gpudata), int(src.gpudata), int(src.nbytes), self.stream)

    def _to_host(self, a) -> np.ndarray:
        if self.stream is not None:
            self.stream.synchronize()
        return a.get()         # the legacy stream: after every launch on it
