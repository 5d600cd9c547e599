/* The C API's threading contract (runtime/mixtile_runtime.h), driven hard: one artifact and one
 * weights set shared by every thread, one session per thread (created on that thread, all at
 * once), each thread running its session RUNS times on the shared input sets in turn and
 * comparing every result bit for bit with the one the main thread computed alone. Every
 * seventh run is a deliberately bad one (no inputs): the error must be this thread's own.
 *
 *   threads_client OUTDIR WEIGHTS THREADS RUNS KERNEL_THREADS INPUTS...
 *
 * Built plainly by the test suite, and with -fsanitize=thread (runtime and kernels too) where
 * ThreadSanitizer is available. Prints one summary line; exits 1 at the first mismatch.
 * THREADS_CLIENT_SHARE=1 breaks the contract on purpose (every thread runs one shared
 * session): ThreadSanitizer must report it, which shows the sanitizer run can fail. */
#include "runtime/mixtile_runtime.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  mixtile_tensors *inputs;
  size_t count;      /* results */
  void **data;       /* the reference results, copied */
  size_t *bytes;
} Case;

static mixtile_artifact *artifact;
static mixtile_tensors *weights;
static Case *cases;
static int case_count, runs, kernel_threads;
static mixtile_session *shared_session; /* THREADS_CLIENT_SHARE=1 only */

typedef struct {
  int index;
  int good, refused;
  char failure[512];
} Worker;

static void *work(void *arg) {
  Worker *self = arg;
  mixtile_session *session = shared_session;
  if (!session && mixtile_session_create(artifact, NULL, weights, MIXTILE_DEVICE_CPU, &session)) {
    snprintf(self->failure, sizeof self->failure, "thread %d: session_create: %s", self->index,
             mixtile_last_error());
    return NULL;
  }
  for (int r = 0; r < runs; ++r) {
    if (r % 7 == 3) {
      /* No inputs: refused, and the message is this thread's. */
      if (mixtile_session_run(session, NULL, kernel_threads) != MIXTILE_ERROR_BINDING ||
          strstr(mixtile_last_error(), "missing tensor") == NULL) {
        snprintf(self->failure, sizeof self->failure,
                 "thread %d run %d: a run without inputs was not refused as expected: %s",
                 self->index, r, mixtile_last_error());
        break;
      }
      self->refused++;
      continue;
    }
    const Case *c = &cases[(self->index + r) % case_count];
    if (mixtile_session_run(session, c->inputs, kernel_threads)) {
      snprintf(self->failure, sizeof self->failure, "thread %d run %d: %s", self->index, r,
               mixtile_last_error());
      break;
    }
    int same = mixtile_session_result_count(session) == c->count;
    for (size_t i = 0; same && i < c->count; ++i)
      same = mixtile_session_result_bytes(session, i) == c->bytes[i] &&
             memcmp(mixtile_session_result_data(session, i), c->data[i], c->bytes[i]) == 0;
    if (!same) {
      snprintf(self->failure, sizeof self->failure,
               "thread %d run %d: results differ from the single-threaded run of case %d",
               self->index, r, (self->index + r) % case_count);
      break;
    }
    self->good++;
  }
  if (session != shared_session)
    mixtile_session_close(session);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 7) {
    fprintf(stderr, "usage: threads_client OUTDIR WEIGHTS THREADS RUNS KERNEL_THREADS INPUTS...\n");
    return 2;
  }
  int threads = atoi(argv[3]);
  runs = atoi(argv[4]);
  kernel_threads = atoi(argv[5]);
  case_count = argc - 6;
  if (mixtile_artifact_open(argv[1], &artifact) || mixtile_tensors_open(argv[2], &weights)) {
    fprintf(stderr, "threads_client: %s\n", mixtile_last_error());
    return 1;
  }
  /* The reference: each case run alone on this thread. */
  cases = calloc((size_t)case_count, sizeof(Case));
  mixtile_session *alone = NULL;
  if (mixtile_session_create(artifact, NULL, weights, MIXTILE_DEVICE_CPU, &alone)) {
    fprintf(stderr, "threads_client: %s\n", mixtile_last_error());
    return 1;
  }
  for (int i = 0; i < case_count; ++i) {
    Case *c = &cases[i];
    if (mixtile_tensors_open(argv[6 + i], &c->inputs) ||
        mixtile_session_run(alone, c->inputs, kernel_threads)) {
      fprintf(stderr, "threads_client: %s\n", mixtile_last_error());
      return 1;
    }
    c->count = mixtile_session_result_count(alone);
    c->data = calloc(c->count, sizeof(void *));
    c->bytes = calloc(c->count, sizeof(size_t));
    for (size_t k = 0; k < c->count; ++k) {
      c->bytes[k] = mixtile_session_result_bytes(alone, k);
      c->data[k] = malloc(c->bytes[k] ? c->bytes[k] : 1);
      memcpy(c->data[k], mixtile_session_result_data(alone, k), c->bytes[k]);
    }
  }
  const char *share = getenv("THREADS_CLIENT_SHARE");
  if (share && strcmp(share, "1") == 0)
    shared_session = alone;
  else
    mixtile_session_close(alone);

  pthread_t *ids = calloc((size_t)threads, sizeof(pthread_t));
  Worker *workers = calloc((size_t)threads, sizeof(Worker));
  for (int t = 0; t < threads; ++t) {
    workers[t].index = t;
    if (pthread_create(&ids[t], NULL, work, &workers[t]) != 0) {
      fprintf(stderr, "threads_client: cannot start thread %d\n", t);
      return 1;
    }
  }
  int good = 0, refused = 0, failed = 0;
  for (int t = 0; t < threads; ++t) {
    pthread_join(ids[t], NULL);
    good += workers[t].good;
    refused += workers[t].refused;
    if (workers[t].failure[0]) {
      fprintf(stderr, "threads_client: %s\n", workers[t].failure);
      failed = 1;
    }
  }
  for (int i = 0; i < case_count; ++i) {
    for (size_t k = 0; k < cases[i].count; ++k)
      free(cases[i].data[k]);
    free(cases[i].data);
    free(cases[i].bytes);
    mixtile_tensors_close(cases[i].inputs);
  }
  free(cases);
  mixtile_session_close(shared_session);
  free(ids);
  free(workers);
  mixtile_tensors_close(weights);
  mixtile_artifact_close(artifact);
  if (failed)
    return 1;
  printf("threads ok: %d threads x %d runs, %d runs identical to the single-threaded ones, %d "
         "bad runs refused with their own thread's message\n",
         threads, runs, good, refused);
  return 0;
}
