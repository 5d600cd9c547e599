// A tiny standalone driver for CUDA artifacts that captures a layer in a CUDA graph (what
// mixtile-run --device cuda does not do): dlopens lib<name>.so, binds tensors by name from safetensors
// files as the manifest says, copies them to the device, calls the packed entry point on a
// stream (optionally captured into a CUDA graph), copies the results back and writes them.
// Test-only: it is no part of the runtime's API.
//
//   run_cuda_artifact OUTDIR --weights W.safetensors [--inputs X.safetensors] -o Y.safetensors
//                     [--entry FUNCTION] [--graph] [--repeat N]
//
// Results are poisoned (all bits set: NaN) before every call, so an element the layer does
// not write fails the check. --graph captures one call into a CUDA graph and launches the
// graph, proving the layer needs no host synchronization; --repeat runs it N times.
#include "runtime/safetensors.h"

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using mixtile::runtime::DType;
using mixtile::runtime::TensorSet;
using mixtile::runtime::TensorToWrite;
using mixtile::runtime::TensorView;

using PackedFn = int (*)(void *const *, const int64_t *, void *, void *);
using WorkspaceFn = size_t (*)(const int64_t *);
using ErrorFn = const char *(*)(int);

[[noreturn]] void fail(const std::string &message) { throw std::runtime_error(message); }

void check(cudaError_t status, const std::string &what) {
  if (status != cudaSuccess)
    fail(what + ": " + cudaGetErrorString(status));
}

struct Options {
  std::string outdir, weights, inputs, output, entry;
  bool graph = false;
  int repeat = 1;
};

Options parse(int argc, char **argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc)
        fail("missing value after " + a);
      return argv[++i];
    };
    if (a == "--weights")
      o.weights = value();
    else if (a == "--inputs")
      o.inputs = value();
    else if (a == "-o")
      o.output = value();
    else if (a == "--entry")
      o.entry = value();
    else if (a == "--graph")
      o.graph = true;
    else if (a == "--repeat")
      o.repeat = std::stoi(value());
    else if (o.outdir.empty() && a[0] != '-')
      o.outdir = a;
    else
      fail("unknown argument '" + a + "'");
  }
  if (o.outdir.empty() || o.weights.empty() || o.output.empty())
    fail("usage: run_cuda_artifact OUTDIR --weights W [--inputs X] -o Y [--entry F] [--graph] "
         "[--repeat N]");
  return o;
}

/// A device buffer that frees itself.
struct DeviceBuffer {
  void *ptr = nullptr;
  size_t bytes = 0;
  explicit DeviceBuffer(size_t n) : bytes(n) { check(cudaMalloc(&ptr, n ? n : 1), "cudaMalloc"); }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;
};

int run(const Options &o) {
  std::ifstream manifestFile(o.outdir + "/manifest.json");
  if (!manifestFile)
    fail("cannot open " + o.outdir + "/manifest.json");
  nlohmann::json manifest = nlohmann::json::parse(manifestFile);
  if (manifest.at("target") != "cuda")
    fail("the artifact's target is '" + manifest.at("target").get<std::string>() + "', not cuda");
  const nlohmann::json *entry = nullptr;
  for (const nlohmann::json &e : manifest.at("entry_points"))
    if (o.entry.empty() || e.at("function") == o.entry) {
      entry = &e;
      break;
    }
  if (!entry)
    fail("no entry point '" + o.entry + "' in the manifest");

  std::string library = o.outdir + "/" + manifest.at("library").get<std::string>();
  void *handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle)
    fail(std::string("dlopen: ") + dlerror());
  auto symbol = [&](const std::string &name) {
    void *s = dlsym(handle, name.c_str());
    if (!s)
      fail("missing symbol '" + name + "' in " + library);
    return s;
  };
  auto packed = reinterpret_cast<PackedFn>(symbol(entry->at("packed_symbol")));
  auto workspaceSize = reinterpret_cast<WorkspaceFn>(symbol(entry->at("workspace_symbol")));
  auto errorMessage = reinterpret_cast<ErrorFn>(symbol(manifest.at("error_message_symbol")));

  std::unique_ptr<TensorSet> weights = TensorSet::open(o.weights);
  std::unique_ptr<TensorSet> inputs = o.inputs.empty() ? TensorSet::empty("no inputs")
                                                       : TensorSet::open(o.inputs);

  // Bind the arguments by name and the dynamic symbols from their shapes.
  std::vector<std::string> symbols = entry->at("dynamic_dims").get<std::vector<std::string>>();
  std::map<std::string, int64_t> symbolValues;
  std::vector<std::unique_ptr<DeviceBuffer>> buffers;
  std::vector<void *> tensors;
  for (const nlohmann::json &arg : entry->at("arguments")) {
    const std::string name = arg.at("name");
    const bool isInput = arg.at("kind") == "input";
    const TensorView *view = isInput ? inputs->find(name) : weights->find(name);
    if (!view)
      view = isInput ? weights->find(name) : inputs->find(name);
    if (!view)
      fail("missing tensor '" + name + "'");
    if (arg.at("dtype") != mixtile::runtime::manifestDTypeName(view->dtype))
      fail("tensor '" + name + "' has dtype " + mixtile::runtime::manifestDTypeName(view->dtype) +
           ", expected " + arg.at("dtype").get<std::string>());
    const nlohmann::json &shape = arg.at("shape"), &names = arg.at("symbols");
    if (shape.size() != view->shape.size())
      fail("tensor '" + name + "' has rank " + std::to_string(view->shape.size()));
    for (size_t d = 0; d < shape.size(); ++d) {
      if (shape[d].is_null()) {
        const std::string s = names[d];
        auto [it, added] = symbolValues.emplace(s, view->shape[d]);
        if (!added && it->second != view->shape[d])
          fail("symbol " + s + " is bound twice with different values");
      } else if (shape[d].get<int64_t>() != view->shape[d]) {
        fail("tensor '" + name + "' has shape " + mixtile::runtime::formatShape(view->shape));
      }
    }
    buffers.push_back(std::make_unique<DeviceBuffer>(view->bytes));
    check(cudaMemcpy(buffers.back()->ptr, view->data, view->bytes, cudaMemcpyHostToDevice),
          "copying '" + name + "' to the device");
    tensors.push_back(buffers.back()->ptr);
  }
  std::vector<int64_t> dims;
  for (const std::string &s : symbols) {
    if (!symbolValues.count(s))
      fail("no input binds symbol " + s);
    dims.push_back(symbolValues[s]);
  }

  // Results: shapes from the bound symbols.
  struct Result {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    size_t bytes;
    void *device;
  };
  std::vector<Result> results;
  for (const nlohmann::json &r : entry->at("results")) {
    Result result;
    result.name = r.at("name");
    if (!mixtile::runtime::parseManifestDType(r.at("dtype"), result.dtype))
      fail("result '" + result.name + "' has an unknown dtype");
    const nlohmann::json &shape = r.at("shape"), &names = r.at("symbols");
    for (size_t d = 0; d < shape.size(); ++d)
      result.shape.push_back(shape[d].is_null() ? symbolValues.at(names[d].get<std::string>())
                                                : shape[d].get<int64_t>());
    result.bytes = mixtile::runtime::tensorByteSize(result.dtype, result.shape, result.name);
    buffers.push_back(std::make_unique<DeviceBuffer>(result.bytes));
    result.device = buffers.back()->ptr;
    tensors.push_back(result.device);
    results.push_back(result);
  }

  DeviceBuffer workspace(workspaceSize(dims.data()));
  cudaStream_t stream;
  check(cudaStreamCreate(&stream), "cudaStreamCreate");
  cudaGraphExec_t graph = nullptr;
  if (o.graph) {
    // Capture one call; a host synchronization or a host read inside it breaks the capture.
    check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), "cudaStreamBeginCapture");
    int code = packed(tensors.data(), dims.data(), workspace.ptr, stream);
    cudaGraph_t captured;
    check(cudaStreamEndCapture(stream, &captured), "capturing the layer in a CUDA graph");
    if (code != 0)
      fail(std::string("the layer failed while captured: ") + errorMessage(code));
    check(cudaGraphInstantiate(&graph, captured, 0), "cudaGraphInstantiate");
    cudaGraphDestroy(captured);
  }
  for (int run = 0; run < o.repeat; ++run) {
    for (const Result &r : results)
      check(cudaMemsetAsync(r.device, 0xff, r.bytes, stream), "poisoning the results");
    if (graph) {
      check(cudaGraphLaunch(graph, stream), "cudaGraphLaunch");
    } else {
      int code = packed(tensors.data(), dims.data(), workspace.ptr, stream);
      if (code != 0) {
        std::fprintf(stderr, "run_cuda_artifact: error: %s\n", errorMessage(code));
        return 1;
      }
    }
    check(cudaStreamSynchronize(stream), "running the layer");
  }
  check(cudaGetLastError(), "after the layer");

  std::vector<std::vector<char>> host(results.size());
  std::vector<TensorToWrite> out;
  for (size_t i = 0; i < results.size(); ++i) {
    host[i].resize(results[i].bytes);
    check(cudaMemcpy(host[i].data(), results[i].device, results[i].bytes, cudaMemcpyDeviceToHost),
          "copying '" + results[i].name + "' back");
    out.push_back({results[i].name, results[i].dtype, results[i].shape, host[i].data()});
  }
  mixtile::runtime::writeSafetensors(o.output, out);
  if (graph)
    cudaGraphExecDestroy(graph);
  cudaStreamDestroy(stream);
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  try {
    return run(parse(argc, argv));
  } catch (const std::exception &e) {
    std::fprintf(stderr, "run_cuda_artifact: error: %s\n", e.what());
    return 1;
  }
}
