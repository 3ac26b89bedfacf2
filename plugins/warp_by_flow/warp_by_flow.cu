// gsvnet::WarpByFlow: backward bilinear warp of [N,C,h,w] scores by a [N,2,h,w] FP32 flow
// (plugins/SPEC.md). One thread per output pixel: the four taps and their weights are
// computed once and applied to all C classes. The `_labels` variants also write the argmax
// over classes of the stored output (int32 [N,h,w], first maximum on ties) so the edge map of
// the warped scores (edge_map.cu, gsvnet_edge_map_from_labels) needs one int per pixel instead
// of re-reading C scores.
//
// Kernel arguments follow the TensorRT AOT plugin order: inputs, int32 sizes, outputs.
#include "../common/gsvnet_ops.h"

#ifndef GSVNET_KERNELS_ONLY  // defined by NVRTC builds (plugins/nvrtc.py) and the CPU emulation harness
#include <cuda_runtime.h>
#endif

namespace {

constexpr int kWarpBlock = 256;  // threads per block, one pixel each; grid (cdiv(h*w, 256), N)

template <typename T, bool kLabels>
__device__ __forceinline__ void warp_body(const T* __restrict__ seg, const float* __restrict__ flow, int32_t classes, int32_t h, int32_t w,
                                          T* __restrict__ out, int32_t* __restrict__ labels) {
  const int64_t plane = (int64_t)h * w;
  const int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= plane) return;
  const int64_t b = blockIdx.y;
  const int32_t y = (int32_t)(p / w);
  const int32_t x = (int32_t)(p - (int64_t)y * w);
  const float* flow_b = flow + b * 2 * plane;
  const gsvnet::BilinearTaps taps = gsvnet::bilinear_taps(y, x, __ldg(flow_b + p), __ldg(flow_b + plane + p), h, w);
  const T* seg_b = seg + b * classes * plane;
  T* out_b = out + b * classes * plane;
  float best = 0.0f;
  int32_t best_c = 0;
  for (int32_t c = 0; c < classes; ++c) {
    const float v = gsvnet::bilinear_sample(seg_b + c * plane, taps);
    gsvnet::store(out_b + c * plane + p, v);
    if (kLabels) {
      const float kept = gsvnet::round_trip<T>(v);
      if (c == 0 || kept > best) {
        best = kept;
        best_c = c;
      }
    }
  }
  if (kLabels) labels[b * plane + p] = best_c;
}

}  // namespace

extern "C" {

__global__ void __launch_bounds__(kWarpBlock) gsvnet_warp_by_flow_f32(const float* seg, const float* flow, int32_t n, int32_t c, int32_t h, int32_t w, float* out) {
  (void)n;
  warp_body<float, false>(seg, flow, c, h, w, out, nullptr);
}

__global__ void __launch_bounds__(kWarpBlock) gsvnet_warp_by_flow_f16(const gsvnet::half_t* seg, const float* flow, int32_t n, int32_t c, int32_t h, int32_t w, gsvnet::half_t* out) {
  (void)n;
  warp_body<gsvnet::half_t, false>(seg, flow, c, h, w, out, nullptr);
}

__global__ void __launch_bounds__(kWarpBlock)
    gsvnet_warp_by_flow_labels_f32(const float* seg, const float* flow, int32_t n, int32_t c, int32_t h, int32_t w, float* out, int32_t* labels) {
  (void)n;
  warp_body<float, true>(seg, flow, c, h, w, out, labels);
}

__global__ void __launch_bounds__(kWarpBlock)
    gsvnet_warp_by_flow_labels_f16(const gsvnet::half_t* seg, const float* flow, int32_t n, int32_t c, int32_t h, int32_t w, gsvnet::half_t* out, int32_t* labels) {
  (void)n;
  warp_body<gsvnet::half_t, true>(seg, flow, c, h, w, out, labels);
}

#ifndef GSVNET_KERNELS_ONLY
//! Host launcher for C++ callers (TensorRT C++ plugin, PyTorch extension). `labels` may be
//! null; dtype is gsvnet::kFloat32 or gsvnet::kFloat16.
cudaError_t gsvnet_launch_warp_by_flow(const void* seg, const float* flow, void* out, int32_t* labels, int32_t n, int32_t c, int32_t h, int32_t w,
                                       int32_t dtype, cudaStream_t stream) {
  if (n < 1 || c < 1 || h < 2 || w < 2 || n > 65535) return cudaErrorInvalidValue;
  const int64_t plane = (int64_t)h * w;
  const dim3 grid((unsigned)((plane + kWarpBlock - 1) / kWarpBlock), (unsigned)n);
  const dim3 block(kWarpBlock);
  if (dtype == gsvnet::kFloat32) {
    const float* s = static_cast<const float*>(seg);
    float* o = static_cast<float*>(out);
    if (labels) {
      gsvnet_warp_by_flow_labels_f32<<<grid, block, 0, stream>>>(s, flow, n, c, h, w, o, labels);
    } else {
      gsvnet_warp_by_flow_f32<<<grid, block, 0, stream>>>(s, flow, n, c, h, w, o);
    }
  } else if (dtype == gsvnet::kFloat16) {
    const gsvnet::half_t* s = static_cast<const gsvnet::half_t*>(seg);
    gsvnet::half_t* o = static_cast<gsvnet::half_t*>(out);
    if (labels) {
      gsvnet_warp_by_flow_labels_f16<<<grid, block, 0, stream>>>(s, flow, n, c, h, w, o, labels);
    } else {
      gsvnet_warp_by_flow_f16<<<grid, block, 0, stream>>>(s, flow, n, c, h, w, o);
    }
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

#endif  // GSVNET_KERNELS_ONLY

}  // extern "C"
