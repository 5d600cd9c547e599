// CPU codegen: turns a scheduled module (functions of mix.kernel ops) into readable C++ that
// calls the kernel library in codegen/cpu/kernels/ with the layer's constants, plus the C
// header and the manifest. It follows the fusion and tiles the passes chose; it decides none.
#include "codegen/Artifact.h"
#include "codegen/FunctionEmitter.h"
#include "dialect/MixOps.h"
#include "passes/CpuTarget.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"

#include <cmath>
#include <map>
#include <set>

using namespace mlir;
using namespace mlir::mix;
using namespace mlir::mix::codegen;

namespace {



class CpuEmitter : public FunctionEmitter {
public:
  using FunctionEmitter::FunctionEmitter;

private:
  LogicalResult beginKernel(KernelOp kernel, unsigned index) override {
    if (failed(checkTiles(kernel)))
      return failure();
    currentTiles = tileFunction(kernel, index);
    // The matrix path mix-tile chose from the CPU (AMX, AVX512-BF16, f32 FMA).
    auto path = kernel->getAttrOfType<StringAttr>(kMatmulPathAttr);
    currentPath = path ? path.str() : "fma_f32";
    return success();
  }
  LogicalResult emitOp(Operation *op, KernelOp kernel) override;
  void emitLibraryCall(const std::string &name, const std::string &args) override {
    line("mixtile::cpu::" + name + "(" + args + ", threads);");
  }
  std::string expertWeightArrays(Operation *op, ValueRange gate, ValueRange up, ValueRange down,
                                 int64_t experts, int64_t hidden, int64_t width);
  std::string tileFunction(KernelOp kernel, unsigned index);
  LogicalResult checkTiles(KernelOp kernel);
  /// The run-time number of assignments in the segments `tokens` belongs to: the last
  /// offset of the dispatch or expert choice that made them.
  std::string assignmentCount(Value tokens) {
    Operation *def = innerDefiningOp(tokens);
    Value offsets;
    if (auto dispatch = dyn_cast_or_null<DispatchOp>(def))
      offsets = dispatch.getOffsets();
    else if (auto choice = dyn_cast_or_null<ExpertChoiceOp>(def))
      offsets = choice.getOffsets();
    if (offsets && buffers.count(offsets))
      return llvm::formatv("(int64_t){0}[{1}]", buffers[offsets].pointer,
                           staticDim(offsets, 0) - 1)
          .str();
    return dim(tokens, 0);
  }

  std::string currentTiles;  // the tile function of the kernel being emitted
  std::string currentPath;   // its matrix path

  /// The matrix path as a trailing template / call argument ("" for the default fma_f32).
  std::string pathArgument() const {
    return currentPath == "fma_f32" ? "" : ", mixtile::cpu::MatmulPath::" + currentPath;
  }
  /// An AMX kernel first checks that Linux granted the process the tile state.
  void checkAmxReady() {
    if (currentPath != "amx_bf16")
      return;
    if (amxErrorCode == 0)  // one message, however many AMX kernels check it
      amxErrorCode = addError("the OS did not grant this process the AMX tile state (arch_prctl "
                              "ARCH_REQ_XCOMP_PERM failed): recompile with --cpu x86-64-v4");
    line(llvm::formatv("if (!mixtile::cpu::amx_ready())\n      return {0};", amxErrorCode).str());
  }
  int amxErrorCode = 0;
  int attentionErrorCode = 0;  // one message for every attention of the function
  int helperCount = 0;
  std::string pendingTiles;  // its text, added to the helpers if a call uses it
  /// The kernel's tile function joins the helpers: a call about to use it (once per kernel).
  void useTiles() {
    helpers += pendingTiles;
    pendingTiles.clear();
  }
};


std::string CpuEmitter::expertWeightArrays(Operation *op, ValueRange gate, ValueRange up,
                                                ValueRange down, int64_t experts, int64_t hidden,
                                                int64_t width) {
  std::string text;
  auto emitArray = [&](StringRef role, ValueRange weights, int64_t perExpert) {
    text += llvm::formatv("    const void *{0}[{1}] = {{", role, experts).str();
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
    text += "};\n";
  };
  // MXFP4 codes: two a byte.
  int64_t size = hidden * width / (isa<Float4E2M1FNType>(elementOf(up[0])) ? 2 : 1);
  if (!gate.empty())
    emitArray("gate_w", gate, size);
  emitArray("up_w", up, size);
  emitArray("down_w", down, size);
  (void)op;
  return text;
}

// The fields of mixtile::cpu::TileConfig a tuning bucket may set (gemm.h), each a count
// in [0, 2^31 - 1]: anything else would reach the C++ compiler as a broken artifact.
static constexpr StringLiteral kCpuTileFields[] = {
    "mc", "kc", "nc", "small_m_max", "small_prefetch_rows", "small_group_rows",
    "small_prefetch_l2_bytes", "small_dp_rows", "engine_kc", "engine_mc", "engine_stream_rows",
    "engine_panel_rows", "engine_l1_rows", "engine_l1_kc", "engine_whole_depth_bytes"};

LogicalResult CpuEmitter::checkTiles(KernelOp kernel) {
  ArrayAttr tiles = kernel.getTilesAttr();
  if (!tiles)
    return success();
  for (Attribute bucket : tiles) {
    auto dict = dyn_cast<DictionaryAttr>(bucket);
    if (!dict || !dict.getAs<IntegerAttr>("max_tokens"))
      return kernel.emitError() << "the cpu target needs each tile bucket to be a dictionary "
                                   "with an integer 'max_tokens'";
    for (NamedAttribute field : dict) {
      StringRef name = field.getName().getValue();
      if (name == "max_tokens")
        continue;
      if (!llvm::is_contained(kCpuTileFields, name))
        return kernel.emitError() << "tile field '" << name << "' is not one of the cpu target's: "
                                  << llvm::join(ArrayRef<StringLiteral>(kCpuTileFields), ", ");
      auto value = dyn_cast<IntegerAttr>(field.getValue());
      if (!value || value.getValue().getSignificantBits() > 64 || value.getInt() < 0 ||
          value.getInt() > INT32_MAX)
        return kernel.emitError() << "tile field '" << name
                                  << "' must be an integer in [0, 2147483647]";
    }
  }
  return success();
}

std::string CpuEmitter::tileFunction(KernelOp kernel, unsigned index) {
  // Named after the function too: one source file holds every function's helpers.
  std::string name = llvm::formatv("tiles_{0}_k{1}", func.getSymName(), index).str();
  std::string text = llvm::formatv("// Tile sizes of kernel {0} '{1}' by token count, from the "
                                   "tuning table.\nstatic mixtile::cpu::TileConfig {2}(int64_t "
                                   "tokens) {{\n  mixtile::cpu::TileConfig c = "
                                   "mixtile::cpu::default_tile_config(tokens);\n",
                                   index, kernel.getKind(), name)
                         .str();
  if (ArrayAttr tiles = kernel.getTilesAttr()) {
    for (Attribute bucket : tiles) {
      auto dict = cast<DictionaryAttr>(bucket);
      int64_t maxTokens = cast<IntegerAttr>(dict.get("max_tokens")).getInt();
      std::string assignments;
      for (NamedAttribute field : dict)
        if (field.getName() != "max_tokens")
          assignments += llvm::formatv(" c.{0} = {1};", field.getName().getValue(),
                                       cast<IntegerAttr>(field.getValue()).getInt())
                             .str();
      if (maxTokens < 0)
        text += llvm::formatv("  {{{0} return c; }\n", assignments).str();
      else
        text += llvm::formatv("  if (tokens <= {0}) {{{1} return c; }\n", maxTokens, assignments)
                    .str();
    }
  }
  text += "  return c;\n}\n\n";
  pendingTiles = text;
  return name;
}


LogicalResult CpuEmitter::emitOp(Operation *op, KernelOp kernel) {
  const std::string &tiles = currentTiles;

  // A wide router on bf16 tokens: its logits as one GEMM on the matrix path mix-tile chose.
  if (auto route = dyn_cast<RouteOp>(op); route && currentPath != "fma_f32") {
    std::string args = emitRouteConfig(route), t = dim(route.getX(), 0);
    int64_t experts = staticDim(route.getRouter(), 0), hidden = staticDim(route.getRouter(), 1);
    useTiles();
    checkAmxReady();
    line(llvm::formatv("mixtile::cpu::route<{0}{1}>({2}, scratch, {3}({4}), threads);",
                       weightType(elementOf(route.getRouter())), pathArgument(), args, tiles, t)
             .str());
    scratch.push_back(llvm::formatv("mixtile::cpu::route_workspace_size({0}, {1}, {2}, max_threads, "
                                    "{3}({0}){4})",
                                    t, experts, hidden, tiles, pathArgument())
                          .str());
    return success();
  }
  if (emitPortableOp(op))
    return success();
  if (auto capacity = dyn_cast<CapacityOp>(op)) {
    Value in = capacity.getExperts();
    copyTensor(capacity.getKept(), in);
    std::string fixed = capacity.getCapacity() ? std::to_string(*capacity.getCapacity()) : "-1";
    std::string factor = capacity.getCapacityFactor()
                             ? floatLiteral(capacity.getCapacityFactor()->convertToDouble())
                             : "0.0";
    line(llvm::formatv("// Each expert keeps at most C assignments, claimed in token order.\n"
                       "    const int64_t capacity = mixtile::cpu::expert_capacity({0}, {1}, {2}, "
                       "{3}, {4});\n    mixtile::cpu::apply_capacity({2}, {3}, {4}, capacity, {5});",
                       fixed, factor, dim(in, 0), dim(in, 1), capacity.getNumExperts(),
                       ptr(capacity.getKept()))
             .str());
    return success();
  }
  if (auto dispatch = dyn_cast<DispatchOp>(op)) {
    line(llvm::formatv("mixtile::cpu::dispatch({0}, {1}, {2}, {3}, {4}, {5}, {6}, {7});",
                       dim(dispatch.getExperts(), 0), dim(dispatch.getExperts(), 1),
                       dispatch.getNumExperts(), ptr(dispatch.getWeights()),
                       ptr(dispatch.getExperts()), ptr(dispatch.getOffsets()),
                       ptr(dispatch.getTokens()), ptr(dispatch.getGates()))
             .str());
    return success();
  }
  if (auto choice = dyn_cast<ExpertChoiceOp>(op)) {
    int64_t experts = staticDim(choice.getRouter(), 0), hidden = staticDim(choice.getRouter(), 1);
    std::string t = dim(choice.getX(), 0);
    std::string scores = newSlot(Float32Type::get(op->getContext()),
                                 llvm::formatv("{0} * {1}", t, experts).str());
    checkAmxReady();
    line(llvm::formatv("mixtile::cpu::expert_choice<{0}{12}>({1}, {2}, {3}, {4}, {5}, {6}, {7}, "
                       "{8}, {9}, {10}, {11}, scratch, threads);",
                       weightType(elementOf(choice.getRouter())), t, experts, hidden,
                       floatLiteral(choice.getCapacityFactor().convertToDouble()),
                       ptr(choice.getX()), ptr(choice.getRouter()), ptr(choice.getOffsets()),
                       ptr(choice.getTokens()), ptr(choice.getGates()), ptr(choice.getLogits()),
                       scores, pathArgument())
             .str());
    scratch.push_back(llvm::formatv("mixtile::cpu::expert_choice_workspace_size({0}, {1}, {2}, "
                                    "max_threads{3})",
                                    t, experts, hidden, pathArgument())
                          .str());
    return success();
  }

  // Expert FFNs: one call of the grouped-FFN engine; how its output leaves (scatter-add into
  // the combine's output, or a plain per-assignment store) depends on what it was fused with.
  auto emitExpertFFN = [&](Value x, std::string offsets, std::string tokensPtr,
                           std::string gatesPtr, std::string outRows, std::string y,
                           std::string zeroRows, ValueRange gate, ValueRange up,
                           ValueRange down, int64_t experts, int64_t hidden,
                           std::string assignments, ActivationAttr activation,
                           std::string tokenCountExpr, ValueRange gateScale = {},
                           ValueRange upScale = {}, ValueRange downScale = {},
                           std::optional<ArrayRef<int64_t>> block = std::nullopt,
                           ExpertFFNOp extras = {}) -> void {
    ExpertWeightShape shape;
    (void)verifyExpertWeights(op, gate, up, down, experts, hidden, shape);
    line("{");
    line(expertWeightArrays(op, gate, up, down, experts, hidden, shape.intermediate).substr(4));
    // fp8 weights: each expert's block scales beside its codes (mix.expert_ffn's weight_block).
    bool fp8 = block.has_value();
    // MXFP4 weights: each expert's e8m0 scales, [rows, depth / 32] slices of the stacked ones.
    bool mxfp4 = isa<Float4E2M1FNType>(shape.elementType);
    if (fp8 || mxfp4) {
      // One tensor per expert (fp8), or slices of one stacked tensor (MXFP4).
      int64_t perExpert = hidden * shape.intermediate / 32;
      auto scales = [&](StringRef role, ValueRange values) {
        std::string text =
            llvm::formatv("const {0} *{1}[{2}] = {{", fp8 ? "float" : "uint8_t", role, experts).str();
        for (int64_t e = 0; e < experts; ++e)
          text += (e ? ", " : "") +
                  (fp8 ? ptr(values[e])
                       : llvm::formatv("{0} + {1}", ptr(values[0]), e * perExpert).str());
        line(text + "};");
      };
      if (shape.gated)
        scales("gate_s", gateScale);
      scales("up_s", upScale);
      scales("down_s", downScale);
    }
    line(llvm::formatv(
             "mixtile::cpu::ExpertFFNProblem p;\n    p.num_experts = {0}; p.hidden = {1}; p.inter "
             "= {2};\n    p.x = {3}; p.offsets = {4}; p.tokens = {5}; p.gates = {6};\n    "
             "p.gate_w = {7}; p.up_w = up_w; p.down_w = down_w;\n    p.y = {8}; p.out_rows = "
             "{9}; p.zero_rows = {10};\n    p.workspace = scratch; p.num_threads = threads;",
             experts, hidden, shape.intermediate, ptr(x), offsets, tokensPtr, gatesPtr,
             shape.gated ? "gate_w" : "nullptr", y, outRows, zeroRows)
             .str());
    if (fp8)
      line(llvm::formatv("p.gate_scale = {0}; p.up_scale = up_s; p.down_scale = down_s;\n    "
                         "p.scale_block_rows = {1}; p.scale_block_cols = {2};",
                         shape.gated ? "gate_s" : "nullptr", (*block)[0], (*block)[1])
               .str());
    if (mxfp4)
      line(llvm::formatv("p.gate_mx_scale = {0}; p.up_mx_scale = up_s; p.down_mx_scale = down_s;",
                         shape.gated ? "gate_s" : "nullptr")
               .str());
    emitExpertExtras(extras, activation.getValue());  // gpt-oss's biases and clamp
    useTiles();
    std::string path = pathArgument();
    checkAmxReady();
    line(llvm::formatv("mixtile::cpu::expert_ffn<{0}, {1}, {2}{5}>(p, {3}({4}));",
                       weightType(shape.elementType), activationName(activation.getValue()),
                       shape.gated ? "true" : "false", tiles, tokenCountExpr, path)
             .str());
    line("}");
    // The workspace of fp8 and MXFP4 weights holds each thread's slab of dequantized rows as well.
    std::string sizeTail =
        fp8 || mxfp4 ? ", mixtile::cpu::MatmulPath::" + currentPath + ", " + weightType(shape.elementType)
            : path;
    scratch.push_back(llvm::formatv("mixtile::cpu::expert_ffn_workspace_size({0}, {6}, {1}, {2}, "
                                    "max_threads, {3}({4}){5})",
                                    assignments, hidden, shape.intermediate, tiles,
                                    tokenCountExpr, sizeTail, experts)
                          .str());
  };

  if (auto zeros = dyn_cast<ZerosLikeOp>(op)) {
    line(llvm::formatv("std::memset({0}, 0, sizeof(float) * {1});", ptr(zeros.getZeros()),
                       product(dimsOf(zeros.getZeros())))
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
    line(llvm::formatv("// Dense FFN over every token: one expert owning rows [0, T).\n    const "
                       "int32_t dense_offsets[2] = {{0, (int32_t)({0})};",
                       t)
             .str());
    emitExpertFFN(x, "dense_offsets", "nullptr", "nullptr", "nullptr", ptr(y), "0", gate,
                  ValueRange(ffn.getUp()), ValueRange(ffn.getDown()), 1, hidden, t,
                  ffn.getActivationAttr(), t);
    return success();
  }
  if (auto gate = dyn_cast<SigmoidGateOp>(op)) {
    Value out = gate.getGated();
    copyTensor(out, gate.getY());
    line(llvm::formatv("mixtile::cpu::sigmoid_gate_rows<{0}>({1}, {2}, {3}, {4}, {5}, {6}, "
                       "threads);",
                       weightType(elementOf(gate.getGateWeight())), dim(gate.getX(), 0),
                       staticDim(gate.getX(), 1), staticDim(gate.getY(), 1), ptr(gate.getX()),
                       ptr(gate.getGateWeight()), ptr(out))
             .str());
    return success();
  }
  if (auto ffn = dyn_cast<ExpertFFNOp>(op)) {
    int64_t experts = staticDim(ffn.getOffsets(), 0) - 1, hidden = staticDim(ffn.getX(), 1);
    std::string assignments = dim(ffn.getTokens(), 0);
    // Fused with its combine: gather in the prologue, gate scale and scatter-add into the
    // output rows in the second GEMM's epilogue; h never reaches memory.
    ExpertOutput o = expertOutput(ffn);
    emitExpertFFN(ffn.getX(), ptr(ffn.getOffsets()), ptr(ffn.getTokens()), o.gates, o.outRows,
                  o.y, o.zeroRows, ffn.getGate(), ffn.getUp(), ffn.getDown(), experts, hidden,
                  assignments, ffn.getActivationAttr(), tokenCount, ffn.getGateScale(),
                  ffn.getUpScale(), ffn.getDownScale(), ffn.getWeightBlock(), ffn);
    return success();
  }
  if (auto combine = dyn_cast<CombineOp>(op)) {
    if (fusedCombines.contains(combine))
      return success();
    Value init = combine.getInit();
    copyTensor(combine.getY(), init);
    // The number of assignments is known only at run time for dispatch and expert choice:
    // read it from the offsets the segments came with, when the tokens came from one.
    line(llvm::formatv("mixtile::cpu::combine_rows({0}, {1}, {2}, {3}, {4}, {5}, threads);",
                       assignmentCount(combine.getTokens()), staticDim(combine.getH(), 1),
                       ptr(combine.getH()), ptr(combine.getTokens()), ptr(combine.getGates()),
                       ptr(combine.getY()))
             .str());
    return success();
  }
  if (auto linear = dyn_cast<LinearOp>(op)) {
    // On the GEMM engine (and the matrix path mix-tile chose), tiles by row count.
    Value y = linear.getY();
    int64_t out = staticDim(linear.getWeight(), 0), in = staticDim(linear.getWeight(), 1);
    std::string rows = dim(linear.getX(), 0);
    std::string bias = "nullptr";
    if (Value b = linear.getBias()) {
      bias = ptr(b);
      if (!elementOf(b).isF32()) {
        bias = newSlot(Float32Type::get(op->getContext()), std::to_string(out));
        line(llvm::formatv("mixtile::cpu::widen_tokens<{0}>({1}, {2}, {3}, threads);",
                           weightType(elementOf(b)), out, ptr(b), bias)
                 .str());
      }
    }
    useTiles();
    checkAmxReady();
    line(llvm::formatv("mixtile::cpu::LinearProblem lp;\n    lp.rows = {0}; lp.in = {1}; lp.out = "
                       "{2}; lp.x = {3}; lp.w = {4}; lp.bias = {5}; lp.y = {6};\n    "
                       "lp.workspace = scratch; lp.num_threads = threads;\n    "
                       "mixtile::cpu::linear<{7}{8}>(lp, {9}({0}));",
                       rows, in, out, ptr(linear.getX()), ptr(linear.getWeight()), bias, ptr(y),
                       weightType(elementOf(linear.getWeight())), pathArgument(), tiles)
             .str());
    scratch.push_back(llvm::formatv("mixtile::cpu::linear_workspace_size({0}, {1}, {2}, "
                                    "max_threads, {3}({0}){4})",
                                    rows, in, out, tiles, pathArgument())
                          .str());
    return success();
  }
  if (auto gather = dyn_cast<GatherOp>(op)) {
    std::string n = dim(gather.getTable(), 0);
    int code = addError(llvm::formatv("mix.gather: an index lies outside the table's {0} rows "
                                      "(token ids must be below the vocabulary size)",
                                      ShapedType::isDynamic(staticDim(gather.getTable(), 0))
                                          ? std::string("[0, N)")
                                          : "[0, " + n + ")")
                            .str());
    line(llvm::formatv("if (!mixtile::cpu::gather_rows<{0}>({1}, {2}, {3}, {4}, {5}, {6}, "
                       "threads))\n      return {7};",
                       weightType(elementOf(gather.getTable())), dim(gather.getIndices(), 0),
                       staticDim(gather.getTable(), 1), n, ptr(gather.getTable()),
                       ptr(gather.getIndices()), ptr(gather.getRows()), code)
             .str());
    return success();
  }
  if (auto attention = dyn_cast<AttentionOp>(op)) {
    // The layer's constants (RoPE frequencies included) as a config function the workspace
    // plan calls too.
    std::string config =
        llvm::formatv("attention_config_{0}_{1}", func.getSymName(), helperCount++).str();
    std::string freqs = frequencyList(attention.getInvFreq());
    helpers += llvm::formatv(
                   "static mixtile::cpu::AttentionConfig {0}(const float *sinks = nullptr) {{\n  "
                   "static const double inv_freq[] = {{{1}};\n  mixtile::cpu::AttentionConfig "
                   "c;\n  c.sinks = sinks;\n  c.heads = {2}; "
                   "c.kv_heads = {3}; c.head_dim = {4}; c.rotary_dim = {5};\n{11}  c.inv_freq = "
                   "inv_freq; c.rope_scale = {6}f; c.rope_interleaved = {7};\n  c.softmax_scale "
                   "= {8}f; c.clip = {9}f; c.window = {10};\n  return c;\n}\n\n",
                   config, freqs.empty() ? "0.0" : freqs, attention.getHeads(),
                   attention.getKvHeads(), attention.getHeadDim(),
                   2 * attention.getInvFreq().size(),
                   floatLiteral(attention.getRopeScale().convertToDouble()),
                   attention.getRopeInterleaved() ? "true" : "false",
                   floatLiteral(attention.getSoftmaxScale().convertToDouble()),
                   floatLiteral(attention.getClip().convertToDouble()), attention.getWindow(),
                   attention.getVHeadDim() || attention.getRopeOffset()
                       ? llvm::formatv("  c.v_head_dim = {0}; c.rope_offset = {1};\n",
                                       attention.getValueHeadDim(), attention.getRopeOffset())
                             .str()
                       : std::string())
                   .str();
    if (attentionErrorCode == 0)
      attentionErrorCode =
          addError("attention: a token's position lies outside the KV cache [0, S) or its "
                   "sequence outside the cache rows [0, B)");
    Value cache = attention.getKCache();
    std::string t = dim(attention.getQ(), 0), b = dim(cache, 0), len = dim(cache, 1);
    checkAmxReady();
    line(llvm::formatv("if (mixtile::cpu::attention<{0}>({1}({15}), {2}, {3}, {4}, {5}, {14}, {6}, "
                       "{7}, {8}, {9}, {10}, {11}, {12}, scratch, threads) != 0)\n      return {13};",
                       weightType(elementOf(cache)) + pathArgument(), config, t, ptr(attention.getQ()),
                       ptr(attention.getK()), ptr(attention.getV()),
                       ptr(attention.getPositions()), ptr(attention.getSequences()), b, len,
                       ptr(cache), ptr(attention.getVCache()), ptr(attention.getOut()),
                       attentionErrorCode,
                       attention.getRopeKey() ? ptr(attention.getRopeKey()) : "nullptr",
                       attention.getSinks() ? ptr(attention.getSinks()) : "")
             .str());
    scratch.push_back(llvm::formatv("mixtile::cpu::attention_workspace_size({0}(), {1}, {2}, "
                                    "max_threads{3})",
                                    config, t, len, pathArgument())
                          .str());
    return success();
  }
  if (auto latent = dyn_cast<LatentAttentionOp>(op)) {
    std::string config =
        llvm::formatv("latent_attention_config_{0}_{1}", func.getSymName(), helperCount++).str();
    std::string freqs = frequencyList(latent.getInvFreq());
    helpers += llvm::formatv(
                   "static mixtile::cpu::LatentAttentionConfig {0}() {{\n  static const double "
                   "inv_freq[] = {{{1}};\n  mixtile::cpu::LatentAttentionConfig c;\n  c.heads = "
                   "{2}; c.rank = {3}; c.nope_dim = {4}; c.rope_dim = {5}; c.v_head_dim = {6};\n  "
                   "c.inv_freq = inv_freq; c.rope_scale = {7}f; c.rope_interleaved = {8};\n  "
                   "c.softmax_scale = {9}f; c.window = {10};\n  return c;\n}\n\n",
                   config, freqs, latent.getHeads(), latent.getRank(), latent.getNopeDim(),
                   latent.getRopeDim(), latent.getVHeadDim(),
                   floatLiteral(latent.getRopeScale().convertToDouble()),
                   latent.getRopeInterleaved() ? "true" : "false",
                   floatLiteral(latent.getSoftmaxScale().convertToDouble()), latent.getWindow())
                   .str();
    if (attentionErrorCode == 0)
      attentionErrorCode =
          addError("attention: a token's position lies outside the KV cache [0, S) or its "
                   "sequence outside the cache rows [0, B)");
    Value cache = latent.getCache();
    std::string t = dim(latent.getQ(), 0), b = dim(cache, 0), len = dim(cache, 1);
    std::string storage = weightType(elementOf(cache));
    useTiles();
    checkAmxReady();
    line(llvm::formatv("if (mixtile::cpu::latent_attention<{0}>({1}(), {2}, {3}, {4}, {5}, {6}, "
                       "{7}, {8}, {9}, {10}, {11}, {12}, scratch, threads, {13}({2})) != 0)\n"
                       "      return {14};",
                       storage + pathArgument(), config, t, ptr(latent.getQ()),
                       ptr(latent.getLatent()), ptr(latent.getRopeKey()), ptr(latent.getKvB()),
                       ptr(latent.getPositions()), ptr(latent.getSequences()), b, len, ptr(cache),
                       ptr(latent.getOut()), currentTiles, attentionErrorCode)
             .str());
    scratch.push_back(llvm::formatv("mixtile::cpu::latent_attention_workspace_size<{0}>({1}(), "
                                    "{2}, {3}, {4}, max_threads, {5}({2}){6})",
                                    storage, config, t, b, len, currentTiles, pathArgument())
                          .str());
    return success();
  }
  if (auto mix = dyn_cast<TokenMixOp>(op)) {
    int64_t experts = staticDim(mix.getController(), 0), hidden = staticDim(mix.getX(), 2);
    std::string b = dim(mix.getX(), 0), s = dim(mix.getX(), 1);
    checkBatchMultiple(b, mix.getGroupSize());
    std::string logits = newSlot(Float32Type::get(op->getContext()),
                                 llvm::formatv("{0} * {1}", product({b, s}), experts).str());
    checkAmxReady();
    line(llvm::formatv("mixtile::cpu::token_mix<{0}{13}>({1}, {2}, {3}, {4}, {5}, {6}, {7}, {8}, "
                       "{9}, {10}, {11}, {12}, scratch, threads);",
                       weightType(elementOf(mix.getController())), b, s, hidden, experts,
                       mix.getGroupSize(), floatLiteral(mix.getTemperature().convertToDouble()),
                       mix.getEmit() == EmitWeights::expert_softmax ? "true" : "false",
                       ptr(mix.getX()), ptr(mix.getController()), ptr(mix.getMixed()),
                       ptr(mix.getEmitWeights()), logits, pathArgument())
             .str());
    scratch.push_back(llvm::formatv("mixtile::cpu::token_mix_workspace_size({0}, {1}, {2}, {3}, "
                                    "max_threads{4})",
                                    b, s, hidden, experts, pathArgument())
                          .str());
    return success();
  }
  if (auto batched = dyn_cast<BatchedExpertFFNOp>(op)) {
    int64_t experts = staticDim(batched.getZ(), 0), hidden = staticDim(batched.getZ(), 2);
    std::string rows = dim(batched.getZ(), 1);
    std::string offsets =
        newSlot(IntegerType::get(op->getContext(), 32), std::to_string(experts + 1));
    line(llvm::formatv("int32_t *offsets = {0};\n    for (int64_t e = 0; e <= {1}; ++e)\n      "
                       "offsets[e] = (int32_t)(e * ({2}));",
                       offsets, experts, rows)
             .str());
    std::string assignments = llvm::formatv("{0} * ({1})", experts, rows).str();
    emitExpertFFN(batched.getZ(), "offsets", "nullptr", "nullptr", "nullptr", ptr(batched.getH()),
                  "0", batched.getGate(), batched.getUp(), batched.getDown(), experts, hidden,
                  assignments, batched.getActivationAttr(), rows);
    return success();
  }
  if (auto loss = dyn_cast<LoadBalancingLossOp>(op)) {
    line(llvm::formatv("*{0} = mixtile::cpu::load_balancing_loss({1}, {2}, {3}, {4}, {5});",
                       ptr(loss.getLoss()), dim(loss.getLogits(), 0),
                       staticDim(loss.getLogits(), 1), staticDim(loss.getExperts(), 1),
                       ptr(loss.getLogits()), ptr(loss.getExperts()))
             .str());
    return success();
  }
  if (auto loss = dyn_cast<ZLossOp>(op)) {
    line(llvm::formatv("*{0} = mixtile::cpu::z_loss({1}, {2}, {3});", ptr(loss.getLoss()),
                       dim(loss.getLogits(), 0), staticDim(loss.getLogits(), 1),
                       ptr(loss.getLogits()))
             .str());
    return success();
  }
  return op->emitError() << "the cpu target cannot emit '" << op->getName()
                         << "' inside kernel '" << kernel.getKind() << "'";
}

/// The kernel library's entry points whose instantiations cost most of a library's compile
/// time (seconds each at -O3): the grouped expert FFN, linear, the attentions, expert choice
/// and the token mixer. Everything else is cheap and stays in the artifact's own source.
static constexpr StringLiteral kSeparateKernels[] = {"expert_ffn",       "linear",
                                                     "attention",        "latent_attention",
                                                     "expert_choice",    "token_mix"};

/// Finds the instantiations of kSeparateKernels the source calls and declares them
/// `extern template` after the kernel library's include, under MIXTILE_SEPARATE_KERNELS: the
/// library build (Artifact.cpp) then compiles each one on its own, in parallel, and caches the
/// object; a user compiling the source alone gets the implicit instantiations as before.
static void declareSeparateKernels(EmittedArtifact &artifact) {
  static constexpr StringLiteral prefix = "mixtile::cpu::";
  std::set<std::string> found;
  StringRef text = artifact.source;
  for (size_t at = text.find(prefix); at != StringRef::npos; at = text.find(prefix, at + 1)) {
    StringRef rest = text.substr(at + prefix.size());
    for (StringRef name : kSeparateKernels) {
      if (!rest.starts_with(name) || !rest.drop_front(name.size()).starts_with("<"))
        continue;
      // Template arguments are enumerators and bools: no nested brackets or parentheses.
      size_t close = rest.find('>');
      if (close == StringRef::npos || !rest.drop_front(close + 1).starts_with("("))
        continue;
      found.insert((prefix + rest.take_front(close + 1)).str());
    }
  }
  static constexpr StringLiteral include = "#include \"mixtile_kernels/kernels.h\"\n\n";
  size_t pos = artifact.source.find(include.str());
  if (found.empty() || pos == std::string::npos)  // nothing heavy, or not the cpu intro
    return;
  std::string block = "#if defined(MIXTILE_SEPARATE_KERNELS)\n// Compiled in translation units "
                      "of their own by mixtilec's library build.\n";
  for (const std::string &kernel : found) {
    block += "extern template decltype(" + kernel + ") " + kernel + ";\n";
    artifact.separateKernels.push_back(kernel);
  }
  block += "#endif\n\n";
  artifact.source.insert(pos + include.size(), block);
}

} // namespace

FailureOr<EmittedArtifact> mlir::mix::codegen::emitCpuArtifact(ModuleOp module, StringRef name) {
  static const TargetConventions conventions = [] {
    TargetConventions c;
    c.target = "cpu";
    c.sourceExtension = ".cpp";
    c.kernelNamespace = "mixtile::cpu";
    c.executionParam = "int num_threads";
    c.executionArg = "num_threads";
    c.align = "mixtile::cpu::detail::align64";
    // Workspaces are planned for the most threads a call may use.
    c.planParam = "int max_threads";
    c.planArg = "max_threads";
    c.planArgForQuery = "mixtile::cpu::max_threads()";
    c.entryPreamble = "  const int threads = mixtile::cpu::clamp_threads(num_threads);\n"
                      "  const int max_threads = mixtile::cpu::max_threads();\n"
                      "  (void)threads;\n";
    c.copyStatement = "std::memcpy({0}, {1}, sizeof({2}) * {3});";
    c.profileBegin = "const double profile_start = g_profile_on ? omp_get_wtime() : 0.0;";
    c.profileEnd = "if (g_profile_on) {{\n      g_profile_seconds[{0}] += omp_get_wtime() - "
                   "profile_start;\n      ++g_profile_calls[{0}];\n    }";
    c.reservedNames = {"num_threads", "threads", "max_threads"};
    c.headerIntro =
        " * Tensors are dense row-major; bf16/f16 tensors are passed as uint16_t bits. Every call\n"
        " * needs a workspace of at least *_workspace_size() bytes, 64-byte aligned; num_threads\n"
        " * <= 0 uses every core. Results are fully written by the call. */\n";
    c.sourceIntro =
        "// {0}.cpp: generated by mixtilec {1} for the cpu target. Each entry point runs the\n"
        "// kernels the passes scheduled, in order; each kernel block says which ops were fused\n"
        "// into it and the tile sizes it picks by token count. The kernel library it calls is\n"
        "// in mixtile_kernels/, beside this file.\n"
        "#include \"{0}.h\"\n\n#include \"mixtile_kernels/kernels.h\"\n\n#include <algorithm>\n"
        "#include <cstring>\n\n";
    c.addKernelLibrary = addCpuKernelLibrary;
    return c;
  }();
  FailureOr<EmittedArtifact> artifact = emitArtifact(
      module, name, conventions,
      [](func::FuncOp func, StringRef artifactName,
         std::vector<std::string> &errors) -> std::unique_ptr<FunctionEmitter> {
        return std::make_unique<CpuEmitter>(func, artifactName, errors, conventions);
      });
  if (failed(artifact))
    return failure();
  // The CPU mix-tile compiled for: the library is built for it and the runtime refuses a
  // host without its features. IR that skipped mix-tile is built for the host as it is.
  std::optional<CpuTarget> cpu;
  for (auto func : module.getOps<func::FuncOp>())
    if (!cpu)
      cpu = cpuTargetFromAttr(func->getAttrOfType<DictionaryAttr>(kCpuAttr));
  artifact->march = cpu ? cpu->march : "native";
  llvm::json::Array isaFlags;
  if (cpu) {
    artifact->isaFlags = cpu->isaFlags;
    for (const std::string &f : cpu->isaFlags)
      isaFlags.push_back(f);
  }
  llvm::json::Array features;
  if (cpu)
    for (const std::string &f : cpu->features)
      features.push_back(f);
  llvm::json::Array paths;
  module.walk([&](KernelOp kernel) {
    if (auto path = kernel->getAttrOfType<StringAttr>(kMatmulPathAttr))
      paths.push_back(llvm::json::Object{{"kernel", kernel.getKind().str()},
                                         {"matmul_path", path.str()}});
  });
  declareSeparateKernels(*artifact);
  artifact->manifest["cpu"] = llvm::json::Object{{"name", cpu ? cpu->name : "native"},
                                                 {"march", artifact->march},
                                                 {"isa_flags", std::move(isaFlags)},
                                                 {"required_features", std::move(features)},
                                                 {"matmul_paths", std::move(paths)}};
  return artifact;
}
