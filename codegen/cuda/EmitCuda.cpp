// CUDA codegen: turns a scheduled module (functions of mix.kernel ops) into readable CUDA C++
// that launches the kernel library in codegen/cuda/kernels/ on the caller's stream, plus the C
// header and the manifest (the CPU target's ABI with device pointers and a stream). It follows
// the fusion and tiles the passes chose; it decides none. Nothing it emits synchronizes with
// the host: run-time sizes (the assignments a dispatch keeps) stay on the device.
#include "codegen/Artifact.h"
#include "codegen/FunctionEmitter.h"
#include "dialect/MixOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"

#include <cmath>
#include <functional>
#include <map>
#include <set>

using namespace mlir;
using namespace mlir::mix;
using namespace mlir::mix::codegen;

namespace {

/// Error code every artifact reserves for a failed launch (cudaGetLastError != success).
constexpr int kLaunchError = 1;

/// The largest head_dim and v_head_dim the CUDA attention kernel takes (kAttentionMaxHeadDim
/// in codegen/cuda/kernels/model.cuh): checked here so mixtilec reports it on the op.
constexpr int64_t kAttentionMaxHeadDim = 512;
/// latent_attention's bound on rank + rope_dim (codegen/cuda/kernels/model.cuh).
constexpr int64_t kLatentAttentionMaxEntry = 768;

/// One token-count bucket of a kernel's tiles attribute, as the CUDA kernels take it.
struct CudaTile {
  int64_t maxTokens = -1; // -1: no bound (the last bucket)
  int64_t blockM = 64, blockN = 64, blockK = 32, warps = 4;
};







/// Why a tile cannot run on the grouped GEMM kernels, or "" when it can. Mirrors the
/// static_asserts of codegen/cuda/kernels/expert_ffn.cuh so a bad tuning table is reported
/// by mixtilec on the kernel, not by nvcc.
std::string tileProblem(const CudaTile &t) {
  if (t.blockM < 16 || t.blockN < 16 || t.blockK < 16 || t.blockM % 16 || t.blockN % 16 ||
      t.blockK % 16)
    return "block_m, block_n and block_k must be positive multiples of 16";
  if (t.warps < 1 || t.warps > 16 || (t.warps & (t.warps - 1)))
    return "warps must be 1, 2, 4, 8 or 16";
  bool warpGrid = false;
  for (int64_t wm = 1; wm <= t.warps; wm *= 2)
    if (t.blockM % (16 * wm) == 0 && t.blockN % (16 * (t.warps / wm)) == 0)
      warpGrid = true;
  if (!warpGrid)
    return "no grid of 16x16 warp tiles covers block_m x block_n with that many warps";
  const int64_t threads = 32 * t.warps;
  if ((t.blockM * t.blockN) % threads)
    return "block_m x block_n must be a multiple of 32 x warps (the f32 path)";
  const int64_t perThread = t.blockM * t.blockN / threads;
  const int64_t tn = perThread >= 8 && t.blockN % 8 == 0 ? 8
                     : perThread >= 4 && t.blockN % 4 == 0 ? 4
                                                           : 1;
  const int64_t tm = perThread / tn;
  if (tm * tn != perThread || t.blockM % tm || (t.blockM / tm) * (t.blockN / tn) != threads)
    return "no register tiling of block_m x block_n over the threads (the f32 path)";
  const int64_t tensorCoreBytes =
      2 * (t.blockM * (t.blockK + 8) + 2 * t.blockN * (t.blockK + 8)) + t.warps * 1024 + 8 * t.blockM;
  const int64_t simtBytes = 4 * (16 * t.blockM + 2 * 16 * (t.blockN + 1)) + 8 * t.blockM;
  if (std::max(tensorCoreBytes, simtBytes) > 48 * 1024)
    return "the tiles need more than 48 KiB of shared memory";
  return "";
}

class CudaEmitter : public FunctionEmitter {
public:
  using FunctionEmitter::FunctionEmitter;

private:
  /// Reads and validates the kernel's tile buckets against what the kernels instantiate.
  LogicalResult beginKernel(KernelOp kernel, unsigned index) override;
  LogicalResult emitOp(Operation *op, KernelOp kernel) override;
  void emitLibraryCall(const std::string &name, const std::string &args) override {
    launch("mixtile::cuda::" + name + "(" + args + ", cuda_stream)");
  }
  /// `call` with the template arguments of each tile bucket, chosen by `tokens` at run time.
  void emitTiledCall(const std::string &tokens,
                     const std::function<std::string(const CudaTile &)> &call);
  std::string expertPointers(ValueRange weights, StringRef role, int64_t experts,
                             int64_t perExpert);
  /// A launch whose cudaError_t is checked: the artifact returns kLaunchError on failure.
  void launch(const std::string &call) { line("MIXTILE_CHECK(" + call + ");"); }
  /// A DEVICE pointer to the run-time number of assignments in the segments `tokens` belongs
  /// to (the last offset of the dispatch or expert choice that made them), or "nullptr" when
  /// every row counts. The kernels read it; the host never does.
  std::string assignmentCountPointer(Value tokens) {
    Operation *def = innerDefiningOp(tokens);
    Value offsets;
    if (auto dispatch = dyn_cast_or_null<DispatchOp>(def))
      offsets = dispatch.getOffsets();
    else if (auto choice = dyn_cast_or_null<ExpertChoiceOp>(def))
      offsets = choice.getOffsets();
    if (offsets && buffers.count(offsets))
      return llvm::formatv("{0} + {1}", buffers[offsets].pointer, staticDim(offsets, 0) - 1).str();
    return "nullptr";
  }

  std::vector<CudaTile> tiles; // the current kernel's buckets
  int helperCount = 0;         // attention config functions emitted for this function
};



std::string CudaEmitter::expertPointers(ValueRange weights, StringRef role, int64_t experts,
                                            int64_t perExpert) {
  std::string text = llvm::formatv("const mixtile::cuda::ExpertPointers<{0}> {1} = {{{{", experts,
                                   role)
                         .str();
  for (int64_t e = 0; e < experts; ++e) {
    if (e)
      text += ", ";
    if (weights.size() == 1 && experts > 1)
      text += llvm::formatv("{0} + {1}", ptr(weights[0]), e * perExpert).str();
    else if (weights.size() == 1)
      text += ptr(weights[0]);
    else
      text += ptr(weights[e]);
  }
  return text + "}};";
}

void CudaEmitter::emitTiledCall(const std::string &tokens,
                                    const std::function<std::string(const CudaTile &)> &call) {
  for (auto [i, tile] : llvm::enumerate(tiles)) {
    bool last = i + 1 == tiles.size() || tile.maxTokens < 0;
    std::string guard = i == 0 ? "" : "else ";
    if (!last)
      guard += llvm::formatv("if ({0} <= {1}) ", tokens, tile.maxTokens).str();
    line(guard + "MIXTILE_CHECK((" + call(tile) + "));");
    if (last)
      break;
  }
}

LogicalResult CudaEmitter::beginKernel(KernelOp kernel, unsigned index) {
  // The tile buckets, validated against what the CUDA kernels can instantiate.
  tiles.clear();
  if (ArrayAttr attr = kernel.getTilesAttr())
    for (Attribute bucket : attr) {
      auto dict = dyn_cast<DictionaryAttr>(bucket);
      if (!dict)
        return kernel.emitError() << "the cuda target needs each tile bucket to be a dictionary";
      CudaTile tile;
      std::string summary;
      for (NamedAttribute field : dict) {
        auto value = dyn_cast<IntegerAttr>(field.getValue());
        if (!value)
          return kernel.emitError() << "tile field '" << field.getName().getValue()
                                    << "' must be an integer";
        int64_t v = value.getInt();
        StringRef name = field.getName().getValue();
        if (name == "max_tokens")
          tile.maxTokens = v;
        else if (name == "block_m")
          tile.blockM = v;
        else if (name == "block_n")
          tile.blockN = v;
        else if (name == "block_k")
          tile.blockK = v;
        else if (name == "warps")
          tile.warps = v;
        summary += llvm::formatv("{0}{1}={2}", summary.empty() ? "" : " ", name,
                                 v < 0 ? std::string("inf") : std::to_string(v))
                       .str();
      }
      if (std::string problem = tileProblem(tile); !problem.empty())
        return kernel.emitError() << "the cuda target cannot use the tiles {" << summary
                                  << "}: " << problem;
      tiles.push_back(tile);
    }
  if (tiles.empty())
    tiles.push_back(CudaTile{});
  (void)index;
  return success();
}

LogicalResult CudaEmitter::emitOp(Operation *op, KernelOp kernel) {
  auto tileArgs = [](const CudaTile &t) {
    return llvm::formatv("{0}, {1}, {2}, {3}", t.blockM, t.blockN, t.blockK, t.warps).str();
  };


  if (emitPortableOp(op))
    return success();
  if (auto capacity = dyn_cast<CapacityOp>(op)) {
    Value in = capacity.getExperts();
    copyTensor(capacity.getKept(), in);
    std::string fixed = capacity.getCapacity() ? std::to_string(*capacity.getCapacity()) : "-1";
    std::string factor = capacity.getCapacityFactor()
                             ? floatLiteral(capacity.getCapacityFactor()->convertToDouble())
                             : "0.0";
    line(llvm::formatv("// Each expert keeps at most C assignments, claimed in token order (a "
                       "scan on the device).\n    const int64_t capacity = "
                       "mixtile::cuda::expert_capacity({0}, {1}, {2}, {3}, {4});",
                       fixed, factor, dim(in, 0), dim(in, 1), capacity.getNumExperts())
             .str());
    launch(llvm::formatv("mixtile::cuda::apply_capacity({0}, {1}, {2}, capacity, {3}, cuda_stream)",
                         dim(in, 0), dim(in, 1), capacity.getNumExperts(), ptr(capacity.getKept()))
               .str());
    return success();
  }
  if (auto dispatch = dyn_cast<DispatchOp>(op)) {
    line("// Histogram (atomics), prefix sum and a stable fill in token order; offsets stay on "
         "the device.");
    launch(llvm::formatv("mixtile::cuda::dispatch({0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}, "
                         "scratch, cuda_stream)",
                         dim(dispatch.getExperts(), 0), dim(dispatch.getExperts(), 1),
                         dispatch.getNumExperts(), ptr(dispatch.getWeights()),
                         ptr(dispatch.getExperts()), ptr(dispatch.getOffsets()),
                         ptr(dispatch.getTokens()), ptr(dispatch.getGates()))
               .str());
    scratch.push_back(
        llvm::formatv("mixtile::cuda::dispatch_workspace_size({0})", dispatch.getNumExperts())
            .str());
    return success();
  }
  if (auto choice = dyn_cast<ExpertChoiceOp>(op)) {
    int64_t experts = staticDim(choice.getRouter(), 0), hidden = staticDim(choice.getRouter(), 1);
    std::string t = dim(choice.getX(), 0);
    std::string scores = newSlot(Float32Type::get(op->getContext()),
                                 llvm::formatv("{0} * {1}", t, experts).str());
    line("// Scores one warp per token; each expert's top-C tokens by a radix select.");
    launch(llvm::formatv("mixtile::cuda::expert_choice<{0}>({1}, {2}, {3}, {4}, {5}, {6}, {7}, "
                         "{8}, {9}, {10}, {11}, cuda_stream)",
                         weightType(elementOf(choice.getRouter())), t, experts, hidden,
                         floatLiteral(choice.getCapacityFactor().convertToDouble()),
                         ptr(choice.getX()), ptr(choice.getRouter()), ptr(choice.getOffsets()),
                         ptr(choice.getTokens()), ptr(choice.getGates()),
                         ptr(choice.getLogits()), scores)
               .str());
    return success();
  }

  // Expert FFNs: one call of the grouped-FFN engine; how its output leaves (scatter-add into
  // the combine's output, or a plain per-assignment store) depends on what it was fused with.
  auto emitExpertFFN = [&](Value x, std::string segments, std::string tokensPtr,
                           std::string gatesPtr, std::string outRows, std::string y,
                           std::string zeroRows, ValueRange gate, ValueRange up,
                           ValueRange down, int64_t experts, int64_t hidden,
                           std::string assignments, ActivationAttr activation,
                           std::string tokenCountExpr, ExpertFFNOp extras = {}) -> void {
    ExpertWeightShape shape;
    (void)verifyExpertWeights(op, gate, up, down, experts, hidden, shape);
    int64_t size = hidden * shape.intermediate;
    line("{");
    line(expertPointers(shape.gated ? gate : up, "gate_w", experts, size));
    line(expertPointers(up, "up_w", experts, size));
    line(expertPointers(down, "down_w", experts, size));
    line(llvm::formatv(
             "mixtile::cuda::ExpertFFNProblem p;\n    p.num_experts = {0}; p.hidden = {1}; "
             "p.inter = {2};\n    p.segments = {3}; p.max_assignments = {4};\n    p.x = {5}; "
             "p.tokens = {6}; p.gates = {7};\n    p.y = {8}; p.out_rows = {9}; p.zero_rows = {10};",
             experts, hidden, shape.intermediate, segments, assignments, ptr(x), tokensPtr,
             gatesPtr, y, outRows, zeroRows)
             .str());
    emitExpertExtras(extras, activation.getValue());  // gpt-oss's biases and clamp
    std::string weight = weightType(shape.elementType);
    std::string act = activationName(activation.getValue());
    emitTiledCall(tokenCountExpr, [&](const CudaTile &t) {
      return llvm::formatv("mixtile::cuda::expert_ffn<{0}, {1}, {2}, {3}, {4}>(p, gate_w, up_w, "
                           "down_w, scratch, cuda_stream)",
                           weight, act, shape.gated ? "true" : "false", tileArgs(t), experts)
          .str();
    });
    line("}");
    scratch.push_back(llvm::formatv("mixtile::cuda::expert_ffn_workspace_size<{0}>({1}, {2})",
                                    weight, assignments, shape.intermediate)
                          .str());
  };

  if (auto zeros = dyn_cast<ZerosLikeOp>(op)) {
    launch(llvm::formatv("mixtile::cuda::zero_floats({0}, {1}, cuda_stream)",
                         ptr(zeros.getZeros()), product(dimsOf(zeros.getZeros())))
               .str());
    return success();
  }
  if (auto ffn = dyn_cast<FFNOp>(op)) {
    Value y = ffn.getY();
    Value x = ffn.getX();
    int64_t hidden = staticDim(x, 1);
    SmallVector<Value> gate;
    if (ffn.getGate())
      gate.push_back(ffn.getGate());
    std::string t = dim(x, 0);
    line("// Dense FFN over every token: one expert owning rows [0, T).");
    emitExpertFFN(x, llvm::formatv("mixtile::cuda::SegmentTable{{nullptr, {0}}", t).str(),
                  "nullptr", "nullptr", "nullptr", ptr(y), "0", gate, ValueRange(ffn.getUp()),
                  ValueRange(ffn.getDown()), 1, hidden, t, ffn.getActivationAttr(), t);
    return success();
  }
  if (auto gate = dyn_cast<SigmoidGateOp>(op)) {
    Value out = gate.getGated();
    copyTensor(out, gate.getY());
    launch(llvm::formatv("mixtile::cuda::sigmoid_gate_rows<{0}>({1}, {2}, {3}, {4}, {5}, {6}, "
                         "cuda_stream)",
                         weightType(elementOf(gate.getGateWeight())), dim(gate.getX(), 0),
                         staticDim(gate.getX(), 1), staticDim(gate.getY(), 1), ptr(gate.getX()),
                         ptr(gate.getGateWeight()), ptr(out))
               .str());
    return success();
  }
  if (auto ffn = dyn_cast<ExpertFFNOp>(op)) {
    // mixtilec imports fp8 checkpoints for this target with bf16 experts (the runtime
    // dequantizes them); hand-written IR with f8E4M3FN experts is refused by name.
    if (ffn.getWeightBlock())
      return ffn.emitOpError() << "f8E4M3FN expert weights are not supported by the cuda target "
                                  "(compile the checkpoint's config with --target cuda: its fp8 "
                                  "weights are dequantized when bound)";
    if (isa<Float4E2M1FNType>(elementOf(ffn.getUp()[0])))
      return ffn.emitOpError() << "f4E2M1FN (MXFP4) expert weights are not supported by the cuda "
                                  "target (compile the checkpoint's config with --target cuda: "
                                  "its MXFP4 experts are dequantized to bf16 when bound)";
    int64_t experts = staticDim(ffn.getOffsets(), 0) - 1, hidden = staticDim(ffn.getX(), 1);
    std::string assignments = dim(ffn.getTokens(), 0);
    std::string segments =
        llvm::formatv("mixtile::cuda::SegmentTable{{{0}, 0}", ptr(ffn.getOffsets())).str();
    // Fused with its combine: gather in the prologue, gate scale and scatter-add into the
    // output rows in the second GEMM's epilogue; h never leaves the workspace.
    ExpertOutput o = expertOutput(ffn);
    emitExpertFFN(ffn.getX(), segments, ptr(ffn.getTokens()), o.gates, o.outRows, o.y,
                  o.zeroRows, ffn.getGate(), ffn.getUp(), ffn.getDown(), experts, hidden,
                  assignments, ffn.getActivationAttr(), tokenCount, ffn);
    return success();
  }
  if (auto combine = dyn_cast<CombineOp>(op)) {
    if (fusedCombines.contains(combine))
      return success();
    copyTensor(combine.getY(), combine.getInit());
    // The number of assignments is known only on the device for dispatch and expert choice:
    // the kernel reads it from the last offset.
    launch(llvm::formatv("mixtile::cuda::combine_rows({0}, {1}, {2}, {3}, {4}, {5}, {6}, "
                         "cuda_stream)",
                         dim(combine.getTokens(), 0), assignmentCountPointer(combine.getTokens()),
                         staticDim(combine.getH(), 1), ptr(combine.getH()),
                         ptr(combine.getTokens()), ptr(combine.getGates()), ptr(combine.getY()))
               .str());
    return success();
  }
  if (auto linear = dyn_cast<LinearOp>(op)) {
    Value y = linear.getY();
    int64_t out = staticDim(linear.getWeight(), 0), in = staticDim(linear.getWeight(), 1);
    std::string bias = linear.getBias()
                           ? llvm::formatv("mixtile::cuda::ExpertVector{{{0}, {1}}",
                                           ptr(linear.getBias()),
                                           weightType(elementOf(linear.getBias())))
                                 .str()
                           : "mixtile::cuda::ExpertVector{}";
    std::string weight = weightType(elementOf(linear.getWeight()));
    // Tiles by the rows this map has (the logits of a model: R rows, not T).
    std::string rows = dim(linear.getX(), 0);
    emitTiledCall(rows, [&](const CudaTile &t) {
      return llvm::formatv("mixtile::cuda::linear<{0}, {1}>({2}, {3}, {4}, {5}, {6}, {7}, {8}, "
                           "cuda_stream)",
                           weight, tileArgs(t), rows, in, out, ptr(linear.getX()),
                           ptr(linear.getWeight()), bias, ptr(y))
          .str();
    });
    return success();
  }
  // A model's dense parts. Token ids, positions and cache rows are on the device, where an
  // entry point must not read them: out of range they give a defined result (zero rows, no
  // cache write; codegen/cuda/kernels/model.cuh) and the runtime checks them before a call.
  if (auto gather = dyn_cast<GatherOp>(op)) {
    line("// An index outside the table gives a row of zeros.");
    emitLibraryCall("gather_rows<" + weightType(elementOf(gather.getTable())) + ">",
                    llvm::formatv("{0}, {1}, {2}, {3}, {4}, {5}", dim(gather.getIndices(), 0),
                                  staticDim(gather.getTable(), 1), dim(gather.getTable(), 0),
                                  ptr(gather.getTable()), ptr(gather.getIndices()),
                                  ptr(gather.getRows()))
                        .str());
    return success();
  }
  if (auto latent = dyn_cast<LatentAttentionOp>(op)) {
    if (latent.getRank() + latent.getRopeDim() > kLatentAttentionMaxEntry)
      return latent.emitError() << "the cuda target supports rank + rope_dim up to "
                                << kLatentAttentionMaxEntry << ", got "
                                << latent.getRank() + latent.getRopeDim();
    std::string config =
        llvm::formatv("latent_attention_config_{0}_{1}", func.getSymName(), helperCount++).str();
    std::string freqs = frequencyList(latent.getInvFreq());
    helpers += llvm::formatv("static mixtile::cuda::LatentAttentionConfig {0}() {{\n  "
                             "mixtile::cuda::LatentAttentionConfig c;\n  c.heads = {1}; c.rank = "
                             "{2}; c.nope_dim = {3}; c.rope_dim = {4}; c.v_head_dim = {5};\n  "
                             "c.rope_scale = {6}f; c.rope_interleaved = {7};\n  c.softmax_scale = "
                             "{8}f; c.window = {9};\n  static const double inv_freq[] = {{{10}};\n"
                             "  for (int i = 0; i < {11}; ++i)\n    c.inv_freq[i] = inv_freq[i];\n"
                             "  return c;\n}\n\n",
                             config, latent.getHeads(), latent.getRank(), latent.getNopeDim(),
                             latent.getRopeDim(), latent.getVHeadDim(),
                             floatLiteral(latent.getRopeScale().convertToDouble()),
                             latent.getRopeInterleaved() ? "true" : "false",
                             floatLiteral(latent.getSoftmaxScale().convertToDouble()),
                             latent.getWindow(), freqs, latent.getInvFreq().size())
                   .str();
    Value cache = latent.getCache();
    std::string t = dim(latent.getQ(), 0), b = dim(cache, 0), len = dim(cache, 1);
    line("// Cache entries and the queries folded into latent space, attention over the entries");
    line("// (a warp per (token, head)), the outputs unfolded. A token outside the cache gets zeros.");
    emitLibraryCall("latent_attention<" + weightType(elementOf(cache)) + ">",
                    llvm::formatv("{0}(), {1}, {2}, {3}, {4}, {5}, {6}, {7}, {8}, {9}, {10}, {11}, "
                                  "scratch",
                                  config, t, ptr(latent.getQ()), ptr(latent.getLatent()),
                                  ptr(latent.getRopeKey()), ptr(latent.getKvB()),
                                  ptr(latent.getPositions()), ptr(latent.getSequences()), b, len,
                                  ptr(cache), ptr(latent.getOut()))
                        .str());
    scratch.push_back(
        llvm::formatv("mixtile::cuda::latent_attention_workspace_size({0}(), {1})", config, t)
            .str());
    return success();
  }
  if (auto attention = dyn_cast<AttentionOp>(op)) {
    if (attention.getHeadDim() > kAttentionMaxHeadDim)
      return attention.emitError() << "the cuda target supports head_dim up to "
                                   << kAttentionMaxHeadDim << ", got " << attention.getHeadDim();
    if (attention.getValueHeadDim() > kAttentionMaxHeadDim)
      return attention.emitError() << "the cuda target supports v_head_dim up to "
                                   << kAttentionMaxHeadDim << ", got "
                                   << attention.getValueHeadDim();
    // The layer's constants (RoPE frequencies included, in f64 with every digit) as a config
    // function the workspace plan calls too; the config travels as a kernel parameter.
    std::string config =
        llvm::formatv("attention_config_{0}_{1}", func.getSymName(), helperCount++).str();
    std::string freqs = frequencyList(attention.getInvFreq());
    size_t pairs = attention.getInvFreq().size();
    std::string setFreqs =
        pairs == 0 ? std::string()
                   : llvm::formatv("  static const double inv_freq[] = {{{0}};\n  for (int i = 0; "
                                   "i < {1}; ++i)\n    c.inv_freq[i] = inv_freq[i];\n",
                                   freqs, pairs)
                         .str();
    helpers += llvm::formatv("static mixtile::cuda::AttentionConfig {0}(const float *sinks = "
                             "nullptr) {{\n  mixtile::cuda::AttentionConfig c;\n  c.sinks = "
                             "sinks;\n  c.heads = {1}; c.kv_heads = "
                             "{2}; c.head_dim = {3}; c.rotary_dim = {4};\n  c.v_head_dim = {5}; "
                             "c.rope_offset = {6};\n  c.rope_scale = {7}f; c.rope_interleaved = "
                             "{8};\n  c.softmax_scale = {9}f; c.clip = {10}f; c.window = {11};\n"
                             "{12}  return c;\n}\n\n",
                             config, attention.getHeads(), attention.getKvHeads(),
                             attention.getHeadDim(), 2 * pairs, attention.getValueHeadDim(),
                             attention.getRopeOffset(),
                             floatLiteral(attention.getRopeScale().convertToDouble()),
                             attention.getRopeInterleaved() ? "true" : "false",
                             floatLiteral(attention.getSoftmaxScale().convertToDouble()),
                             floatLiteral(attention.getClip().convertToDouble()),
                             attention.getWindow(), setFreqs)
                   .str();
    Value cache = attention.getKCache();
    std::string t = dim(attention.getQ(), 0), b = dim(cache, 0), len = dim(cache, 1);
    // Multi-head latent attention's rotary key, shared by the kv heads.
    std::string ropeKey = attention.getRopeKey() ? ptr(attention.getRopeKey()) : "nullptr";
    line("// Phase 1 writes the rotated keys and the values into the caches (a block per token);");
    line("// phase 2 attends, a warp per (token, head). A token outside the cache gets zeros.");
    emitLibraryCall("attention<" + weightType(elementOf(cache)) + ">",
                    llvm::formatv("{0}({13}), {1}, {2}, {3}, {4}, {5}, {6}, {7}, {8}, {9}, {10}, "
                                  "{11}, {12}, scratch",
                                  config, t, ptr(attention.getQ()), ptr(attention.getK()),
                                  ptr(attention.getV()), ropeKey, ptr(attention.getPositions()),
                                  ptr(attention.getSequences()), b, len, ptr(cache),
                                  ptr(attention.getVCache()), ptr(attention.getOut()),
                                  attention.getSinks() ? ptr(attention.getSinks()) : "")
                        .str());
    scratch.push_back(
        llvm::formatv("mixtile::cuda::attention_workspace_size({0}(), {1})", config, t).str());
    return success();
  }
  if (auto mix = dyn_cast<TokenMixOp>(op)) {
    int64_t experts = staticDim(mix.getController(), 0), hidden = staticDim(mix.getX(), 2);
    std::string b = dim(mix.getX(), 0), s = dim(mix.getX(), 1);
    checkBatchMultiple(b, mix.getGroupSize());
    std::string logits = newSlot(Float32Type::get(op->getContext()),
                                 llvm::formatv("{0} * {1}", product({b, s}), experts).str());
    std::string weight = weightType(elementOf(mix.getController()));
    emitTiledCall(tokenCount, [&](const CudaTile &t) {
      return llvm::formatv("mixtile::cuda::token_mix<{0}, {1}>({2}, {3}, {4}, {5}, {6}, {7}, "
                           "{8}, {9}, {10}, {11}, {12}, {13}, cuda_stream)",
                           weight, tileArgs(t), b, s, hidden, experts, mix.getGroupSize(),
                           floatLiteral(mix.getTemperature().convertToDouble()),
                           mix.getEmit() == EmitWeights::expert_softmax ? "true" : "false",
                           ptr(mix.getX()), ptr(mix.getController()), ptr(mix.getMixed()),
                           ptr(mix.getEmitWeights()), logits)
          .str();
    });
    return success();
  }
  if (auto batched = dyn_cast<BatchedExpertFFNOp>(op)) {
    int64_t experts = staticDim(batched.getZ(), 0), hidden = staticDim(batched.getZ(), 2);
    std::string rows = dim(batched.getZ(), 1);
    std::string assignments = llvm::formatv("{0} * ({1})", experts, rows).str();
    line("// Every expert owns the same number of rows: uniform segments, no offsets.");
    emitExpertFFN(batched.getZ(),
                  llvm::formatv("mixtile::cuda::SegmentTable{{nullptr, {0}}", rows).str(),
                  "nullptr", "nullptr", "nullptr", ptr(batched.getH()), "0", batched.getGate(),
                  batched.getUp(), batched.getDown(), experts, hidden, assignments,
                  batched.getActivationAttr(), rows);
    return success();
  }
  if (auto loss = dyn_cast<LoadBalancingLossOp>(op)) {
    launch(llvm::formatv("mixtile::cuda::load_balancing_loss({0}, {1}, {2}, {3}, {4}, {5}, "
                         "cuda_stream)",
                         dim(loss.getLogits(), 0), staticDim(loss.getLogits(), 1),
                         staticDim(loss.getExperts(), 1), ptr(loss.getLogits()),
                         ptr(loss.getExperts()), ptr(loss.getLoss()))
               .str());
    return success();
  }
  if (auto loss = dyn_cast<ZLossOp>(op)) {
    launch(llvm::formatv("mixtile::cuda::z_loss({0}, {1}, {2}, {3}, cuda_stream)",
                         dim(loss.getLogits(), 0), staticDim(loss.getLogits(), 1),
                         ptr(loss.getLogits()), ptr(loss.getLoss()))
               .str());
    return success();
  }
  return op->emitError() << "the cuda target cannot emit '" << op->getName()
                         << "' inside kernel '" << kernel.getKind() << "'";
}

} // namespace

FailureOr<EmittedArtifact> mlir::mix::codegen::emitCudaArtifact(ModuleOp module,
                                                                StringRef name) {
  static const TargetConventions conventions = [] {
    TargetConventions c;
    c.target = "cuda";
    c.sourceExtension = ".cu";
    c.kernelNamespace = "mixtile::cuda";
    c.executionParam = "void *stream";
    c.executionArg = "stream";
    c.align = "mixtile::cuda::detail::align256";
    c.entryPreamble =
        "  // Pointers are device pointers; every launch goes to `stream`, none waits for it.\n"
        "  const cudaStream_t cuda_stream = static_cast<cudaStream_t>(stream);\n"
        "  (void)cuda_stream;\n";
    c.copyStatement = "MIXTILE_CHECK(mixtile::cuda::copy_elements({0}, {1}, {3}, cuda_stream));";
    c.reservedNames = {"stream", "cuda_stream", "config", "capacity", "p",
                       "gate_w", "up_w",   "down_w"};
    c.builtinErrors = {"a CUDA kernel launch failed (cudaGetLastError)"};
    c.headerIntro =
        " * Tensors are dense row-major DEVICE buffers; bf16/f16 tensors are passed as uint16_t\n"
        " * bits. Every call needs a device workspace of at least *_workspace_size() bytes,\n"
        " * 256-byte aligned (cudaMalloc's alignment), and a cudaStream_t passed as void *stream.\n"
        " * A call only enqueues work on the stream: results are ready when the stream is. */\n";
    static_assert(kLaunchError == 1, "the launch error is the first built-in error code");
    c.sourceIntro =
        "// {0}.cu: generated by mixtilec {1} for the cuda target. Each entry point launches the\n"
        "// kernels the passes scheduled, in order, on the caller's stream; each kernel block says\n"
        "// which ops were fused into it and the tile sizes it picks by token count. Nothing here\n"
        "// synchronizes with the host, so a call can be captured in a CUDA graph. The kernel\n"
        "// library it launches is in mixtile_kernels/, beside this file.\n"
        "#include \"{0}.h\"\n\n#include \"mixtile_kernels/kernels.cuh\"\n\n#include <algorithm>\n\n"
        "// A launch that failed makes the entry point return 1 (see {0}_error_message).\n"
        "#define MIXTILE_CHECK(call) \\\n  do {{ \\\n    const cudaError_t mixtile_status = (call); \\\n"
        "    if (mixtile_status != cudaSuccess) {{ \\\n"
        "      mixtile::cuda::record_launch_error(mixtile_status); \\\n      return 1; \\\n"
        "    } \\\n  } while (0)\n\n";
    c.sourceOutro =
        "// The CUDA runtime calls a host needs to run this library (mixtile_kernels/host_api.h):\n"
        "// the runtime is linked statically, so hosts allocate and copy through this table.\n"
        "extern \"C\" __attribute__((visibility(\"default\"))) const mixtile_cuda_host_api *\n"
        "{0}_cuda_host_api(void) {{\n  return mixtile::cuda::host_api();\n}\n";
    c.manifestSymbols = {{"cuda_host_api_symbol", "{0}_cuda_host_api"}};
    c.addKernelLibrary = addCudaKernelLibrary;
    return c;
  }();
  return emitArtifact(module, name, conventions,
                      [](func::FuncOp func, StringRef artifactName,
                         std::vector<std::string> &errors) -> std::unique_ptr<FunctionEmitter> {
                        return std::make_unique<CudaEmitter>(func, artifactName, errors,
                                                             conventions);
                      });
}
