// Umbrella header of the CPU kernel library that mixtilec's generated C++ includes.
// Header-only C++17; depends only on the standard library, OpenMP and <immintrin.h>.
#pragma once

#include "simd.h"
#include "gemm.h"
#include "matrix_engines.h"
#include "expert_ffn.h"
#include "linear.h"
#include "threads.h"
#include "routing.h"
#include "layers.h"
#include "convert.h"
#include "model.h"
