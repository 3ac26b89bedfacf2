// Just enough of CUDA's device-side vocabulary for g++ to compile the kernels in
// plugins/*/*.cu as plain C++ (with GSVNET_KERNELS_ONLY, which drops the host launchers).
// run_kernels.cpp runs each thread block with one OS thread per CUDA thread and a barrier
// for __syncthreads, so the kernels' indexing, tiling and double buffering run for real.
#ifndef GSVNET_CUDA_SHIM_H
#define GSVNET_CUDA_SHIM_H

#include "../../../plugins/common/gsvnet_ops.h"

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static  // one block runs at a time, so a static local is the block's memory

struct uint3 {
  unsigned x, y, z;
};
extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local uint3 blockDim;
void __syncthreads();

template <typename T>
T __ldg(const T* p) {
  return *p;
}


#endif  // GSVNET_CUDA_SHIM_H
