// Thread-count policy of the CPU kernel library: how many OpenMP threads a call may use and
// the bound workspace sizes are planned for. Kernels take the count; they never decide it.
#pragma once

#include <omp.h>

#include <algorithm>

namespace mixtile::cpu {

/// The most threads any call uses; workspaces are sized for this many.
inline int max_threads() { return std::max(1, omp_get_num_procs()); }

/// A caller's request (<= 0: the OpenMP default) clamped to [1, max_threads()].
inline int clamp_threads(int requested) {
  int n = requested > 0 ? requested : omp_get_max_threads();
  return std::clamp(n, 1, max_threads());
}

} // namespace mixtile::cpu
