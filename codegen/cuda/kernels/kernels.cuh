// Umbrella header of the CUDA kernel library that mixtilec's generated CUDA C++ includes.
// Header-only CUDA C++17 (sm_80+); depends only on the CUDA runtime and the standard library.
// Every launcher takes a cudaStream_t, returns a cudaError_t and never synchronizes the host.
#pragma once

#include "common.cuh"
#include "routing.cuh"
#include "expert_ffn.cuh"
#include "layers.cuh"
#include "model.cuh"
#include "host_api.cuh"
