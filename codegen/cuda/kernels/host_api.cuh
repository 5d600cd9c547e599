// The table of host_api.h, implemented over the CUDA runtime this artifact links. Every
// artifact defines <name>_cuda_host_api() returning mixtile::cuda::host_api().
#pragma once

#include "host_api.h"

#include <cuda_runtime.h>

#include <cstring>

namespace mixtile::cuda {

/// The error of the launch that made an entry point return 1 (the launchers return
/// cudaGetLastError(), which clears it), kept per host thread for host_api()->last_error.
inline thread_local int recorded_launch_error = 0;
inline void record_launch_error(cudaError_t error) { recorded_launch_error = error; }

namespace host_detail {

inline cudaStream_t stream_of(void *s) { return static_cast<cudaStream_t>(s); }
inline cudaEvent_t event_of(void *e) { return static_cast<cudaEvent_t>(e); }

inline int device_count(int *count) { return cudaGetDeviceCount(count); }
inline int device_info(char *name, size_t bytes, int *capability) {
  int device = 0;
  cudaError_t status = cudaGetDevice(&device);
  cudaDeviceProp prop;
  if (status == cudaSuccess)
    status = cudaGetDeviceProperties(&prop, device);
  if (status != cudaSuccess)
    return status;
  if (name && bytes) {
    std::strncpy(name, prop.name, bytes - 1);
    name[bytes - 1] = '\0';
  }
  if (capability)
    *capability = prop.major * 10 + prop.minor;
  return cudaSuccess;
}
inline int device_malloc(void **p, size_t bytes) { return cudaMalloc(p, bytes ? bytes : 1); }
inline int device_free(void *p) { return cudaFree(p); }
inline int copy_to_device(void *d, const void *h, size_t bytes, void *s) {
  return bytes ? cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, stream_of(s)) : 0;
}
inline int copy_to_host(void *h, const void *d, size_t bytes, void *s) {
  return bytes ? cudaMemcpyAsync(h, d, bytes, cudaMemcpyDeviceToHost, stream_of(s)) : 0;
}
inline int fill_bytes(void *d, int value, size_t bytes, void *s) {
  return bytes ? cudaMemsetAsync(d, value, bytes, stream_of(s)) : 0;
}
inline int stream_create(void **s) {
  cudaStream_t stream = nullptr;
  cudaError_t status = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  *s = stream;
  return status;
}
inline int stream_destroy(void *s) { return cudaStreamDestroy(stream_of(s)); }
inline int stream_synchronize(void *s) { return cudaStreamSynchronize(stream_of(s)); }
inline int event_create(void **e) {
  cudaEvent_t event = nullptr;
  cudaError_t status = cudaEventCreate(&event);
  *e = event;
  return status;
}
inline int event_destroy(void *e) { return cudaEventDestroy(event_of(e)); }
inline int event_record(void *e, void *s) { return cudaEventRecord(event_of(e), stream_of(s)); }
inline int event_elapsed_ms(float *ms, void *start, void *stop) {
  return cudaEventElapsedTime(ms, event_of(start), event_of(stop));
}
inline int last_error() {
  const int recorded = recorded_launch_error;
  recorded_launch_error = 0;
  const int pending = cudaGetLastError();
  return recorded != 0 ? recorded : pending;
}
inline const char *error_string(int error) {
  return cudaGetErrorString(static_cast<cudaError_t>(error));
}

} // namespace host_detail

inline const mixtile_cuda_host_api *host_api() {
  static const mixtile_cuda_host_api table = {
      MIXTILE_CUDA_HOST_API_VERSION,  host_detail::device_count,
      host_detail::device_info,       host_detail::device_malloc,
      host_detail::device_free,       host_detail::copy_to_device,
      host_detail::copy_to_host,      host_detail::fill_bytes,
      host_detail::stream_create,     host_detail::stream_destroy,
      host_detail::stream_synchronize, host_detail::event_create,
      host_detail::event_destroy,     host_detail::event_record,
      host_detail::event_elapsed_ms,  host_detail::last_error,
      host_detail::error_string};
  return &table;
}

} // namespace mixtile::cuda
