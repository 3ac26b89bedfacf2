// CPU emulation of the CUDA kernels: emu_launch(name, grid, block, args) runs kernel `name`
// with cuLaunchKernel's argument convention (args[i] points at the i-th argument's value).
#include "cuda_shim.h"

#include <barrier>
#include <cstring>
#include <functional>
#include <thread>
#include <utility>
#include <vector>

namespace emu_warp {
#include "../../../plugins/warp_by_flow/warp_by_flow.cu"
}
namespace emu_chunk {
#include "../../../plugins/chunk_filter/chunk_filter.cu"
}
namespace emu_edge {
#include "../../../plugins/edge_map/edge_map.cu"
}

thread_local uint3 threadIdx;
thread_local uint3 blockIdx;
thread_local uint3 blockDim;
static thread_local std::barrier<>* block_barrier = nullptr;

void __syncthreads() { block_barrier->arrive_and_wait(); }

namespace {

template <typename... A, size_t... I>
void call_impl(void (*kernel)(A...), void** args, std::index_sequence<I...>) {
  kernel(*static_cast<A*>(args[I])...);
}

template <typename... A>
void call(void (*kernel)(A...), void** args) {
  call_impl(kernel, args, std::index_sequence_for<A...>{});
}

struct Entry {
  const char* name;
  std::function<void(void**)> run;
};

#define EMU_ENTRY(NS, NAME) {#NAME, [](void** a) { call(NS::NAME, a); }}

const Entry kEntries[] = {
    EMU_ENTRY(emu_warp, gsvnet_warp_by_flow_f32),        EMU_ENTRY(emu_warp, gsvnet_warp_by_flow_f16),
    EMU_ENTRY(emu_warp, gsvnet_warp_by_flow_labels_f32), EMU_ENTRY(emu_warp, gsvnet_warp_by_flow_labels_f16),
    EMU_ENTRY(emu_chunk, gsvnet_chunk_filter_r1_f32),    EMU_ENTRY(emu_chunk, gsvnet_chunk_filter_r2_f32),
    EMU_ENTRY(emu_chunk, gsvnet_chunk_filter_r3_f32),    EMU_ENTRY(emu_chunk, gsvnet_chunk_filter_r1_f16),
    EMU_ENTRY(emu_chunk, gsvnet_chunk_filter_r2_f16),    EMU_ENTRY(emu_chunk, gsvnet_chunk_filter_r3_f16),
    EMU_ENTRY(emu_edge, gsvnet_edge_map_f32),            EMU_ENTRY(emu_edge, gsvnet_edge_map_f16),
    EMU_ENTRY(emu_edge, gsvnet_edge_map_from_labels),
};

}  // namespace

extern "C" int emu_launch(const char* name, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, void** args) {
  const Entry* entry = nullptr;
  for (const Entry& e : kEntries) {
    if (std::strcmp(e.name, name) == 0) entry = &e;
  }
  if (entry == nullptr) return -1;
  const uint3 block{bx, by, bz};
  const std::ptrdiff_t threads = (std::ptrdiff_t)bx * by * bz;
  for (unsigned z = 0; z < gz; ++z) {
    for (unsigned y = 0; y < gy; ++y) {
      for (unsigned x = 0; x < gx; ++x) {
        std::barrier<> barrier(threads);
        std::vector<std::thread> pool;
        pool.reserve((size_t)threads);
        for (unsigned tz = 0; tz < bz; ++tz) {
          for (unsigned ty = 0; ty < by; ++ty) {
            for (unsigned tx = 0; tx < bx; ++tx) {
              pool.emplace_back([&, tx, ty, tz, x, y, z] {
                threadIdx = {tx, ty, tz};
                blockIdx = {x, y, z};
                blockDim = block;
                block_barrier = &barrier;
                entry->run(args);
              });
            }
          }
        }
        for (std::thread& t : pool) t.join();
      }
    }
  }
  return 0;
}
