/* A hand-written stand-in for a `mixtilec --model` artifact (docs/artifact-abi.md, the "model"
 * manifest object), for the prompt front door's fuzz target: vocabulary 16, one layer, caches
 * [B, S, 1, 4]. Its arithmetic is trivial and checkable: the logits of a token put all their
 * mass on (3 * id + position + 1) mod 16, and every token is written into its cache row. It
 * checks what a real entry point checks (positions and sequences within the caches, ids within
 * the vocabulary, logit rows within the tokens) and fails with a code otherwise. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define VOCAB 16
#define HEAD 4

size_t forward_packed_workspace_size(const int64_t *dims) {
  (void)dims;
  return 0;
}

int forward_packed(void *const *tensors, const int64_t *dims, void *workspace, int num_threads) {
  const int32_t *ids = tensors[0], *positions = tensors[1], *sequences = tensors[2];
  const int32_t *rows = tensors[3];
  float *k = tensors[4], *v = tensors[5], *logits = tensors[6];
  const int64_t T = dims[0], R = dims[1], B = dims[2], S = dims[3];
  (void)workspace;
  (void)num_threads;
  for (int64_t t = 0; t < T; ++t) {
    if (sequences[t] < 0 || sequences[t] >= B || positions[t] < 0 || positions[t] >= S)
      return 1;
    if (ids[t] < 0 || ids[t] >= VOCAB)
      return 2;
    for (int d = 0; d < HEAD; ++d) {
      k[((int64_t)sequences[t] * S + positions[t]) * HEAD + d] = (float)ids[t];
      v[((int64_t)sequences[t] * S + positions[t]) * HEAD + d] = (float)positions[t];
    }
  }
  for (int64_t r = 0; r < R; ++r) {
    if (rows[r] < 0 || rows[r] >= T)
      return 3;
    float *row = logits + r * VOCAB;
    memset(row, 0, sizeof(float) * VOCAB);
    row[(3 * ids[rows[r]] + positions[rows[r]] + 1) % VOCAB] = 1.0f;
  }
  return 0;
}

const char *fake_model_error_message(int code) {
  switch (code) {
  case 1: return "a position or sequence lies outside the KV caches";
  case 2: return "a token id lies outside the vocabulary";
  case 3: return "a logit row lies outside the tokens";
  default: return 0;
  }
}
