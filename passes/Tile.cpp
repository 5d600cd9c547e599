// mix-tile: attaches each kernel's tile configurations, by token-count bucket, from the
// target's tuning table, and on the cpu target each expert kernel's matrix path (AMX,
// AVX512-BF16, f32 FMA) from the CPU it compiles for. The tables are the one home of tile
// sizes; codegen only reads the attributes this pass sets.
#include "dialect/MixOps.h"
#include "passes/CpuTarget.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"

namespace mlir::mix {
#define GEN_PASS_DEF_TILEKERNELS
#include "passes/Passes.h.inc"
} // namespace mlir::mix

using namespace mlir;
using namespace mlir::mix;

namespace {

/// Converts one bucket `{"max_tokens": N|null, "<tile>": int, ...}` to an attribute;
/// an unbounded bucket has max_tokens = -1.
FailureOr<DictionaryAttr> bucketAttr(Builder &b, const llvm::json::Object &bucket,
                                     function_ref<InFlightDiagnostic()> error) {
  SmallVector<NamedAttribute> entries;
  for (const auto &[key, value] : bucket) {
    if (key == "max_tokens" && value.kind() == llvm::json::Value::Null) {
      entries.push_back(b.getNamedAttr("max_tokens", b.getI64IntegerAttr(-1)));
      continue;
    }
    std::optional<int64_t> number = value.getAsInteger();
    if (!number)
      return error() << "tuning table entry '" << key.str() << "' must be an integer";
    entries.push_back(b.getNamedAttr(key.str(), b.getI64IntegerAttr(*number)));
  }
  if (!bucket.get("max_tokens"))
    return error() << "tuning table bucket lacks 'max_tokens'";
  return b.getDictionaryAttr(entries);
}

/// Whether `v` holds bf16 values: widened from bf16 by an arith.extf, directly or as the
/// result of a kernel that yields it (the CPU pipeline's widen_tokens).
bool holdsBf16Values(Value v) {
  for (int hops = 0; hops < 4; ++hops) {
    Operation *def = v.getDefiningOp();
    if (auto ext = dyn_cast_or_null<arith::ExtFOp>(def))
      return getElementTypeOrSelf(ext.getIn().getType()).isBF16();
    auto kernel = dyn_cast_or_null<KernelOp>(def);
    if (!kernel || kernel.getBody().empty())
      return false;
    v = kernel.getBody().front().getTerminator()->getOperand(cast<OpResult>(v).getResultNumber());
  }
  return false;
}

/// Token-choice routers from this many experts run their logits on AMX tiles when
/// their weights are bf16 and their tokens hold bf16 values (hidden states widened from bf16:
/// the GEMM's rounding of x to bf16 changes nothing, and its bf16 products, exact in f32, are
/// accumulated in f32 as the FMA path's are). Logits of 2048 tokens on AMX against the f32 FMA
/// tile (2-core Xeon, 2 threads, the selection included): 128 x 2048 router 5.2 -> 2.5 ms,
/// 256 x 1024 5.4 -> 2.6 ms, 64 x 2048 3.1 -> 1.7 ms; 8 x 1024 0.33 either way.
constexpr int64_t kEngineRouterExperts = 32;

/// The element type of the weights of a kernel's large GEMMs: its expert FFNs, dense linear
/// maps, Mixture of Tokens' controller or a wide token-choice router on bf16 tokens (null when
/// it has none). `routers` false: leaving routers out.
Type gemmWeightType(KernelOp kernel, bool routers = true) {
  Type type;
  kernel.walk([&](Operation *op) {
    Value up;
    if (auto ffn = dyn_cast<ExpertFFNOp>(op))
      up = ffn.getUp().front();
    else if (auto ffn = dyn_cast<FFNOp>(op))
      up = ffn.getUp();
    else if (auto ffn = dyn_cast<BatchedExpertFFNOp>(op))
      up = ffn.getUp().front();
    // Mixture of Tokens' controller: E·D multiply-adds per token, as large as the experts'
    // at small F, and continuous (no choice a rounded token could flip). Expert choice's
    // router stays f32: rounding its tokens to bf16 turns a third of them into near ties of
    // the per-expert top-C (measured at E=8, D=64), for under 2% of the layer's work.
    // Dense linear maps: a model's attention projections and lm head, MoLoRA's base.
    else if (auto linear = dyn_cast<LinearOp>(op))
      up = linear.getWeight();
    else if (auto mix = dyn_cast<TokenMixOp>(op))
      up = mix.getController();
    else if (auto route = dyn_cast<RouteOp>(op); route && routers) {
      auto router = cast<RankedTensorType>(route.getRouter().getType());
      if (router.getElementType().isBF16() && router.getDimSize(0) >= kEngineRouterExperts &&
          holdsBf16Values(route.getX()))
        up = route.getRouter();
    }
    // MLA's kv_b: expanded into a prefill's keys and values, folded into decode's queries.
    else if (auto latent = dyn_cast<LatentAttentionOp>(op))
      up = latent.getKvB();
    if (up && !type)
      type = cast<RankedTensorType>(up.getType()).getElementType();
  });
  return type;
}

/// The KV cache element type of a kernel's attention (null when it has none): its two products
/// (scores and the weighted sum of values) read the cache.
Type attentionCacheType(KernelOp kernel) {
  Type type;
  kernel.walk([&](AttentionOp attention) {
    if (!type)
      type = cast<RankedTensorType>(attention.getKCache().getType()).getElementType();
  });
  return type;
}

struct TileKernelsPass : mix::impl::TileKernelsBase<TileKernelsPass> {
  using TileKernelsBase::TileKernelsBase;

  /// The parsed `kernels` object of a tuning table: the file given by `table`, else the
  /// built-in table `name`. Null after reporting an error.
  const llvm::json::Object *kernelsOf(StringRef name, func::FuncOp func, std::string &source) {
    std::string key = table.empty() ? name.str() : table;
    auto it = parsed.find(key);
    source = table.empty() ? ("built-in " + name.str() + " table") : table;
    if (it == parsed.end()) {
      std::string text;
      if (!table.empty()) {
        auto buffer = llvm::MemoryBuffer::getFile(table);
        if (!buffer) {
          func.emitError() << "cannot read tuning table '" << table
                           << "': " << buffer.getError().message();
          return nullptr;
        }
        text = (*buffer)->getBuffer().str();
      } else {
        text = builtinTuningTable(name).str();
        if (text.empty()) {
          func.emitError() << "no built-in tuning table for target '" << name << "'";
          return nullptr;
        }
      }
      llvm::Expected<llvm::json::Value> value = llvm::json::parse(text);
      if (!value) {
        func.emitError() << "tuning table (" << source
                         << ") is not valid JSON: " << llvm::toString(value.takeError());
        return nullptr;
      }
      it = parsed.try_emplace(key, std::move(*value)).first;
    }
    const llvm::json::Object *kernels =
        it->second.getAsObject() ? it->second.getAsObject()->getObject("kernels") : nullptr;
    if (!kernels)
      func.emitError() << "tuning table (" << source << ") needs an object 'kernels'";
    return kernels;
  }

  void runOnOperation() override {
    func::FuncOp func = getOperation();
    Builder b(&getContext());
    // The CPU decides each expert kernel's matrix path; each path has its own tuning table.
    std::optional<CpuTarget> host;
    if (target == "cpu") {
      std::string error;
      host = resolveCpuTarget(cpu, error);
      if (!host) {
        func.emitError() << error;
        return signalPassFailure();
      }
      func->setAttr(kCpuAttr, cpuTargetAttr(b, *host));
    }

    WalkResult walk = func.walk([&](KernelOp kernel) {
      std::string tableName = target;
      if (host) {
        StringRef path = "fma_f32";  // kernels without GEMM weights: the f32 table
        if (Type weights = gemmWeightType(kernel)) {
          path = matmulPathFor(*host, weights);
          // A kernel whose only large GEMM is a router leaves f32 FMA only for AMX tiles
          // (measured there; VDPBF16PS on Zen was not).
          if (path != "amx_bf16" && !gemmWeightType(kernel, /*routers=*/false))
            path = "fma_f32";
          else
            kernel->setAttr(kMatmulPathAttr, b.getStringAttr(path));
        } else if (Type cache = attentionCacheType(kernel)) {
          // Prefill attention over a bf16 cache on the CPU's bf16 products (AMX tiles, else
          // VDPBF16PS); f32 and f16 caches and CPUs without either keep the f32 FMA tiles, and
          // decode rows stay f32 everywhere.
          StringRef chosen = matmulPathFor(*host, cache);
          if (chosen != "fma_f32") {
            path = chosen;
            kernel->setAttr(kMatmulPathAttr, b.getStringAttr(path));
          }
        }
        tableName = cpuTuningTable(*host, path);
      }
      std::string source;
      const llvm::json::Object *kernels = kernelsOf(tableName, func, source);
      if (!kernels)
        return WalkResult::interrupt();
      const llvm::json::Array *buckets = kernels->getArray(kernel.getKind());
      if (!buckets)
        buckets = kernels->getArray("default");
      if (!buckets || buckets->empty()) {
        kernel.emitError() << "tuning table (" << source << ") has no buckets for kernel '"
                           << kernel.getKind() << "' and no 'default'";
        return WalkResult::interrupt();
      }
      SmallVector<Attribute> tiles;
      for (const llvm::json::Value &bucket : *buckets) {
        const llvm::json::Object *object = bucket.getAsObject();
        if (!object) {
          kernel.emitError() << "tuning table buckets must be objects";
          return WalkResult::interrupt();
        }
        FailureOr<DictionaryAttr> attr =
            bucketAttr(b, *object, [&]() { return kernel.emitError(); });
        if (failed(attr))
          return WalkResult::interrupt();
        tiles.push_back(*attr);
      }
      auto maxTokens = [](Attribute a) {
        return cast<IntegerAttr>(cast<DictionaryAttr>(a).get("max_tokens")).getInt();
      };
      if (maxTokens(tiles.back()) != -1) {
        kernel.emitError() << "the last tuning bucket of kernel '" << kernel.getKind()
                           << "' must have \"max_tokens\": null so every token count has one";
        return WalkResult::interrupt();
      }
      kernel.setTilesAttr(b.getArrayAttr(tiles));
      return WalkResult::advance();
    });
    if (walk.wasInterrupted())
      signalPassFailure();
  }

  llvm::StringMap<llvm::json::Value> parsed;
};

} // namespace
