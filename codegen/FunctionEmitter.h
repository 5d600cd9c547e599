// The target-independent half of emitting an artifact: where every tensor lives (function
// arguments, results, workspace slots), the symbolic sizes, the workspace plan, the entry
// points' C ABI, the header and the manifest. Targets (cpu/EmitCpp.cpp, cuda/EmitCuda.cpp)
// subclass FunctionEmitter and emit only their kernels; none of this decides fusion.
#ifndef MIXTILE_CODEGEN_FUNCTIONEMITTER_H
#define MIXTILE_CODEGEN_FUNCTIONEMITTER_H

#include "codegen/Artifact.h"
#include "dialect/MixOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/Support/JSON.h"

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mlir::mix::codegen {

extern const char *const kMixtileVersion;

/// A materialized tensor: a C pointer expression and its dims as C expressions.
struct Buffer {
  std::string pointer;
  std::vector<std::string> dims;
  Type element;
};

/// One slot of a function's workspace.
struct Slot {
  std::string name;
  Type element;
  std::string count; // elements, a C expression in the dynamic symbols
};

/// The product of C expressions, as int64_t.
std::string product(ArrayRef<std::string> dims);
/// A double as a C literal.
std::string floatLiteral(double value);
/// RoPE frequencies as a C++ initializer list, every f64 digit kept (angles reach 1e5 rad).
std::string frequencyList(ArrayRef<double> frequencies);
int64_t staticDim(Value v, unsigned i);
Type elementOf(Value v);

/// What differs between targets in the code around the kernels.
struct TargetConventions {
  std::string target;           // "cpu", "cuda"
  std::string sourceExtension;  // ".cpp", ".cu"
  std::string kernelNamespace;  // the kernel library's C++ namespace
  std::string executionParam;   // the entry points' last parameter: "int num_threads", ...
  std::string executionArg;     // its name
  std::string align;            // the workspace slot alignment function
  std::string planParam;        // an extra parameter of the workspace plan ("" for none)
  std::string planArg;          // what the entry point passes for it
  std::string planArgForQuery;  // what the workspace-size query passes for it
  std::string entryPreamble;    // statements opening every entry point
  std::string copyStatement;    // formatv: {0} destination, {1} source, {2} C type, {3} count
  std::vector<std::string> reservedNames;  // names the emitted body uses for itself
  std::vector<std::string> builtinErrors;  // error codes 1.. before the layers' own
  std::string headerIntro;      // the header comment after its first line
  std::string sourceIntro;      // formatv: {0} name, {1} version; opens the source file
  std::string sourceOutro;      // formatv: {0} name; closes the source file ("" for none)
  // Extra manifest fields naming symbols of the artifact: key -> formatv value ({0} name).
  std::vector<std::pair<std::string, std::string>> manifestSymbols;
  // Per-kernel-kind timing (cpu): statements opening and closing a kernel, formatv {0} the
  // kind's index in the artifact's profile table; "" for none (cuda: launches are async).
  std::string profileBegin, profileEnd;
  std::function<void(EmittedArtifact &)> addKernelLibrary;
};

/// What a caller needs of a function emitted before it: its symbols in C-signature order and
/// the symbol of each dynamic dim of each result ("" for a static dim).
struct FunctionSignature {
  std::vector<std::string> symbols;
  std::vector<std::vector<std::string>> resultSymbols;
};

/// Emits one function: the shared bookkeeping; subclasses emit each kernel's body.
class FunctionEmitter {
public:
  FunctionEmitter(func::FuncOp func, StringRef artifactName, std::vector<std::string> &errors,
                  const TargetConventions &conventions)
      : func(func), artifactName(artifactName), errorMessages(errors), conventions(conventions) {}
  virtual ~FunctionEmitter() = default;

  /// Appends the function's declarations (header) and definitions (source); fills its
  /// manifest entry.
  LogicalResult emit(std::string &declarations, std::string &definitions,
                     llvm::json::Object &entry);

  /// The functions emitted before this one (which it may call); it adds itself when done.
  void setCallees(std::map<std::string, FunctionSignature> *table) { callees = table; }
  /// The artifact's kernel kinds, in profile-table order; a new kind is appended.
  void setProfileKinds(std::vector<std::string> *kinds) { profileKinds = kinds; }

protected:
  /// A call of a function emitted earlier: its typed entry point with the caller's buffers,
  /// its workspace in the caller's scratch, its error code passed on.
  LogicalResult emitCall(func::CallOp call);
  /// Called once per kernel before its ops, with the kernel's tile buckets.
  virtual LogicalResult beginKernel(KernelOp kernel, unsigned index) = 0;
  virtual LogicalResult emitOp(Operation *op, KernelOp kernel) = 0;
  LogicalResult emitKernel(KernelOp kernel, unsigned index);

  // ---- statements both targets write the same way ----------------------------------------
  void line(const std::string &text) { body += "    " + text + "\n"; }
  /// A call of the kernel library: `name` (in the target's namespace, template arguments
  /// included) with `args`; the target appends its execution argument (the threads, the
  /// stream) and makes it a statement (a call, a checked launch).
  virtual void emitLibraryCall(const std::string &name, const std::string &args) = 0;
  /// Emits `op` when its kernel-library call takes the same arguments on every target;
  /// returns false (emitting nothing) for any other op.
  bool emitPortableOp(Operation *op);
  /// A token-choice router's RouteConfig statements (variable `config`) and the arguments its
  /// route<> call takes after the config: tokens, x, router, biases, outputs.
  std::string emitRouteConfig(RouteOp route);
  /// The rows of `v` seen as [rows, last dim]: the product of every dim but the last.
  std::string rowCount(Value v);
  /// to = from, before an op that updates `to` in place (nothing when they share a buffer).
  void copyTensor(Value to, Value from);
  /// The run-time check of Mixture of Tokens that the group size divides the batch `b`.
  void checkBatchMultiple(const std::string &b, int64_t groupSize);
  // ---- the buffer plan, the same on every target -----------------------------------------
  /// Whether `v` is consumed only by `user`, inside the kernel both are in: then it need not
  /// exist alone.
  static bool onlyFeeds(Value v, Operation *user);
  /// Lets results of `op` live in a consumer's buffer: a router's choices in its capacity
  /// drop's, zeros, a shared expert or its sigmoid gate in the combine's output, a linear
  /// map in its LoRA update's. Returns true when `op` needs no code at all (the zeros the
  /// fused expert FFN's scatter writes itself). Called before emitOp.
  bool planBuffers(Operation *op);
  /// Where a routed expert FFN writes: fused with its combine (the combine's only producer
  /// inside the kernel), the gates, output rows and output of the scatter-add in the second
  /// GEMM's epilogue, and the rows it zeroes first; else a plain store into h.
  struct ExpertOutput {
    std::string gates = "nullptr", outRows = "nullptr", y, zeroRows = "0";
  };
  ExpertOutput expertOutput(ExpertFFNOp ffn);

  /// The kernel library's spelling of a weight dtype and of an activation.
  std::string weightType(Type element) const;
  std::string activationName(Activation activation) const;
  /// The expert FFN problem's gpt-oss fields (`p.gate_bias` ... `p.act`), set from `ffn`'s
  /// expert biases and clamped-SwiGLU constants; nothing for other experts. Both targets'
  /// problem structs name them alike.
  void emitExpertExtras(ExpertFFNOp ffn, Activation activation);

  // ---- buffers -------------------------------------------------------------------------
  Buffer &bufferFor(Value v) {
    auto it = buffers.find(v);
    if (it != buffers.end())
      return it->second;
    return allocate(v, dimsOf(v));
  }
  Buffer &allocate(Value v, std::vector<std::string> dims) {
    std::string name = newSlot(elementOf(v), product(dims));
    return buffers[v] = Buffer{name, std::move(dims), elementOf(v)};
  }
  void alias(Value to, Value from) {
    Buffer buffer = bufferFor(from);  // a copy: inserting `to` may rehash the map
    buffers[to] = std::move(buffer);
  }
  /// A workspace buffer no SSA value names (a kernel's own scratch tensor); returns its name.
  std::string newSlot(Type element, std::string count) {
    std::string name = "t" + std::to_string(slots.size());
    slots.push_back({name, element, std::move(count)});
    return name;
  }
  std::string ptr(Value v) { return bufferFor(v).pointer; }
  std::string dim(Value v, unsigned i) {
    int64_t d = staticDim(v, i);
    if (!ShapedType::isDynamic(d))
      return std::to_string(d);
    auto it = buffers.find(v);
    if (it != buffers.end())
      return it->second.dims[i];
    return dimsOf(v)[i];
  }
  /// The dims of a value not yet materialized, from the op that defines it: dynamic sizes
  /// become expressions in the function's symbols (an upper bound where only the run
  /// decides, e.g. the assignments a dispatch keeps).
  std::vector<std::string> dimsOf(Value v);
  /// Registers a run-time error of the layer; returns its code.
  int addError(std::string message) {
    errorMessages.push_back(std::move(message));
    return static_cast<int>(conventions.builtinErrors.size() + errorMessages.size());
  }
  /// The op inside a kernel that produced `v`, looking through the kernel's results.
  static Operation *innerDefiningOp(Value v);
  /// Adds `op` to the manifest's cost model (FLOPs per token, weight bytes read).
  void accountCost(Operation *op);
  /// Expert evaluations per token of a routed expert FFN (for the cost model).
  double routedPerToken(ExpertFFNOp ffn);

  func::FuncOp func;
  std::map<std::string, FunctionSignature> *callees = nullptr;
  std::vector<std::string> *profileKinds = nullptr;
  std::string artifactName;
  std::vector<std::string> &errorMessages;
  const TargetConventions &conventions;
  llvm::DenseMap<Value, Buffer> buffers;
  llvm::DenseMap<Value, std::string> scalars;
  std::vector<Slot> slots;
  std::vector<std::string> scratch; // bytes each kernel needs; the plan keeps the maximum
  std::vector<std::string> symbols; // dynamic dims, in argument order
  std::string tokenCount;           // what tile buckets are chosen by
  std::string body;                 // the entry point's statements
  std::string helpers;              // definitions placed before the entry points
  llvm::json::Array kernelManifest;
  llvm::DenseSet<Operation *> fusedCombines;
  double flopsPerToken = 0, denseWeightBytes = 0, expertWeightBytes = 0;
  double mixtureExpertFlops = 0;
  int64_t costExperts = 0, costExpertsPerToken = 0;
};

using EmitterFactory = std::function<std::unique_ptr<FunctionEmitter>(
    func::FuncOp, StringRef artifactName, std::vector<std::string> &errors)>;

/// The artifact of every function in `module`, each emitted by `makeEmitter`.
FailureOr<EmittedArtifact> emitArtifact(ModuleOp module, StringRef name,
                                        const TargetConventions &conventions,
                                        const EmitterFactory &makeEmitter);

} // namespace mlir::mix::codegen

#endif // MIXTILE_CODEGEN_FUNCTIONEMITTER_H
