// Per-pixel arithmetic of GSVNet's custom ops (plugins/SPEC.md), shared by the CUDA kernels
// and the CPU build. Every function is plain C++ when compiled by a host compiler and
// __host__ __device__ when compiled by nvcc, so the CPU build tests the kernels' math.
//
// Conventions: NCHW contiguous tensors, FP32 or FP16 storage, FP32 arithmetic, one rounding
// to the storage type at the end.
#ifndef GSVNET_OPS_H
#define GSVNET_OPS_H

#if defined(__CUDACC_RTC__)
// NVRTC (plugins/nvrtc.py) has no C library headers; memcpy and floorf are its builtins.
typedef signed int int32_t;
typedef unsigned int uint32_t;
typedef unsigned short uint16_t;
typedef long long int64_t;
#else
#include <stdint.h>
#include <string.h>
#include <math.h>
#endif

#if defined(__CUDACC__)
#define GSV_HD __host__ __device__ __forceinline__
#else
#define GSV_HD inline
#endif

namespace gsvnet {

//! Added to the sum of the K+2 guiding weights before dividing (SPEC: ChunkFilter): the official
//! value, representable in float32 only, so the sum is always taken in float32.
constexpr float kWeightEps = 1e-9f;

//! Storage dtype codes used by the C entry points.
enum DType : int32_t { kFloat32 = 0, kFloat16 = 1 };

// ---- IEEE binary16 <-> binary32 on the host (bit exact, round to nearest even) ------------

GSV_HD float half_bits_to_float(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    // zero or subnormal: mant * 2^-24 is exact in float32
    const float mag = (float)mant * 5.9604644775390625e-8f;
    memcpy(&bits, &mag, sizeof bits);
    bits |= sign;
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  }
  float out;
  memcpy(&out, &bits, sizeof out);
  return out;
}

GSV_HD uint16_t float_to_half_bits(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
  if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  // >= 65520 rounds to inf
  if (ax < 0x33000000u) return sign;                         // < 2^-25 rounds to zero
  if (ax < 0x38800000u) {                                    // half subnormal, units of 2^-24
    const uint32_t e = ax >> 23;
    const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - e;  // 14..24
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u);
    const uint32_t halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (q & 1u))) ++q;
    return (uint16_t)(sign | q);
  }
  uint32_t h = (((ax >> 23) - 112u) << 10) | ((ax & 0x7fffffu) >> 13);
  const uint32_t rem = ax & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry into the exponent is right
  return (uint16_t)(sign | h);
}

// ---- storage types ------------------------------------------------------------------------

//! FP16 storage: the raw IEEE binary16 bits. On the device the conversions are the PTX `cvt`
//! instructions (what cuda_fp16.h's __half2float / __float2half_rn emit), so the kernels need
//! no CUDA headers and build with nvcc and NVRTC alike; on the host they are the bit-exact
//! software conversions above.
struct half_t {
  uint16_t bits;
};

GSV_HD float to_float(half_t v) {
#if defined(__CUDA_ARCH__)
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.bits));
  return f;
#else
  return half_bits_to_float(v.bits);
#endif
}

GSV_HD void store(half_t* p, float v) {
#if defined(__CUDA_ARCH__)
  uint16_t h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
  p->bits = h;
#else
  p->bits = float_to_half_bits(v);
#endif
}

GSV_HD float to_float(float v) { return v; }
GSV_HD void store(float* p, float v) { *p = v; }

//! Read-only load: through the non-coherent cache on the device, plain on the host.
GSV_HD float load(const float* p) {
#if defined(__CUDA_ARCH__)
  return __ldg(p);
#else
  return *p;
#endif
}

GSV_HD float load(const half_t* p) {
#if defined(__CUDA_ARCH__)
  half_t v;
  v.bits = __ldg(&p->bits);
  return to_float(v);
#else
  return to_float(*p);
#endif
}

//! The value as the output tensor holds it (rounded to T, back in float32).
template <typename T>
GSV_HD float round_trip(float v) {
  T tmp;
  store(&tmp, v);
  return to_float(tmp);
}

// ---- WarpByFlow ---------------------------------------------------------------------------

//! The four bilinear taps of one output pixel: plane offsets (-1 = outside) and weights.
struct BilinearTaps {
  int32_t offset[4];
  float weight[4];
};

//! Taps for sampling at (x + fx, y + fy) on an h x w plane; taps outside the frame get
//! offset -1 (they contribute zero). Coordinates and weights in float32 (SPEC: WarpByFlow).
GSV_HD BilinearTaps bilinear_taps(int32_t y, int32_t x, float fx, float fy, int32_t h, int32_t w) {
  BilinearTaps t;
  const float sx = (float)x + fx;
  const float sy = (float)y + fy;
  // Every tap is outside when sx <= -1 or sx >= w (same in y); NaN flows land here too.
  if (!(sx > -1.0f && sx < (float)w && sy > -1.0f && sy < (float)h)) {
    for (int k = 0; k < 4; ++k) {
      t.offset[k] = -1;
      t.weight[k] = 0.0f;
    }
    return t;
  }
  const float x0f = floorf(sx);
  const float y0f = floorf(sy);
  const float ax = sx - x0f;
  const float ay = sy - y0f;
  const int32_t x0 = (int32_t)x0f;
  const int32_t y0 = (int32_t)y0f;
  const float wx[2] = {1.0f - ax, ax};
  const float wy[2] = {1.0f - ay, ay};
  for (int dy = 0; dy < 2; ++dy) {
    for (int dx = 0; dx < 2; ++dx) {
      const int k = dy * 2 + dx;
      const int32_t yy = y0 + dy;
      const int32_t xx = x0 + dx;
      const bool inside = yy >= 0 && yy < h && xx >= 0 && xx < w;
      t.offset[k] = inside ? yy * w + xx : -1;
      t.weight[k] = wy[dy] * wx[dx];
    }
  }
  return t;
}

//! One class plane sampled with precomputed taps, accumulated in float32.
template <typename T>
GSV_HD float bilinear_sample(const T* plane, const BilinearTaps& t) {
  float acc = 0.0f;
  for (int k = 0; k < 4; ++k) {
    if (t.offset[k] >= 0) acc += t.weight[k] * load(plane + t.offset[k]);
  }
  return acc;
}

// ---- ChunkFilter --------------------------------------------------------------------------

//! Number of ideal-delay candidates K = (2r+1)^2.
GSV_HD constexpr int32_t num_shifts(int32_t radius) { return (2 * radius + 1) * (2 * radius + 1); }

//! Loads the K+1 candidate weights of one pixel (K shifts, then intra; channel stride
//! `stride`) into `wts` and returns the normaliser in float32: the sum of all K+2 weights,
//! including the null weight (channel K+1, which weighs no candidate), plus kWeightEps.
template <typename T>
GSV_HD float load_pixel_weights(const T* first, int64_t stride, int32_t count, float* wts) {
  float sum = 0.0f;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int32_t k = 0; k < count; ++k) {
    wts[k] = load(first + k * stride);
    sum += wts[k];
  }
  sum += load(first + count * stride);  // the null candidate's weight
  return sum + kWeightEps;
}

//! Filtered value of one pixel and class: (w_K * intra + sum_k w_k * cand(dy_k, dx_k)) / denom.
//! `cand(dy, dx)` returns warped[y+dy, x+dx] or 0 outside the frame. Summation order follows
//! the reference (intra first, then k = 0..K-1 row-major over dy, dx).
template <typename Cand>
GSV_HD float filter_pixel(int32_t radius, const float* wts, float intra, float denom, Cand cand) {
  const int32_t side = 2 * radius + 1;
  float acc = wts[side * side] * intra;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int32_t dy = -radius; dy <= radius; ++dy) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int32_t dx = -radius; dx <= radius; ++dx) {
      acc += wts[(dy + radius) * side + (dx + radius)] * cand(dy, dx);
    }
  }
  return acc / denom;
}

// ---- edge map -----------------------------------------------------------------------------

//! First index of the maximum over C values spaced `stride` apart (ties: the first one).
template <typename T>
GSV_HD int32_t argmax_classes(const T* first, int64_t stride, int32_t classes) {
  float best = load(first);
  int32_t best_c = 0;
  for (int32_t c = 1; c < classes; ++c) {
    const float v = load(first + c * stride);
    if (v > best) {
      best = v;
      best_c = c;
    }
  }
  return best_c;
}

//! Edge value of one pixel: 1 where the 3x3 Laplacian [[1,1,1],[1,-8,1],[1,1,1]] of the label
//! map is non-zero, else 0 (SPEC: edge map). `label(dy, dx)` returns the neighbour's class index,
//! or 0 outside the frame (zero padding). Integer sums: exact, like the float sums of the spec.
template <typename Label>
GSV_HD float edge_pixel(Label label) {
  int32_t s = 0;
  for (int32_t dy = -1; dy <= 1; ++dy) {
    for (int32_t dx = -1; dx <= 1; ++dx) {
      s += (dy == 0 && dx == 0 ? -8 : 1) * label(dy, dx);
    }
  }
  return s != 0 ? 1.0f : 0.0f;
}

//! True when (y, x) lies inside an h x w plane.
GSV_HD bool inside(int32_t y, int32_t x, int32_t h, int32_t w) { return y >= 0 && y < h && x >= 0 && x < w; }

}  // namespace gsvnet

#endif  // GSVNET_OPS_H
