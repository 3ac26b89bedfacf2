// CPU build of the kernels' arithmetic: the per-pixel functions of gsvnet_ops.h looped over
// pixels on the host. Compiled at test time with the system compiler (plugins/cpu.py) so the
// math the CUDA kernels run is checked against the PyTorch reference on every CI run.
// Entry points mirror the CUDA launch functions: raw pointers + sizes, NCHW, `dtype` is
// gsvnet::kFloat32 or gsvnet::kFloat16 (then the data are IEEE binary16 bits). Return 0 on
// success, -1 on bad arguments.
#include "gsvnet_ops.h"

#include <vector>

using namespace gsvnet;

namespace {

template <typename T>
void warp_by_flow(const T* seg, const float* flow, T* out, int32_t* labels, int32_t n, int32_t c, int32_t h, int32_t w) {
  const int64_t plane = (int64_t)h * w;
  for (int32_t b = 0; b < n; ++b) {
    const T* seg_b = seg + b * c * plane;
    const float* fx = flow + b * 2 * plane;
    const float* fy = fx + plane;
    T* out_b = out + b * c * plane;
    for (int32_t y = 0; y < h; ++y) {
      for (int32_t x = 0; x < w; ++x) {
        const int64_t p = (int64_t)y * w + x;
        const BilinearTaps taps = bilinear_taps(y, x, fx[p], fy[p], h, w);
        float best = 0.0f;
        int32_t best_c = 0;
        for (int32_t k = 0; k < c; ++k) {
          const float v = bilinear_sample(seg_b + k * plane, taps);
          store(out_b + k * plane + p, v);
          const float kept = round_trip<T>(v);
          if (k == 0 || kept > best) {
            best = kept;
            best_c = k;
          }
        }
        if (labels != nullptr) labels[b * plane + p] = best_c;
      }
    }
  }
}

template <typename T>
void chunk_filter(const T* warped, const T* intra, const T* weights, T* out, int32_t n, int32_t c, int32_t h, int32_t w, int32_t radius) {
  const int64_t plane = (int64_t)h * w;
  const int32_t k1 = num_shifts(radius) + 1;  // candidate weights (K shifts + intra) ...
  const int32_t k2 = k1 + 1;                  // ... and the null weight: K+2 channels
  std::vector<float> wts(k1);
  for (int32_t b = 0; b < n; ++b) {
    for (int32_t y = 0; y < h; ++y) {
      for (int32_t x = 0; x < w; ++x) {
        const int64_t p = (int64_t)y * w + x;
        const float denom = load_pixel_weights(weights + b * k2 * plane + p, plane, k1, wts.data());
        for (int32_t k = 0; k < c; ++k) {
          const T* warped_plane = warped + (b * c + k) * plane;
          auto cand = [&](int32_t dy, int32_t dx) -> float {
            const int32_t yy = y + dy, xx = x + dx;
            return inside(yy, xx, h, w) ? load(warped_plane + (int64_t)yy * w + xx) : 0.0f;
          };
          const int64_t at = (b * c + k) * plane + p;
          store(out + at, filter_pixel(radius, wts.data(), load(intra + at), denom, cand));
        }
      }
    }
  }
}

void edge_from_labels(const int32_t* labels, float* edge, int32_t n, int32_t h, int32_t w) {
  const int64_t plane = (int64_t)h * w;
  for (int32_t b = 0; b < n; ++b) {
    const int32_t* lab = labels + b * plane;
    for (int32_t y = 0; y < h; ++y) {
      for (int32_t x = 0; x < w; ++x) {
        auto label = [&](int32_t dy, int32_t dx) -> int32_t {
          return inside(y + dy, x + dx, h, w) ? lab[(int64_t)(y + dy) * w + (x + dx)] : 0;  // zero padding
        };
        edge[b * plane + (int64_t)y * w + x] = edge_pixel(label);
      }
    }
  }
}

template <typename T>
void edge_map(const T* scores, float* edge, int32_t n, int32_t c, int32_t h, int32_t w) {
  const int64_t plane = (int64_t)h * w;
  std::vector<int32_t> labels((size_t)(n * plane));
  for (int32_t b = 0; b < n; ++b) {
    for (int64_t p = 0; p < plane; ++p) labels[b * plane + p] = argmax_classes(scores + b * c * plane + p, plane, c);
  }
  edge_from_labels(labels.data(), edge, n, h, w);
}

bool bad_sizes(int32_t n, int32_t c, int32_t h, int32_t w) { return n < 1 || c < 1 || h < 2 || w < 2; }

}  // namespace

extern "C" {

int gsvnet_cpu_warp_by_flow(const void* seg, const float* flow, void* out, int32_t* labels, int32_t n, int32_t c, int32_t h, int32_t w, int32_t dtype) {
  if (bad_sizes(n, c, h, w)) return -1;
  if (dtype == kFloat32) {
    warp_by_flow(static_cast<const float*>(seg), flow, static_cast<float*>(out), labels, n, c, h, w);
  } else if (dtype == kFloat16) {
    warp_by_flow(static_cast<const half_t*>(seg), flow, static_cast<half_t*>(out), labels, n, c, h, w);
  } else {
    return -1;
  }
  return 0;
}

int gsvnet_cpu_chunk_filter(const void* warped, const void* intra, const void* weights, void* out, int32_t n, int32_t c, int32_t h, int32_t w, int32_t radius, int32_t dtype) {
  if (bad_sizes(n, c, h, w) || radius < 1) return -1;
  if (dtype == kFloat32) {
    chunk_filter(static_cast<const float*>(warped), static_cast<const float*>(intra), static_cast<const float*>(weights), static_cast<float*>(out), n, c, h, w, radius);
  } else if (dtype == kFloat16) {
    chunk_filter(static_cast<const half_t*>(warped), static_cast<const half_t*>(intra), static_cast<const half_t*>(weights), static_cast<half_t*>(out), n, c, h, w, radius);
  } else {
    return -1;
  }
  return 0;
}

int gsvnet_cpu_edge_map(const void* scores, float* edge, int32_t n, int32_t c, int32_t h, int32_t w, int32_t dtype) {
  if (bad_sizes(n, c, h, w)) return -1;
  if (dtype == kFloat32) {
    edge_map(static_cast<const float*>(scores), edge, n, c, h, w);
  } else if (dtype == kFloat16) {
    edge_map(static_cast<const half_t*>(scores), edge, n, c, h, w);
  } else {
    return -1;
  }
  return 0;
}

int gsvnet_cpu_edge_map_from_labels(const int32_t* labels, float* edge, int32_t n, int32_t h, int32_t w) {
  if (bad_sizes(n, 1, h, w)) return -1;
  edge_from_labels(labels, edge, n, h, w);
  return 0;
}

void gsvnet_cpu_float_to_half(const float* in, uint16_t* out, int64_t count) {
  for (int64_t i = 0; i < count; ++i) out[i] = float_to_half_bits(in[i]);
}

void gsvnet_cpu_half_to_float(const uint16_t* in, float* out, int64_t count) {
  for (int64_t i = 0; i < count; ++i) out[i] = half_bits_to_float(in[i]);
}

}  // extern "C"
