// libFuzzer target: the safetensors reader behind mixtile_tensors_open, on one file (input as
// is) and on a sharded checkpoint (input split at its first NUL byte: the index JSON, then one
// shard named a.safetensors). Every open either succeeds (then a lookup reads the data of a
// tensor the header names) or fails with one line of valid UTF-8.
#include "runtime/mixtile_runtime.h"
#include "test/fuzz/FuzzCommon.h"

#include <cstring>
#include <string>

using namespace mixtile_fuzz;

namespace {

void probe(mixtile_tensors *tensors, const uint8_t *data, size_t size) {
  // Names to look up: every quoted string of the input (cheap, and hits the real names).
  std::string text(reinterpret_cast<const char *>(data), size);
  volatile unsigned sum = 0;
  for (size_t at = text.find('"'); at != std::string::npos && at + 1 < text.size();) {
    size_t end = text.find('"', at + 1);
    if (end == std::string::npos)
      break;
    std::string name = text.substr(at + 1, end - at - 1);
    int dtype = 0, rank = 0;
    const int64_t *shape = nullptr;
    const void *bytes = nullptr;
    if (mixtile_tensors_find(tensors, name.c_str(), &dtype, &rank, &shape, &bytes) == 0) {
      int64_t count = 1;
      for (int d = 0; d < rank; ++d)
        count *= shape[d];
      const unsigned char *p = static_cast<const unsigned char *>(bytes);
      size_t width = dtype == MIXTILE_DTYPE_F32 || dtype == MIXTILE_DTYPE_I32 ? 4
                     : dtype == MIXTILE_DTYPE_I64                            ? 8
                     : dtype == MIXTILE_DTYPE_BOOL                           ? 1
                                                                             : 2;
      if (dtype >= 0 && count > 0) { // the first and the last byte of the data
        sum += p[0];
        sum += p[count * width - 1];
      }
    } else {
      checkMessage(mixtile_last_error(), "mixtile_tensors_find");
    }
    at = text.find('"', end + 1);
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const std::string &dir = scratch();
  // One file.
  std::string file = dir + "/one.safetensors";
  writeFile(file, data, size);
  mixtile_tensors *tensors = nullptr;
  if (mixtile_tensors_open(file.c_str(), &tensors) == 0) {
    probe(tensors, data, size);
    mixtile_tensors_close(tensors);
  } else {
    checkMessage(mixtile_last_error(), "mixtile_tensors_open(file)");
  }
  // A sharded directory: index, NUL, shard.
  const uint8_t *nul = static_cast<const uint8_t *>(std::memchr(data, 0, size));
  if (nul) {
    std::string sharded = dir + "/sharded";
    mkdir(sharded.c_str(), 0700);
    writeFile(sharded + "/model.safetensors.index.json", data, nul - data);
    writeFile(sharded + "/a.safetensors", nul + 1, size - (nul - data) - 1);
    tensors = nullptr;
    if (mixtile_tensors_open(sharded.c_str(), &tensors) == 0) {
      probe(tensors, data, size);
      mixtile_tensors_close(tensors);
    } else {
      checkMessage(mixtile_last_error(), "mixtile_tensors_open(directory)");
    }
  }
  return 0;
}
