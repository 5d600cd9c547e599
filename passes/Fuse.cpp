// mix-fuse: groups mix primitives into mix.kernel regions, one per generated kernel. It
// decides WHAT runs together (fusion); how each kernel is tiled is mix-tile's job and how
// it is written out is codegen/'s.
#include "dialect/MixOps.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/SetVector.h"

namespace mlir::mix {
#define GEN_PASS_DEF_FUSEKERNELS
#include "passes/Passes.h.inc"
} // namespace mlir::mix

using namespace mlir;
using namespace mlir::mix;

namespace {

/// The dtype conversions mix-decompose puts at a bf16/f16 layer's entry and exit.
bool isTokenConversion(Operation *op) {
  return isa<arith::ExtFOp, arith::TruncFOp>(op) &&
         isa<RankedTensorType>(op->getResult(0).getType());
}

/// A model's residual additions (`arith.addf` on activation tensors).
bool isTensorAdd(Operation *op) {
  return isa<arith::AddFOp>(op) && isa<RankedTensorType>(op->getResult(0).getType());
}

bool isPrimitive(Operation *op) {
  if (isTokenConversion(op) || isTensorAdd(op))
    return true;
  return op->getDialect() && isa<MixDialect>(op->getDialect()) &&
         !isa<KernelOp, YieldOp, TokenChoiceMoEOp, ExpertChoiceMoEOp, MixtureOfTokensOp, MoVOp,
              MoLoRAOp>(op);
}

/// The op defining `v` if it is a primitive whose only user is `user`: such a value can stay
/// inside the user's kernel.
Operation *soleProducer(Value v, Operation *user) {
  Operation *def = v.getDefiningOp();
  if (!def || !isPrimitive(def) || def->getNumResults() != 1 || !v.hasOneUse() ||
      *v.getUsers().begin() != user)
    return nullptr;
  return def;
}

struct Group {
  std::string kind;
  llvm::SetVector<Operation *> ops;
};

/// Fusion rules, applied to each op that ends a group.
std::optional<Group> groupEndingAt(Operation *op) {
  Group group;
  if (auto combine = dyn_cast<CombineOp>(op)) {
    // Shared experts (or zeros), routed experts and their weighted scatter-add: one kernel.
    if (Operation *init = soleProducer(combine.getInit(), op)) {
      if (auto gate = dyn_cast<SigmoidGateOp>(init))
        if (Operation *shared = soleProducer(gate.getY(), gate))
          if (isa<FFNOp>(shared))
            group.ops.insert(shared);
      if (isa<ZerosLikeOp, FFNOp, SigmoidGateOp>(init))
        group.ops.insert(init);
    }
    Operation *ffn = soleProducer(combine.getH(), op);
    if (ffn && isa<ExpertFFNOp>(ffn))
      group.ops.insert(ffn);
    group.ops.insert(op);
    group.kind = ffn ? "moe_experts" : "combine";
    return group;
  }
  if (auto capacity = dyn_cast<CapacityOp>(op)) {
    // The capacity drop reads the router's choices in token order: same kernel.
    Value experts = capacity.getExperts();
    auto route = experts.getDefiningOp<RouteOp>();
    if (route && experts.hasOneUse()) {
      group.ops.insert(route);
      group.ops.insert(op);
      group.kind = "router";
      return group;
    }
  }
  if (isa<LoadBalancingLossOp, ZLossOp>(op)) {
    // The losses of one router read the same logits: one kernel computes them together.
    for (Operation *user : op->getOperand(0).getUsers())
      if (isa<LoadBalancingLossOp, ZLossOp>(user) && user->getBlock() == op->getBlock() &&
          (user == op || user->isBeforeInBlock(op)))
        group.ops.insert(user);
    group.kind = "aux_losses";
    return group;
  }
  if (auto lora = dyn_cast<MixLoRAOp>(op)) {
    if (Operation *base = soleProducer(lora.getInit(), op))
      if (isa<LinearOp>(base))
        group.ops.insert(base);
    group.ops.insert(op);
    group.kind = group.ops.size() > 1 ? "lora" : "mix_lora";
    return group;
  }
  return std::nullopt;
}

std::string singletonKind(Operation *op) {
  if (isa<RouteOp>(op))
    return "router";
  if (isa<arith::ExtFOp>(op))
    return "widen_tokens";
  if (isa<arith::TruncFOp>(op))
    return "round_tokens";
  if (isTensorAdd(op))
    return "add";
  return op->getName().stripDialect().str();
}

/// Moves `group` into a mix.kernel placed where its last op was. Values used outside the
/// group become the kernel's results. Returns failure (changing nothing) if an outside user
/// sits before the last op, where the kernel's results would not dominate it.
LogicalResult outline(Group &group) {
  Operation *last = group.ops.back();
  for (Operation *op : group.ops)
    if (op->getBlock() != last->getBlock())
      return failure();
  SmallVector<Value> escaping;
  for (Operation *op : group.ops)
    for (Value result : op->getResults()) {
      bool usedOutside = false;
      for (Operation *user : result.getUsers()) {
        if (group.ops.contains(user))
          continue;
        Operation *ancestor = last->getBlock()->findAncestorOpInBlock(*user);
        if (!ancestor || ancestor->isBeforeInBlock(last))
          return failure();
        usedOutside = true;
      }
      if (usedOutside)
        escaping.push_back(result);
    }

  OpBuilder b(last);
  SmallVector<Type> types;
  for (Value v : escaping)
    types.push_back(v.getType());
  auto kernel = KernelOp::create(b, last->getLoc(), types, b.getStringAttr(group.kind),
                                 /*tiles=*/nullptr);
  Block *body = b.createBlock(&kernel.getBody());
  b.setInsertionPointToEnd(body);
  auto yield = YieldOp::create(b, last->getLoc(), escaping);
  for (Operation *op : group.ops)
    op->moveBefore(yield);
  for (auto [value, result] : llvm::zip(escaping, kernel.getResults()))
    value.replaceUsesWithIf(result, [&](OpOperand &use) {
      return !kernel->isProperAncestor(use.getOwner());
    });
  return success();
}

struct FuseKernelsPass : mix::impl::FuseKernelsBase<FuseKernelsPass> {
  void runOnOperation() override {
    for (Block &block : getOperation().getBody()) {
      SmallVector<Operation *> ops;
      for (Operation &op : block)
        if (isPrimitive(&op))
          ops.push_back(&op);

      // Walk backwards so a group's end claims its producers before they are seen alone.
      llvm::DenseSet<Operation *> claimed;
      SmallVector<Group> groups;
      for (Operation *op : llvm::reverse(ops)) {
        if (claimed.contains(op))
          continue;
        std::optional<Group> group = groupEndingAt(op);
        if (group) {
          group->ops.remove_if([&](Operation *member) {
            return member != op && claimed.contains(member);
          });
        } else {
          group = Group{singletonKind(op), {}};
          group->ops.insert(op);
        }
        // Keep block order inside the group.
        SmallVector<Operation *> ordered(group->ops.begin(), group->ops.end());
        llvm::sort(ordered, [](Operation *a, Operation *b) { return a->isBeforeInBlock(b); });
        group->ops = llvm::SetVector<Operation *>(ordered.begin(), ordered.end());
        for (Operation *member : group->ops)
          claimed.insert(member);
        groups.push_back(std::move(*group));
      }
      for (Group &group : groups)
        if (failed(outline(group))) {
          for (Operation *op : group.ops) {
            Group single{singletonKind(op), {}};
            single.ops.insert(op);
            (void)outline(single);
          }
        }
    }
  }
};

} // namespace
