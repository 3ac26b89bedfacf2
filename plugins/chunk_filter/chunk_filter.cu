// gsvnet::ChunkFilter: the guided spatially-varying convolution (plugins/SPEC.md), fused.
//
// Each 32x8 thread block owns a 32x8 tile of output pixels of one image. A thread reads the
// K+2 weights of its pixel once (K shifts, intra, null): the K+1 candidate weights stay in
// registers for every class, all K+2 go into their float32 sum + 1e-9 (the normaliser; the
// null weight counts only there). For each class the block stages the warped tile plus a radius-r halo
// in shared memory (double buffered: class c+1 is loaded while class c is filtered, one
// barrier per class), so each warped value is read from global memory once per block and the
// K-fold shifted tensor [N,K,C,h,w] never exists.
//
// The radius is a template parameter (unrolled loops, weights in registers); entry points
// exist for r = 1, 2, 3. Kernel arguments follow the TensorRT AOT plugin order: inputs,
// int32 sizes, outputs. Grid (cdiv(w,32), cdiv(h,8), N), block (32,8), static shared memory.
#include "../common/gsvnet_ops.h"

#ifndef GSVNET_KERNELS_ONLY  // defined by NVRTC builds (plugins/nvrtc.py) and the CPU emulation harness
#include <cuda_runtime.h>
#endif

namespace {

constexpr int kTileW = 32;
constexpr int kTileH = 8;
constexpr int kThreads = kTileW * kTileH;

//! Minimum resident blocks per SM in radius 2's __launch_bounds__ (at most 85 registers; the
//! other radii use ptxas' default, 0): by default ptxas 13.0 caps r = 2 at 48 registers on sm_90
//! and spills.
constexpr int kMinBlocksR2 = 3;

template <typename T, int R>
__device__ __forceinline__ void chunk_filter_body(const T* __restrict__ warped, const T* __restrict__ intra, const T* __restrict__ weights,
                                                  int32_t classes, int32_t h, int32_t w, T* __restrict__ out) {
  constexpr int kCount = gsvnet::num_shifts(R) + 1;  // K+1 candidate weights per pixel in registers
  constexpr int kChannels = kCount + 1;              // K+2 weight channels (the last one: null)
  constexpr int kSpanW = kTileW + 2 * R;
  constexpr int kSpanH = kTileH + 2 * R;
  constexpr int kSpan = kSpanW * kSpanH;
  __shared__ float tile[2][kSpan];

  const int tx = threadIdx.x;
  const int ty = threadIdx.y;
  const int tid = ty * kTileW + tx;
  const int32_t x0 = blockIdx.x * kTileW;
  const int32_t y0 = blockIdx.y * kTileH;
  const int32_t x = x0 + tx;
  const int32_t y = y0 + ty;
  const bool active = x < w && y < h;
  const int64_t plane = (int64_t)h * w;
  const int64_t b = blockIdx.z;
  const int64_t p = active ? (int64_t)y * w + x : 0;

  float wts[kCount];
  float denom = 1.0f;
  if (active) {
    denom = gsvnet::load_pixel_weights(weights + b * kChannels * plane + p, plane, kCount, wts);
  } else {
#pragma unroll
    for (int k = 0; k < kCount; ++k) wts[k] = 0.0f;
  }

  const T* warped_b = warped + b * classes * plane;
  auto stage = [&](int32_t c, float* dst) {
    const T* src = warped_b + c * plane;
    for (int i = tid; i < kSpan; i += kThreads) {
      const int sy = i / kSpanW;
      const int sx = i - sy * kSpanW;
      const int32_t gy = y0 - R + sy;
      const int32_t gx = x0 - R + sx;
      dst[i] = gsvnet::inside(gy, gx, h, w) ? gsvnet::load(src + (int64_t)gy * w + gx) : 0.0f;
    }
  };

  stage(0, tile[0]);
  for (int32_t c = 0; c < classes; ++c) {
    __syncthreads();  // tile[c&1] is staged and everyone is done reading tile[(c+1)&1]
    if (c + 1 < classes) stage(c + 1, tile[(c + 1) & 1]);
    if (active) {
      const float* t = tile[c & 1];
      auto cand = [&](int32_t dy, int32_t dx) -> float { return t[(ty + R + dy) * kSpanW + (tx + R + dx)]; };
      const int64_t at = (b * classes + c) * plane + p;
      gsvnet::store(out + at, gsvnet::filter_pixel(R, wts, gsvnet::load(intra + at), denom, cand));
    }
  }
}

}  // namespace

#define GSVNET_CHUNK_FILTER_ENTRY(R, SUFFIX, T)                                                                                      \
  __global__ void __launch_bounds__(kThreads, (R) == 2 ? kMinBlocksR2 : 0) gsvnet_chunk_filter_r##R##_##SUFFIX(const T* warped, const T* intra, const T* weights, \
                                                                                  int32_t n, int32_t c, int32_t h, int32_t w, T* out) { \
    (void)n;                                                                                                                         \
    chunk_filter_body<T, R>(warped, intra, weights, c, h, w, out);                                                                  \
  }

extern "C" {

GSVNET_CHUNK_FILTER_ENTRY(1, f32, float)
GSVNET_CHUNK_FILTER_ENTRY(2, f32, float)
GSVNET_CHUNK_FILTER_ENTRY(3, f32, float)
GSVNET_CHUNK_FILTER_ENTRY(1, f16, gsvnet::half_t)
GSVNET_CHUNK_FILTER_ENTRY(2, f16, gsvnet::half_t)
GSVNET_CHUNK_FILTER_ENTRY(3, f16, gsvnet::half_t)

#ifndef GSVNET_KERNELS_ONLY
//! Host launcher for C++ callers: weights [N,K+2,h,w]; radius 1..3; dtype gsvnet::kFloat32 or
//! gsvnet::kFloat16 (IEEE binary16 storage, e.g. __half or at::Half).
cudaError_t gsvnet_launch_chunk_filter(const void* warped, const void* intra, const void* weights, void* out, int32_t n, int32_t c, int32_t h,
                                       int32_t w, int32_t radius, int32_t dtype, cudaStream_t stream) {
  if (n < 1 || c < 1 || h < 2 || w < 2 || n > 65535 || radius < 1 || radius > 3) return cudaErrorInvalidValue;
  const dim3 grid((unsigned)((w + kTileW - 1) / kTileW), (unsigned)((h + kTileH - 1) / kTileH), (unsigned)n);
  const dim3 block(kTileW, kTileH);
  if (dtype == gsvnet::kFloat32) {
    const float* a = static_cast<const float*>(warped);
    const float* i = static_cast<const float*>(intra);
    const float* g = static_cast<const float*>(weights);
    float* o = static_cast<float*>(out);
    if (radius == 1) gsvnet_chunk_filter_r1_f32<<<grid, block, 0, stream>>>(a, i, g, n, c, h, w, o);
    if (radius == 2) gsvnet_chunk_filter_r2_f32<<<grid, block, 0, stream>>>(a, i, g, n, c, h, w, o);
    if (radius == 3) gsvnet_chunk_filter_r3_f32<<<grid, block, 0, stream>>>(a, i, g, n, c, h, w, o);
  } else if (dtype == gsvnet::kFloat16) {
    const gsvnet::half_t* a = static_cast<const gsvnet::half_t*>(warped);
    const gsvnet::half_t* i = static_cast<const gsvnet::half_t*>(intra);
    const gsvnet::half_t* g = static_cast<const gsvnet::half_t*>(weights);
    gsvnet::half_t* o = static_cast<gsvnet::half_t*>(out);
    if (radius == 1) gsvnet_chunk_filter_r1_f16<<<grid, block, 0, stream>>>(a, i, g, n, c, h, w, o);
    if (radius == 2) gsvnet_chunk_filter_r2_f16<<<grid, block, 0, stream>>>(a, i, g, n, c, h, w, o);
    if (radius == 3) gsvnet_chunk_filter_r3_f16<<<grid, block, 0, stream>>>(a, i, g, n, c, h, w, o);
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

#endif  // GSVNET_KERNELS_ONLY

}  // extern "C"
