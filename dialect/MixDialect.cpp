// Registers the mix dialect's ops and attributes and verifies the `mix.name` argument and
// result attributes the runtime binds tensors by.
#include "dialect/MixDialect.h"
#include "dialect/MixOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "mlir/Interfaces/FunctionInterfaces.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::mix;

#include "dialect/MixDialect.cpp.inc"
#include "dialect/MixEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "dialect/MixAttrs.cpp.inc"

void MixDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dialect/MixOps.cpp.inc"
      >();
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialect/MixAttrs.cpp.inc"
      >();
}

/// A `mix.name` must be a non-empty string, unique among the function's arguments and
/// results: the runtime binds tensors by it, so two tensors cannot share one.
static LogicalResult verifyTensorName(Operation *op, unsigned index, bool isResult,
                                      NamedAttribute attribute) {
  if (attribute.getName() != MixDialect::kNameAttr)
    return op->emitError() << "unknown mix dialect attribute '" << attribute.getName().getValue()
                           << "' on a function " << (isResult ? "result" : "argument");
  auto name = dyn_cast<StringAttr>(attribute.getValue());
  if (!name || name.getValue().empty())
    return op->emitError() << "'mix.name' of " << (isResult ? "result" : "argument") << " #"
                           << index << " must be a non-empty string";
  auto function = dyn_cast<FunctionOpInterface>(op);
  if (!function)
    return success();
  // Names must differ. Checked once per function, at its last named argument (and its last
  // named result), with one pass over the names: checking each name against all earlier ones
  // would be quadratic, and a deep model's forward has tens of thousands of arguments. A clash
  // is reported on the later of the two (the first such), arguments coming before results.
  auto nameAt = [](ArrayAttr all, size_t i) {
    auto dict = all ? dyn_cast_or_null<DictionaryAttr>(all[i]) : DictionaryAttr();
    return dict ? dict.getAs<StringAttr>(MixDialect::kNameAttr) : StringAttr();
  };
  ArrayAttr args = function.getArgAttrsAttr(), results = function.getResAttrsAttr();
  ArrayAttr own = isResult ? results : args;
  for (size_t j = own ? own.size() : 0; j > index + 1; --j)
    if (nameAt(own, j - 1))
      return success();  // not the last named one
  llvm::DenseMap<StringAttr, unsigned> argNames, resultNames;
  for (size_t i = 0, e = args ? args.size() : 0; i < e; ++i) {
    StringAttr n = nameAt(args, i);
    if (!n)
      continue;
    auto [it, fresh] = argNames.try_emplace(n, i);
    if (!fresh && !isResult)
      return op->emitError() << "'mix.name' \"" << n.getValue() << "\" of argument #" << i
                             << " is already the name of argument #" << it->second;
  }
  if (!isResult)
    return success();
  for (size_t i = 0, e = results ? results.size() : 0; i < e; ++i) {
    StringAttr n = nameAt(results, i);
    if (!n)
      continue;
    if (auto it = argNames.find(n); it != argNames.end())
      return op->emitError() << "'mix.name' \"" << n.getValue() << "\" of result #" << i
                             << " is already the name of argument #" << it->second;
    auto [it, fresh] = resultNames.try_emplace(n, i);
    if (!fresh)
      return op->emitError() << "'mix.name' \"" << n.getValue() << "\" of result #" << i
                             << " is already the name of result #" << it->second;
  }
  return success();
}

LogicalResult MixDialect::verifyRegionArgAttribute(Operation *op, unsigned /*regionIndex*/,
                                                   unsigned argIndex,
                                                   NamedAttribute attribute) {
  if (attribute.getName() == kStateAttr) {
    if (!isa<UnitAttr>(attribute.getValue()))
      return op->emitError() << "'mix.state' of argument #" << argIndex << " must be a unit attribute";
    return success();
  }
  if (attribute.getName() == kStoredAttr) {
    // {name = "<stored tensor>", stride = s, offset = o(, transpose)}: o < s, a static weight
    // of rank 2 or more with transpose, of rank 1 or more without.
    auto fields = dyn_cast<DictionaryAttr>(attribute.getValue());
    auto function = dyn_cast<FunctionOpInterface>(op);
    auto type = function ? dyn_cast<RankedTensorType>(function.getArgumentTypes()[argIndex])
                         : RankedTensorType();
    auto name = fields ? fields.getAs<StringAttr>("name") : StringAttr();
    auto stride = fields ? fields.getAs<IntegerAttr>("stride") : IntegerAttr();
    auto offset = fields ? fields.getAs<IntegerAttr>("offset") : IntegerAttr();
    Attribute transpose = fields ? fields.get("transpose") : Attribute();
    auto format = fields ? fields.getAs<StringAttr>("format") : StringAttr();
    size_t expected = 3 + (transpose ? 1 : 0) + (format ? 1 : 0);
    bool good = fields && fields.size() == expected && name && !name.getValue().empty() &&
                (!format || (format.getValue() == "mxfp4" && transpose)) &&
                stride && offset && stride.getInt() >= 1 && stride.getInt() <= 64 &&
                offset.getInt() >= 0 && offset.getInt() < stride.getInt() &&
                (!transpose || isa<UnitAttr>(transpose)) && type && type.hasStaticShape() &&
                type.getRank() >= (transpose ? 2 : 1);
    if (!good)
      return op->emitError() << "'mix.stored' of argument #" << argIndex
                             << " must be {name = \"<tensor>\", stride = s, offset = o"
                                "(, transpose(, format = \"mxfp4\"))} with 1 <= s <= 64 and "
                                "0 <= o < s, on a static tensor (rank >= 2 with transpose)";
    // MXFP4 codes and scales read in place: their rows come from `<name>_blocks` and
    // `<name>_scales`, which only format = "mxfp4" names; their last dim is the stored one's.
    Type element = type.getElementType();
    bool mxfp4Element = isa<Float4E2M1FNType, Float8E8M0FNUType>(element);
    if (mxfp4Element && !format)
      return op->emitError() << "'mix.stored' of argument #" << argIndex << " (" << element
                             << ") must say format = \"mxfp4\"";
    if (isa<Float4E2M1FNType>(element) && type.getShape().back() % 32 != 0)
      return op->emitError() << "'mix.stored' of argument #" << argIndex
                             << ": MXFP4 codes need a last dim that is a multiple of 32, got "
                             << type.getShape().back();
    return success();
  }
  if (attribute.getName() == kSymbolsAttr) {
    auto symbols = dyn_cast<ArrayAttr>(attribute.getValue());
    auto function = dyn_cast<FunctionOpInterface>(op);
    auto type = function ? dyn_cast<RankedTensorType>(function.getArgumentTypes()[argIndex])
                         : RankedTensorType();
    if (!symbols || !type || symbols.size() != static_cast<size_t>(type.getRank()))
      return op->emitError() << "'mix.symbols' of argument #" << argIndex
                             << " must be an array of one string per dim of a ranked tensor";
    for (auto [d, symbol] : llvm::enumerate(symbols)) {
      auto name = dyn_cast<StringAttr>(symbol);
      if (!name)
        return op->emitError() << "'mix.symbols' of argument #" << argIndex
                               << " must hold strings";
      bool dynamic = type.isDynamicDim(d);
      bool named = !name.getValue().empty();
      if (dynamic != named)
        return op->emitError() << "'mix.symbols' of argument #" << argIndex << " dim " << d
                               << (dynamic ? " must name the symbol of the dynamic dim"
                                           : " must be \"\" for a static dim");
      if (named && (!llvm::isAlpha(name.getValue().front()) ||
                    !llvm::all_of(name.getValue(), [](char c) { return llvm::isAlnum(c); })))
        return op->emitError() << "'mix.symbols' of argument #" << argIndex
                               << " must name symbols by letters and digits, got '"
                               << name.getValue() << "'";
    }
    return success();
  }
  return verifyTensorName(op, argIndex, /*isResult=*/false, attribute);
}

LogicalResult MixDialect::verifyRegionResultAttribute(Operation *op, unsigned /*regionIndex*/,
                                                      unsigned resultIndex,
                                                      NamedAttribute attribute) {
  return verifyTensorName(op, resultIndex, /*isResult=*/true, attribute);
}

LogicalResult MixDialect::verifyOperationAttribute(Operation *op, NamedAttribute attribute) {
  if (attribute.getName() != kWeightQuantizationAttr)
    return success(); // mix.model is the importer's record for the runtime, read as given
  auto fields = dyn_cast<DictionaryAttr>(attribute.getValue());
  auto format = fields ? fields.getAs<StringAttr>("format") : StringAttr();
  auto block = fields ? fields.getAs<ArrayAttr>("block") : ArrayAttr();
  bool good = isa<ModuleOp>(op) && fields && fields.size() == 2 && format &&
              format.getValue() == "fp8_e4m3" && block && block.size() == 2;
  if (good)
    for (Attribute size : block.getValue()) {
      auto n = dyn_cast<IntegerAttr>(size);
      good = good && n && n.getInt() > 0;
    }
  if (!good)
    return op->emitError() << "'mix.weight_quantization' must be a module attribute "
                              "{format = \"fp8_e4m3\", block = [rows, cols]} with positive "
                              "block sizes";
  return success();
}
