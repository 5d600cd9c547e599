/* The CUDA runtime calls a host program needs to run a cuda-target artifact, exported by the
 * artifact itself (<name>_cuda_host_api(), named by the manifest's "cuda_host_api_symbol").
 * Artifacts link the CUDA runtime statically, so a host (the Mixtile runtime) uses these to
 * allocate, copy and synchronize with the very runtime instance the kernels launch through,
 * and needs no CUDA headers or libraries of its own. Plain C; every int is a cudaError_t
 * (0 = success), every void *stream / *event a cudaStream_t / cudaEvent_t. */
#ifndef MIXTILE_CUDA_HOST_API_H
#define MIXTILE_CUDA_HOST_API_H

#include <stddef.h>

#define MIXTILE_CUDA_HOST_API_VERSION 1

typedef struct mixtile_cuda_host_api {
  int version; /* MIXTILE_CUDA_HOST_API_VERSION */
  int (*device_count)(int *count);
  /* The current device's name and compute capability (major * 10 + minor). */
  int (*device_info)(char *name, size_t name_bytes, int *compute_capability);
  int (*malloc)(void **pointer, size_t bytes);
  int (*free)(void *pointer);
  int (*copy_to_device)(void *device, const void *host, size_t bytes, void *stream);
  int (*copy_to_host)(void *host, const void *device, size_t bytes, void *stream);
  int (*fill_bytes)(void *device, int value, size_t bytes, void *stream);
  int (*stream_create)(void **stream);
  int (*stream_destroy)(void *stream);
  int (*stream_synchronize)(void *stream);
  int (*event_create)(void **event);
  int (*event_destroy)(void *event);
  int (*event_record)(void *event, void *stream);
  int (*event_elapsed_ms)(float *milliseconds, void *start, void *stop);
  /* Returns and clears this thread's last error: the failed launch that made an entry point
   * return 1 if there was one, else cudaGetLastError(). */
  int (*last_error)(void);
  const char *(*error_string)(int error);
} mixtile_cuda_host_api;

#endif /* MIXTILE_CUDA_HOST_API_H */
