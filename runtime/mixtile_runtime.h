/* The Mixtile runtime's C API: load an artifact (OUTDIR of mixtilec), bind safetensors
 * weights and inputs by name, run an entry point, read or write the results.
 * C linkage and opaque handles only; no C++ type and no exception ever crosses this API. */
#ifndef MIXTILE_RUNTIME_H
#define MIXTILE_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define MIXTILE_API __attribute__((visibility("default")))
#else
#define MIXTILE_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes. Every function that can fail returns one; on failure the calling thread's
 * mixtile_last_error() holds a one-line message naming the file or tensor at fault. */
typedef enum mixtile_status {
  MIXTILE_OK = 0,
  MIXTILE_ERROR_INVALID_ARGUMENT = 1, /* a null handle or pointer, an unknown name */
  MIXTILE_ERROR_IO = 2,               /* a file cannot be opened, mapped, written */
  MIXTILE_ERROR_FORMAT = 3,           /* malformed safetensors file, index or manifest */
  MIXTILE_ERROR_BINDING = 4,          /* missing tensor, wrong dtype or shape, symbol clash */
  MIXTILE_ERROR_UNSUPPORTED = 5,      /* a device or target this runtime was not built with */
  MIXTILE_ERROR_KERNEL = 6,           /* the entry point returned a non-zero code */
  MIXTILE_ERROR_OUT_OF_MEMORY = 7,
  MIXTILE_ERROR_INTERNAL = 8
} mixtile_status;

/* Element types of the artifact ABI: f32 = float, bf16 and f16 = uint16_t bits,
 * i32 = int32_t. (Checkpoints may hold other dtypes; they cannot be bound.) */
typedef enum mixtile_dtype {
  MIXTILE_DTYPE_F32 = 0,
  MIXTILE_DTYPE_BF16 = 1,
  MIXTILE_DTYPE_F16 = 2,
  MIXTILE_DTYPE_I32 = 3,
  MIXTILE_DTYPE_I64 = 5,  /* token ids of models (mixtile_model_*); no entry point takes it */
  MIXTILE_DTYPE_BOOL = 9  /* one byte, 0 or 1: attention masks */
} mixtile_dtype;

typedef enum mixtile_device {
  MIXTILE_DEVICE_CPU = 0,
  MIXTILE_DEVICE_CUDA = 1 /* a cuda-target artifact on the current CUDA device */
} mixtile_device;

/* Threads: artifacts and tensor sets are read-only once built and may be shared between
 * threads (adding to a set is not). A session holds the buffers of one run at a time:
 * use one session per thread; sessions of one artifact and weights share the mappings. */
typedef struct mixtile_artifact mixtile_artifact; /* a loaded OUTDIR */
typedef struct mixtile_tensors mixtile_tensors;   /* a named set of tensors */
typedef struct mixtile_session mixtile_session;   /* one entry point with weights bound */

/* What one run cost, from the manifest's "cost" object and the symbols of the last run
 * (see docs/artifact-abi.md). has_cost is 0 when the manifest has no "cost". */
typedef struct mixtile_run_cost {
  int has_cost;
  int64_t tokens;            /* T of the last run (B*S, or 1, for layers without T) */
  double flops;              /* flops_per_token * tokens */
  double weight_bytes_read;  /* dense + expert bytes * E * (1 - (1 - k/E)^T) */
} mixtile_run_cost;

/* ---- Errors ------------------------------------------------------------------------ */

/* The message of the calling thread's last failed call ("" if none yet). Successful calls
 * leave it unchanged; it stays valid until the next failure on this thread. */
MIXTILE_API const char *mixtile_last_error(void);

/* "f32", "bf16", "f16", "i32", "i64", "bool" (the manifest's spelling); "?" for an unknown value. */
MIXTILE_API const char *mixtile_dtype_name(mixtile_dtype dtype);

/* ---- Artifacts --------------------------------------------------------------------- */

/* Parses OUTDIR/manifest.json, loads lib<name>.so (RTLD_NOW | RTLD_LOCAL) and resolves
 * every entry point's packed and workspace symbols and the error-message symbol. A
 * cuda-target library links the CUDA runtime statically and is loaded the same way; it
 * touches no device until a session is created on MIXTILE_DEVICE_CUDA. */
MIXTILE_API int mixtile_artifact_open(const char *outdir, mixtile_artifact **artifact);
/* Sessions keep the loaded library alive themselves, so the artifact may be closed
 * before them. NULL is ignored. */
MIXTILE_API void mixtile_artifact_close(mixtile_artifact *artifact);
MIXTILE_API const char *mixtile_artifact_target(const mixtile_artifact *artifact);
MIXTILE_API size_t mixtile_artifact_entry_count(const mixtile_artifact *artifact);
/* The function name of entry point `index` (manifest order); NULL if out of range. */
MIXTILE_API const char *mixtile_artifact_entry_name(const mixtile_artifact *artifact,
                                                    size_t index);

/* Where the time goes (cpu artifacts): seconds and calls per kernel kind ("attention",
 * "moe_experts", "router", ...) over the runs since the profile was enabled. Enabling (1)
 * zeroes it; 0 turns it off (a branch per kernel remains). The table is the library's, shared
 * by every session of it, and not synchronized: profile one calling thread at a time. */
MIXTILE_API int mixtile_artifact_profile_enable(mixtile_artifact *artifact, int enable);
MIXTILE_API size_t mixtile_artifact_profile_count(const mixtile_artifact *artifact);
MIXTILE_API int mixtile_artifact_profile_entry(const mixtile_artifact *artifact, size_t index,
                                               const char **name, double *seconds,
                                               int64_t *calls);
/* ---- Tensor sets ------------------------------------------------------------------- */

/* Opens a .safetensors file, or a directory: a sharded checkpoint with
 * model.safetensors.index.json, or every *.safetensors file in it (a tensor name present
 * in two files is an error). Files are memory-mapped read-only and validated strictly;
 * tensors are used in place. A mapped file must not change while a set or session holds
 * it: each run checks the size and modification time of the weights' and inputs' files
 * before and after the kernels run and fails with MIXTILE_ERROR_IO naming a file that was
 * truncated, extended or written in place (the results are not delivered). A read past the
 * end of a file truncated in the middle of a run raises SIGBUS in the process, as for any
 * reader of a mapped file (mixtile-run reports it in one line). Replacing a file by a
 * rename, as tools that save checkpoints do, leaves the mapping on the old contents. */
MIXTILE_API int mixtile_tensors_open(const char *path, mixtile_tensors **tensors);
/* An empty set for tensors in the caller's memory (see mixtile_tensors_add). */
MIXTILE_API int mixtile_tensors_create(mixtile_tensors **tensors);
/* Adds a dense row-major tensor living in caller memory. It is borrowed, not copied: the
 * memory must stay valid and unchanged while a run uses it (and, for a weights set,
 * while any session created from the set lives). */
MIXTILE_API int mixtile_tensors_add(mixtile_tensors *tensors, const char *name,
                                    mixtile_dtype dtype, int rank, const int64_t *shape,
                                    const void *data);
/* Adds a dense row-major tensor living in the memory of the current CUDA device: a device
 * pointer of this process (cudaMalloc's, or torch.Tensor.data_ptr() of a CUDA tensor),
 * 16-byte aligned, borrowed like mixtile_tensors_add. Only sessions on MIXTILE_DEVICE_CUDA
 * take such tensors (a cpu session refuses them by name): as weights, used in place and
 * never uploaded; as inputs, read in place; as outputs of mixtile_session_run_into, written
 * in place and never copied to the host. */
MIXTILE_API int mixtile_tensors_add_device(mixtile_tensors *tensors, const char *name,
                                           mixtile_dtype dtype, int rank, const int64_t *shape,
                                           const void *data);
/* Looks up tensor `name`: its dtype (a mixtile_dtype, or -1 for another safetensors dtype),
 * rank, shape and read-only data, valid while the set lives. MIXTILE_ERROR_BINDING (naming
 * the set) if the set has no such tensor. */
MIXTILE_API int mixtile_tensors_find(const mixtile_tensors *tensors, const char *name,
                                     int *dtype, int *rank, const int64_t **shape,
                                     const void **data);
/* Writes `count` dense row-major tensors to a safetensors file, atomically (as
 * mixtile_session_write_results). */
MIXTILE_API int mixtile_write_safetensors(const char *path, size_t count,
                                          const char *const *names, const mixtile_dtype *dtypes,
                                          const int *ranks, const int64_t *const *shapes,
                                          const void *const *data);
/* Sessions keep what they bound from a weights set alive themselves, so a weights set may
 * be closed after mixtile_session_create. NULL is ignored. */
MIXTILE_API void mixtile_tensors_close(mixtile_tensors *tensors);

/* ---- Sessions ---------------------------------------------------------------------- */

/* Prepares entry point `entry` (NULL: the artifact's only one; refused if it has several)
 * on `device`, binding and checking once every weight-kind argument found in `weights`
 * (which may be NULL). A weight not in `weights` is looked up in each run's inputs. An f32
 * weight found in `weights` as bf16 or f16 of its shape is widened once, exactly, into memory
 * the session owns (transformers keeps DeepSeek's router in f32; hub checkpoints store it bf16).
 * The device must match the artifact's target (MIXTILE_ERROR_UNSUPPORTED otherwise, or when
 * no CUDA device is visible). On MIXTILE_DEVICE_CUDA the session owns a stream and device
 * memory: the weights bound here are uploaded once, now; each run uploads its inputs,
 * reuses the device workspace and result buffers (grown, never shrunk), and copies the
 * results back to host memory before it returns. Weights added with
 * mixtile_tensors_add_device are used where they are (an f32 weight given there as bf16 or
 * f16 is refused: it is widened on the host only). */
MIXTILE_API int mixtile_session_create(mixtile_artifact *artifact, const char *entry,
                                       const mixtile_tensors *weights, mixtile_device device,
                                       mixtile_session **session);
/* Runs the entry point once: binds the remaining arguments (inputs looked up in `inputs`
 * first, then in the weights set; `inputs` may be NULL), checks dtypes and shapes, binds
 * the dynamic symbols from the inputs' shapes, allocates the results (64-byte aligned;
 * buffers are reused across runs when large enough) and the workspace (grown, never
 * shrunk), and calls the packed entry point. num_threads <= 0 means all cores (ignored on
 * cuda).
 * On failure the previous results are no longer valid. */
MIXTILE_API int mixtile_session_run(mixtile_session *session, const mixtile_tensors *inputs,
                                    int num_threads);
/* mixtile_session_run, writing results into the caller's memory instead of the session's:
 * `outputs` (may be NULL) holds, under a result's name, a dense row-major tensor added with
 * mixtile_tensors_add whose dtype and shape are exactly the result's (known once the inputs
 * bind the symbols), writable, aligned to its element size and not overlapping any input. It
 * is poisoned (all bits set) and written in place when 64-byte aligned (entry points write
 * aligned results), else filled by one copy after the run; mixtile_session_result_data then
 * points to it. A result not in `outputs` lives in the session as usual; a name that is no result of the
 * entry point is refused (MIXTILE_ERROR_BINDING). On a cuda session an output is device memory
 * (mixtile_tensors_add_device: the kernels write it, poisoned first; result_data then gives
 * that device pointer) or host memory (the result is copied into it). */
MIXTILE_API int mixtile_session_run_into(mixtile_session *session, const mixtile_tensors *inputs,
                                         const mixtile_tensors *outputs, int num_threads);
/* Cuda sessions: from the next run on, copy and launch on the caller's `stream` (a
 * cudaStream_t of the current device; NULL: the session's own stream again), as a framework's
 * operator does on its current stream. A run on the caller's stream whose results all go to
 * device outputs returns as soon as its work is queued: it is ordered after what the caller
 * queued on that stream before and before what it queues after; a kernel fault surfaces at
 * the caller's next synchronization, and mixtile_session_last_run_seconds gives -1 for such a
 * run. Any other run waits for its stream before it returns, as without a caller stream.
 * Changing the stream first waits for the work of the previous one. A session runs on one
 * stream at a time; its workspace and buffers are reused run after run in that order.
 * MIXTILE_ERROR_UNSUPPORTED on a cpu session. */
MIXTILE_API int mixtile_session_set_stream(mixtile_session *session, void *stream);

/* Results of the last successful run, in manifest order. Pointers stay valid until the
 * next run or mixtile_session_close. Out-of-range indices give NULL / 0 / -1. */
MIXTILE_API size_t mixtile_session_result_count(const mixtile_session *session);
/* The index of the result called `name`, or -1. */
MIXTILE_API int64_t mixtile_session_result_index(const mixtile_session *session,
                                                 const char *name);
MIXTILE_API const char *mixtile_session_result_name(const mixtile_session *session,
                                                    size_t index);
MIXTILE_API mixtile_dtype mixtile_session_result_dtype(const mixtile_session *session,
                                                       size_t index);
MIXTILE_API int mixtile_session_result_rank(const mixtile_session *session, size_t index);
MIXTILE_API const int64_t *mixtile_session_result_shape(const mixtile_session *session,
                                                        size_t index);
MIXTILE_API void *mixtile_session_result_data(mixtile_session *session, size_t index);
MIXTILE_API size_t mixtile_session_result_bytes(const mixtile_session *session,
                                                size_t index);

/* Seconds the entry point itself took in the last run, without binding and copies: on the
 * cpu the wall time of the call, on cuda the device time between two events around its
 * launches. -1 if nothing has run. */
MIXTILE_API double mixtile_session_last_run_seconds(const mixtile_session *session);

/* The value the last run bound to dynamic symbol `symbol` ("T", "B", "S"), or -1 if the
 * entry point has no such symbol or nothing has run yet. */
MIXTILE_API int64_t mixtile_session_symbol_value(const mixtile_session *session,
                                                 const char *symbol);
/* The cost of the last run (for --bench). */
MIXTILE_API int mixtile_session_run_cost(const mixtile_session *session,
                                         mixtile_run_cost *cost);

/* Writes the results of the last run to a safetensors file under their result names,
 * atomically (temporary file in the same directory, fsync, rename). */
MIXTILE_API int mixtile_session_write_results(const mixtile_session *session,
                                              const char *path);
/* NULL is ignored. */
MIXTILE_API void mixtile_session_close(mixtile_session *session);

/* ---- Models (mixtilec --hf-config CONFIG --model) ------------------------------------ */
/* A whole decoder-only model: its entry point run over KV caches the model owns, for
 * teacher-forced logits and greedy generation. Prompts are int64 ids [batch, length] with
 * an optional int64 attention_mask [batch, length] of left padding (each row zeros, then
 * ones; NULL: no padding); a row's real tokens take positions 0, 1, ... A model holds the
 * caches of one call at a time: use one model per thread. */
typedef struct mixtile_model mixtile_model;
typedef struct mixtile_model_timing {
  double prefill_seconds;  /* the call over the prompts */
  int64_t prefill_tokens;
  double decode_seconds;   /* every later step of generation */
  int64_t decode_tokens;   /* tokens fed to decode steps (all sequences together) */
  int64_t decode_steps;
} mixtile_model_timing;
/* Called after each generation step with the tokens generated so far and the most there
 * can be (batch x new tokens); may be NULL. */
typedef void (*mixtile_model_progress)(int64_t generated, int64_t total, void *user);

/* 1 if the artifact is a whole model (its manifest has "model"), else 0. */
MIXTILE_API int mixtile_artifact_is_model(const mixtile_artifact *artifact);
/* The model's max_position_embeddings (its config's), or -1 if the artifact is no model. */
MIXTILE_API int64_t mixtile_artifact_model_max_positions(const mixtile_artifact *artifact);
/* Binds the model's entry point on the CPU with every weight from `weights` (a missing one
 * is an error naming it) and allocates zeroed bf16/f32 KV caches for `max_batch` sequences
 * of `max_length` positions (prompt plus new tokens). */
MIXTILE_API int mixtile_model_create(mixtile_artifact *artifact, const mixtile_tensors *weights,
                                     int64_t max_batch, int64_t max_length,
                                     mixtile_model **model);
MIXTILE_API int64_t mixtile_model_vocab_size(const mixtile_model *model);
/* logits: f32 [batch, length, vocab], as Hugging Face's model(ids, attention_mask).logits at
 * unmasked positions and 0 at masked ones. Refused (nothing written): an empty batch or
 * prompt, an id outside the vocabulary, a mask that is not left padding, a batch or prompt
 * past the model's maxima. */
MIXTILE_API int mixtile_model_forward(mixtile_model *model, int64_t batch, int64_t length,
                                      const int64_t *ids, const int64_t *mask, float *logits,
                                      int num_threads);
/* Greedy decoding of up to new_tokens per prompt, all prompts decoded together. sequences:
 * int64 [batch, length + new_tokens], each input row followed by its new tokens; a row
 * stops after an end-of-sequence id of the config and the rest is its pad id.
 * generated (may be NULL): int64 [batch], the new tokens of each row, its EOS included. */
MIXTILE_API int mixtile_model_generate(mixtile_model *model, int64_t batch, int64_t length,
                                       const int64_t *ids, const int64_t *mask,
                                       int64_t new_tokens, int64_t *sequences,
                                       int64_t *generated,
                                       mixtile_model_progress progress, void *user,
                                       int num_threads);
/* Times of the last forward or generate call. */
MIXTILE_API int mixtile_model_last_timing(const mixtile_model *model,
                                          mixtile_model_timing *timing);
/* NULL is ignored. */
MIXTILE_API void mixtile_model_close(mixtile_model *model);

#ifdef __cplusplus
}
#endif

#endif /* MIXTILE_RUNTIME_H */
