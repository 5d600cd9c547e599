// mix-tile: attaches each kernel's tile configurations, by token-count bucket, from the
// target's tuning table. The table is the one home of tile sizes; codegen only reads the
// attribute this pass sets.
#include "dialect/MixOps.h"
#include "passes/Passes.h"

#include "mlir/IR/Builders.h"
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

struct TileKernelsPass : mix::impl::TileKernelsBase<TileKernelsPass> {
  using TileKernelsBase::TileKernelsBase;

  void runOnOperation() override {
    func::FuncOp func = getOperation();
    auto error = [&]() { return func.emitError(); };
    std::string text;
    std::string source = table.empty() ? ("built-in " + target + " table") : table;
    if (!table.empty()) {
      auto buffer = llvm::MemoryBuffer::getFile(table);
      if (!buffer) {
        error() << "cannot read tuning table '" << table << "': " << buffer.getError().message();
        return signalPassFailure();
      }
      text = (*buffer)->getBuffer().str();
    } else {
      text = builtinTuningTable(target).str();
      if (text.empty()) {
        error() << "no built-in tuning table for target '" << target << "'";
        return signalPassFailure();
      }
    }
    llvm::Expected<llvm::json::Value> parsed = llvm::json::parse(text);
    if (!parsed) {
      error() << "tuning table (" << source << ") is not valid JSON: "
              << llvm::toString(parsed.takeError());
      return signalPassFailure();
    }
    const llvm::json::Object *kernels =
        parsed->getAsObject() ? parsed->getAsObject()->getObject("kernels") : nullptr;
    if (!kernels) {
      error() << "tuning table (" << source << ") needs an object 'kernels'";
      return signalPassFailure();
    }

    Builder b(&getContext());
    WalkResult walk = func.walk([&](KernelOp kernel) {
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
};

} // namespace
