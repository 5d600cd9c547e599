/* A hand-written stand-in for a mixtilec artifact (docs/artifact-abi.md), for runtime tests
 * until the compiler emits real ones. It implements the packed ABI only; the arithmetic is
 * trivial on purpose so tests/runtime can check every number exactly. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static float bf16_to_f32(uint16_t bits) {
  uint32_t wide = (uint32_t)bits << 16;
  float value;
  memcpy(&value, &wide, sizeof value);
  return value;
}

static int misaligned(const void *pointer, uintptr_t alignment) {
  return ((uintptr_t)pointer % alignment) != 0;
}

/* affine: y[T, 4] = 2 * x[T, 4] + bias[4] (bias bf16). The workspace holds 2 * x first,
 * so a workspace smaller than promised would be written out of bounds. */
size_t affine_packed_workspace_size(const int64_t *dims) {
  return (size_t)dims[0] * 4 * sizeof(float);
}

int affine_packed(void *const *tensors, const int64_t *dims, void *workspace, int num_threads) {
  const float *x = tensors[0];
  const uint16_t *bias = tensors[1];
  float *y = tensors[2];
  float *twice = workspace;
  int64_t T = dims[0];
  if (num_threads < 1)
    return 5;
  if (misaligned(workspace, 64) || misaligned(y, 64))
    return 1;
  if (misaligned(x, sizeof(float)))
    return 3;
  for (int64_t i = 0; i < T * 4; ++i)
    twice[i] = 2.0f * x[i];
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < 4; ++j)
      y[t * 4 + j] = twice[t * 4 + j] + bf16_to_f32(bias[j]);
  return 0;
}

/* pair: s[T, 4] = a[T, 4] + c[T] * scale[0][0]; count[] = T (an i32 scalar result).
 * Refuses T = 3 to exercise the error-message path. */
size_t pair_packed_workspace_size(const int64_t *dims) { (void)dims; return 0; }

int pair_packed(void *const *tensors, const int64_t *dims, void *workspace, int num_threads) {
  const float *a = tensors[0];
  const int32_t *c = tensors[1];
  const float *scale = tensors[2];
  float *s = tensors[3];
  int32_t *count = tensors[4];
  int64_t T = dims[0];
  (void)num_threads;
  if (!workspace || misaligned(s, 64) || misaligned(count, 64))
    return 1;
  if (T == 3)
    return 4;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < 4; ++j)
      s[t * 4 + j] = a[t * 4 + j] + (float)c[t] * scale[0];
  *count = (int32_t)T;
  return 0;
}

const char *fake_layer_error_message(int code) {
  switch (code) {
  case 1: return "a result or the workspace is not 64-byte aligned";
  case 3: return "x is not aligned to its element size";
  case 4: return "this test kernel refuses T = 3";
  case 5: return "num_threads must be positive after the runtime resolved it";
  default: return "unknown error";
  }
}
