// The `mix` dialect: its definition, enums and type constraints. Owns IR only; no scheduling
// or emission decisions live here (those belong to passes/ and codegen/).
#ifndef MIX_DIALECT_TD
#define MIX_DIALECT_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

def Mix_Dialect : Dialect {
  let name = "mix";
  let cppNamespace = "::mlir::mix";
  let summary = "What a sparse neural-network layer computes";
  let description = [{
    The `mix` dialect describes sparse layers: Mixture-of-Experts with token-choice or
    expert-choice routing, capacity and dropped tokens, shared experts, Mixture of Tokens,
    and lightweight experts (MoV, MoLoRA). Its exact math is `shared/spec/layers.md`.

    Two levels of ops live here. Layer ops (`mix.token_choice_moe`, `mix.expert_choice_moe`,
    `mix.mixture_of_tokens`, `mix.mov`, `mix.molora`) say what a whole layer computes in the
    vocabulary of a model config. Primitive ops (`mix.route`, `mix.dispatch`,
    `mix.expert_ffn`, `mix.combine`, `mix.token_mix`, ...) are the composable steps that
    layer ops decompose into and that passes fuse and tile.

    Conventions: activations are f32 tensors whose token dimension is dynamic (`?`) wherever
    it varies at run time; weights are static-shaped f32, bf16 or f16 tensors in the
    `[out, in]` layout of `torch.nn.Linear`, stacked `[E, out, in]` or one tensor per expert;
    routing math is f32. Function arguments and results carry a `mix.name` string attribute:
    the name the runtime binds tensors by.

    Bounds: every static dim of a mix op's operands and results (and of a compiled function's
    arguments) is at most 2^24, and one tensor's static dims together at most 2^40 elements;
    the verifier refuses more, naming the operand. Run-time sizes (T, B, S) are at most
    2^31 - 1 (tokens are indexed with 32 bits): the runtime refuses a larger input.

    Weight quantization: a module whose checkpoint stores weights quantized says so with the
    module attribute `mix.weight_quantization = {format = "fp8_e4m3", block = [rows, cols]}`
    (transformers' fine-grained fp8, as DeepSeek-V3's and the Qwen3 FP8 checkpoints: e4m3fn
    values and one f32 scale per block of rows x cols in the tensor `<name>_scale_inv`, of
    shape [ceil(out / rows), ceil(in / cols)]). The ops still compute with the weights' own
    dtype: any 2-D weight may then come as fp8, and the runtime dequantizes it once when it
    binds the weights, `dtype(f32(w) * f32(scale))` as transformers does on a CPU
    (activations are not quantized).
  }];
  let useDefaultAttributePrinterParser = 1;
  let hasRegionArgAttrVerify = 1;
  let hasRegionResultAttrVerify = 1;
  let hasOperationAttrVerify = 1;
  let extraClassDeclaration = [{
    /// The argument/result attribute naming the tensor the runtime binds.
    static constexpr llvm::StringLiteral kNameAttr = "mix.name";
    /// A unit argument attribute: the argument is state the function updates in place
    /// (a KV cache), kept by the caller between calls.
    static constexpr llvm::StringLiteral kStateAttr = "mix.state";
    /// An argument attribute naming the run-time symbol of each dim (`""` for a static
    /// one), e.g. `["B", "S", "", ""]`; without it, `[T, D]` and `[B, S, D]` are assumed.
    static constexpr llvm::StringLiteral kSymbolsAttr = "mix.symbols";
    /// A module attribute of whole models (mixtilec --model): a dictionary of what the
    /// runtime needs to run one (entry point, vocabulary, end-of-sequence ids), copied to
    /// the manifest's "model" object.
    static constexpr llvm::StringLiteral kModelAttr = "mix.model";
    /// A module attribute: the checkpoint stores the artifact's 2-D weights quantized, as
    /// `{format = "fp8_e4m3", block = [rows, cols]}` (e4m3 values and one f32 scale per block
    /// in the tensor `<name>_scale_inv`); the runtime dequantizes such a weight on binding.
    /// Copied to the manifest's "weight_quantization" object.
    static constexpr llvm::StringLiteral kWeightQuantizationAttr = "mix.weight_quantization";
    /// A weight argument attribute: the checkpoint stores this weight as another tensor in
    /// another layout, `{name = "<stored tensor>", stride = s, offset = o, transpose}`. The
    /// stored tensor's last dim is read with stride `s` from `o` (one half of an interleaved
    /// pair: gpt-oss's gate/up columns), then with `transpose` its last two dims swap (an
    /// in-major [.., in, out] tensor read as [.., out, in]). With `format = "mxfp4"` (and
    /// transpose) the stored tensor is `<name>_blocks` [.., out, in / 32, 16] (two e2m1 codes a
    /// byte, low nibble first) with `<name>_scales` [.., out, in / 32] (e8m0), gpt-oss's hub
    /// experts. The runtime builds that copy once when it binds the weights (manifest "stored").
    static constexpr llvm::StringLiteral kStoredAttr = "mix.stored";
  }];
}

//===----------------------------------------------------------------------===//
// Enums
//===----------------------------------------------------------------------===//

def Mix_Scoring : I32EnumAttr<"Scoring", "router score function", [
    I32EnumAttrCase<"softmax", 0>,
    I32EnumAttrCase<"sigmoid", 1>]> {
  let cppNamespace = "::mlir::mix";
  let genSpecializedAttr = 0;
}
def Mix_ScoringAttr : EnumAttr<Mix_Dialect, Mix_Scoring, "scoring"> {
  let assemblyFormat = "`<` $value `>`";
}

def Mix_GroupScore : I32EnumAttr<"GroupScore", "score of an expert group", [
    I32EnumAttrCase<"max", 0>,
    I32EnumAttrCase<"top2_sum", 1>]> {
  let cppNamespace = "::mlir::mix";
  let genSpecializedAttr = 0;
}
def Mix_GroupScoreAttr : EnumAttr<Mix_Dialect, Mix_GroupScore, "group_score"> {
  let assemblyFormat = "`<` $value `>`";
}

def Mix_Activation : I32EnumAttr<"Activation", "expert activation function", [
    I32EnumAttrCase<"silu", 0>,
    I32EnumAttrCase<"gelu", 1>,
    I32EnumAttrCase<"gelu_tanh", 2>,
    I32EnumAttrCase<"relu", 3>,
    // gpt-oss's clamped SwiGLU (routed experts only): with g = min(gate, limit) and
    // u = clamp(up, -limit, limit), act = (u + 1) · g · sigmoid(alpha · g).
    I32EnumAttrCase<"swiglu_oai", 4>]> {
  let cppNamespace = "::mlir::mix";
  let genSpecializedAttr = 0;
}
def Mix_ActivationAttr : EnumAttr<Mix_Dialect, Mix_Activation, "activation"> {
  let assemblyFormat = "`<` $value `>`";
}

def Mix_EmitWeights : I32EnumAttr<"EmitWeights", "Mixture-of-Tokens emit weights", [
    I32EnumAttrCase<"merge", 0>,
    I32EnumAttrCase<"expert_softmax", 1>]> {
  let cppNamespace = "::mlir::mix";
  let genSpecializedAttr = 0;
}
def Mix_EmitWeightsAttr : EnumAttr<Mix_Dialect, Mix_EmitWeights, "emit"> {
  let assemblyFormat = "`<` $value `>`";
}

//===----------------------------------------------------------------------===//
// Type constraints
//===----------------------------------------------------------------------===//

// Activations inside a layer (between its primitives) are f32: routing math and partial sums.
def Mix_Activations : RankedTensorOf<[F32]>;
// A layer's token inputs and outputs: any float dtype, independently of the weights (a bf16
// model takes and returns bf16 hidden states). mix-decompose widens them to f32 at the layer's
// entry and rounds the output once, at its exit (layers.md, Conventions).
def Mix_Tokens : RankedTensorOf<[F32, BF16, F16]>;
def Mix_Weight : RankedTensorOf<[F32, BF16, F16]>;
// Routed expert weights may also be e4m3 codes (fine-grained fp8 checkpoints), each with a
// tensor of f32 block scales (Mix_BlockScales) and the op's `weight_block`, or MXFP4: stacked
// e2m1 codes with e8m0 scales, one per 32 values of a row (gpt-oss's hub checkpoints).
def Mix_ExpertWeight : RankedTensorOf<[F32, BF16, F16, F8E4M3FN, F4E2M1FN]>;
def Mix_BlockScales : RankedTensorOf<[F32, F8E8M0FNU]>;
// Weights the kernels read as f32 whatever the checkpoint's dtype (expert biases, attention
// sinks: few values; the runtime widens a bf16 or f16 one when it binds the weights).
def Mix_F32Weight : RankedTensorOf<[F32]>;
def Mix_Indices : RankedTensorOf<[I32]>;
def Mix_Scalar : 0DTensorOf<[F32]>;

// Every tensor of a mix op within the size bounds (dialect/MixOps.h: kMaxDim, kMaxElements).
def Mix_BoundedShapes : NativeOpTrait<"MixBoundedShapes">;

class Mix_Op<string mnemonic, list<Trait> traits = []>
    : Op<Mix_Dialect, mnemonic, !listconcat(traits, [Mix_BoundedShapes])>;

#endif // MIX_DIALECT_TD
