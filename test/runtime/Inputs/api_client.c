/* A C client of runtime/mixtile_runtime.h, as another project would link it: exercises
 * in-memory tensors, result accessors, buffer reuse across runs, T = 0, status codes and
 * the last-error message. Exits non-zero with a message at the first broken expectation. */
#include "runtime/mixtile_runtime.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

#define EXPECT(condition, ...)                                                              \
  do {                                                                                       \
    if (!(condition)) {                                                                      \
      fprintf(stderr, "FAILED line %d: %s: ", __LINE__, #condition);                         \
      fprintf(stderr, __VA_ARGS__);                                                          \
      fprintf(stderr, " (last error: %s)\n", mixtile_last_error());                          \
      failures++;                                                                            \
    }                                                                                        \
  } while (0)

#define CHECK_OK(call) EXPECT((call) == MIXTILE_OK, "%s", #call)

static const uint16_t kBias[4] = {0x3F00, 0xBFA0, 0x4040, 0x3C00}; /* 0.5 -1.25 3 0.0078125 */
static const float kBiasValues[4] = {0.5f, -1.25f, 3.0f, 0.0078125f};

/* Runs affine on T rows of x = i * 0.25 - 1 and checks y = 2 x + bias element by element,
 * after poisoning the previous result so an element the run did not write shows up. */
static void run_affine(mixtile_session *session, int64_t T) {
  float *x = malloc(sizeof(float) * (size_t)(T * 4 + 1));
  for (int64_t i = 0; i < T * 4; ++i)
    x[i] = (float)i * 0.25f - 1.0f;
  if (mixtile_session_result_count(session) == 1) {
    float *previous = mixtile_session_result_data(session, 0);
    size_t count = mixtile_session_result_bytes(session, 0) / sizeof(float);
    for (size_t i = 0; i < count; ++i)
      previous[i] = NAN;
  }
  mixtile_tensors *inputs = NULL;
  int64_t shape[2] = {T, 4};
  CHECK_OK(mixtile_tensors_create(&inputs));
  CHECK_OK(mixtile_tensors_add(inputs, "x", MIXTILE_DTYPE_F32, 2, shape, x));
  CHECK_OK(mixtile_session_run(session, inputs, 2));
  EXPECT(mixtile_session_result_count(session) == 1, "one result");
  EXPECT(strcmp(mixtile_session_result_name(session, 0), "y") == 0, "named y");
  EXPECT(mixtile_session_result_index(session, "y") == 0, "index of y");
  EXPECT(mixtile_session_result_index(session, "nope") == -1, "no such result");
  EXPECT(mixtile_session_result_dtype(session, 0) == MIXTILE_DTYPE_F32, "f32");
  EXPECT(mixtile_session_result_rank(session, 0) == 2, "rank 2");
  const int64_t *dims = mixtile_session_result_shape(session, 0);
  EXPECT(dims[0] == T && dims[1] == 4, "shape [%lld, %lld]", (long long)dims[0],
         (long long)dims[1]);
  EXPECT(mixtile_session_result_bytes(session, 0) == (size_t)(T * 16), "bytes");
  EXPECT(mixtile_session_symbol_value(session, "T") == T, "T bound");
  const float *y = mixtile_session_result_data(session, 0);
  EXPECT(y != NULL, "result data is never null, even for T = 0");
  int wrong = 0;
  for (int64_t i = 0; i < T * 4; ++i)
    wrong += !(y[i] == 2.0f * x[i] + kBiasValues[i % 4]);
  EXPECT(wrong == 0, "%d wrong elements at T = %lld", wrong, (long long)T);
  mixtile_tensors_close(inputs);
  free(x);
  printf("affine T=%lld ok\n", (long long)T);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: api_client OUTDIR SCRATCH_DIR\n");
    return 2;
  }
  const char *outdir = argv[1];
  char path[4096];

  /* Status codes and messages for files. */
  mixtile_tensors *broken = NULL;
  EXPECT(mixtile_tensors_open("/nonexistent/w.safetensors", &broken) == MIXTILE_ERROR_IO,
         "missing file is an I/O error");
  EXPECT(broken == NULL, "no handle on failure");
  EXPECT(strstr(mixtile_last_error(), "/nonexistent/w.safetensors") != NULL, "names the file");
  snprintf(path, sizeof path, "%s/bad.safetensors", argv[2]);
  FILE *file = fopen(path, "wb");
  fwrite("\x05\0\0\0\0\0\0\0{oops", 1, 13, file);
  fclose(file);
  EXPECT(mixtile_tensors_open(path, &broken) == MIXTILE_ERROR_FORMAT, "malformed JSON");
  EXPECT(strstr(mixtile_last_error(), "malformed JSON header") != NULL, "says why");
  printf("errors: %s\n", mixtile_last_error());
  EXPECT(mixtile_tensors_open(NULL, &broken) == MIXTILE_ERROR_INVALID_ARGUMENT, "null path");
  /* A name shaped like UTF-8 but ill-formed (overlong, surrogate, past U+10FFFF; found by
   * fuzz_safetensors) is quoted escaped. */
  mixtile_tensors *empty = NULL;
  CHECK_OK(mixtile_tensors_create(&empty));
  EXPECT(mixtile_tensors_find(empty, "\xe0\x80\x80\xed\xa0\x80\xf4\x90\x80\x80\xc3\xa9", NULL,
                              NULL, NULL, NULL) == MIXTILE_ERROR_BINDING, "no such tensor");
  EXPECT(strncmp(mixtile_last_error(),
                 "no tensor '\\xe0\\x80\\x80\\xed\\xa0\\x80\\xf4\\x90\\x80\\x80\xc3\xa9'", 54) == 0,
         "escaped name");
  mixtile_tensors_close(empty);

  mixtile_artifact *artifact = NULL;
  CHECK_OK(mixtile_artifact_open(outdir, &artifact));
  EXPECT(strcmp(mixtile_artifact_target(artifact), "cpu") == 0, "target");
  EXPECT(mixtile_artifact_entry_count(artifact) == 2, "two entry points");
  EXPECT(strcmp(mixtile_artifact_entry_name(artifact, 1), "pair") == 0, "manifest order");
  EXPECT(mixtile_artifact_entry_name(artifact, 2) == NULL, "out of range");

  /* Weights from memory; the set is closed right after binding: the session keeps it. */
  mixtile_tensors *weights = NULL;
  int64_t bias_shape[1] = {4};
  float scale[4] = {2.0f, 0.0f, 0.0f, 0.0f};
  int64_t scale_shape[2] = {2, 2};
  CHECK_OK(mixtile_tensors_create(&weights));
  CHECK_OK(mixtile_tensors_add(weights, "bias", MIXTILE_DTYPE_BF16, 1, bias_shape, kBias));
  CHECK_OK(mixtile_tensors_add(weights, "scale", MIXTILE_DTYPE_F32, 2, scale_shape, scale));
  EXPECT(mixtile_tensors_add(weights, "bias", MIXTILE_DTYPE_BF16, 1, bias_shape, kBias) ==
             MIXTILE_ERROR_INVALID_ARGUMENT,
         "adding a name twice is refused");

  mixtile_session *session = NULL;
  EXPECT(mixtile_session_create(artifact, NULL, weights, MIXTILE_DEVICE_CPU, &session) ==
             MIXTILE_ERROR_INVALID_ARGUMENT,
         "several entry points need a name");
  EXPECT(strstr(mixtile_last_error(), "affine, pair") != NULL, "lists them");
  EXPECT(mixtile_session_create(artifact, "affine", weights, MIXTILE_DEVICE_CUDA, &session) ==
             MIXTILE_ERROR_UNSUPPORTED,
         "cuda refused");
  EXPECT(strstr(mixtile_last_error(), "was built for target cpu and cannot run on the cuda device") !=
             NULL,
         "cuda message");
  CHECK_OK(mixtile_session_create(artifact, "affine", weights, MIXTILE_DEVICE_CPU, &session));
  mixtile_tensors_close(weights);
  mixtile_artifact_close(artifact); /* the session keeps the library loaded */

  EXPECT(mixtile_session_result_count(session) == 0, "no results before a run");
  run_affine(session, 3);
  run_affine(session, 2); /* smaller: buffers reused, every element still written */
  run_affine(session, 9); /* larger: buffers grow */
  run_affine(session, 0);

  /* Results written into the caller's memory (mixtile_session_run_into). */
  {
    float x[8] = {1, 2, 3, 4, -1, -2, -3, -4}, wrong[12] = {0};
    _Alignas(64) float storage[24] = {0};
    float *y = storage; /* 64-byte aligned: written in place */
    int64_t xs[2] = {2, 4}, ws[2] = {3, 4};
    mixtile_tensors *in = NULL, *out = NULL, *bad = NULL;
    CHECK_OK(mixtile_tensors_create(&in));
    CHECK_OK(mixtile_tensors_add(in, "x", MIXTILE_DTYPE_F32, 2, xs, x));
    CHECK_OK(mixtile_tensors_create(&out));
    CHECK_OK(mixtile_tensors_add(out, "y", MIXTILE_DTYPE_F32, 2, xs, y));
    CHECK_OK(mixtile_session_run_into(session, in, out, 1));
    EXPECT(mixtile_session_result_data(session, 0) == (void *)y, "the result is the caller's");
    int wrong_values = 0;
    for (int i = 0; i < 8; ++i)
      wrong_values += !(y[i] == 2.0f * x[i] + kBiasValues[i % 4]);
    EXPECT(wrong_values == 0, "%d elements wrong in the caller's buffer", wrong_values);
    /* Aligned to 4 bytes only: filled by a copy, the same values. */
    mixtile_tensors_close(out);
    y = storage + 1;
    CHECK_OK(mixtile_tensors_create(&out));
    CHECK_OK(mixtile_tensors_add(out, "y", MIXTILE_DTYPE_F32, 2, xs, y));
    CHECK_OK(mixtile_session_run_into(session, in, out, 1));
    EXPECT(mixtile_session_result_data(session, 0) == (void *)y, "the result is the caller's");
    for (int i = 0; i < 8; ++i)
      wrong_values += !(y[i] == 2.0f * x[i] + kBiasValues[i % 4]);
    EXPECT(wrong_values == 0, "%d elements wrong in the unaligned buffer", wrong_values);
    CHECK_OK(mixtile_tensors_create(&bad));
    CHECK_OK(mixtile_tensors_add(bad, "y", MIXTILE_DTYPE_F32, 2, ws, wrong));
    EXPECT(mixtile_session_run_into(session, in, bad, 1) == MIXTILE_ERROR_BINDING, "wrong shape");
    printf("into: %s\n", mixtile_last_error());
    EXPECT(wrong[0] == 0.0f, "a refused buffer is not touched");
    mixtile_tensors_close(bad);
    CHECK_OK(mixtile_tensors_create(&bad));
    CHECK_OK(mixtile_tensors_add(bad, "z", MIXTILE_DTYPE_F32, 2, xs, wrong));
    EXPECT(mixtile_session_run_into(session, in, bad, 1) == MIXTILE_ERROR_BINDING, "no such result");
    printf("into: %s\n", mixtile_last_error());
    mixtile_tensors_close(bad);
    mixtile_tensors_close(out);
    mixtile_tensors_close(in);
  }

  /* A wrong dtype from memory: refused, naming the tensor; the old results are gone. */
  mixtile_tensors *inputs = NULL;
  int32_t ints[8] = {0};
  int64_t shape[2] = {2, 4};
  CHECK_OK(mixtile_tensors_create(&inputs));
  CHECK_OK(mixtile_tensors_add(inputs, "x", MIXTILE_DTYPE_I32, 2, shape, ints));
  EXPECT(mixtile_session_run(session, inputs, 1) == MIXTILE_ERROR_BINDING, "wrong dtype");
  printf("binding: %s\n", mixtile_last_error());
  EXPECT(mixtile_session_result_count(session) == 0, "results invalid after a failed run");
  EXPECT(mixtile_session_write_results(session, "/dev/null") == MIXTILE_ERROR_INVALID_ARGUMENT,
         "nothing to write");
  mixtile_tensors_close(inputs);

  /* Results written atomically, and readable back through the runtime itself. */
  run_affine(session, 2);
  EXPECT(mixtile_session_write_results(session, "/nonexistent/dir/y.safetensors") ==
             MIXTILE_ERROR_IO,
         "unwritable directory");
  snprintf(path, sizeof path, "%s/api_y.safetensors", argv[2]);
  CHECK_OK(mixtile_session_write_results(session, path));
  mixtile_tensors *written = NULL;
  CHECK_OK(mixtile_tensors_open(path, &written));
  mixtile_tensors_close(written);
  mixtile_session_close(session);

  /* The cost of a run, from the manifest's "cost" (pair: 8 experts, k = 2). */
  CHECK_OK(mixtile_artifact_open(outdir, &artifact));
  CHECK_OK(mixtile_tensors_create(&weights));
  CHECK_OK(mixtile_tensors_add(weights, "scale", MIXTILE_DTYPE_F32, 2, scale_shape, scale));
  CHECK_OK(mixtile_session_create(artifact, "pair", weights, MIXTILE_DEVICE_CPU, &session));
  float a[4] = {1, 2, 3, 4};
  int32_t c[1] = {5};
  int64_t a_shape[2] = {1, 4}, c_shape[1] = {1};
  CHECK_OK(mixtile_tensors_create(&inputs));
  CHECK_OK(mixtile_tensors_add(inputs, "a", MIXTILE_DTYPE_F32, 2, a_shape, a));
  CHECK_OK(mixtile_tensors_add(inputs, "c", MIXTILE_DTYPE_I32, 1, c_shape, c));
  CHECK_OK(mixtile_session_run(session, inputs, 0));
  const float *s = mixtile_session_result_data(session, 0);
  const int32_t *count = mixtile_session_result_data(session, 1);
  EXPECT(s[0] == 11.0f && s[3] == 14.0f && *count == 1, "pair values");
  EXPECT(mixtile_session_result_rank(session, 1) == 0, "0-d result");
  mixtile_run_cost cost;
  CHECK_OK(mixtile_session_run_cost(session, &cost));
  EXPECT(cost.has_cost && cost.tokens == 1 && cost.flops == 8.0, "flops");
  /* exactly k = 2 experts at T = 1: 16 dense + 2 * 1000 */
  EXPECT(fabs(cost.weight_bytes_read - 2016.0) < 1e-9, "bytes %g", cost.weight_bytes_read);
  printf("cost: tokens=%lld flops=%g bytes=%g\n", (long long)cost.tokens, cost.flops,
         cost.weight_bytes_read);
  mixtile_tensors_close(inputs);
  mixtile_tensors_close(weights);
  mixtile_session_close(session);
  mixtile_artifact_close(artifact);

  if (failures) {
    fprintf(stderr, "%d expectation(s) failed\n", failures);
    return 1;
  }
  printf("all ok\n");
  return 0;
}
