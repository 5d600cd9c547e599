// mixtile-run: runs a compiled artifact on safetensors weights and inputs (shared/spec/tools.md).
// A thin client of the runtime's C API: it parses the command line, reports errors as one
// line and times --bench runs; binding, checking and running all live in runtime/.
#include "runtime/mixtile_runtime.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <csignal>
#include <sched.h>
#include <string>
#include <unistd.h>
#include <memory>
#include <utility>
#include <vector>

namespace {

const char *const kUsage =
    "usage: mixtile-run OUTDIR --weights W.safetensors|DIR [--inputs X.safetensors]\n"
    "                   [-o Y.safetensors] [--device cpu|cuda] [--threads N] [--bench N]\n"
    "                   [--entry NAME] [--cold] [--profile]\n"
    "  --device cuda  run a --target cuda artifact (a layer or a model) on the current GPU:\n"
    "          weights are uploaded once, inputs and results copied each run; --bench then\n"
    "          times a layer on the device (CUDA events around its launches, copies excluded)\n"
    "  --cold  with --bench on the cpu: evict the CPU caches before each timed run, as a layer\n"
    "          in a model sees them (its weights were pushed out by the layers before it)\n"
    "  --profile  print the time per kernel kind (attention, moe_experts, ...) over the timed\n"
    "          runs (--bench), or the run\n"
    "A model (mixtilec --hf-config CONFIG --model):\n"
    "  mixtile-run OUTDIR --weights CKPT --inputs IDS.safetensors -o LOGITS.safetensors\n"
    "          IDS holds input_ids int64 [B, S] and optionally attention_mask [B, S] (left\n"
    "          padding); writes logits f32 [B, S, vocab]\n"
    "  mixtile-run OUTDIR --weights CKPT --prompt-ids 1,2,3 [--prompt-ids 4,5 ...] --generate N\n"
    "          greedy decoding; prints each sequence (prompt, then new tokens) as one line\n"
    "  mixtile-run OUTDIR --weights CKPT --inputs IDS.safetensors --generate N -o OUT.safetensors\n"
    "          writes sequences int64 [B, S + N]\n"
    "  --max-length L  bound on prompt + new tokens (default: the config's\n"
    "                  max_position_embeddings); the KV caches hold what the batch needs\n"
    "  --bench R       repeat the forward or generation R times after a warm-up and report\n"
    "                  prefill and decode tokens/s\n";

struct Options {
  std::string outdir, weights, inputs, output, entry;
  std::string device = "cpu";
  int threads = 0; // 0: all cores available to this process
  int bench = 0;   // 0: a single run
  bool cold = false;
  bool profile = false;
  // Models.
  std::vector<std::vector<int64_t>> prompts;  // --prompt-ids
  int64_t generate = -1;                      // --generate N
  int64_t maxLength = 0;                      // --max-length
};

/// Streams through a buffer several times the last-level cache, so the next run reads its
/// weights from memory rather than from cache.
class CacheEvictor {
public:
  CacheEvictor() {
    long llc = ::sysconf(_SC_LEVEL3_CACHE_SIZE);
    // 4x the reported last-level cache, at least 256 MiB, at most 2 GiB. A VM may report its
    // host's whole cache, and that cache is the one its reads go through: on a 480 MiB L3
    // (Granite Rapids), after a 512 MiB read a 44 MB expert read ran at 1.49 ms against 1.79 ms
    // after 2 GiB; the last-level cache keeps much of what a single streaming pass meets.
    bytes = std::clamp<size_t>(llc > 0 ? 4 * static_cast<size_t>(llc) : 0, size_t(256) << 20,
                               size_t(2048) << 20);
    buffer.assign(bytes / sizeof(uint64_t), 1);
  }
  // Reads only: a buffer written here would leave up to a cache's worth of dirty lines for the
  // timed run to write back while it reads its weights.
  void evict() {
    uint64_t sum = 0;
    for (uint64_t word : buffer)
      sum += word;
    sink += sum;
  }
  size_t bytes = 0;

private:
  std::vector<uint64_t> buffer;
  volatile uint64_t sink = 0;
};

// The session or model open while running: an error closes it before exiting, so the device
// memory, streams and events it holds are given back as a library user's would be (a GPU's
// driver would reclaim them at exit anyway; the stand-in device of the tests reports them).
mixtile_session *g_openSession = nullptr;
mixtile_model *g_openModel = nullptr;

[[noreturn]] void die(const std::string &message) {
  std::fprintf(stderr, "mixtile-run: error: %s\n", message.c_str());
  if (g_openSession)
    mixtile_session_close(std::exchange(g_openSession, nullptr));
  if (g_openModel)
    mixtile_model_close(std::exchange(g_openModel, nullptr));
  std::exit(1);
}

// Exits with the runtime's message when a C API call failed.
// SIGINT/SIGTERM are noted, not obeyed at once: the run finishes (a kernel cannot be
// stopped half-way safely), then mixtile-run exits with status 1 without writing anything,
// so an interrupted run never leaves a partial or temporary output file and an existing one
// stays intact. An interrupt during the (atomic) write lets it complete.
volatile std::sig_atomic_t g_interrupted = 0;
extern "C" void noteInterrupt(int) { g_interrupted = 1; }

// Reading a memory-mapped file past its end raises SIGBUS: the weights or inputs were
// truncated while this process had them mapped. Say so in one line instead of dying of the
// signal; nothing has been written yet (results are written after the runs).
extern "C" void noteTruncatedMapping(int) {
  static const char message[] =
      "mixtile-run: error: a mapped file (the weights or the inputs) was truncated while in "
      "use (SIGBUS): nothing written\n";
  ssize_t ignored = ::write(2, message, sizeof(message) - 1);
  (void)ignored;
  ::_exit(1);
}

void checkInterrupted() {
  if (g_interrupted)
    die("interrupted: nothing written");
}

void check(int status) {
  if (status != MIXTILE_OK)
    die(mixtile_last_error());
}

int parsePositive(const std::string &option, const std::string &text) {
  char *end = nullptr;
  errno = 0;
  long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || value < 1 || value > 1000000000)
    die(option + " expects a positive integer, got '" + text + "'");
  return static_cast<int>(value);
}

Options parseOptions(int argc, char **argv) {
  Options options;
  bool sawOutdir = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (arg == "--cold") {
      options.cold = true;
      continue;
    }
    if (arg == "--profile") {
      options.profile = true;
      continue;
    }
    if (arg.size() > 1 && arg[0] == '-') {
      std::string name = arg, value;
      bool hasValue = false;
      size_t equals = arg.find('=');
      if (arg.rfind("--", 0) == 0 && equals != std::string::npos) {
        name = arg.substr(0, equals);
        value = arg.substr(equals + 1);
        hasValue = true;
      }
      static const char *const kValued[] = {"--weights",    "--inputs",   "-o",
                                            "--device",     "--threads",  "--bench",
                                            "--entry",      "--generate", "--prompt-ids",
                                            "--max-length"};
      if (std::find_if(std::begin(kValued), std::end(kValued), [&](const char *known) {
            return name == known;
          }) == std::end(kValued))
        die("unknown option '" + arg + "'\n" + kUsage);
      if (!hasValue) {
        if (i + 1 >= argc)
          die(name + " expects a value");
        value = argv[++i];
      }
      if (name == "--weights")
        options.weights = value;
      else if (name == "--inputs")
        options.inputs = value;
      else if (name == "-o")
        options.output = value;
      else if (name == "--entry")
        options.entry = value;
      else if (name == "--device")
        options.device = value;
      else if (name == "--threads")
        options.threads = parsePositive(name, value);
      else if (name == "--bench")
        options.bench = parsePositive(name, value);
      else if (name == "--generate")
        options.generate = value == "0" ? 0 : parsePositive(name, value);
      else if (name == "--max-length")
        options.maxLength = parsePositive(name, value);
      else if (name == "--prompt-ids") {
        std::vector<int64_t> ids;
        size_t at = 0;
        while (at <= value.size()) {
          size_t comma = value.find(',', at);
          std::string item = value.substr(at, comma == std::string::npos ? std::string::npos
                                                                         : comma - at);
          char *end = nullptr;
          errno = 0;
          long long id = std::strtoll(item.c_str(), &end, 10);
          if (item.empty() || *end != '\0' || errno != 0 || id < 0)
            die("--prompt-ids expects comma-separated token ids >= 0, got '" + value + "'");
          ids.push_back(id);
          if (comma == std::string::npos)
            break;
          at = comma + 1;
        }
        options.prompts.push_back(std::move(ids));
      }
      continue;
    }
    if (sawOutdir)
      die("more than one OUTDIR given ('" + options.outdir + "' and '" + arg + "')");
    options.outdir = arg;
    sawOutdir = true;
  }
  if (!sawOutdir)
    die(std::string("no OUTDIR given\n") + kUsage);
  if (options.weights.empty())
    die("--weights W.safetensors|DIR is required");
  if (options.device != "cpu" && options.device != "cuda")
    die("--device expects cpu or cuda, got '" + options.device + "'");
  if (options.cold && options.device == "cuda")
    die("--cold evicts the CPU caches and applies to --device cpu only (a GPU layer's weights "
        "come from device memory)");
  return options;
}

int allCores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0)
    return std::max(1, CPU_COUNT(&set));
  return static_cast<int>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
}

std::string shapeText(const mixtile_session *session, size_t index) {
  std::string text = "[";
  const int64_t *shape = mixtile_session_result_shape(session, index);
  for (int d = 0; d < mixtile_session_result_rank(session, index); ++d)
    text += (d ? ", " : "") + std::to_string(shape[d]);
  return text + "]";
}

void printBench(mixtile_session *session, std::vector<double> seconds) {
  std::sort(seconds.begin(), seconds.end());
  size_t n = seconds.size();
  double median = n % 2 ? seconds[n / 2] : (seconds[n / 2 - 1] + seconds[n / 2]) / 2;
  double minimum = seconds.front();
  mixtile_run_cost cost;
  check(mixtile_session_run_cost(session, &cost));
  std::printf("median latency: %.4f ms\n", median * 1e3);
  std::printf("min latency: %.4f ms\n", minimum * 1e3);
  // Rates use the median: one slow outlier should not move them, unlike a mean.
  std::printf("tokens/s: %.1f\n", static_cast<double>(cost.tokens) / median);
  if (cost.has_cost) {
    std::printf("GFLOP/s: %.3f\n", cost.flops / median / 1e9);
    std::printf("GB/s of weights read: %.3f\n", cost.weight_bytes_read / median / 1e9);
  } else {
    std::printf("GFLOP/s: n/a (the manifest has no cost)\n");
    std::printf("GB/s of weights read: n/a (the manifest has no cost)\n");
  }
}


/// The per-kernel-kind table of the profiled runs, largest first.
void printProfile(const mixtile_artifact *artifact) {
  struct Row {
    std::string name;
    double seconds;
    int64_t calls;
  };
  std::vector<Row> rows;
  double total = 0;
  for (size_t i = 0; i < mixtile_artifact_profile_count(artifact); ++i) {
    const char *name = nullptr;
    Row row{"", 0, 0};
    check(mixtile_artifact_profile_entry(artifact, i, &name, &row.seconds, &row.calls));
    row.name = name;
    total += row.seconds;
    rows.push_back(row);
  }
  std::sort(rows.begin(), rows.end(), [](const Row &a, const Row &b) { return a.seconds > b.seconds; });
  std::printf("profile: time per kernel kind over the profiled runs\n");
  for (const Row &row : rows)
    std::printf("  %-16s %10.3f ms %6.1f%% %8lld calls\n", row.name.c_str(), row.seconds * 1e3,
                total > 0 ? 100.0 * row.seconds / total : 0.0, static_cast<long long>(row.calls));
  std::printf("  %-16s %10.3f ms\n", "total", total * 1e3);
}

// ---- whole models ----------------------------------------------------------------------

/// A [B, S] integer tensor of the inputs file (int64 or int32) as int64.
std::vector<int64_t> readIds(mixtile_tensors *inputs, const std::string &file, const char *name,
                             int64_t &batch, int64_t &length, bool required) {
  int dtype = 0, rank = 0;
  const int64_t *shape = nullptr;
  const void *data = nullptr;
  if (mixtile_tensors_find(inputs, name, &dtype, &rank, &shape, &data) != MIXTILE_OK) {
    if (required)
      die(file + " has no tensor '" + name + "' (int64 [B, S] token ids)");
    return {};
  }
  bool isMask = std::strcmp(name, "attention_mask") == 0;
  if (rank != 2 || (dtype != MIXTILE_DTYPE_I64 && dtype != MIXTILE_DTYPE_I32 &&
                    !(isMask && dtype == MIXTILE_DTYPE_BOOL)))
    die(std::string("tensor '") + name + "' (" + file + ") must be int64 or int32" +
        (isMask ? " or bool" : "") + " [B, S], got " +
        (dtype >= 0 ? mixtile_dtype_name(static_cast<mixtile_dtype>(dtype)) : "another dtype") +
        " of rank " + std::to_string(rank));
  if (batch >= 0 && (shape[0] != batch || shape[1] != length))
    die(std::string("tensor '") + name + "' (" + file + ") must have the shape of input_ids [" +
        std::to_string(batch) + ", " + std::to_string(length) + "]");
  batch = shape[0];
  length = shape[1];
  std::vector<int64_t> values(static_cast<size_t>(batch * length));
  for (size_t i = 0; i < values.size(); ++i)
    values[i] = dtype == MIXTILE_DTYPE_I64   ? static_cast<const int64_t *>(data)[i]
                : dtype == MIXTILE_DTYPE_BOOL ? static_cast<const uint8_t *>(data)[i]
                                              : static_cast<const int32_t *>(data)[i];
  return values;
}

struct ProgressState {
  std::chrono::steady_clock::time_point start, last;
};

extern "C" void reportProgress(int64_t generated, int64_t total, void *user) {
  auto *state = static_cast<ProgressState *>(user);
  auto now = std::chrono::steady_clock::now();
  if (std::chrono::duration<double>(now - state->last).count() < 2.0 && generated < total)
    return;
  state->last = now;
  double seconds = std::chrono::duration<double>(now - state->start).count();
  std::fprintf(stderr, "mixtile-run: generated %lld of at most %lld tokens (%.1f s)\n",
               static_cast<long long>(generated), static_cast<long long>(total), seconds);
}

int runModel(const Options &options, mixtile_artifact *artifact, mixtile_tensors *weights) {
  // A model runs where its artifact was compiled for, as a layer does.
  const std::string target = mixtile_artifact_target(artifact);
  if (options.device != target)
    die(options.outdir + " was built for target " + target + " and cannot run on the " +
        options.device + " device (" +
        (target == "cuda" ? std::string("pass --device cuda") : "compile the model with mixtilec --target " + options.device) +
        ")");
  if (!options.entry.empty() || options.cold)
    die("--entry and --cold do not apply to a model");
  if (options.prompts.empty() == options.inputs.empty())
    die("a model needs its prompts: --inputs IDS.safetensors or --prompt-ids (one of them)");
  if (!options.prompts.empty() && options.generate < 0)
    die("--prompt-ids needs --generate N");
  if (options.generate < 0 && options.output.empty() && options.bench == 0)
    die("a forward over --inputs writes its logits: give -o LOGITS.safetensors (or --generate N)");
  // Prompts: from the inputs file, or --prompt-ids left-padded into one batch.
  int64_t batch = -1, length = -1;
  std::vector<int64_t> ids, mask;
  mixtile_tensors *inputs = nullptr;
  if (!options.inputs.empty()) {
    check(mixtile_tensors_open(options.inputs.c_str(), &inputs));
    ids = readIds(inputs, options.inputs, "input_ids", batch, length, true);
    mask = readIds(inputs, options.inputs, "attention_mask", batch, length, false);
  } else {
    batch = static_cast<int64_t>(options.prompts.size());
    length = 0;
    for (const std::vector<int64_t> &prompt : options.prompts)
      length = std::max<int64_t>(length, static_cast<int64_t>(prompt.size()));
    ids.assign(static_cast<size_t>(batch * length), 0);
    mask.assign(ids.size(), 0);
    for (int64_t b = 0; b < batch; ++b) {
      const std::vector<int64_t> &prompt = options.prompts[b];
      int64_t pad = length - static_cast<int64_t>(prompt.size());
      for (size_t s = 0; s < prompt.size(); ++s) {
        ids[b * length + pad + s] = prompt[s];
        mask[b * length + pad + s] = 1;
      }
    }
  }
  // The caches hold what this batch needs, within the bound of --max-length (default: the
  // config's max_position_embeddings).
  int64_t newTokens = std::max<int64_t>(options.generate, 0);
  int64_t limit = options.maxLength > 0 ? options.maxLength
                                        : mixtile_artifact_model_max_positions(artifact);
  if (length + newTokens > limit)
    die("a prompt of " + std::to_string(length) + " tokens + " + std::to_string(newTokens) +
        " new tokens exceeds the max length " + std::to_string(limit) +
        (options.maxLength > 0 ? " (--max-length)" : " (the config's max_position_embeddings; "
                                                     "raise it with --max-length)"));
  int64_t maxLength = std::max<int64_t>(1, length + newTokens);
  mixtile_model *model = nullptr;
  check(mixtile_model_create(artifact, weights, std::max<int64_t>(batch, 1), maxLength, &model));
  g_openModel = model;
  int threads = options.threads > 0 ? options.threads : allCores();
  const int64_t vocab = mixtile_model_vocab_size(model);
  const int64_t *maskData = mask.empty() ? nullptr : mask.data();
  std::vector<float> logits;
  std::vector<int64_t> sequences, generated(std::max<int64_t>(batch, 0));
  std::vector<double> prefillRates, decodeRates;
  ProgressState progress;
  for (int run = 0; run <= options.bench; ++run) {
    checkInterrupted();
    // The profile covers the timed runs (or the only run).
    if (options.profile && (run == 1 || options.bench == 0))
      check(mixtile_artifact_profile_enable(artifact, 1));
    if (options.generate >= 0) {
      sequences.assign(static_cast<size_t>(std::max<int64_t>(batch, 0) * (length + newTokens)), 0);
      progress.start = progress.last = std::chrono::steady_clock::now();
      check(mixtile_model_generate(model, batch, length, ids.data(), maskData, newTokens,
                                   sequences.data(), generated.data(),
                                   options.bench == 0 && newTokens >= 64 ? reportProgress : nullptr,
                                   &progress, threads));
    } else {
      logits.assign(static_cast<size_t>(std::max<int64_t>(batch, 0) * length * vocab), 0.0f);
      check(mixtile_model_forward(model, batch, length, ids.data(), maskData, logits.data(),
                                  threads));
    }
    mixtile_model_timing timing;
    check(mixtile_model_last_timing(model, &timing));
    if (run > 0) {  // run 0 is the warm-up
      prefillRates.push_back(timing.prefill_tokens / timing.prefill_seconds);
      if (timing.decode_steps > 0)
        decodeRates.push_back(timing.decode_tokens / timing.decode_seconds);
    }
  }
  checkInterrupted();
  if (!options.output.empty()) {
    if (options.generate >= 0) {
      const char *names[] = {"sequences"};
      mixtile_dtype dtypes[] = {MIXTILE_DTYPE_I64};
      int ranks[] = {2};
      int64_t shape[] = {batch, length + newTokens};
      const int64_t *shapes[] = {shape};
      const void *data[] = {sequences.data()};
      check(mixtile_write_safetensors(options.output.c_str(), 1, names, dtypes, ranks, shapes,
                                      data));
    } else {
      const char *names[] = {"logits"};
      mixtile_dtype dtypes[] = {MIXTILE_DTYPE_F32};
      int ranks[] = {3};
      int64_t shape[] = {batch, length, vocab};
      const int64_t *shapes[] = {shape};
      const void *data[] = {logits.data()};
      check(mixtile_write_safetensors(options.output.c_str(), 1, names, dtypes, ranks, shapes,
                                      data));
    }
  } else if (options.generate >= 0 && options.bench == 0) {
    // One line per sequence: its prompt (padding dropped), then its new tokens.
    for (int64_t b = 0; b < batch; ++b) {
      std::string line;
      for (int64_t s = 0; s < length; ++s)
        if (maskData == nullptr || maskData[b * length + s])
          line += (line.empty() ? "" : " ") + std::to_string(ids[b * length + s]);
      for (int64_t n = 0; n < generated[b]; ++n)
        line += (line.empty() ? "" : " ") +
                std::to_string(sequences[b * (length + newTokens) + length + n]);
      std::printf("%s\n", line.c_str());
    }
  }
  if (options.profile)
    printProfile(artifact);
  if (options.bench > 0) {
    auto median = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      size_t n = v.size();
      return n == 0 ? 0.0 : n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    };
    std::printf("batch: %lld prompts of up to %lld tokens, %lld new tokens each, %d threads\n",
                static_cast<long long>(batch), static_cast<long long>(length),
                static_cast<long long>(newTokens), threads);
    std::printf("prefill tokens/s: %.1f\n", median(prefillRates));
    if (!decodeRates.empty())
      std::printf("decode tokens/s: %.1f\n", median(decodeRates));
  }
  mixtile_model_close(std::exchange(g_openModel, nullptr));
  mixtile_tensors_close(inputs);
  return 0;
}
} // namespace

int main(int argc, char **argv) {
  Options options = parseOptions(argc, argv);
  std::signal(SIGINT, noteInterrupt);
  std::signal(SIGTERM, noteInterrupt);
  std::signal(SIGBUS, noteTruncatedMapping);

  mixtile_artifact *artifact = nullptr;
  check(mixtile_artifact_open(options.outdir.c_str(), &artifact));
  if (mixtile_artifact_is_model(artifact)) {
    mixtile_tensors *weights = nullptr;
    check(mixtile_tensors_open(options.weights.c_str(), &weights));
    int code = runModel(options, artifact, weights);
    mixtile_tensors_close(weights);
    mixtile_artifact_close(artifact);
    return code;
  }
  if (!options.prompts.empty() || options.generate >= 0 || options.maxLength > 0)
    die(options.outdir + " is a layer, not a model: --prompt-ids, --generate and --max-length "
        "apply to models (mixtilec --hf-config CONFIG --model)");
  size_t entries = mixtile_artifact_entry_count(artifact);
  if (options.entry.empty() && entries > 1) {
    std::string names;
    for (size_t i = 0; i < entries; ++i)
      names += std::string(i ? ", " : "") + mixtile_artifact_entry_name(artifact, i);
    die(options.outdir + " has " + std::to_string(entries) + " entry points (" + names +
        "); choose one with --entry NAME");
  }
  mixtile_device device = options.device == "cuda" ? MIXTILE_DEVICE_CUDA : MIXTILE_DEVICE_CPU;

  mixtile_tensors *weights = nullptr, *inputs = nullptr;
  check(mixtile_tensors_open(options.weights.c_str(), &weights));
  if (!options.inputs.empty())
    check(mixtile_tensors_open(options.inputs.c_str(), &inputs));

  mixtile_session *session = nullptr;
  check(mixtile_session_create(artifact, options.entry.empty() ? nullptr : options.entry.c_str(),
                               weights, device, &session));
  g_openSession = session;
  int threads = options.threads > 0 ? options.threads : allCores();

  if (options.profile && device == MIXTILE_DEVICE_CUDA)
    die("--profile times the cpu target's kernels; on cuda use nsys");
  if (options.profile && options.bench == 0)
    check(mixtile_artifact_profile_enable(artifact, 1));
  // The first run is the warm-up of --bench (page faults on the mapped weights, workspace
  // allocation, thread pool start-up); without --bench it is the run.
  check(mixtile_session_run(session, inputs, threads));
  std::vector<double> seconds;
  std::unique_ptr<CacheEvictor> evictor;
  if (options.cold && options.bench > 0)
    evictor = std::make_unique<CacheEvictor>();
  if (options.profile && options.bench > 0)  // the warm-up run above is not profiled
    check(mixtile_artifact_profile_enable(artifact, 1));
  for (int i = 0; i < options.bench; ++i) {
    checkInterrupted();
    if (evictor)
      evictor->evict();
    auto start = std::chrono::steady_clock::now();
    check(mixtile_session_run(session, inputs, threads));
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    // On the GPU a run also copies inputs and results over PCIe; the layer's own time is the
    // device time between events around its launches.
    seconds.push_back(device == MIXTILE_DEVICE_CUDA ? mixtile_session_last_run_seconds(session)
                                                    : wall);
  }

  checkInterrupted();
  if (!options.output.empty())
    check(mixtile_session_write_results(session, options.output.c_str()));
  if (options.bench > 0) {
    if (evictor)
      std::printf("caches: evicted (%zu MiB streamed) before each run\n", evictor->bytes >> 20);
    if (device == MIXTILE_DEVICE_CUDA)
      std::printf("timing: device time of the layer (CUDA events), host<->device copies "
                  "excluded\n");
    printBench(session, seconds);
  }
  if (options.profile)
    printProfile(artifact);
  if (options.bench == 0 && options.output.empty()) {
    // Nothing to write: say what was computed, so a bare run is not silent.
    for (size_t r = 0; r < mixtile_session_result_count(session); ++r)
      std::printf("%s: %s %s\n", mixtile_session_result_name(session, r),
                  mixtile_dtype_name(mixtile_session_result_dtype(session, r)),
                  shapeText(session, r).c_str());
  }

  mixtile_session_close(std::exchange(g_openSession, nullptr));
  mixtile_tensors_close(inputs);
  mixtile_tensors_close(weights);
  mixtile_artifact_close(artifact);
  return 0;
}
