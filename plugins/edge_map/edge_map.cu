// Edge map of the guide stage (plugins/SPEC.md): E = [Laplacian(argmax_c scores) != 0],
// [N,C,h,w] -> [N,1,h,w] float32 in {0, 1}, the class index map ZERO-padded (as the official
// GSVNet's conv2d(padding=1)): the frame border is an edge wherever its label is not class 0.
//
// gsvnet_edge_map_{f32,f16}: from the scores. A 32x8 block computes the argmax labels (first
// maximum on ties) of its tile plus a one-pixel halo into shared memory, each label read once
// from C planes; halo cells outside the frame hold 0. Then the 3x3 Laplacian from shared memory.
// gsvnet_edge_map_from_labels: from the int32 labels written by the warp kernel's epilogue
// (gsvnet_warp_by_flow_labels_*), which reads one int per pixel instead of C scores.
//
// Kernel arguments follow the TensorRT AOT plugin order: inputs, int32 sizes, outputs.
// Grid (cdiv(w,32), cdiv(h,8), N), block (32,8).
#include "../common/gsvnet_ops.h"

#ifndef GSVNET_KERNELS_ONLY  // defined by NVRTC builds (plugins/nvrtc.py) and the CPU emulation harness
#include <cuda_runtime.h>
#endif

namespace {

constexpr int kTileW = 32;
constexpr int kTileH = 8;
constexpr int kThreads = kTileW * kTileH;
constexpr int kSpanW = kTileW + 2;
constexpr int kSpanH = kTileH + 2;

template <typename T>
__device__ __forceinline__ void edge_map_body(const T* __restrict__ scores, int32_t classes, int32_t h, int32_t w, float* __restrict__ edge) {
  __shared__ int32_t labels[kSpanH * kSpanW];
  const int tx = threadIdx.x;
  const int ty = threadIdx.y;
  const int32_t x0 = blockIdx.x * kTileW;
  const int32_t y0 = blockIdx.y * kTileH;
  const int64_t plane = (int64_t)h * w;
  const int64_t b = blockIdx.z;
  const T* scores_b = scores + b * classes * plane;
  for (int i = ty * kTileW + tx; i < kSpanH * kSpanW; i += kThreads) {
    const int sy = i / kSpanW;
    const int sx = i - sy * kSpanW;
    const int32_t gy = y0 - 1 + sy;
    const int32_t gx = x0 - 1 + sx;
    labels[i] = gsvnet::inside(gy, gx, h, w) ? gsvnet::argmax_classes(scores_b + (int64_t)gy * w + gx, plane, classes) : 0;
  }
  __syncthreads();
  const int32_t x = x0 + tx;
  const int32_t y = y0 + ty;
  if (x >= w || y >= h) return;
  // The halo holds 0 outside the frame, so the tile lookup is the zero-padded label map.
  auto label = [&](int32_t dy, int32_t dx) -> int32_t { return labels[(ty + 1 + dy) * kSpanW + (tx + 1 + dx)]; };
  edge[b * plane + (int64_t)y * w + x] = gsvnet::edge_pixel(label);
}

}  // namespace

extern "C" {

__global__ void __launch_bounds__(kThreads) gsvnet_edge_map_f32(const float* scores, int32_t n, int32_t c, int32_t h, int32_t w, float* edge) {
  (void)n;
  edge_map_body<float>(scores, c, h, w, edge);
}

__global__ void __launch_bounds__(kThreads)
    gsvnet_edge_map_f16(const gsvnet::half_t* scores, int32_t n, int32_t c, int32_t h, int32_t w, float* edge) {
  (void)n;
  edge_map_body<gsvnet::half_t>(scores, c, h, w, edge);
}

__global__ void __launch_bounds__(kThreads) gsvnet_edge_map_from_labels(const int32_t* labels, int32_t n, int32_t h, int32_t w, float* edge) {
  (void)n;
  const int32_t x = blockIdx.x * kTileW + threadIdx.x;
  const int32_t y = blockIdx.y * kTileH + threadIdx.y;
  if (x >= w || y >= h) return;
  const int64_t plane = (int64_t)h * w;
  const int32_t* lab = labels + blockIdx.z * plane;
  auto label = [&](int32_t dy, int32_t dx) -> int32_t {
    return gsvnet::inside(y + dy, x + dx, h, w) ? __ldg(lab + (int64_t)(y + dy) * w + (x + dx)) : 0;  // zero padding
  };
  edge[blockIdx.z * plane + (int64_t)y * w + x] = gsvnet::edge_pixel(label);
}

#ifndef GSVNET_KERNELS_ONLY
//! Host launcher for C++ callers: from scores (dtype gsvnet::kFloat32/kFloat16) when
//! `labels` is null, else from the int32 labels (then `scores`, `c` and `dtype` are unused).
cudaError_t gsvnet_launch_edge_map(const void* scores, const int32_t* labels, float* edge, int32_t n, int32_t c, int32_t h, int32_t w, int32_t dtype,
                                   cudaStream_t stream) {
  if (n < 1 || c < 1 || h < 2 || w < 2 || n > 65535) return cudaErrorInvalidValue;
  const dim3 grid((unsigned)((w + kTileW - 1) / kTileW), (unsigned)((h + kTileH - 1) / kTileH), (unsigned)n);
  const dim3 block(kTileW, kTileH);
  if (labels) {
    gsvnet_edge_map_from_labels<<<grid, block, 0, stream>>>(labels, n, h, w, edge);
  } else if (dtype == gsvnet::kFloat32) {
    gsvnet_edge_map_f32<<<grid, block, 0, stream>>>(static_cast<const float*>(scores), n, c, h, w, edge);
  } else if (dtype == gsvnet::kFloat16) {
    gsvnet_edge_map_f16<<<grid, block, 0, stream>>>(static_cast<const gsvnet::half_t*>(scores), n, c, h, w, edge);
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

#endif  // GSVNET_KERNELS_ONLY

}  // extern "C"
