// A stand-in CUDA device for testing the runtime's cuda backend on machines without a GPU.
// It wraps a real cpu-target artifact (built by mixtilec) as a cuda-target one: the packed
// entry point takes a stream instead of a thread count, and the CUDA host API table
// (codegen/cuda/kernels/host_api.h) serves "device memory" from its own registry of
// allocations. Every call checks what a real device would make fail or corrupt silently:
// the entry point gets only device pointers (arguments, results and workspace), copies go
// host->device or device->host in the right direction and stay inside one allocation, the
// stream is a live one (the session's, or one its caller created through this same table and
// handed to mixtile_session_set_stream), nothing is freed twice or leaked by the end. Streams
// are numbered s1, s2, ... in the order they were created; the log names the stream of each
// copy, fill, launch and synchronization.
//
// Built by make_fake_cuda_artifact.sh with -DFAKE_NAME=<artifact> -DFAKE_FN=<function>
// -DFAKE_CPU_LIBRARY="<path of the cpu lib<name>.so>". Environment knobs:
//   FAKE_CUDA_LOG=FILE        append one line per call (malloc/h2d/d2h/fill/launch/sync/free)
//   FAKE_CUDA_NO_DEVICE=1     cudaGetDeviceCount fails (cudaErrorNoDevice)
//   FAKE_CUDA_FAIL_LAUNCH=1   the entry point returns 1 with a launch error pending
//   FAKE_CUDA_MAX_ALLOC=N     allocations over N bytes fail (cudaErrorMemoryAllocation)
#include "codegen/cuda/kernels/host_api.h"

#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <map>
#include <mutex>

#define FAKE_CAT2(a, b) a##b
#define FAKE_CAT(a, b) FAKE_CAT2(a, b)
#define FAKE_STR2(a) #a
#define FAKE_STR(a) FAKE_STR2(a)

namespace {

enum : int { kSuccess = 0, kNoMemory = 2, kInvalidValue = 1, kNoDevice = 100,
             kInvalidHandle = 400, kLaunchFailure = 719 };

using CpuPacked = int (*)(void *const *, const int64_t *, void *, int);
using CpuWorkspace = size_t (*)(const int64_t *);
using CpuError = const char *(*)(int);

struct Fake {
  std::mutex mutex;
  std::map<uintptr_t, size_t> allocations; // device "memory": start -> bytes
  std::map<const void *, int> streams; // live streams -> number
  int streamsCreated = 0, events = 0, pendingError = kSuccess;
  int streamsAlive = 0, eventsAlive = 0;
  std::map<const void *, std::chrono::steady_clock::time_point> recorded;
  void *cpu = nullptr;

  void log(const char *format, ...) __attribute__((format(printf, 2, 3))) {
    const char *path = std::getenv("FAKE_CUDA_LOG");
    if (!path)
      return;
    FILE *file = std::fopen(path, "a");
    if (!file)
      return;
    va_list args;
    va_start(args, format);
    std::vfprintf(file, format, args);
    va_end(args);
    std::fputc('\n', file);
    std::fclose(file);
  }
  [[noreturn]] void violation(const char *what) {
    std::fprintf(stderr, "fake-cuda: VIOLATION: %s\n", what);
    std::abort();
  }
  /// The allocation [p, p + bytes) lies in, or violation.
  void requireDevice(const void *p, size_t bytes, const char *what) {
    auto at = reinterpret_cast<uintptr_t>(p);
    auto it = allocations.upper_bound(at);
    if (it == allocations.begin() || (--it, at + bytes > it->first + it->second)) {
      char message[256];
      std::snprintf(message, sizeof message, "%s: %p (+%zu bytes) is not device memory", what,
                    p, bytes);
      violation(message);
    }
  }
  void requireHost(const void *p, size_t bytes, const char *what) {
    auto at = reinterpret_cast<uintptr_t>(p);
    auto it = allocations.upper_bound(at + bytes);
    if (it != allocations.begin() && (--it, at < it->first + it->second) && bytes) {
      char message[256];
      std::snprintf(message, sizeof message, "%s: %p is device memory, expected host memory",
                    what, p);
      violation(message);
    }
  }
  int requireStream(void *s) {
    auto it = streams.find(s);
    if (it == streams.end())
      violation("a call on a stream that is not a live stream");
    return it->second;
  }
  ~Fake() { // at exit: a leak fails the process, whatever it was about to return
    if (!allocations.empty() || streamsAlive || eventsAlive) {
      std::fprintf(stderr, "fake-cuda: LEAK: %zu allocations, %d streams, %d events alive\n",
                   allocations.size(), streamsAlive, eventsAlive);
      std::fflush(stderr);
      std::_Exit(3);
    }
  }
};

Fake &fake() {
  static Fake instance;
  return instance;
}

void *cpuSymbol(const char *name) {
  Fake &f = fake();
  if (!f.cpu) {
    f.cpu = dlopen(FAKE_CPU_LIBRARY, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!f.cpu) {
      std::fprintf(stderr, "fake-cuda: %s\n", dlerror());
      std::abort();
    }
  }
  void *symbol = dlsym(f.cpu, name);
  if (!symbol) {
    std::fprintf(stderr, "fake-cuda: no symbol %s in the cpu library\n", name);
    std::abort();
  }
  return symbol;
}

// ---- the host API table -----------------------------------------------------------------

int deviceCount(int *count) {
  if (std::getenv("FAKE_CUDA_NO_DEVICE"))
    return kNoDevice;
  *count = 1;
  return kSuccess;
}
int deviceInfo(char *name, size_t bytes, int *capability) {
  if (name && bytes)
    std::snprintf(name, bytes, "fake cuda device");
  if (capability)
    *capability = 90;
  return kSuccess;
}
int deviceMalloc(void **p, size_t bytes) {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  const char *limit = std::getenv("FAKE_CUDA_MAX_ALLOC");
  if (limit && bytes > std::strtoull(limit, nullptr, 10)) {
    f.log("malloc %zu failed", bytes);
    return kNoMemory;
  }
  *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  std::memset(*p, 0xa5, bytes); // device memory starts with garbage
  f.allocations[reinterpret_cast<uintptr_t>(*p)] = bytes;
  f.log("malloc %zu", bytes);
  return kSuccess;
}
int deviceFree(void *p) {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  if (!f.allocations.erase(reinterpret_cast<uintptr_t>(p)))
    f.violation("cudaFree of a pointer that is not a live allocation");
  std::free(p);
  f.log("free");
  return kSuccess;
}
int copyToDevice(void *d, const void *h, size_t bytes, void *s) {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  int n = f.requireStream(s);
  f.requireDevice(d, bytes, "host->device copy destination");
  f.requireHost(h, bytes, "host->device copy source");
  std::memcpy(d, h, bytes);
  f.log("h2d %zu s%d", bytes, n);
  return kSuccess;
}
int copyToHost(void *h, const void *d, size_t bytes, void *s) {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  int n = f.requireStream(s);
  f.requireDevice(d, bytes, "device->host copy source");
  f.requireHost(h, bytes, "device->host copy destination");
  std::memcpy(h, d, bytes);
  f.log("d2h %zu s%d", bytes, n);
  return kSuccess;
}
int fillBytes(void *d, int value, size_t bytes, void *s) {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  int n = f.requireStream(s);
  f.requireDevice(d, bytes, "memset destination");
  std::memset(d, value, bytes);
  f.log("fill %zu s%d", bytes, n);
  return kSuccess;
}
int streamCreate(void **s) {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  ++f.streamsAlive;
  *s = new int(0);
  f.streams[*s] = ++f.streamsCreated;
  return kSuccess;
}
int streamDestroy(void *s) {
  Fake &f = fake();
  std::lock_guard<std::mutex> lock(f.mutex);
  f.requireStream(s);
  f.streams.erase(s);
  delete static_cast<int *>(s);
  --f.streamsAlive;
  return kSuccess;
}
int streamSynchronize(void *s) {
  Fake &f = fake();
  f.log("sync s%d", f.requireStream(s));
  if (f.pendingError != kSuccess) { // a fault surfaces at the next synchronization
    int error = f.pendingError;
    f.pendingError = kSuccess;
    return error;
  }
  return kSuccess;
}
int eventCreate(void **e) {
  ++fake().eventsAlive;
  *e = new int(0);
  return kSuccess;
}
int eventDestroy(void *e) {
  --fake().eventsAlive;
  fake().recorded.erase(e);
  delete static_cast<int *>(e);
  return kSuccess;
}
int eventRecord(void *e, void *s) {
  fake().requireStream(s);
  fake().recorded[e] = std::chrono::steady_clock::now();
  return kSuccess;
}
int eventElapsed(float *ms, void *start, void *stop) {
  Fake &f = fake();
  if (!f.recorded.count(start) || !f.recorded.count(stop))
    return kInvalidHandle;
  *ms = std::chrono::duration<float, std::milli>(f.recorded[stop] - f.recorded[start]).count();
  return kSuccess;
}
int lastError() {
  int error = fake().pendingError;
  fake().pendingError = kSuccess;
  return error;
}
const char *errorString(int error) {
  switch (error) {
  case kSuccess: return "no error";
  case kNoMemory: return "out of memory";
  case kNoDevice: return "no CUDA-capable device is detected";
  case kInvalidHandle: return "invalid resource handle";
  case kLaunchFailure: return "unspecified launch failure";
  default: return "unknown error";
  }
}

const mixtile_cuda_host_api kTable = {
    MIXTILE_CUDA_HOST_API_VERSION, deviceCount, deviceInfo, deviceMalloc, deviceFree,
    copyToDevice, copyToHost, fillBytes, streamCreate, streamDestroy, streamSynchronize,
    eventCreate, eventDestroy, eventRecord, eventElapsed, lastError, errorString};

} // namespace

// ---- the artifact's exported symbols ------------------------------------------------------

extern "C" const mixtile_cuda_host_api *FAKE_CAT(FAKE_NAME, _cuda_host_api)(void) {
  return &kTable;
}

extern "C" const char *FAKE_CAT(FAKE_NAME, _error_message)(int code) {
  if (code == 1)
    return "a CUDA kernel launch failed (cudaGetLastError)";
  // As in a real cuda artifact, the layers' own codes follow the launch error (cpu code + 1).
  return reinterpret_cast<CpuError>(cpuSymbol(FAKE_STR(FAKE_NAME) "_error_message"))(
      code > 1 ? code - 1 : code);
}

extern "C" size_t FAKE_CAT(FAKE_FN, _packed_workspace_size)(const int64_t *dims) {
  return reinterpret_cast<CpuWorkspace>(cpuSymbol(FAKE_STR(FAKE_FN) "_packed_workspace_size"))(
      dims);
}

// FAKE_TENSORS: the number of arguments + results of the entry point.
extern "C" int FAKE_CAT(FAKE_FN, _packed)(void *const *tensors, const int64_t *dims,
                                         void *workspace, void *stream) {
  Fake &f = fake();
  f.log("launch s%d", f.requireStream(stream));
  if (std::getenv("FAKE_CUDA_FAIL_LAUNCH")) {
    f.pendingError = kLaunchFailure;
    return 1;
  }
  size_t workspaceBytes = FAKE_CAT(FAKE_FN, _packed_workspace_size)(dims);
  if (workspaceBytes)
    f.requireDevice(workspace, workspaceBytes, "the workspace");
  for (int i = 0; i < FAKE_TENSORS; ++i)
    f.requireDevice(tensors[i], 0, "a tensor passed to the entry point");
  int code = reinterpret_cast<CpuPacked>(cpuSymbol(FAKE_STR(FAKE_FN) "_packed"))(
      tensors, dims, workspace, 1);
  return code == 0 ? 0 : code + 1;
}
