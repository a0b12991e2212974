// Integrated Gradients on the device. NumPy twin: edge/explain/ig_math.py.
//
// ig_interpolate: builds the interpolation batch x' + alpha_m (x - x') point-major (row m*N + n),
//                 straight into the gradient graph's input binding.
// ig_reduce:      attributions = (x - x') * sum_m w_m g[m], from the graph's gradient binding.
// ig_row_sum:     per-sample sum of the attributions (the completeness check); one block per sample,
//                 a fixed reduction order, so the result is deterministic.
// Launch: 1-D grids over the element counts, block = 256; ig_row_sum: grid = N, block = 256,
// shared = 256 * sizeof(float).

extern "C" __global__ void ig_interpolate(const float* __restrict__ x, const float* __restrict__ baseline,
                                          const float* __restrict__ alphas, float* __restrict__ out,
                                          int M, long long ND) {
  const long long total = (long long)M * ND;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    const int m = (int)(i / ND);
    const long long j = i % ND;
    const float b = baseline[j];
    out[i] = b + alphas[m] * (x[j] - b);
  }
}

extern "C" __global__ void ig_reduce(const float* __restrict__ grads, const float* __restrict__ weights,
                                     const float* __restrict__ x, const float* __restrict__ baseline,
                                     float* __restrict__ attributions, int M, long long ND) {
  for (long long j = blockIdx.x * (long long)blockDim.x + threadIdx.x; j < ND;
       j += (long long)gridDim.x * blockDim.x) {
    double acc = 0.0;  // M terms of mixed sign: accumulate in double like the NumPy twin
    for (int m = 0; m < M; ++m) acc += (double)weights[m] * (double)grads[(long long)m * ND + j];
    attributions[j] = (float)((double)(x[j] - baseline[j]) * acc);
  }
}

extern "C" __global__ void ig_row_sum(const float* __restrict__ attributions, float* __restrict__ totals,
                                      long long D) {
  extern __shared__ float partial[];
  const float* row = attributions + (long long)blockIdx.x * D;
  float s = 0.f;
  for (long long j = threadIdx.x; j < D; j += blockDim.x) s += row[j];
  partial[threadIdx.x] = s;
  __syncthreads();
  for (int k = blockDim.x / 2; k > 0; k >>= 1) {
    if (threadIdx.x < k) partial[threadIdx.x] += partial[threadIdx.x + k];
    __syncthreads();
  }
  if (threadIdx.x == 0) totals[blockIdx.x] = partial[0];
}
