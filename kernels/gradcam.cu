// Grad-CAM family on the device: fused channel weights, weighted sum, ReLU, bilinear upsampling and
// per-image min-max normalisation. NumPy twin: edge/explain/cam.py (same steps, same order).
//
// One block per image: a Grad-CAM layer is small (K <= a few hundred channels, h*w <= 64*64), so a
// block holds the channel weights and the raw map in shared memory and no intermediate goes back to
// global memory. Launch: grid = N, block = 256 (a power of two, a multiple of the warp), shared =
// (K + h*w + 2*blockDim) * sizeof(float).
//
// method: 0 = Grad-CAM (alpha_k = mean g), 1 = Grad-CAM++, 2 = HiResCAM (elementwise g * A),
// 3 = element-wise Grad-CAM (ReLU of each g * A term before the channel sum). The order of cam.METHODS.
// shift: sampling shift in map cells (0 = half-pixel centres; see alignment_shift in cam.py).
// up, emb: optional (null: not written). up (N, H, W) gets the upsampled map before normalisation (an
// explanation's attribution); emb (N, 2K) each channel's spatial mean, then its spatial maximum (the review
// flag's embedding, CamDetails.embedding's twin), so the activations need not cross to the host for it.

// No <cfloat>: NVRTC (CuPy's RawModule, edge/explain/cuda_cupy.py) has no host headers.
#ifndef FLT_MAX
#define FLT_MAX 3.402823466e+38f
#endif

// The sum over a warp's 32 lanes, in every lane (butterfly).
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

extern "C" __global__ void gradcam_fused(const float* __restrict__ acts,   // (N, K, h, w)
                                         const float* __restrict__ grads,  // (N, K, h, w)
                                         float* __restrict__ raw,          // (N, h, w)
                                         float* __restrict__ heat,         // (N, H, W)
                                         float* __restrict__ up,           // (N, H, W) or null
                                         float* __restrict__ emb,          // (N, 2K) or null
                                         int K, int h, int w, int H, int W, int method, float shift) {
  extern __shared__ float smem[];
  float* weights = smem;             // K
  float* cam = weights + K;          // h * w
  float* red_min = cam + h * w;      // blockDim.x
  float* red_max = red_min + blockDim.x;

  const int n = blockIdx.x;
  const int hw = h * w;
  const float* a = acts + (size_t)n * K * hw;
  const float* g = grads + (size_t)n * K * hw;

  // 0. the embedding: one warp per channel, as the weights below
  if (emb != nullptr) {
    const int lane = threadIdx.x & 31, nwarps = blockDim.x >> 5;
    for (int k = threadIdx.x >> 5; k < K; k += nwarps) {
      const float* ak = a + (size_t)k * hw;
      float sum = 0.f, mx = -FLT_MAX;
      for (int p = lane; p < hw; p += 32) {
        const float v = ak[p];
        sum += v;
        mx = fmaxf(mx, v);
      }
      sum = warp_sum(sum);
      for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
      if (lane == 0) {
        emb[(size_t)n * 2 * K + k] = sum / (float)hw;
        emb[(size_t)n * 2 * K + K + k] = mx;
      }
    }
  }

  // 1. channel weights (not needed for HiResCAM and element-wise Grad-CAM): one warp per channel, its lanes
  // reading consecutive pixels (coalesced), then a shuffle reduction. One thread per channel walking its plane serially
  // made every load of a warp touch 32 cache lines; the kernel then took longer at batch 1 than copying
  // its inputs to the host (H200: 0.072 vs 0.063 ms; 0.053 ms since, benchmarks/measured/device-*.json).
  if (method < 2) {
    const int lane = threadIdx.x & 31, nwarps = blockDim.x >> 5;
    for (int k = threadIdx.x >> 5; k < K; k += nwarps) {
      const float* gk = g + (size_t)k * hw;
      float acc = 0.f;
      if (method == 0) {
        for (int p = lane; p < hw; p += 32) acc += gk[p];
        acc = warp_sum(acc) / (float)hw;
      } else {
        const float* ak = a + (size_t)k * hw;
        float part = 0.f;
        for (int p = lane; p < hw; p += 32) part += ak[p];
        const float sum_a = warp_sum(part);
        for (int p = lane; p < hw; p += 32) {
          const float gv = gk[p];
          if (gv == 0.f) continue;
          const float g2 = gv * gv;
          float denom = 2.f * g2 + sum_a * g2 * gv;
          if (denom == 0.f) denom = 1e-7f;
          acc += fmaxf(gv, 0.f) * (g2 / denom);
        }
        acc = warp_sum(acc);
      }
      if (lane == 0) weights[k] = acc;
    }
  }
  __syncthreads();

  // 2. weighted channel sum + ReLU at the layer's resolution
  for (int p = threadIdx.x; p < hw; p += blockDim.x) {
    float s = 0.f;
    for (int k = 0; k < K; ++k) {
      const float wk = (method >= 2) ? g[(size_t)k * hw + p] : weights[k];
      const float term = wk * a[(size_t)k * hw + p];
      s += (method == 3) ? fmaxf(term, 0.f) : term;
    }
    s = fmaxf(s, 0.f);
    cam[p] = s;
    raw[(size_t)n * hw + p] = s;
  }
  __syncthreads();

  // 3. bilinear upsampling with half-pixel centres (OpenCV INTER_LINEAR / align_corners=False)
  const float sy = (float)h / (float)H, sx = (float)w / (float)W;
  float lo = FLT_MAX, hi = -FLT_MAX;
  float* out = heat + (size_t)n * H * W;
  float* out_up = up != nullptr ? up + (size_t)n * H * W : nullptr;
  for (int q = threadIdx.x; q < H * W; q += blockDim.x) {
    const int oy = q / W, ox = q % W;
    float fy = ((float)oy + 0.5f) * sy - 0.5f - shift;
    float fx = ((float)ox + 0.5f) * sx - 0.5f - shift;
    fy = fmaxf(fy, 0.f);
    fx = fmaxf(fx, 0.f);
    int y0 = (int)fy, x0 = (int)fx;
    y0 = min(y0, h - 1);
    x0 = min(x0, w - 1);
    const int y1 = min(y0 + 1, h - 1), x1 = min(x0 + 1, w - 1);
    const float ty = fy - (float)y0, tx = fx - (float)x0;
    const float v = (1.f - ty) * ((1.f - tx) * cam[y0 * w + x0] + tx * cam[y0 * w + x1]) +
                    ty * ((1.f - tx) * cam[y1 * w + x0] + tx * cam[y1 * w + x1]);
    out[q] = v;
    if (out_up != nullptr) out_up[q] = v;
    lo = fminf(lo, v);
    hi = fmaxf(hi, v);
  }

  // 4. per-image min-max normalisation (block reduction; blockDim.x must be a power of two)
  red_min[threadIdx.x] = lo;
  red_max[threadIdx.x] = hi;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      red_min[threadIdx.x] = fminf(red_min[threadIdx.x], red_min[threadIdx.x + s]);
      red_max[threadIdx.x] = fmaxf(red_max[threadIdx.x], red_max[threadIdx.x + s]);
    }
    __syncthreads();
  }
  const float mn = red_min[0], span = red_max[0] - red_min[0];
  for (int q = threadIdx.x; q < H * W; q += blockDim.x) {
    out[q] = span > 0.f ? (out[q] - mn) / span : 0.f;  // a constant map: nothing stands out
  }
}
