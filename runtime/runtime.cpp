// The runtime behind mixtile_runtime.h: manifest parsing, loading lib<name>.so, binding
// tensors by name with dtype/shape/symbol checks, buffers, and calling packed entry points.
// Exceptions are used inside and stop at the C boundary (see `guarded`); no MLIR here.
#include "runtime/mixtile_runtime.h"
#include "runtime/safetensors.h"

#include "codegen/cuda/kernels/host_api.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <new>
#include <set>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

using namespace mixtile::runtime;

namespace {

// ---------------------------------------------------------------------------------------
// Errors: one exception type carrying the C status, converted once in `guarded`.

struct Error : std::runtime_error {
  Error(mixtile_status code, const std::string &message)
      : std::runtime_error(message), code(code) {}
  mixtile_status code;
};

thread_local std::string lastError;

// Messages quote untrusted bytes (a file's header, a manifest's values): keep printable ASCII
// and well-formed UTF-8, write any other byte as \xNN, so a message is always valid text.
std::string escapeUntrusted(const std::string &text) {
  std::string out;
  out.reserve(text.size());
  auto hex = [&](unsigned char c) {
    static const char digits[] = "0123456789abcdef";
    out += "\\x";
    out += digits[c >> 4];
    out += digits[c & 15];
  };
  for (size_t i = 0; i < text.size();) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    // A UTF-8 sequence: its length from the lead byte, then continuation bytes 10xxxxxx, and
    // the code point it spells must be well-formed: not overlong (C0/C1 leads, E0 80-9F,
    // F0 80-8F), not a surrogate (ED A0-BF), not past U+10FFFF (F4 90-BF, leads past F4).
    size_t length = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    bool valid = length > 0 && i + length <= text.size();
    uint32_t codePoint = c & (0x7f >> length);
    for (size_t k = 1; valid && k < length; ++k) {
      unsigned char next = static_cast<unsigned char>(text[i + k]);
      valid = (next & 0xc0) == 0x80;
      codePoint = (codePoint << 6) | (next & 0x3f);
    }
    valid = valid && !((length == 3 && codePoint < 0x800) ||
                       (length == 4 && (codePoint < 0x10000 || codePoint > 0x10ffff)) ||
                       (codePoint >= 0xd800 && codePoint <= 0xdfff));
    if (valid) {
      out.append(text, i, length);
      i += length;
    } else {
      hex(c);
      ++i;
    }
  }
  return out;
}

template <typename Body>
int guarded(Body &&body) {
  try {
    body();
    return MIXTILE_OK;
  } catch (const Error &error) {
    lastError = escapeUntrusted(error.what());
    return error.code;
  } catch (const IoError &error) {
    lastError = escapeUntrusted(error.what());
    return MIXTILE_ERROR_IO;
  } catch (const std::bad_alloc &) {
    lastError = "out of memory";
    return MIXTILE_ERROR_OUT_OF_MEMORY;
  } catch (const std::logic_error &error) {
    lastError = "internal error: " + escapeUntrusted(error.what());
    return MIXTILE_ERROR_INTERNAL;
  } catch (const std::exception &error) {
    // safetensors.cpp reports malformed files as plain runtime_errors.
    lastError = escapeUntrusted(error.what());
    return MIXTILE_ERROR_FORMAT;
  } catch (...) {
    lastError = "internal error: unknown exception";
    return MIXTILE_ERROR_INTERNAL;
  }
}

[[noreturn]] void fail(mixtile_status code, const std::string &message) {
  throw Error(code, message);
}

void requireArgument(const void *pointer, const char *what) {
  if (!pointer)
    fail(MIXTILE_ERROR_INVALID_ARGUMENT, std::string(what) + " must not be null");
}

// ---------------------------------------------------------------------------------------
// 64-byte aligned, grow-only buffers for results, workspaces and staged tensors.

class AlignedBuffer {
public:
  static constexpr size_t kAlignment = 64;
  AlignedBuffer() = default;
  AlignedBuffer(AlignedBuffer &&other) noexcept
      : pointer(other.pointer), capacity(other.capacity) {
    other.pointer = nullptr;
    other.capacity = 0;
  }
  AlignedBuffer &operator=(AlignedBuffer &&) = delete;
  ~AlignedBuffer() { std::free(pointer); }

  /// At least `bytes` bytes (never a null pointer, even for 0 bytes). Grows, never shrinks,
  /// so repeated runs (and --bench) allocate only when T grows.
  void *ensure(size_t bytes) {
    if (pointer && bytes <= capacity)
      return pointer;
    size_t rounded = ((bytes < kAlignment ? kAlignment : bytes) + kAlignment - 1) /
                     kAlignment * kAlignment;
    void *grown = std::aligned_alloc(kAlignment, rounded);
    if (!grown)
      throw std::bad_alloc();
    std::free(pointer);
    pointer = grown;
    capacity = rounded;
    return pointer;
  }
  void *data() const { return pointer; }

private:
  void *pointer = nullptr;
  size_t capacity = 0;
};

// ---------------------------------------------------------------------------------------
// The manifest (docs/artifact-abi.md), parsed once and validated.

using PackedFn = int (*)(void *const *tensors, const int64_t *dims, void *workspace,
                         int numThreads);
// Target cuda: device pointers, a device workspace and a cudaStream_t instead of threads.
using CudaPackedFn = int (*)(void *const *tensors, const int64_t *dims, void *workspace,
                             void *stream);
using CudaHostApiFn = const mixtile_cuda_host_api *(*)();
using WorkspaceFn = size_t (*)(const int64_t *dims);
using ErrorMessageFn = const char *(*)(int code);

struct TensorSpec {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;        // -1 where dynamic
  std::vector<std::string> symbols;  // "" where static
  bool isWeight = false;             // kind "weight" (results: false)
  bool isState = false;              // kind "state": updated in place (a model's KV cache)
  // "stored" (a weight the checkpoint holds in another layout, mix.stored): built from tensor
  // `storedName`, whose last dim is read with storedStride from storedOffset, then with
  // storedTranspose its last two dims swapped.
  std::string storedName;
  int64_t storedStride = 1, storedOffset = 0;
  bool storedTranspose = false;
  // "format": "mxfp4": the stored tensor is `<storedName>_blocks` [.., N, K / 32, 16] U8 (two
  // e2m1 codes a byte, low nibble first) with `<storedName>_scales` [.., N, K / 32] U8 (e8m0),
  // for the [.., K, N] tensor transformers dequantizes them to (gpt-oss's hub experts). A
  // float weight is dequantized from both; an f4_e2m1 weight [.., R, K] takes rows of the
  // blocks as they are, an f8_e8m0 one [.., R, K / 32] rows of the scales (mxfp4Rows).
  bool storedMxfp4 = false;
  bool isStored() const { return !storedName.empty(); }
  bool mxfp4Scales() const { return storedMxfp4 && dtype == DType::F8_E8M0; }
  std::string fileName() const {
    return !isStored()     ? name
           : mxfp4Scales() ? storedName + "_scales"
           : storedMxfp4   ? storedName + "_blocks"
                           : storedName;
  }
  bool hasSymbols() const {
    for (const std::string &symbol : symbols)
      if (!symbol.empty())
        return true;
    return false;
  }
};

std::string describeShape(const TensorSpec &spec) {
  std::string text = "[";
  for (size_t i = 0; i < spec.shape.size(); ++i)
    text += (i ? ", " : "") +
            (spec.symbols[i].empty() ? std::to_string(spec.shape[i]) : spec.symbols[i]);
  return text + "]";
}

std::string describeExpected(const TensorSpec &spec) {
  return std::string(manifestDTypeName(spec.dtype)) + " " + describeShape(spec);
}

// In the manifest's spelling where the dtype has one ("bf16"), so it reads against the
// expectation; other dtypes keep their safetensors name ("I64").
std::string describeActual(const TensorView &view) {
  return std::string(manifestDTypeName(view.dtype)) + " " + formatShape(view.shape);
}

struct Cost {
  double flopsPerToken = 0, denseWeightBytes = 0, expertWeightBytes = 0;
  double numExperts = 0, expertsPerToken = 0;
};

struct EntryPoint {
  std::string function, packedSymbol, workspaceSymbol;
  std::vector<std::string> dynamicDims;
  std::vector<TensorSpec> arguments, results;
  bool hasCost = false;
  Cost cost;
  PackedFn packed = nullptr;          // target cpu
  CudaPackedFn cudaPacked = nullptr;  // target cuda
  WorkspaceFn workspaceSize = nullptr;

  int symbolIndex(const std::string &symbol) const {
    for (size_t i = 0; i < dynamicDims.size(); ++i)
      if (dynamicDims[i] == symbol)
        return static_cast<int>(i);
    return -1;
  }
};

// The CPU features this host has, by their Linux names (/proc/cpuinfo "flags"); empty when
// the file cannot be read (then artifacts that require features are refused).
const std::set<std::string> &hostCpuFeatures() {
  static const std::set<std::string> features = [] {
    std::set<std::string> found;
    std::ifstream cpuinfo("/proc/cpuinfo");
    std::string line;
    while (std::getline(cpuinfo, line)) {
      if (line.rfind("flags", 0) != 0)
        continue;
      std::istringstream words(line.substr(line.find(':') + 1));
      std::string word;
      while (words >> word)
        found.insert(word);
      break;
    }
    return found;
  }();
  return features;
}

// Linux grants a process the AMX tile state only on request (arch_prctl
// ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA), once per process.
bool requestAmxTileState() {
  static const bool granted = [] {
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return ::syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return granted;
}

struct Artifact {
  std::string outdir, manifestPath, target, name, library;
  void *handle = nullptr;
  ErrorMessageFn errorMessage = nullptr;
  // Per-kernel-kind timing of the cpu target (manifest "profile_symbol"), or null.
  using ProfileFn = size_t (*)(int enable, const char *const **names, const double **seconds,
                               const int64_t **calls);
  ProfileFn profile = nullptr;
  const mixtile_cuda_host_api *cuda = nullptr; // target cuda: the library's CUDA runtime
  std::vector<EntryPoint> entries;
  // A whole model (mixtilec --model): the manifest's "model" object.
  struct ModelInfo {
    bool present = false;
    std::string entry;
    int64_t layers = 0, vocab = 0, maxPositions = 0, padId = 0;
    std::vector<int64_t> eosIds;
  } model;
  // Weights the checkpoint may store as fp8 e4m3 with one scale per block of blockRows x
  // blockCols (manifest "weight_quantization"); 0 when the artifact declares none.
  int64_t quantBlockRows = 0, quantBlockCols = 0;
  ~Artifact() {
    if (handle)
      ::dlclose(handle);
  }
};

// Field accessors that fail with the JSON path of the offending field.
class ManifestReader {
public:
  explicit ManifestReader(std::string file) : file(std::move(file)) {}

  [[noreturn]] void bad(const std::string &where, const std::string &what) const {
    fail(MIXTILE_ERROR_FORMAT, file + ": " + where + ": " + what);
  }
  const nlohmann::json &field(const nlohmann::json &object, const char *key,
                              const std::string &where) const {
    if (!object.is_object())
      bad(where, "expected an object");
    auto found = object.find(key);
    if (found == object.end())
      bad(where, std::string("missing field \"") + key + "\"");
    return *found;
  }
  std::string string(const nlohmann::json &object, const char *key,
                     const std::string &where) const {
    const nlohmann::json &value = field(object, key, where);
    if (!value.is_string())
      bad(where + "." + key, "expected a string, got " + value.dump());
    return value.get<std::string>();
  }
  const nlohmann::json &array(const nlohmann::json &object, const char *key,
                              const std::string &where) const {
    const nlohmann::json &value = field(object, key, where);
    if (!value.is_array())
      bad(where + "." + key, "expected an array, got " + value.dump());
    return value;
  }
  double number(const nlohmann::json &object, const char *key, const std::string &where) const {
    const nlohmann::json &value = field(object, key, where);
    if (!value.is_number() || value.get<double>() < 0)
      bad(where + "." + key, "expected a non-negative number, got " + value.dump());
    return value.get<double>();
  }

  TensorSpec tensor(const nlohmann::json &json, const std::string &where,
                    const EntryPoint &entry, bool isArgument) const {
    TensorSpec spec;
    spec.name = string(json, "name", where);
    const std::string named = where + " ('" + spec.name + "')";
    std::string dtype = string(json, "dtype", named);
    if (!parseManifestDType(dtype, spec.dtype))
      bad(named, "unknown dtype '" + dtype +
                     "' (expected f32, bf16, f16, i32, f8_e4m3, f4_e2m1 or f8_e8m0)");
    const nlohmann::json &shape = array(json, "shape", named);
    const nlohmann::json &symbols = array(json, "symbols", named);
    if (symbols.size() != shape.size())
      bad(named, "\"symbols\" has " + std::to_string(symbols.size()) + " entries but \"shape\" has " +
                     std::to_string(shape.size()));
    for (size_t i = 0; i < shape.size(); ++i) {
      const std::string dim = named + ".shape[" + std::to_string(i) + "]";
      if (shape[i].is_null()) {
        if (!symbols[i].is_string() || entry.symbolIndex(symbols[i].get<std::string>()) < 0)
          bad(dim, "a dynamic dimension needs a symbol listed in dynamic_dims, got " +
                       symbols[i].dump());
        spec.shape.push_back(-1);
        spec.symbols.push_back(symbols[i].get<std::string>());
      } else {
        if (!shape[i].is_number_integer() || shape[i].get<int64_t>() < 0)
          bad(dim, "expected a non-negative integer or null, got " + shape[i].dump());
        if (!symbols[i].is_null())
          bad(dim, "a static dimension must have a null symbol, got " + symbols[i].dump());
        spec.shape.push_back(shape[i].get<int64_t>());
        spec.symbols.push_back("");
      }
    }
    if (isArgument) {
      std::string kind = string(json, "kind", named);
      if (kind != "weight" && kind != "input" && kind != "state")
        bad(named, "kind must be \"weight\", \"input\" or \"state\", got \"" + kind + "\"");
      spec.isWeight = kind == "weight";
      spec.isState = kind == "state";
      if (json.contains("stored")) {
        const nlohmann::json &stored = json["stored"];
        const std::string at = named + ".stored";
        spec.storedName = string(stored, "name", at);
        const nlohmann::json &stride = field(stored, "stride", at);
        const nlohmann::json &offset = field(stored, "offset", at);
        const nlohmann::json &transpose = field(stored, "transpose", at);
        if (!stride.is_number_integer() || !offset.is_number_integer() ||
            stride.get<int64_t>() < 1 || stride.get<int64_t>() > 64 ||
            offset.get<int64_t>() < 0 || offset.get<int64_t>() >= stride.get<int64_t>())
          bad(at, "expected integers 1 <= stride <= 64 and 0 <= offset < stride, got " +
                      stored.dump());
        if (!transpose.is_boolean())
          bad(at + ".transpose", "expected true or false, got " + transpose.dump());
        spec.storedStride = stride.get<int64_t>();
        spec.storedOffset = offset.get<int64_t>();
        spec.storedTranspose = transpose.get<bool>();
        if (stored.contains("format")) {
          if (string(stored, "format", at) != "mxfp4" || !spec.storedTranspose ||
              spec.dtype == DType::I32 || spec.dtype == DType::F8_E4M3)
            bad(at + ".format", "expected \"mxfp4\" on a transposed f32/bf16/f16/f4_e2m1/f8_e8m0 "
                                "weight, got " + stored.dump());
          spec.storedMxfp4 = true;
          if (spec.dtype == DType::F4_E2M1 && spec.shape.back() % 32 != 0)
            bad(at, "MXFP4 codes need a last dim that is a multiple of 32");
        } else if (spec.dtype == DType::F4_E2M1 || spec.dtype == DType::F8_E8M0) {
          bad(at, "an f4_e2m1 or f8_e8m0 weight is stored as MXFP4 (\"format\": \"mxfp4\"), got " +
                      stored.dump());
        }
        if (!spec.isWeight || spec.hasSymbols() || spec.storedName.empty() ||
            spec.shape.size() < (spec.storedTranspose ? 2u : 1u))
          bad(at, "only a weight of static shape (rank 2 or more with transpose) can be stored "
                  "as another tensor");
      }
    }
    return spec;
  }

private:
  std::string file;
};

std::unique_ptr<Artifact> loadArtifact(const std::string &outdir) {
  auto artifact = std::make_unique<Artifact>();
  artifact->outdir = outdir;
  artifact->manifestPath = outdir + (outdir.empty() || outdir.back() != '/' ? "/" : "") +
                           "manifest.json";
  std::ifstream stream(artifact->manifestPath, std::ios::binary);
  if (!stream)
    fail(MIXTILE_ERROR_IO, artifact->manifestPath + ": cannot open (is " + outdir +
                               " an artifact directory written by mixtilec?)");
  std::stringstream text;
  text << stream.rdbuf();
  nlohmann::json manifest;
  try {
    manifest = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception &error) {
    fail(MIXTILE_ERROR_FORMAT, artifact->manifestPath + ": malformed JSON: " + error.what());
  }

  ManifestReader reader(artifact->manifestPath);
  const nlohmann::json &format = reader.field(manifest, "format", "manifest");
  if (format != 1)
    reader.bad("format", "this runtime reads format 1, got " + format.dump());
  artifact->target = reader.string(manifest, "target", "manifest");
  if (artifact->target != "cpu" && artifact->target != "cuda")
    reader.bad("target", "expected \"cpu\" or \"cuda\", got \"" + artifact->target + "\"");
  artifact->name = reader.string(manifest, "name", "manifest");
  artifact->library = reader.string(manifest, "library", "manifest");
  if (artifact->library.find('/') != std::string::npos)
    reader.bad("library", "must be a file name inside the artifact directory");
  std::string errorSymbol = reader.string(manifest, "error_message_symbol", "manifest");
  std::string cudaApiSymbol;
  if (artifact->target == "cuda")
    cudaApiSymbol = reader.string(manifest, "cuda_host_api_symbol", "manifest");

  // A cpu artifact is built for one CPU (mixtilec --cpu): refuse a host without the
  // features its code uses before loading it, instead of dying of SIGILL in a kernel.
  if (artifact->target == "cpu") {
    auto cpu = manifest.find("cpu");
    if (cpu != manifest.end()) {
      std::string built = reader.string(*cpu, "name", "manifest.cpu");
      std::vector<std::string> missing;
      for (const nlohmann::json &feature : reader.array(*cpu, "required_features", "manifest.cpu")) {
        if (!feature.is_string())
          reader.bad("cpu.required_features", "expected feature names, got " + feature.dump());
        if (!hostCpuFeatures().count(feature.get<std::string>()))
          missing.push_back(feature.get<std::string>());
      }
      if (!missing.empty()) {
        std::string list;
        for (const std::string &m : missing)
          list += (list.empty() ? "" : ", ") + m;
        fail(MIXTILE_ERROR_UNSUPPORTED,
             outdir + ": the artifact was compiled for CPU '" + built +
                 "' and needs CPU features this host lacks: " + list +
                 " (recompile it with mixtilec --cpu native on this host)");
      }
      bool amx = false;
      for (const nlohmann::json &feature : (*cpu)["required_features"])
        amx = amx || feature == "amx_tile";
      if (amx && !requestAmxTileState())
        fail(MIXTILE_ERROR_UNSUPPORTED,
             outdir + ": the artifact uses AMX tiles, but the kernel did not grant this process "
                      "the AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM failed)");
    }
  }

  const nlohmann::json &entries = reader.array(manifest, "entry_points", "manifest");
  if (entries.empty())
    reader.bad("entry_points", "the artifact has no entry point");
  for (size_t e = 0; e < entries.size(); ++e) {
    std::string where = "entry_points[" + std::to_string(e) + "]";
    EntryPoint entry;
    entry.function = reader.string(entries[e], "function", where);
    where += " ('" + entry.function + "')";
    for (const EntryPoint &other : artifact->entries)
      if (other.function == entry.function)
        reader.bad(where, "entry point listed twice");
    entry.packedSymbol = reader.string(entries[e], "packed_symbol", where);
    entry.workspaceSymbol = reader.string(entries[e], "workspace_symbol", where);
    for (const nlohmann::json &symbol : reader.array(entries[e], "dynamic_dims", where)) {
      if (!symbol.is_string())
        reader.bad(where + ".dynamic_dims", "expected symbol names, got " + symbol.dump());
      entry.dynamicDims.push_back(symbol.get<std::string>());
    }
    const nlohmann::json &arguments = reader.array(entries[e], "arguments", where);
    for (size_t i = 0; i < arguments.size(); ++i)
      entry.arguments.push_back(reader.tensor(
          arguments[i], where + ".arguments[" + std::to_string(i) + "]", entry, true));
    const nlohmann::json &results = reader.array(entries[e], "results", where);
    for (size_t i = 0; i < results.size(); ++i)
      entry.results.push_back(reader.tensor(
          results[i], where + ".results[" + std::to_string(i) + "]", entry, false));
    // Symbols are bound from the arguments' shapes only; a symbol no argument carries could
    // never get a value.
    for (const std::string &symbol : entry.dynamicDims) {
      bool bound = false;
      for (const TensorSpec &argument : entry.arguments)
        for (const std::string &used : argument.symbols)
          bound = bound || used == symbol;
      if (!bound)
        reader.bad(where, "dynamic dim " + symbol + " appears in no argument's shape");
    }
    auto cost = entries[e].find("cost");
    if (cost != entries[e].end() && !cost->is_null()) {
      const std::string at = where + ".cost";
      entry.hasCost = true;
      entry.cost.flopsPerToken = reader.number(*cost, "flops_per_token", at);
      entry.cost.denseWeightBytes = reader.number(*cost, "dense_weight_bytes", at);
      entry.cost.expertWeightBytes = reader.number(*cost, "expert_weight_bytes", at);
      entry.cost.numExperts = reader.number(*cost, "num_experts", at);
      entry.cost.expertsPerToken = reader.number(*cost, "experts_per_token", at);
    }
    artifact->entries.push_back(std::move(entry));
  }

  auto quantization = manifest.find("weight_quantization");
  if (quantization != manifest.end()) {
    if (reader.string(*quantization, "format", "weight_quantization") != "fp8_e4m3")
      reader.bad("weight_quantization.format", "expected \"fp8_e4m3\"");
    const nlohmann::json &block = reader.field(*quantization, "block", "weight_quantization");
    if (!block.is_array() || block.size() != 2 || !block[0].is_number_integer() ||
        !block[1].is_number_integer() || block[0].get<int64_t>() < 1 ||
        block[1].get<int64_t>() < 1)
      reader.bad("weight_quantization.block", "expected two positive integers, got " +
                                                  block.dump());
    artifact->quantBlockRows = block[0].get<int64_t>();
    artifact->quantBlockCols = block[1].get<int64_t>();
  }

  auto model = manifest.find("model");
  if (model != manifest.end()) {
    Artifact::ModelInfo &info = artifact->model;
    info.present = true;
    info.entry = reader.string(*model, "entry", "model");
    auto integer = [&](const char *key, int64_t low) {
      const nlohmann::json &value = reader.field(*model, key, "model");
      if (!value.is_number_integer() || value.get<int64_t>() < low)
        reader.bad(std::string("model.") + key,
                   "expected an integer >= " + std::to_string(low) + ", got " + value.dump());
      return value.get<int64_t>();
    };
    info.layers = integer("layers", 1);
    info.vocab = integer("vocab_size", 1);
    info.maxPositions = integer("max_position_embeddings", 1);
    info.padId = integer("pad_token_id", 0);
    for (const nlohmann::json &id : reader.array(*model, "eos_token_ids", "model")) {
      if (!id.is_number_integer())
        reader.bad("model.eos_token_ids", "expected integers, got " + id.dump());
      info.eosIds.push_back(id.get<int64_t>());
    }
    const EntryPoint *forward = nullptr;
    for (const EntryPoint &entry : artifact->entries)
      if (entry.function == info.entry)
        forward = &entry;
    if (!forward)
      reader.bad("model.entry", "names no entry point: '" + info.entry + "'");
    size_t states = 0;
    for (const TensorSpec &spec : forward->arguments)
      if (spec.isState) {
        ++states;
        if (spec.shape.size() != 4 || spec.symbols[0] != "B" || spec.symbols[1] != "S")
          reader.bad("model", "state argument '" + spec.name + "' must be a [B, S, H, D] cache");
      }
    // Keys and values per layer, or multi-head latent attention's one cache of latents.
    if (states != static_cast<size_t>(2 * info.layers) &&
        states != static_cast<size_t>(info.layers))
      reader.bad("model", "the entry point must have one or two caches per layer");
  }

  // A cuda library links the CUDA runtime statically and touches no device until a session
  // asks it to, so it loads on machines without a GPU (or a driver) too.
  const std::string libraryPath =
      outdir + (outdir.back() == '/' ? "" : "/") + artifact->library; // has a '/': no search
  // RTLD_NODELETE: the library's OpenMP runtime keeps worker threads alive after a call;
  // unmapping it under them at dlclose() would crash the process on exit.
  artifact->handle = ::dlopen(libraryPath.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (!artifact->handle)
    fail(MIXTILE_ERROR_IO, libraryPath + ": cannot load: " + ::dlerror());
  auto resolve = [&](const std::string &symbol) {
    ::dlerror();
    void *address = ::dlsym(artifact->handle, symbol.c_str());
    if (!address)
      fail(MIXTILE_ERROR_FORMAT, libraryPath + ": symbol '" + symbol +
                                     "' named by the manifest is not defined");
    return address;
  };
  artifact->errorMessage = reinterpret_cast<ErrorMessageFn>(resolve(errorSymbol));
  auto profile = manifest.find("profile_symbol");
  if (profile != manifest.end())
    artifact->profile = reinterpret_cast<Artifact::ProfileFn>(
        resolve(reader.string(manifest, "profile_symbol", "manifest")));
  for (EntryPoint &entry : artifact->entries) {
    if (artifact->target == "cuda")
      entry.cudaPacked = reinterpret_cast<CudaPackedFn>(resolve(entry.packedSymbol));
    else
      entry.packed = reinterpret_cast<PackedFn>(resolve(entry.packedSymbol));
    entry.workspaceSize = reinterpret_cast<WorkspaceFn>(resolve(entry.workspaceSymbol));
  }
  if (artifact->target == "cuda") {
    artifact->cuda = reinterpret_cast<CudaHostApiFn>(resolve(cudaApiSymbol))();
    if (!artifact->cuda || artifact->cuda->version != MIXTILE_CUDA_HOST_API_VERSION)
      fail(MIXTILE_ERROR_FORMAT,
           libraryPath + ": CUDA host API version " +
               (artifact->cuda ? std::to_string(artifact->cuda->version) : "(none)") +
               ", this runtime reads version " +
               std::to_string(MIXTILE_CUDA_HOST_API_VERSION) + ": rebuild it with this mixtilec");
  }
  return artifact;
}

// The one place that decides which backend runs a session: the device must match the
// artifact's target, and a cuda session needs a visible CUDA device.
void selectBackend(const Artifact &artifact, mixtile_device device) {
  if (device != MIXTILE_DEVICE_CPU && device != MIXTILE_DEVICE_CUDA)
    fail(MIXTILE_ERROR_INVALID_ARGUMENT, "unknown device " + std::to_string(device));
  const char *wanted = device == MIXTILE_DEVICE_CUDA ? "cuda" : "cpu";
  if (artifact.target != wanted)
    fail(MIXTILE_ERROR_UNSUPPORTED,
         artifact.outdir + " was built for target " + artifact.target + " and cannot run on the " +
             wanted + " device (compile the layer with mixtilec --target " + wanted + ")");
  if (device != MIXTILE_DEVICE_CUDA)
    return;
  int count = 0;
  int status = artifact.cuda->device_count(&count);
  if (status != 0)
    fail(MIXTILE_ERROR_UNSUPPORTED, std::string("no usable CUDA device: cudaGetDeviceCount: ") +
                                        artifact.cuda->error_string(status));
  if (count == 0)
    fail(MIXTILE_ERROR_UNSUPPORTED, "no usable CUDA device: cudaGetDeviceCount found none");
}

// ---------------------------------------------------------------------------------------
// The CUDA backend: device buffers (grow-only), one stream and two timing events per
// session, all through the artifact's own CUDA runtime (host_api.h).

class CudaContext {
public:
  explicit CudaContext(const mixtile_cuda_host_api *api) : api(api) {
    check(api->stream_create(&stream), "creating a stream");
    check(api->event_create(&start), "creating an event");
    check(api->event_create(&stop), "creating an event");
  }
  ~CudaContext() {
    if (stop)
      api->event_destroy(stop);
    if (start)
      api->event_destroy(start);
    if (stream)
      api->stream_destroy(stream);
  }
  CudaContext(const CudaContext &) = delete;
  CudaContext &operator=(const CudaContext &) = delete;

  void check(int status, const std::string &what) const {
    if (status == 0)
      return;
    api->last_error(); // clear a sticky-free error so the next call starts clean
    fail(status == 2 /* cudaErrorMemoryAllocation */ ? MIXTILE_ERROR_OUT_OF_MEMORY
                                                     : MIXTILE_ERROR_KERNEL,
         "cuda: " + what + ": " + api->error_string(status));
  }

  const mixtile_cuda_host_api *api;
  void *stream = nullptr, *start = nullptr, *stop = nullptr;
};

/// Device memory that grows, never shrinks, and frees itself.
class DeviceBuffer {
public:
  explicit DeviceBuffer(const CudaContext *context = nullptr) : context(context) {}
  DeviceBuffer(DeviceBuffer &&other) noexcept
      : context(other.context), pointer(other.pointer), capacity(other.capacity) {
    other.pointer = nullptr;
    other.capacity = 0;
  }
  DeviceBuffer &operator=(DeviceBuffer &&) = delete;
  ~DeviceBuffer() {
    if (pointer)
      context->api->free(pointer);
  }
  void *data() const { return pointer; }
  void *ensure(size_t bytes, const std::string &what) {
    if (pointer && bytes <= capacity)
      return pointer;
    if (pointer)
      context->api->free(pointer);
    pointer = nullptr;
    capacity = 0;
    size_t rounded = (std::max<size_t>(bytes, 256) + 255) / 256 * 256;
    context->check(context->api->malloc(&pointer, rounded),
                   "allocating " + std::to_string(rounded) + " bytes of device memory for " +
                       what);
    capacity = rounded;
    return pointer;
  }

private:
  const CudaContext *context;
  void *pointer = nullptr;
  size_t capacity = 0;
};

// Runs on a caller's stream may still be queued when a buffer grows: the old one is freed with
// cudaFree, which waits for the device first.
struct CudaSession {
  explicit CudaSession(const mixtile_cuda_host_api *api) : context(api), workspace(&context) {}
  ~CudaSession() { // runs still queued on the caller's stream use the buffers freed next
    if (callerStream)
      context.api->stream_synchronize(callerStream);
  }
  CudaSession(const CudaSession &) = delete;
  CudaSession &operator=(const CudaSession &) = delete;
  CudaContext context;                 // declared first: buffers free through it
  std::vector<DeviceBuffer> arguments; // one per argument (weights uploaded once)
  std::vector<DeviceBuffer> results;   // one per result
  DeviceBuffer workspace;
  void *callerStream = nullptr; // mixtile_session_set_stream; nullptr: context.stream
  void *stream() const { return callerStream ? callerStream : context.stream; }
};

// ---------------------------------------------------------------------------------------
// Sessions

struct Result {
  AlignedBuffer buffer;
  std::vector<int64_t> shape;
  size_t bytes = 0;
  void *data = nullptr; // buffer.data(), or the caller's memory (mixtile_session_run_into)
};

struct Session {
  std::shared_ptr<const Artifact> artifact;
  const EntryPoint *entry = nullptr;
  std::shared_ptr<const TensorSet> weights; // keeps the mapped weight files alive
  // Per argument: the bound data pointer when fixed at create time (a weight with a static
  // shape, checked once), else nullptr: resolved and checked on every run.
  std::vector<const void *> fixedArguments;
  std::vector<AlignedBuffer> stagedWeights;
  std::vector<AlignedBuffer> stagedInputs; // one slot per argument, reused across runs
  std::vector<Result> results;
  AlignedBuffer workspace;
  std::vector<int64_t> symbolValues;
  bool hasRun = false;
  double lastRunSeconds = -1; // the entry point's own time in the last run
  std::unique_ptr<CudaSession> cuda; // set for --device cuda; arguments then live on it
};

const char *sourceOf(const TensorView &view) { return view.source.c_str(); }

// A tensor in CUDA device memory reaches only a cuda session, 16-byte aligned (the CUDA
// kernels' vector loads, docs/artifact-abi.md).
void checkPlacement(const Session &session, const TensorView &view, const std::string &what) {
  if (!view.onDevice)
    return;
  if (!session.cuda)
    fail(MIXTILE_ERROR_BINDING, what + " is in CUDA device memory; a cpu session reads host "
                                       "memory only");
  if (reinterpret_cast<uintptr_t>(view.data) % 16 != 0)
    fail(MIXTILE_ERROR_BINDING, what + " (device memory) is not 16-byte aligned");
}

// Checks dtype, rank and static dims of `view` against `spec`; symbols are checked by
// the caller. Fails with "tensor 'x' (file): expected f32 [T, 4], got BF16 [3, 4]".
void checkTensor(const TensorSpec &spec, const TensorView &view) {
  bool matches = view.dtype == spec.dtype && view.shape.size() == spec.shape.size();
  for (size_t i = 0; matches && i < spec.shape.size(); ++i)
    matches = spec.symbols[i].empty() ? view.shape[i] == spec.shape[i] : true;
  if (!matches)
    fail(MIXTILE_ERROR_BINDING, "tensor '" + spec.name + "' (" + sourceOf(view) +
                                    "): expected " + describeExpected(spec) + ", got " +
                                    describeActual(view));
}

// Tensors are used in place, but the generated kernels may assume element alignment
// (vectorized loops peel to an aligned address). A file whose header length is not a
// multiple of the element size leaves data misaligned; only then is the tensor copied.
const void *alignedData(const TensorView &view, AlignedBuffer &staging) {
  if (reinterpret_cast<uintptr_t>(view.data) % dtypeBytes(view.dtype) == 0)
    return view.data;
  void *copy = staging.ensure(view.bytes);
  std::memcpy(copy, view.data, view.bytes);
  return copy;
}

float halfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
  float magnitude;
  if (exponent == 0)
    magnitude = std::ldexp(static_cast<float>(mantissa), -24); // zero and subnormals
  else if (exponent == 31)
    magnitude = mantissa ? std::numeric_limits<float>::quiet_NaN()
                         : std::numeric_limits<float>::infinity();
  else
    magnitude = std::ldexp(static_cast<float>(mantissa | 0x400u), static_cast<int>(exponent) - 25);
  uint32_t bits;
  std::memcpy(&bits, &magnitude, 4);
  bits |= sign;
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

// An f32 weight given as bf16 or f16 of the same shape: transformers keeps some tensors in f32
// (DeepSeek's router, `_keep_in_fp32_modules_strict`) and widens them on load from checkpoints
// that store them narrower. Widening is exact, so the weight is widened once into a staged copy.
bool widensToSpec(const TensorSpec &spec, const TensorView &view) {
  return spec.isWeight && !spec.hasSymbols() && spec.dtype == DType::F32 &&
         (view.dtype == DType::BF16 || view.dtype == DType::F16) && view.shape == spec.shape;
}

// Element i of a bf16, f16 or f32 tensor's bytes as f32 (exact).
float widenElement(DType dtype, const unsigned char *bytes, size_t i) {
  float value;
  if (dtype == DType::F32) {
    std::memcpy(&value, bytes + 4 * i, 4);
    return value;
  }
  uint16_t h;
  std::memcpy(&h, bytes + 2 * i, 2);
  if (dtype == DType::F16)
    return halfToFloat(h);
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  std::memcpy(&value, &bits, 4);
  return value;
}

const void *widenedData(const TensorView &view, AlignedBuffer &staging) {
  const size_t count = view.bytes / 2;
  float *out = static_cast<float *>(staging.ensure(count * sizeof(float)));
  const unsigned char *in = static_cast<const unsigned char *>(view.data);
  for (size_t i = 0; i < count; ++i)
    out[i] = widenElement(view.dtype, in, i);
  return out;
}

std::string describeSet(const TensorSet *set) { return set ? set->description() : "(none)"; }

// A weight the checkpoint stores as fp8 (e4m3, transformers' fine-grained fp8: DeepSeek-V3,
// Qwen3 FP8) where the artifact computes in f32, bf16 or f16: dequantized once into a staged
// copy, as transformers does on a CPU, w = dtype(f32(e4m3) * f32(scale)) with the scale of
// the weight's (row / blockRows, col / blockCols) block from the tensor `<name>_scale_inv`
// [ceil(rows / blockRows), ceil(cols / blockCols)]. Only for artifacts whose manifest declares
// the quantization (mixtilec read it from the config's quantization_config).
bool dequantizesToSpec(const TensorSpec &spec, const TensorView &view) {
  return spec.isWeight && !spec.hasSymbols() && view.dtype == DType::F8_E4M3 &&
         spec.shape.size() == 2 && view.shape == spec.shape &&
         (spec.dtype == DType::F32 || spec.dtype == DType::BF16 || spec.dtype == DType::F16);
}

// e4m3fn (no infinities; S.1111.111 is NaN) to float, exactly.
float e4m3ToFloat(uint8_t code) {
  const int exponent = (code >> 3) & 0xf, mantissa = code & 0x7;
  float magnitude = exponent == 0xf && mantissa == 0x7 ? std::numeric_limits<float>::quiet_NaN()
                    : exponent == 0 ? std::ldexp(static_cast<float>(mantissa), -9)
                                    : std::ldexp(static_cast<float>(8 + mantissa), exponent - 10);
  return code & 0x80 ? -magnitude : magnitude;
}

uint16_t floatToBf16(float value) { // round to nearest, ties to even; NaN stays NaN
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>((bits >> 16) | 0x40u);
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

uint16_t floatToHalf(float value) { // round to nearest, ties to even
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u)
    return sign | 0x7e00u; // NaN
  if (magnitude >= 0x477ff000u)
    return sign | 0x7c00u; // 65520 and up round to infinity
  if (magnitude < 0x38800000u) { // below 2^-14: a subnormal half, in units of 2^-24
    float scaled;
    std::memcpy(&scaled, &magnitude, 4);
    return sign | static_cast<uint16_t>(std::nearbyint(scaled * 16777216.0f));
  }
  const uint32_t rest = magnitude & 0x1fffu;
  uint32_t half = ((magnitude >> 23) - 112) << 10 | (magnitude >> 13 & 0x3ffu);
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u)))
    ++half;
  return sign | static_cast<uint16_t>(half);
}

// After a weight was copied out of its file (dequantized), the mapped pages it read need not
// stay in this process: dropping them as the copy proceeds keeps the resident memory near the
// copy's size instead of the copy plus the file's bytes. Only whole pages inside
// [offset, offset + bytes) of the tensor are dropped, and only of a read-only file mapping,
// where a later read (a neighbour's bytes) faults the same bytes back in from the file; caller
// memory is never touched.
void releaseMappedPages(const TensorView &view, size_t offset, size_t bytes) {
  if (!view.mapped || bytes == 0)
    return;
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t first = reinterpret_cast<uintptr_t>(view.data) + offset;
  const uintptr_t begin = (first + page - 1) / page * page, end = (first + bytes) / page * page;
  if (end > begin)
    ::madvise(reinterpret_cast<void *>(begin), end - begin, MADV_DONTNEED);
}

// Runs fn(i0, i1) over [0, count) cut into up to 8 ranges, one per host core, when `large`
// (else at once here). Where a thread cannot be started, the rest runs on this one.
void splitOverCores(int64_t count, bool large, const std::function<void(int64_t, int64_t)> &fn) {
  const int64_t parts =
      !large ? 1
             : std::max<int64_t>(1, std::min<int64_t>({count, 8,
                                                       std::max(1u, std::thread::hardware_concurrency())}));
  std::vector<std::thread> helpers;
  int64_t begun = parts;
  for (int64_t t = 1; t < parts; ++t) {
    try {
      helpers.emplace_back(fn, count * t / parts, count * (t + 1) / parts);
    } catch (const std::system_error &) {
      begun = t;
      break;
    }
  }
  fn(0, count / parts);
  if (begun < parts)
    fn(count * begun / parts, count);
  for (std::thread &helper : helpers)
    helper.join();
}

const void *dequantizedData(const Artifact &artifact, const TensorSpec &spec,
                            const TensorView &view, const TensorSet *weights,
                            AlignedBuffer &staging) {
  const std::string what = "fp8 weight '" + spec.name + "' (" + view.source + ")";
  if (artifact.quantBlockRows == 0)
    fail(MIXTILE_ERROR_BINDING,
         what + ": this artifact was compiled for unquantized weights (expected " +
             describeExpected(spec) + "); compile it from the checkpoint's own config.json, "
             "whose quantization_config declares the fp8 blocks");
  const std::string scaleName = spec.name + "_scale_inv";
  const TensorView *scales = weights ? weights->find(scaleName) : nullptr;
  const int64_t rows = spec.shape[0], cols = spec.shape[1];
  const int64_t br = artifact.quantBlockRows, bc = artifact.quantBlockCols;
  const std::vector<int64_t> grid = {(rows + br - 1) / br, (cols + bc - 1) / bc};
  const std::string expected = "f32 [" + std::to_string(grid[0]) + ", " +
                               std::to_string(grid[1]) + "]";
  if (!scales)
    fail(MIXTILE_ERROR_BINDING, what + ": missing its block scales '" + scaleName +
                                    "' (expected " + expected + " for blocks of " +
                                    std::to_string(br) + " x " + std::to_string(bc) +
                                    ") in the weights " + describeSet(weights));
  if (scales->onDevice || view.onDevice)
    fail(MIXTILE_ERROR_BINDING, what + ": fp8 weights and their scales are dequantized on the "
                                       "host; give them in host memory");
  if ((scales->dtype != DType::F32 && scales->dtype != DType::BF16 &&
       scales->dtype != DType::F16) ||
      scales->shape != grid)
    fail(MIXTILE_ERROR_BINDING, "tensor '" + scaleName + "' (" + scales->source +
                                    "): the block scales of " + what + " must be " + expected +
                                    " (blocks of " + std::to_string(br) + " x " +
                                    std::to_string(bc) + "), got " + describeActual(*scales));
  std::vector<float> scale(static_cast<size_t>(grid[0] * grid[1]));
  for (size_t i = 0; i < scale.size(); ++i)
    scale[i] = widenElement(scales->dtype, static_cast<const unsigned char *>(scales->data), i);
  // Within a block every element's value depends on its code alone: each block builds the
  // table of its 256 results (the same f32 product and rounding per element), then the rows
  // are byte lookups: ~1 ns per weight with the first touch of the copy, half the time of
  // converting element by element (16384 x 16384, blocks of 128 x 128, to bf16).
  float decoded[256];
  for (int code = 0; code < 256; ++code)
    decoded[code] = e4m3ToFloat(static_cast<uint8_t>(code));
  const size_t elements = static_cast<size_t>(rows * cols);
  const size_t outBytes = dtypeBytes(spec.dtype);
  unsigned char *out = static_cast<unsigned char *>(staging.ensure(elements * outBytes));
  const uint8_t *in = static_cast<const uint8_t *>(view.data);
  // Block rows [g0, g1): converted, then their file pages dropped.
  auto convert = [&](int64_t g0, int64_t g1) {
    for (int64_t gr = g0; gr < g1; ++gr) {
      for (int64_t gc = 0; gc < grid[1]; ++gc) {
        const float s = scale[static_cast<size_t>(gr * grid[1] + gc)];
        float asFloat[256];
        uint16_t asHalf[256];
        for (int code = 0; code < 256; ++code) {
          asFloat[code] = decoded[code] * s; // one f32 product, as transformers
          asHalf[code] = spec.dtype == DType::BF16 ? floatToBf16(asFloat[code])
                                                   : floatToHalf(asFloat[code]);
        }
        const int64_t c0 = gc * bc, c1 = std::min(cols, c0 + bc);
        for (int64_t r = gr * br; r < std::min(rows, (gr + 1) * br); ++r) {
          const size_t at = static_cast<size_t>(r * cols);
          if (spec.dtype == DType::F32) {
            float *row = reinterpret_cast<float *>(out) + at;
            for (int64_t c = c0; c < c1; ++c)
              row[c] = asFloat[in[at + c]];
          } else {
            uint16_t *row = reinterpret_cast<uint16_t *>(out) + at;
            for (int64_t c = c0; c < c1; ++c)
              row[c] = asHalf[in[at + c]];
          }
        }
      }
      const int64_t r0 = gr * br, r1 = std::min(rows, r0 + br);
      releaseMappedPages(view, static_cast<size_t>(r0 * cols),
                         static_cast<size_t>((r1 - r0) * cols));
    }
  };
  // Large weights are split by block rows over the host's cores (each thread writes and drops
  // its own rows; a page two threads share is dropped by neither).
  splitOverCores(grid[0], static_cast<int64_t>(elements) >= (int64_t(1) << 22), convert);
  return out;
}

// The stored tensor's shape a "stored" weight needs: its last dim `stride` times wider, and
// with transpose the last two swapped.
std::vector<int64_t> storedShape(const TensorSpec &spec) {
  std::vector<int64_t> shape = spec.shape;
  if (spec.storedTranspose)
    std::swap(shape[shape.size() - 2], shape[shape.size() - 1]);
  shape.back() *= spec.storedStride;
  return shape;
}

// A weight the checkpoint stores in another layout (manifest "stored": gpt-oss's in-major
// gate_up_proj with gate and up columns interleaved, its down_proj, their bias halves), built
// once: out[..., r, c] = in[..., c, offset + stride * r] with transpose, out[..., c] =
// in[..., offset + stride * c] without; the same dtype, or a bf16/f16 tensor widened to f32.
// The mapped pages read are dropped as the copy proceeds (releaseMappedPages).
// MXFP4 (manifest "format": "mxfp4"): out[..., r, c] = e2m1(code of in[..., c, o + s·r]) ·
// 2^(scale - 127), in[..., k, n] being the [.., K, N] tensor the blocks [.., N, K/32, 16] and
// scales [.., N, K/32] hold (row n's values k in groups of 32, two codes a byte, low nibble
// first), as transformers' convert_moe_packed_tensors dequantizes them; every value is exact
// in bf16 unless its scale under- or overflows.
const void *mxfp4Data(const TensorSpec &spec, const TensorView &blocks, const TensorSet *set,
                      AlignedBuffer &staging) {
  const std::string blocksName = spec.storedName + "_blocks", scalesName = spec.storedName + "_scales";
  const std::string what = "weight '" + spec.name + "' (MXFP4 '" + blocksName + "', " +
                           blocks.source + ")";
  const std::vector<int64_t> logical = storedShape(spec);  // [.., K, N]
  const size_t rank = logical.size();
  const int64_t K = logical[rank - 2], N = logical[rank - 1];
  std::vector<int64_t> blocksShape(logical.begin(), logical.end() - 2), scalesShape;
  blocksShape.push_back(N);
  blocksShape.push_back(K / 32);
  scalesShape = blocksShape;
  blocksShape.push_back(16);
  if (K % 32 != 0 || blocks.dtype != DType::U8 || blocks.shape != blocksShape)
    fail(MIXTILE_ERROR_BINDING, what + ": expected U8 " + formatShape(blocksShape) +
                                    " (the MXFP4 blocks of a " + formatShape(logical) +
                                    " tensor), got " + describeActual(blocks));
  const TensorView *scales = set ? set->find(scalesName) : nullptr;
  if (!scales)
    fail(MIXTILE_ERROR_BINDING, what + ": missing its scales '" + scalesName + "' (expected U8 " +
                                    formatShape(scalesShape) + ") in " + describeSet(set));
  if (scales->dtype != DType::U8 || scales->shape != scalesShape)
    fail(MIXTILE_ERROR_BINDING, "tensor '" + scalesName + "' (" + scales->source +
                                    "): the MXFP4 scales of " + what + " must be U8 " +
                                    formatShape(scalesShape) + ", got " + describeActual(*scales));
  if (blocks.onDevice || scales->onDevice)
    fail(MIXTILE_ERROR_BINDING, what + ": MXFP4 weights are dequantized on the host; give them "
                                       "in host memory");
  static const float kE2m1[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                  -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};
  const size_t rows = static_cast<size_t>(spec.shape[rank - 2]), cols = static_cast<size_t>(K);
  int64_t outer = 1;
  for (size_t d = 0; d + 2 < rank; ++d)
    outer *= spec.shape[d];
  const size_t outBytes = dtypeBytes(spec.dtype);
  unsigned char *out =
      static_cast<unsigned char *>(staging.ensure(static_cast<size_t>(outer) * rows * cols * outBytes));
  const uint8_t *codes = static_cast<const uint8_t *>(blocks.data);
  const uint8_t *exps = static_cast<const uint8_t *>(scales->data);
  const size_t groups = cols / 32;
  auto build = [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) {
      for (size_t r = 0; r < rows; ++r) {
        const size_t n = static_cast<size_t>(o) * N + spec.storedOffset + spec.storedStride * r;
        const uint8_t *row = codes + n * groups * 16;
        const size_t at = (static_cast<size_t>(o) * rows + r) * cols;
        for (size_t g = 0; g < groups; ++g) {
          const float scale = std::ldexp(1.0f, static_cast<int>(exps[n * groups + g]) - 127);
          float v[32];
          for (int b = 0; b < 16; ++b) {
            v[2 * b] = kE2m1[row[g * 16 + b] & 0xf] * scale;
            v[2 * b + 1] = kE2m1[row[g * 16 + b] >> 4] * scale;
          }
          for (int i = 0; i < 32; ++i) {
            const size_t e = at + g * 32 + i;
            if (spec.dtype == DType::F32)
              std::memcpy(out + 4 * e, &v[i], 4);
            else {
              const uint16_t h = spec.dtype == DType::BF16 ? floatToBf16(v[i]) : floatToHalf(v[i]);
              std::memcpy(out + 2 * e, &h, 2);
            }
          }
        }
      }
    }
  };
  splitOverCores(outer, static_cast<int64_t>(outer * rows) >= (int64_t(1) << 12), build);
  return out;
}

// What a stored weight reads, for messages: "bf16 [8, 64, 64]", "MXFP4 blocks of [8, 64, 64]",
// "U8 [8, 64, 2, 16] (MXFP4 blocks)".
std::string storedExpectation(const TensorSpec &spec);

// MXFP4 codes or scales read as they are (an f4_e2m1 weight [.., R, K], an f8_e8m0 one
// [.., R, K / 32]): row r of each outer slice is row offset + stride · r of the stored blocks
// [.., R · stride, K / 32, 16] (U8) or scales [.., R · stride, K / 32] (U8 or F8_E8M0). With
// stride 1 the mapped bytes are used in place; otherwise the rows are copied once, the pages
// read dropped as the copy proceeds.
const void *mxfp4Rows(const TensorSpec &spec, const TensorView &view, AlignedBuffer &staging) {
  const bool scales = spec.mxfp4Scales();
  const std::string what = "weight '" + spec.name + "' (MXFP4 " + (scales ? "scales" : "codes") +
                           " of '" + spec.storedName + "', " + view.source + ")";
  const size_t rank = spec.shape.size();
  std::vector<int64_t> expected = spec.shape;
  expected[rank - 2] *= spec.storedStride;
  if (!scales) {
    expected[rank - 1] /= 32;
    expected.push_back(16);
  }
  if ((view.dtype != DType::U8 && !(scales && view.dtype == DType::F8_E8M0)) ||
      view.shape != expected)
    fail(MIXTILE_ERROR_BINDING, what + ": expected " + storedExpectation(spec) + ", got " +
                                    describeActual(view));
  if (view.onDevice)
    fail(MIXTILE_ERROR_BINDING, what + ": MXFP4 weights are read on the host; give them in "
                                       "host memory");
  if (spec.storedStride == 1)
    return view.data;
  const int64_t rows = spec.shape[rank - 2];
  const size_t rowBytes = static_cast<size_t>(scales ? spec.shape[rank - 1] : spec.shape[rank - 1] / 2);
  int64_t outer = 1;
  for (size_t d = 0; d + 2 < rank; ++d)
    outer *= spec.shape[d];
  const size_t slice = static_cast<size_t>(rows) * rowBytes;
  unsigned char *out = static_cast<unsigned char *>(staging.ensure(static_cast<size_t>(outer) * slice));
  const unsigned char *in = static_cast<const unsigned char *>(view.data);
  auto copy = [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) {
      const size_t inBase = static_cast<size_t>(o) * slice * spec.storedStride;
      for (int64_t r = 0; r < rows; ++r)
        std::memcpy(out + static_cast<size_t>(o) * slice + static_cast<size_t>(r) * rowBytes,
                    in + inBase + static_cast<size_t>(spec.storedOffset + spec.storedStride * r) * rowBytes,
                    rowBytes);
      releaseMappedPages(view, inBase, slice * spec.storedStride);
    }
  };
  splitOverCores(outer, static_cast<int64_t>(outer * slice) >= (int64_t(1) << 22), copy);
  return out;
}

std::string storedExpectation(const TensorSpec &spec) {
  if (spec.dtype == DType::F4_E2M1 || spec.dtype == DType::F8_E8M0) {
    std::vector<int64_t> shape = spec.shape;
    shape[shape.size() - 2] *= spec.storedStride;
    if (spec.dtype == DType::F4_E2M1) {
      shape.back() /= 32;
      shape.push_back(16);
    }
    return "U8 " + formatShape(shape) + (spec.dtype == DType::F4_E2M1 ? " (MXFP4 blocks)" : " (MXFP4 scales)");
  }
  return (spec.storedMxfp4 ? std::string("MXFP4 blocks of ")
                           : std::string(manifestDTypeName(spec.dtype)) + " ") +
         formatShape(storedShape(spec));
}

const void *storedData(const TensorSpec &spec, const TensorView &view, const TensorSet *set,
                       AlignedBuffer &staging) {
  if (spec.dtype == DType::F4_E2M1 || spec.dtype == DType::F8_E8M0)
    return mxfp4Rows(spec, view, staging);
  if (spec.storedMxfp4)
    return mxfp4Data(spec, view, set, staging);
  const std::string what = "weight '" + spec.name + "' (stored as '" + spec.storedName + "', " +
                           view.source + ")";
  const std::vector<int64_t> expected = storedShape(spec);
  const bool widen = spec.dtype == DType::F32 &&
                     (view.dtype == DType::BF16 || view.dtype == DType::F16);
  if ((view.dtype != spec.dtype && !widen) || view.shape != expected)
    fail(MIXTILE_ERROR_BINDING,
         what + ": expected " + manifestDTypeName(spec.dtype) + " " + formatShape(expected) +
             (spec.dtype == DType::F32 ? " (or bf16/f16)" : "") + ", read " +
             (spec.storedTranspose ? "transposed" : "as is") +
             (spec.storedStride > 1 ? " from its columns " + std::to_string(spec.storedOffset) +
                                          "::" + std::to_string(spec.storedStride)
                                    : std::string()) +
             ", got " + describeActual(view));
  if (view.onDevice)
    fail(MIXTILE_ERROR_BINDING, what + ": a weight stored in another layout is rearranged on "
                                       "the host; give it in host memory");
  const size_t rank = spec.shape.size();
  const int64_t rows = spec.storedTranspose ? spec.shape[rank - 2] : 1, cols = spec.shape[rank - 1];
  int64_t outer = 1;
  for (size_t d = 0; d + (spec.storedTranspose ? 2 : 1) < rank; ++d)
    outer *= spec.shape[d];
  const size_t inBytes = dtypeBytes(view.dtype), outBytes = dtypeBytes(spec.dtype);
  const int64_t stride = spec.storedStride, offset = spec.storedOffset;
  const int64_t inRow = spec.storedTranspose ? rows * stride : cols * stride;  // stored last dim
  const size_t slice = static_cast<size_t>(rows * cols);  // output elements per outer index
  unsigned char *out = static_cast<unsigned char *>(staging.ensure(outer * slice * outBytes));
  const unsigned char *in = static_cast<const unsigned char *>(view.data);
  auto copy = [&](size_t to, size_t from) {
    if (widen) {
      const float v = widenElement(view.dtype, in, from);
      std::memcpy(out + to * 4, &v, 4);
    } else {
      std::memcpy(out + to * outBytes, in + from * inBytes, outBytes);
    }
  };
  // Outer slices [o0, o1): in 64 x 64 blocks when transposing (both sides stay in cache).
  auto build = [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) {
      const size_t base = static_cast<size_t>(o) * slice;
      const size_t inBase = static_cast<size_t>(o) * (spec.storedTranspose ? cols : rows) * inRow;
      if (!spec.storedTranspose) {
        for (int64_t c = 0; c < cols; ++c)
          copy(base + c, inBase + offset + stride * c);
      } else {
        constexpr int64_t kBlock = 64;
        for (int64_t c0 = 0; c0 < cols; c0 += kBlock)
          for (int64_t r0 = 0; r0 < rows; r0 += kBlock)
            for (int64_t c = c0; c < std::min(cols, c0 + kBlock); ++c)
              for (int64_t r = r0; r < std::min(rows, r0 + kBlock); ++r)
                copy(base + r * cols + c, inBase + c * inRow + offset + stride * r);
      }
      // The stored slice's pages (other halves of an interleaved tensor fault back in).
      releaseMappedPages(view, inBase * inBytes,
                         static_cast<size_t>((spec.storedTranspose ? cols : rows) * inRow) * inBytes);
    }
  };
  splitOverCores(outer, static_cast<int64_t>(outer * slice) >= (int64_t(1) << 22), build);
  return out;
}

void runSession(Session &session, const TensorSet *inputs, int numThreads,
                const TensorSet *outputs = nullptr) {
  const EntryPoint &entry = *session.entry;
  session.hasRun = false;
  const size_t symbolCount = entry.dynamicDims.size();
  std::vector<int64_t> values(symbolCount, -1);
  std::vector<std::string> boundBy(symbolCount);
  std::vector<void *> pointers(entry.arguments.size() + entry.results.size());
  // A mapped file truncated or rewritten since it was opened would feed the kernels other
  // bytes than were checked (or SIGBUS past its new end): refuse before the run, and discard
  // the results of a run during which one changed.
  auto checkFiles = [&] {
    if (session.weights)
      session.weights->checkUnchanged();
    if (inputs)
      inputs->checkUnchanged();
  };
  checkFiles();

  for (size_t i = 0; i < entry.arguments.size(); ++i) {
    const TensorSpec &spec = entry.arguments[i];
    if (session.fixedArguments[i]) {
      pointers[i] = const_cast<void *>(session.fixedArguments[i]);
      continue;
    }
    if (spec.isStored()) {
      // Not in the session's weights (those were built when it was created): from the inputs,
      // rebuilt for this run.
      const TensorView *stored = inputs ? inputs->find(spec.fileName()) : nullptr;
      if (!stored)
        fail(MIXTILE_ERROR_BINDING,
             "missing tensor '" + spec.fileName() + "' (weight, expected " +
                 storedExpectation(spec) + ", which weight '" + spec.name +
                 "' is read from): not in the inputs " +
                 describeSet(inputs) + " nor in the weights " +
                 describeSet(session.weights.get()));
      checkPlacement(session, *stored, "tensor '" + spec.storedName + "'");
      const void *host = storedData(spec, *stored, inputs, session.stagedInputs[i]);
      if (session.cuda) {
        const size_t bytes = tensorByteSize(spec.dtype, spec.shape, "weight '" + spec.name + "'");
        void *device = session.cuda->arguments[i].ensure(bytes, "weight '" + spec.name + "'");
        session.cuda->context.check(session.cuda->context.api->copy_to_device(
                                        device, host, bytes, session.cuda->stream()),
                                    "copying weight '" + spec.name + "' to the device");
        pointers[i] = device;
      } else {
        pointers[i] = const_cast<void *>(host);
      }
      continue;
    }
    const TensorSet *first = spec.isWeight ? session.weights.get() : inputs;
    const TensorSet *second = spec.isWeight ? inputs : session.weights.get();
    const TensorView *view = first ? first->find(spec.name) : nullptr;
    if (!view && second)
      view = second->find(spec.name);
    if (!view)
      fail(MIXTILE_ERROR_BINDING,
           "missing tensor '" + spec.name + "' (" + (spec.isWeight ? "weight" : "input") +
               ", expected " + describeExpected(spec) + "): not in the inputs " +
               describeSet(inputs) + " nor in the weights " + describeSet(session.weights.get()));
    checkTensor(spec, *view);
    checkPlacement(session, *view, "tensor '" + spec.name + "'");
    if (spec.isState) {
      // Updated in place: caller memory (a model's KV cache), never a mapped file or a copy;
      // on a cuda session, device memory.
      if (session.cuda && !view->onDevice)
        fail(MIXTILE_ERROR_BINDING,
             "state tensor '" + spec.name + "' (" + view->source + ") must be device memory on a "
             "cuda session (mixtile_tensors_add_device); run a model through mixtile_model_*");
      if (!session.cuda && (view->source != "<memory>" ||
          reinterpret_cast<uintptr_t>(view->data) % dtypeBytes(view->dtype) != 0))
        fail(MIXTILE_ERROR_BINDING,
             "state tensor '" + spec.name + "' (" + view->source +
                 ") must be aligned, writable caller memory (mixtile_tensors_add); run a model "
                 "through mixtile_model_*");
    }
    for (size_t d = 0; d < spec.symbols.size(); ++d) {
      if (spec.symbols[d].empty())
        continue;
      int s = entry.symbolIndex(spec.symbols[d]);
      std::string here = "'" + spec.name + "' (" + view->source + ")";
      // Kernels index tokens with 32 bits (docs/MixDialect.md, "Bounds").
      constexpr int64_t kMaxSymbolValue = (int64_t(1) << 31) - 1;
      if (view->shape[d] > kMaxSymbolValue)
        fail(MIXTILE_ERROR_BINDING, "symbol " + spec.symbols[d] + " = " +
                                        std::to_string(view->shape[d]) + " from tensor " + here +
                                        " is past the bound of 2^31 - 1");
      if (values[s] < 0) {
        values[s] = view->shape[d];
        boundBy[s] = here;
      } else if (values[s] != view->shape[d]) {
        fail(MIXTILE_ERROR_BINDING,
             "symbol " + spec.symbols[d] + " has two values: " + std::to_string(values[s]) +
                 " from tensor " + boundBy[s] + " and " + std::to_string(view->shape[d]) +
                 " from tensor " + here);
      }
    }
    if (session.cuda && view->onDevice) {
      pointers[i] = const_cast<void *>(view->data); // read in place
    } else if (session.cuda) {
      void *device = session.cuda->arguments[i].ensure(view->bytes, "tensor '" + spec.name + "'");
      session.cuda->context.check(session.cuda->context.api->copy_to_device(
                                      device, view->data, view->bytes, session.cuda->stream()),
                                  "copying tensor '" + spec.name + "' to the device");
      pointers[i] = device;
    } else {
      pointers[i] = const_cast<void *>(alignedData(*view, session.stagedInputs[i]));
    }
  }

  int64_t noSymbols = 0;
  const int64_t *dims = symbolCount ? values.data() : &noSymbols;
  // The generated plan answers all ones for sizes whose workspace passes 2^56 bytes (its sums
  // could have wrapped): refused before anything is allocated or run.
  const size_t workspaceBytes = entry.workspaceSize(dims);
  if (workspaceBytes == ~size_t(0)) {
    std::string sizes;
    for (size_t s = 0; s < symbolCount; ++s)
      sizes += (s ? ", " : "") + entry.dynamicDims[s] + " = " + std::to_string(values[s]);
    fail(MIXTILE_ERROR_BINDING, "entry point '" + entry.function + "': the workspace for " +
                                    (sizes.empty() ? std::string("its sizes") : sizes) +
                                    " passes 2^56 bytes");
  }
  std::vector<void *> copyBack(entry.results.size(), nullptr);
  std::vector<bool> onDevice(entry.results.size(), false); // written in the caller's device memory
  for (size_t r = 0; r < entry.results.size(); ++r) {
    const TensorSpec &spec = entry.results[r];
    Result &result = session.results[r];
    result.shape.clear();
    for (size_t d = 0; d < spec.shape.size(); ++d)
      result.shape.push_back(spec.symbols[d].empty()
                                 ? spec.shape[d]
                                 : values[entry.symbolIndex(spec.symbols[d])]);
    result.bytes = tensorByteSize(spec.dtype, result.shape, "result '" + spec.name + "'");
    // The caller's own buffer for this result (mixtile_session_run_into), checked like an input
    // and written in place; otherwise the session's, reused across runs.
    const TensorView *given = outputs ? outputs->find(spec.name) : nullptr;
    if (given) {
      if (given->dtype != spec.dtype || given->shape != result.shape)
        fail(MIXTILE_ERROR_BINDING,
             "output '" + spec.name + "' (" + given->source + "): expected " +
                 manifestDTypeName(spec.dtype) + " " + formatShape(result.shape) + ", got " +
                 manifestDTypeName(given->dtype) + " " + formatShape(given->shape));
      checkPlacement(session, *given, "output '" + spec.name + "'");
      if ((given->source != "<memory>" && !given->onDevice) ||
          (result.bytes > 0 &&
           reinterpret_cast<uintptr_t>(given->data) % dtypeBytes(given->dtype) != 0))
        fail(MIXTILE_ERROR_BINDING, "output '" + spec.name + "' (" + given->source +
                                        ") must be aligned, writable caller memory "
                                        "(mixtile_tensors_add or mixtile_tensors_add_device)");
    }
    if (session.cuda) {
      // On the device: the caller's device output, else the session's buffer, copied after
      // the run to the caller's host output or to the session's host buffer.
      onDevice[r] = given && given->onDevice;
      result.data = given ? const_cast<void *>(given->data) : result.buffer.ensure(result.bytes);
      pointers[entry.arguments.size() + r] =
          onDevice[r] ? result.data
                      : session.cuda->results[r].ensure(result.bytes, "result '" + spec.name + "'");
      continue;
    }
    // Entry points take 64-byte aligned results (docs/artifact-abi.md): a caller's buffer
    // aligned less is filled by one copy from the session's after the run.
    void *caller = given ? const_cast<void *>(given->data) : nullptr;
    const bool direct = caller && reinterpret_cast<uintptr_t>(caller) % 64 == 0;
    void *host = direct ? caller : result.buffer.ensure(result.bytes);
    result.data = caller ? caller : host;
    copyBack[r] = caller && !direct ? caller : nullptr;
    // Poison the results (all bits set: NaN in every float dtype) so an element the layer
    // fails to write shows; the cuda backend poisons its device buffers before the launch.
    if (result.bytes > 0)
      std::memset(host, 0xff, result.bytes);
    pointers[entry.arguments.size() + r] = host;
  }

  int code = 0;
  if (session.cuda) {
    CudaSession &cuda = *session.cuda;
    const CudaContext &context = cuda.context;
    const mixtile_cuda_host_api &api = *context.api;
    void *stream = cuda.stream();
    void *workspace = cuda.workspace.ensure(workspaceBytes, "the workspace");
    // Poison the results (all bits set: NaN) so an element the layer fails to write shows.
    for (size_t r = 0; r < entry.results.size(); ++r)
      context.check(api.fill_bytes(pointers[entry.arguments.size() + r], 0xff,
                                   session.results[r].bytes, stream),
                    "initializing result '" + entry.results[r].name + "'");
    context.check(api.event_record(context.start, stream), "recording an event");
    code = entry.cudaPacked(pointers.data(), dims, workspace, stream);
    if (code == 1) { // a launch failed: the CUDA error says why
      int launch = api.last_error();
      context.check(api.stream_synchronize(stream), "running '" + entry.function + "'");
      fail(MIXTILE_ERROR_KERNEL, "entry point '" + entry.function + "' failed with code 1: " +
                                     session.artifact->errorMessage(1) + ": " +
                                     api.error_string(launch));
    }
    context.check(api.event_record(context.stop, stream), "recording an event");
    bool toHost = false;
    for (size_t r = 0; code == 0 && r < entry.results.size(); ++r) {
      if (onDevice[r])
        continue;
      toHost = true;
      context.check(api.copy_to_host(session.results[r].data, pointers[entry.arguments.size() + r],
                                     session.results[r].bytes, stream),
                    "copying result '" + entry.results[r].name + "' to the host");
    }
    // On the caller's stream with every result on the device, the run stays queued there
    // like any of the caller's operators (mixtile_session_set_stream).
    session.lastRunSeconds = -1;
    if (toHost || !cuda.callerStream || code != 0) {
      // Kernel faults surface here, at the first synchronization after them.
      context.check(api.stream_synchronize(stream), "running '" + entry.function + "'");
      float milliseconds = 0;
      if (code == 0 &&
          api.event_elapsed_ms(&milliseconds, context.start, context.stop) == 0)
        session.lastRunSeconds = milliseconds * 1e-3;
    }
  } else {
    void *workspace = session.workspace.ensure(workspaceBytes);
    auto begin = std::chrono::steady_clock::now();
    code = entry.packed(pointers.data(), dims, workspace, numThreads);
    session.lastRunSeconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  }
  if (code != 0) {
    const char *message = session.artifact->errorMessage(code);
    fail(MIXTILE_ERROR_KERNEL, "entry point '" + entry.function + "' failed with code " +
                                   std::to_string(code) + ": " +
                                   (message ? message : "(no message)"));
  }
  checkFiles();
  for (size_t r = 0; r < entry.results.size(); ++r)
    if (copyBack[r] && session.results[r].bytes > 0)
      std::memcpy(copyBack[r], session.results[r].buffer.data(), session.results[r].bytes);
  session.symbolValues = values;
  session.hasRun = true;
}

} // namespace

// ---------------------------------------------------------------------------------------
// The C API: handles wrap shared C++ objects so closing order does not matter.

// mixtile_dtype mirrors the first values of DType, so the two convert by value.
static_assert(static_cast<int>(DType::F32) == MIXTILE_DTYPE_F32 &&
                  static_cast<int>(DType::BF16) == MIXTILE_DTYPE_BF16 &&
                  static_cast<int>(DType::F16) == MIXTILE_DTYPE_F16 &&
                  static_cast<int>(DType::I32) == MIXTILE_DTYPE_I32 &&
                  static_cast<int>(DType::I64) == MIXTILE_DTYPE_I64 &&
                  static_cast<int>(DType::BOOL) == MIXTILE_DTYPE_BOOL,
              "mixtile_dtype and DType must agree");

struct mixtile_artifact {
  std::shared_ptr<const Artifact> impl;
};
struct mixtile_tensors {
  std::shared_ptr<TensorSet> impl;
};
struct mixtile_session {
  Session impl;
};


// ---------------------------------------------------------------------------------------
// Whole models (mixtilec --model): KV caches, teacher-forced forwards and greedy generation
// on top of one session of the model's entry point. Each call of the entry point runs any
// mix of new tokens: token t sits at positions[t] of cache row sequences[t].

struct mixtile_model {
  std::shared_ptr<const Artifact> artifact;
  std::unique_ptr<mixtile_session> session;
  const Artifact::ModelInfo *info = nullptr;
  int64_t maxBatch = 0, maxLength = 0;
  struct Cache {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    AlignedBuffer buffer;                 // cpu
    std::unique_ptr<DeviceBuffer> device; // cuda: freed before the session's context
    void *data() { return device ? device->data() : buffer.data(); }
  };
  std::vector<Cache> caches;
  mixtile_model_timing timing{};
  // One step's inputs, reused.
  std::vector<int32_t> ids, positions, sequences, rows;
};

namespace {

/// Runs the entry point on the step's tokens; returns the logits [rows, vocab].
const float *runModelStep(mixtile_model &model, int numThreads) {
  std::unique_ptr<TensorSet> set = TensorSet::empty("the model's step inputs");
  const int64_t t = static_cast<int64_t>(model.ids.size());
  const int64_t r = static_cast<int64_t>(model.rows.size());
  set->addBorrowed("input_ids", DType::I32, {t}, model.ids.data());
  set->addBorrowed("positions", DType::I32, {t}, model.positions.data());
  set->addBorrowed("sequences", DType::I32, {t}, model.sequences.data());
  set->addBorrowed("logit_rows", DType::I32, {r}, model.rows.data());
  for (mixtile_model::Cache &cache : model.caches)
    set->addBorrowed(cache.name, cache.dtype, cache.shape, cache.data(), cache.device != nullptr);
  runSession(model.session->impl, set.get(), numThreads);
  return static_cast<const float *>(model.session->impl.results[0].data);
}

/// Checks a batch of prompts (ids [B, S], optional left-padding mask) and returns each row's
/// first real token.
std::vector<int64_t> checkPrompts(const mixtile_model &model, int64_t batch, int64_t length,
                                  const int64_t *ids, const int64_t *mask, int64_t extra) {
  if (batch <= 0 || length <= 0)
    fail(MIXTILE_ERROR_INVALID_ARGUMENT,
         "empty batch: " + std::to_string(batch) + " prompts of " + std::to_string(length) +
             " tokens (both must be >= 1)");
  requireArgument(ids, "ids");
  // Bounded first, so the position arithmetic below cannot overflow.
  if (extra > model.maxLength)
    fail(MIXTILE_ERROR_INVALID_ARGUMENT,
         std::to_string(extra) + " new tokens exceed the KV cache's max length " +
             std::to_string(model.maxLength));
  if (batch > model.maxBatch)
    fail(MIXTILE_ERROR_INVALID_ARGUMENT, "batch of " + std::to_string(batch) +
                                             " prompts exceeds the model's max batch " +
                                             std::to_string(model.maxBatch));
  std::vector<int64_t> first(batch, 0);
  for (int64_t b = 0; b < batch; ++b) {
    const std::string row = "prompt " + std::to_string(b);
    int64_t start = 0;
    if (mask) {
      while (start < length && mask[b * length + start] == 0)
        ++start;
      for (int64_t s = 0; s < length; ++s) {
        int64_t m = mask[b * length + s];
        if (m != 0 && m != 1)
          fail(MIXTILE_ERROR_INVALID_ARGUMENT, "attention_mask of " + row + " holds " +
                                                   std::to_string(m) + " (expected 0 or 1)");
        if (s >= start && m == 0)
          fail(MIXTILE_ERROR_INVALID_ARGUMENT,
               "attention_mask of " + row + " is not left padding (a 0 at position " +
                   std::to_string(s) + " after a 1; pad on the left, as generate does)");
      }
      if (start == length)
        fail(MIXTILE_ERROR_INVALID_ARGUMENT,
             "attention_mask of " + row + " masks every token: the prompt is empty");
    }
    for (int64_t s = start; s < length; ++s) {
      int64_t id = ids[b * length + s];
      if (id < 0 || id >= model.info->vocab)
        fail(MIXTILE_ERROR_INVALID_ARGUMENT,
             "token id " + std::to_string(id) + " at " + row + ", position " +
                 std::to_string(s) + " lies outside the vocabulary [0, " +
                 std::to_string(model.info->vocab) + ")");
    }
    if (length - start > model.maxLength - extra)
      fail(MIXTILE_ERROR_INVALID_ARGUMENT,
           row + " needs " +
               std::to_string(static_cast<uint64_t>(length - start) + static_cast<uint64_t>(extra)) +
               " positions (" +
               std::to_string(length - start) + " prompt tokens" +
               (extra ? " + " + std::to_string(extra) + " new tokens" : std::string()) +
               "), more than the KV cache's max length " + std::to_string(model.maxLength));
    first[b] = start;
  }
  return first;
}

/// The first index of the largest logit (NaN never wins), as torch.argmax picks.
int64_t argmaxRow(const float *logits, int64_t vocab) {
  int64_t best = 0;
  float value = -INFINITY;
  for (int64_t v = 0; v < vocab; ++v)
    if (logits[v] > value) {
      value = logits[v];
      best = v;
    }
  return best;
}

double secondsSince(std::chrono::steady_clock::time_point begin) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
}

} // namespace

extern "C" {

const char *mixtile_last_error(void) { return lastError.c_str(); }

const char *mixtile_dtype_name(mixtile_dtype dtype) {
  switch (dtype) {
  case MIXTILE_DTYPE_F32:
  case MIXTILE_DTYPE_BF16:
  case MIXTILE_DTYPE_F16:
  case MIXTILE_DTYPE_I32:
    return manifestDTypeName(static_cast<DType>(dtype));
  case MIXTILE_DTYPE_I64:
    return "i64";
  case MIXTILE_DTYPE_BOOL:
    return "bool";
  }
  return "?";
}

int mixtile_artifact_open(const char *outdir, mixtile_artifact **artifact) {
  return guarded([&] {
    requireArgument(outdir, "outdir");
    requireArgument(artifact, "artifact");
    *artifact = nullptr;
    std::shared_ptr<const Artifact> loaded = loadArtifact(outdir);
    *artifact = new mixtile_artifact{std::move(loaded)};
  });
}

void mixtile_artifact_close(mixtile_artifact *artifact) { delete artifact; }

const char *mixtile_artifact_target(const mixtile_artifact *artifact) {
  return artifact ? artifact->impl->target.c_str() : nullptr;
}

size_t mixtile_artifact_entry_count(const mixtile_artifact *artifact) {
  return artifact ? artifact->impl->entries.size() : 0;
}

const char *mixtile_artifact_entry_name(const mixtile_artifact *artifact, size_t index) {
  if (!artifact || index >= artifact->impl->entries.size())
    return nullptr;
  return artifact->impl->entries[index].function.c_str();
}

int mixtile_tensors_open(const char *path, mixtile_tensors **tensors) {
  return guarded([&] {
    requireArgument(path, "path");
    requireArgument(tensors, "tensors");
    *tensors = nullptr;
    std::shared_ptr<TensorSet> set = TensorSet::open(path);
    *tensors = new mixtile_tensors{std::move(set)};
  });
}

int mixtile_tensors_create(mixtile_tensors **tensors) {
  return guarded([&] {
    requireArgument(tensors, "tensors");
    *tensors = new mixtile_tensors{TensorSet::empty("<memory>")};
  });
}

static int addTensor(mixtile_tensors *tensors, const char *name, mixtile_dtype dtype, int rank,
                     const int64_t *shape, const void *data, bool onDevice) {
  return guarded([&] {
    requireArgument(tensors, "tensors");
    requireArgument(name, "name");
    if (rank < 0 || (rank > 0 && !shape))
      fail(MIXTILE_ERROR_INVALID_ARGUMENT,
           std::string("tensor '") + name + "': rank must be >= 0 with a shape array");
    if (std::strcmp(mixtile_dtype_name(dtype), "?") == 0)
      fail(MIXTILE_ERROR_INVALID_ARGUMENT,
           std::string("tensor '") + name + "': unknown dtype " + std::to_string(dtype));
    std::vector<int64_t> dims(shape, shape + rank);
    for (int64_t dim : dims)
      if (dim < 0)
        fail(MIXTILE_ERROR_INVALID_ARGUMENT, std::string("tensor '") + name +
                                                 "': negative dimension in " +
                                                 formatShape(dims));
    if (tensors->impl->find(name))
      fail(MIXTILE_ERROR_INVALID_ARGUMENT,
           std::string("tensor '") + name + "' is already in this set");
    tensors->impl->addBorrowed(name, static_cast<DType>(dtype), dims, data, onDevice);
  });
}

int mixtile_tensors_add(mixtile_tensors *tensors, const char *name, mixtile_dtype dtype,
                        int rank, const int64_t *shape, const void *data) {
  return addTensor(tensors, name, dtype, rank, shape, data, false);
}

int mixtile_tensors_add_device(mixtile_tensors *tensors, const char *name, mixtile_dtype dtype,
                               int rank, const int64_t *shape, const void *data) {
  return addTensor(tensors, name, dtype, rank, shape, data, true);
}

void mixtile_tensors_close(mixtile_tensors *tensors) { delete tensors; }

int mixtile_tensors_find(const mixtile_tensors *tensors, const char *name, int *dtype, int *rank,
                         const int64_t **shape, const void **data) {
  return guarded([&] {
    requireArgument(tensors, "tensors");
    requireArgument(name, "name");
    const TensorView *view = tensors->impl->find(name);
    if (!view)
      fail(MIXTILE_ERROR_BINDING, std::string("no tensor '") + escapeUntrusted(name) + "' in " +
                                      tensors->impl->description());
    if (dtype) {
      int value = static_cast<int>(view->dtype);
      *dtype = std::strcmp(mixtile_dtype_name(static_cast<mixtile_dtype>(value)), "?") == 0
                   ? -1
                   : value;
    }
    if (rank)
      *rank = static_cast<int>(view->shape.size());
    if (shape)
      *shape = view->shape.data();
    if (data)
      *data = view->data;
  });
}

int mixtile_write_safetensors(const char *path, size_t count, const char *const *names,
                              const mixtile_dtype *dtypes, const int *ranks,
                              const int64_t *const *shapes, const void *const *data) {
  return guarded([&] {
    requireArgument(path, "path");
    std::vector<TensorToWrite> tensors;
    for (size_t i = 0; i < count; ++i) {
      if (std::strcmp(mixtile_dtype_name(dtypes[i]), "?") == 0)
        fail(MIXTILE_ERROR_INVALID_ARGUMENT, "unknown dtype " + std::to_string(dtypes[i]));
      tensors.push_back({names[i], static_cast<DType>(dtypes[i]),
                         std::vector<int64_t>(shapes[i], shapes[i] + ranks[i]), data[i]});
    }
    writeSafetensors(path, tensors);
  });
}

int mixtile_session_create(mixtile_artifact *artifact, const char *entryName,
                           const mixtile_tensors *weights, mixtile_device device,
                           mixtile_session **session) {
  return guarded([&] {
    requireArgument(artifact, "artifact");
    requireArgument(session, "session");
    *session = nullptr;
    const Artifact &loaded = *artifact->impl;
    const EntryPoint *entry = nullptr;
    if (entryName) {
      for (const EntryPoint &candidate : loaded.entries)
        if (candidate.function == entryName)
          entry = &candidate;
      if (!entry) {
        std::string names;
        for (const EntryPoint &candidate : loaded.entries)
          names += (names.empty() ? "" : ", ") + candidate.function;
        fail(MIXTILE_ERROR_INVALID_ARGUMENT, loaded.outdir + " has no entry point '" +
                                                 entryName + "' (it has: " + names + ")");
      }
    } else if (loaded.entries.size() == 1) {
      entry = &loaded.entries.front();
    } else {
      std::string names;
      for (const EntryPoint &candidate : loaded.entries)
        names += (names.empty() ? "" : ", ") + candidate.function;
      fail(MIXTILE_ERROR_INVALID_ARGUMENT,
           loaded.outdir + " has several entry points (" + names + "); name one");
    }
    selectBackend(loaded, device);

    auto created = std::make_unique<mixtile_session>();
    Session &state = created->impl;
    state.artifact = artifact->impl;
    state.entry = entry;
    if (weights)
      state.weights = weights->impl;
    state.fixedArguments.assign(entry->arguments.size(), nullptr);
    state.stagedInputs.resize(entry->arguments.size());
    state.results.resize(entry->results.size());
    if (device == MIXTILE_DEVICE_CUDA) {
      state.cuda = std::make_unique<CudaSession>(loaded.cuda);
      for (size_t i = 0; i < entry->arguments.size(); ++i)
        state.cuda->arguments.emplace_back(&state.cuda->context);
      for (size_t r = 0; r < entry->results.size(); ++r)
        state.cuda->results.emplace_back(&state.cuda->context);
    }
    // Weights with static shapes do not depend on the inputs: bind and check them once.
    state.stagedWeights.resize(entry->arguments.size());
    for (size_t i = 0; i < entry->arguments.size(); ++i) {
      const TensorSpec &spec = entry->arguments[i];
      if (!spec.isWeight || spec.hasSymbols() || !state.weights)
        continue;
      const TensorView *view = state.weights->find(spec.fileName());
      if (!view)
        continue; // may come with the inputs; run() names it if it does not
      const bool stored = spec.isStored();
      const bool widen = !stored && widensToSpec(spec, *view);
      const bool dequantize = !stored && dequantizesToSpec(spec, *view);
      if (spec.dtype == DType::F8_E4M3 && view->dtype != DType::F8_E4M3)
        fail(MIXTILE_ERROR_BINDING,
             "tensor '" + spec.name + "' (" + view->source + "): expected " +
                 describeExpected(spec) + ", got " + describeActual(*view) +
                 ": this artifact multiplies an fp8 checkpoint's expert weights as they are "
                 "stored; compile it from this checkpoint's own config.json");
      if (!widen && !dequantize && !stored)
        checkTensor(spec, *view);
      checkPlacement(state, *view, "weight '" + spec.name + "'");
      if (view->onDevice && !stored) {
        if (widen || dequantize)
          fail(MIXTILE_ERROR_BINDING,
               "weight '" + spec.name + "' (device memory): expected " + describeExpected(spec) +
                   ", got " + describeActual(*view) +
                   " (only host weights are widened or dequantized)");
        state.fixedArguments[i] = view->data; // used where it is
        continue;
      }
      const void *host =
          stored ? storedData(spec, *view, state.weights.get(), state.stagedWeights[i])
          : widen ? widenedData(*view, state.stagedWeights[i])
          : dequantize
              ? dequantizedData(loaded, spec, *view, state.weights.get(), state.stagedWeights[i])
          : state.cuda ? view->data
                       : alignedData(*view, state.stagedWeights[i]);
      const size_t bytes = stored ? tensorByteSize(spec.dtype, spec.shape, "weight '" + spec.name + "'")
                           : widen      ? view->bytes * 2
                           : dequantize ? view->bytes * dtypeBytes(spec.dtype)
                                        : view->bytes;
      if (state.cuda) { // uploaded once; runs reuse the device copy
        const CudaContext &context = state.cuda->context;
        void *device = state.cuda->arguments[i].ensure(bytes, "weight '" + spec.name + "'");
        context.check(context.api->copy_to_device(device, host, bytes, context.stream),
                      "copying weight '" + spec.name + "' to the device");
        state.fixedArguments[i] = device;
      } else {
        state.fixedArguments[i] = host;
      }
    }
    if (state.cuda)
      state.cuda->context.check(state.cuda->context.api->stream_synchronize(
                                    state.cuda->context.stream),
                                "uploading the weights");
    *session = created.release();
  });
}

int mixtile_session_run(mixtile_session *session, const mixtile_tensors *inputs,
                        int numThreads) {
  return guarded([&] {
    requireArgument(session, "session");
    runSession(session->impl, inputs ? inputs->impl.get() : nullptr, numThreads);
  });
}

int mixtile_session_set_stream(mixtile_session *session, void *stream) {
  return guarded([&] {
    requireArgument(session, "session");
    CudaSession *cuda = session->impl.cuda.get();
    if (!cuda)
      fail(MIXTILE_ERROR_UNSUPPORTED, "a cpu session has no stream (mixtile_session_set_stream "
                                      "is for cuda sessions)");
    if (stream == cuda->callerStream)
      return;
    // Runs queued on the previous stream may still use the workspace and buffers.
    cuda->context.check(cuda->context.api->stream_synchronize(cuda->stream()),
                        "waiting for the previous stream");
    cuda->callerStream = stream;
  });
}

int mixtile_session_run_into(mixtile_session *session, const mixtile_tensors *inputs,
                             const mixtile_tensors *outputs, int numThreads) {
  return guarded([&] {
    requireArgument(session, "session");
    if (outputs)
      for (const auto &[name, view] : outputs->impl->tensors()) {
        const std::vector<TensorSpec> &results = session->impl.entry->results;
        if (std::none_of(results.begin(), results.end(),
                         [&](const TensorSpec &r) { return r.name == name; }))
          fail(MIXTILE_ERROR_BINDING, "output '" + name + "' is not a result of '" +
                                          session->impl.entry->function + "'");
      }
    runSession(session->impl, inputs ? inputs->impl.get() : nullptr, numThreads,
               outputs ? outputs->impl.get() : nullptr);
  });
}

size_t mixtile_session_result_count(const mixtile_session *session) {
  return session && session->impl.hasRun ? session->impl.results.size() : 0;
}

static bool validResult(const mixtile_session *session, size_t index) {
  return session && session->impl.hasRun && index < session->impl.results.size();
}

int64_t mixtile_session_result_index(const mixtile_session *session, const char *name) {
  if (!session || !name || !session->impl.hasRun)
    return -1;
  const std::vector<TensorSpec> &results = session->impl.entry->results;
  for (size_t i = 0; i < results.size(); ++i)
    if (results[i].name == name)
      return static_cast<int64_t>(i);
  return -1;
}

const char *mixtile_session_result_name(const mixtile_session *session, size_t index) {
  return validResult(session, index) ? session->impl.entry->results[index].name.c_str()
                                     : nullptr;
}

mixtile_dtype mixtile_session_result_dtype(const mixtile_session *session, size_t index) {
  return validResult(session, index)
             ? static_cast<mixtile_dtype>(session->impl.entry->results[index].dtype)
             : static_cast<mixtile_dtype>(-1);
}

int mixtile_session_result_rank(const mixtile_session *session, size_t index) {
  return validResult(session, index)
             ? static_cast<int>(session->impl.results[index].shape.size())
             : -1;
}

const int64_t *mixtile_session_result_shape(const mixtile_session *session, size_t index) {
  return validResult(session, index) ? session->impl.results[index].shape.data() : nullptr;
}

void *mixtile_session_result_data(mixtile_session *session, size_t index) {
  return validResult(session, index) ? session->impl.results[index].data : nullptr;
}

size_t mixtile_session_result_bytes(const mixtile_session *session, size_t index) {
  return validResult(session, index) ? session->impl.results[index].bytes : 0;
}

double mixtile_session_last_run_seconds(const mixtile_session *session) {
  return session && session->impl.hasRun ? session->impl.lastRunSeconds : -1;
}

int64_t mixtile_session_symbol_value(const mixtile_session *session, const char *symbol) {
  if (!session || !symbol || !session->impl.hasRun)
    return -1;
  int index = session->impl.entry->symbolIndex(symbol);
  return index < 0 ? -1 : session->impl.symbolValues[index];
}

int mixtile_session_run_cost(const mixtile_session *session, mixtile_run_cost *cost) {
  return guarded([&] {
    requireArgument(session, "session");
    requireArgument(cost, "cost");
    const Session &state = session->impl;
    if (!state.hasRun)
      fail(MIXTILE_ERROR_INVALID_ARGUMENT, "the session has not run yet");
    // Tokens are T; layers batched as [B, S] count B*S; otherwise one "token" per run.
    int64_t t = mixtile_session_symbol_value(session, "T");
    int64_t b = mixtile_session_symbol_value(session, "B");
    int64_t s = mixtile_session_symbol_value(session, "S");
    int64_t tokens = t >= 0 ? t : (b >= 0 && s >= 0 ? b * s : 1);
    *cost = mixtile_run_cost{};
    cost->tokens = tokens;
    const EntryPoint &entry = *state.entry;
    if (!entry.hasCost)
      return;
    const Cost &c = entry.cost;
    cost->has_cost = 1;
    cost->flops = c.flopsPerToken * static_cast<double>(tokens);
    // Experts a batch touches under uniform routing: E * (1 - (1 - k/E)^T); exactly k at
    // T = 1 and 0 at T = 0 (docs/artifact-abi.md).
    double touched = 0;
    if (c.numExperts > 0)
      touched = c.numExperts *
                (1.0 - std::pow(1.0 - c.expertsPerToken / c.numExperts,
                                static_cast<double>(tokens)));
    cost->weight_bytes_read = c.denseWeightBytes + c.expertWeightBytes * touched;
  });
}

int mixtile_session_write_results(const mixtile_session *session, const char *path) {
  return guarded([&] {
    requireArgument(session, "session");
    requireArgument(path, "path");
    const Session &state = session->impl;
    if (!state.hasRun)
      fail(MIXTILE_ERROR_INVALID_ARGUMENT, "the session has no results to write");
    std::vector<TensorToWrite> tensors;
    for (size_t r = 0; r < state.results.size(); ++r)
      tensors.push_back({state.entry->results[r].name, state.entry->results[r].dtype,
                         state.results[r].shape, state.results[r].data});
    writeSafetensors(path, tensors);
  });
}

void mixtile_session_close(mixtile_session *session) { delete session; }

int mixtile_artifact_is_model(const mixtile_artifact *artifact) {
  return artifact && artifact->impl->model.present ? 1 : 0;
}

int mixtile_artifact_profile_enable(mixtile_artifact *artifact, int enable) {
  return guarded([&] {
    requireArgument(artifact, "artifact");
    if (!artifact->impl->profile)
      fail(MIXTILE_ERROR_UNSUPPORTED, artifact->impl->outdir +
                                          " has no kernel profile (cuda artifacts and artifacts "
                                          "of older mixtilec versions have none)");
    artifact->impl->profile(enable ? 1 : 0, nullptr, nullptr, nullptr);
  });
}

size_t mixtile_artifact_profile_count(const mixtile_artifact *artifact) {
  if (!artifact || !artifact->impl->profile)
    return 0;
  return artifact->impl->profile(-1, nullptr, nullptr, nullptr);
}

int mixtile_artifact_profile_entry(const mixtile_artifact *artifact, size_t index,
                                   const char **name, double *seconds, int64_t *calls) {
  return guarded([&] {
    requireArgument(artifact, "artifact");
    const char *const *names = nullptr;
    const double *times = nullptr;
    const int64_t *counts = nullptr;
    size_t count = artifact->impl->profile
                       ? artifact->impl->profile(-1, &names, &times, &counts)
                       : 0;
    if (index >= count)
      fail(MIXTILE_ERROR_INVALID_ARGUMENT, "profile entry " + std::to_string(index) +
                                               " out of range (" + std::to_string(count) + ")");
    if (name)
      *name = names[index];
    if (seconds)
      *seconds = times[index];
    if (calls)
      *calls = counts[index];
  });
}

int64_t mixtile_artifact_model_max_positions(const mixtile_artifact *artifact) {
  return artifact && artifact->impl->model.present ? artifact->impl->model.maxPositions : -1;
}

int mixtile_model_create(mixtile_artifact *artifact, const mixtile_tensors *weights,
                         int64_t max_batch, int64_t max_length, mixtile_model **model) {
  return guarded([&] {
    requireArgument(artifact, "artifact");
    requireArgument(weights, "weights");
    requireArgument(model, "model");
    *model = nullptr;
    const Artifact &loaded = *artifact->impl;
    if (!loaded.model.present)
      fail(MIXTILE_ERROR_INVALID_ARGUMENT,
           loaded.outdir + " is not a model (compile one with mixtilec --hf-config ... --model)");
    if (max_batch <= 0 || max_length <= 0)
      fail(MIXTILE_ERROR_INVALID_ARGUMENT, "max batch and max length must be >= 1, got " +
                                               std::to_string(max_batch) + " and " +
                                               std::to_string(max_length));
    auto created = std::make_unique<mixtile_model>();
    created->artifact = artifact->impl;
    created->info = &loaded.model;
    created->maxBatch = max_batch;
    created->maxLength = max_length;
    // The artifact's target decides: a cuda model keeps its weights and KV caches on the GPU
    // and brings each step's logits back for the host's argmax.
    mixtile_session *session = nullptr;
    if (int status = mixtile_session_create(
            artifact, loaded.model.entry.c_str(), weights,
            loaded.target == "cuda" ? MIXTILE_DEVICE_CUDA : MIXTILE_DEVICE_CPU, &session))
      fail(static_cast<mixtile_status>(status), lastError);
    created->session.reset(session);
    // Every weight must be in the checkpoint now, not discovered missing mid-generation.
    const Session &state = session->impl;
    for (size_t i = 0; i < state.entry->arguments.size(); ++i) {
      const TensorSpec &spec = state.entry->arguments[i];
      if (spec.isWeight && !state.fixedArguments[i])
        fail(MIXTILE_ERROR_BINDING,
             "the checkpoint " + describeSet(weights->impl.get()) + " lacks tensor '" +
                 spec.fileName() + "' (expected " +
                 (spec.isStored() ? storedExpectation(spec) : describeExpected(spec)) +
                 ")");
      if (!spec.isState)
        continue;
      mixtile_model::Cache cache;
      cache.name = spec.name;
      cache.dtype = spec.dtype;
      cache.shape = {max_batch, max_length, spec.shape[2], spec.shape[3]};
      size_t bytes = tensorByteSize(spec.dtype, cache.shape, "KV cache '" + spec.name + "'");
      if (CudaSession *cuda = state.cuda.get()) {
        cache.device = std::make_unique<DeviceBuffer>(&cuda->context);
        void *memory = cache.device->ensure(bytes, "KV cache '" + spec.name + "'");
        cuda->context.check(cuda->context.api->fill_bytes(memory, 0, bytes, cuda->context.stream),
                            "clearing KV cache '" + spec.name + "'");
        cuda->context.check(cuda->context.api->stream_synchronize(cuda->context.stream),
                            "clearing the KV caches");
        created->caches.push_back(std::move(cache));
        continue;
      }
      try {
        std::memset(cache.buffer.ensure(bytes), 0, bytes);
      } catch (const std::bad_alloc &) {
        fail(MIXTILE_ERROR_OUT_OF_MEMORY,
             "cannot allocate the KV caches: " + std::to_string(bytes) + " bytes per cache for " +
                 std::to_string(max_batch) + " sequences of " + std::to_string(max_length) +
                 " positions; lower the max batch or length");
      }
      created->caches.push_back(std::move(cache));
    }
    *model = created.release();
  });
}

int64_t mixtile_model_vocab_size(const mixtile_model *model) {
  return model ? model->info->vocab : -1;
}

int mixtile_model_forward(mixtile_model *model, int64_t batch, int64_t length, const int64_t *ids,
                          const int64_t *mask, float *logits, int num_threads) {
  return guarded([&] {
    requireArgument(model, "model");
    std::vector<int64_t> first = checkPrompts(*model, batch, length, ids, mask, 0);
    requireArgument(logits, "logits");
    model->ids.clear();
    model->positions.clear();
    model->sequences.clear();
    model->rows.clear();
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t s = first[b]; s < length; ++s) {
        model->rows.push_back(static_cast<int32_t>(model->ids.size()));
        model->ids.push_back(static_cast<int32_t>(ids[b * length + s]));
        model->positions.push_back(static_cast<int32_t>(s - first[b]));
        model->sequences.push_back(static_cast<int32_t>(b));
      }
    auto begin = std::chrono::steady_clock::now();
    const float *out = runModelStep(*model, num_threads);
    model->timing = mixtile_model_timing{};
    model->timing.prefill_seconds = secondsSince(begin);
    model->timing.prefill_tokens = static_cast<int64_t>(model->ids.size());
    const int64_t vocab = model->info->vocab;
    // Masked positions carry no meaning: their logits are 0.
    size_t row = 0;
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t s = 0; s < length; ++s) {
        float *dst = logits + (b * length + s) * vocab;
        if (s < first[b])
          std::memset(dst, 0, sizeof(float) * vocab);
        else
          std::memcpy(dst, out + (row++) * vocab, sizeof(float) * vocab);
      }
  });
}

int mixtile_model_generate(mixtile_model *model, int64_t batch, int64_t length,
                           const int64_t *ids, const int64_t *mask, int64_t new_tokens,
                           int64_t *sequences, int64_t *generated_counts,
                           mixtile_model_progress progress, void *user, int num_threads) {
  return guarded([&] {
    requireArgument(model, "model");
    if (new_tokens < 0)
      fail(MIXTILE_ERROR_INVALID_ARGUMENT,
           "new tokens must be >= 0, got " + std::to_string(new_tokens));
    std::vector<int64_t> first = checkPrompts(*model, batch, length, ids, mask, new_tokens);
    requireArgument(sequences, "sequences");
    const int64_t width = length + new_tokens, vocab = model->info->vocab;
    for (int64_t b = 0; b < batch; ++b) {
      std::memcpy(sequences + b * width, ids + b * length, sizeof(int64_t) * length);
      for (int64_t n = 0; n < new_tokens; ++n)
        sequences[b * width + length + n] = model->info->padId;
    }
    model->timing = mixtile_model_timing{};
    if (generated_counts)
      std::fill(generated_counts, generated_counts + batch, 0);
    if (new_tokens == 0)
      return;
    std::vector<int64_t> next(batch), filled(batch, 0);
    std::vector<char> done(batch, 0);
    // Prefill: every prompt's tokens, logits of each row's last one.
    model->ids.clear();
    model->positions.clear();
    model->sequences.clear();
    model->rows.clear();
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t s = first[b]; s < length; ++s) {
        model->ids.push_back(static_cast<int32_t>(ids[b * length + s]));
        model->positions.push_back(static_cast<int32_t>(s - first[b]));
        model->sequences.push_back(static_cast<int32_t>(b));
      }
      model->rows.push_back(static_cast<int32_t>(model->ids.size() - 1));
    }
    auto begin = std::chrono::steady_clock::now();
    const float *out = runModelStep(*model, num_threads);
    model->timing.prefill_seconds = secondsSince(begin);
    model->timing.prefill_tokens = static_cast<int64_t>(model->ids.size());
    std::vector<int64_t> active;
    for (int64_t b = 0; b < batch; ++b)
      active.push_back(b);
    auto take = [&](const float *logits) {
      std::vector<int64_t> still;
      for (size_t i = 0; i < active.size(); ++i) {
        int64_t b = active[i];
        int64_t token = argmaxRow(logits + i * vocab, vocab);
        sequences[b * width + length + filled[b]++] = token;
        next[b] = token;
        bool eos = std::find(model->info->eosIds.begin(), model->info->eosIds.end(), token) !=
                   model->info->eosIds.end();
        if (!eos && filled[b] < new_tokens)
          still.push_back(b);
      }
      active = std::move(still);
    };
    take(out);
    int64_t generated = batch;
    if (progress)
      progress(generated, batch * new_tokens, user);
    begin = std::chrono::steady_clock::now();
    while (!active.empty()) {
      // Decode: one new token per unfinished sequence, all together.
      model->ids.clear();
      model->positions.clear();
      model->sequences.clear();
      model->rows.clear();
      for (int64_t b : active) {
        model->rows.push_back(static_cast<int32_t>(model->ids.size()));
        model->ids.push_back(static_cast<int32_t>(next[b]));
        model->positions.push_back(static_cast<int32_t>(length - first[b] + filled[b] - 1));
        model->sequences.push_back(static_cast<int32_t>(b));
      }
      int64_t stepTokens = static_cast<int64_t>(active.size());
      out = runModelStep(*model, num_threads);
      model->timing.decode_tokens += stepTokens;
      model->timing.decode_steps += 1;
      take(out);
      generated += stepTokens;
      if (progress)
        progress(generated, batch * new_tokens, user);
    }
    model->timing.decode_seconds = secondsSince(begin);
    if (generated_counts)
      std::copy(filled.begin(), filled.end(), generated_counts);
  });
}

int mixtile_model_last_timing(const mixtile_model *model, mixtile_model_timing *timing) {
  return guarded([&] {
    requireArgument(model, "model");
    requireArgument(timing, "timing");
    *timing = model->timing;
  });
}

void mixtile_model_close(mixtile_model *model) { delete model; }

} // extern "C"
