// Mixtile's target-independent passes: HOW a sparse layer is scheduled. They rewrite mix IR
// only; no pass prints source (that is codegen/'s job).
#ifndef MIXTILE_PASSES_TD
#define MIXTILE_PASSES_TD

include "mlir/Pass/PassBase.td"

def DecomposeLayers : Pass<"mix-decompose", "::mlir::func::FuncOp"> {
  let summary = "Rewrite layer ops into the mix primitives they are made of";
  let description = [{
    `mix.token_choice_moe` becomes `mix.route` (+ `mix.capacity`) → `mix.dispatch` →
    `mix.expert_ffn` → `mix.combine` into the shared experts' output (`mix.ffn`, optionally
    `mix.sigmoid_gate`) or `mix.zeros_like`, plus `mix.load_balancing_loss` / `mix.z_loss`
    for the optional results. `mix.expert_choice_moe` becomes `mix.expert_choice` →
    `mix.expert_ffn` → `mix.combine`; `mix.mixture_of_tokens` becomes `mix.token_mix` →
    `mix.batched_expert_ffn` → `mix.token_emit` (or, in transition mode, the token-choice
    chain on the flattened tokens); `mix.mov` and `mix.molora` become `mix.soft_route` with
    `mix.mix_vectors`, or `mix.linear` + `mix.mix_lora`.
  }];
  let dependentDialects = ["::mlir::tensor::TensorDialect", "::mlir::arith::ArithDialect"];
}

def FuseKernels : Pass<"mix-fuse", "::mlir::func::FuncOp"> {
  let summary = "Group mix primitives into the kernels codegen emits";
  let description = [{
    Wraps every mix primitive in a `mix.kernel`, fusing where a value need not reach memory:
    - `router`: the router GEMM, scores, top-k selection, renormalization and scaling
      (`mix.route`) with the capacity drop (`mix.capacity`) that consumes its choices;
    - `moe_experts`: `mix.expert_ffn` with the `mix.combine` that consumes it (the token
      gather becomes the first GEMM's prologue, the activation its epilogue, the routing
      weight and scatter-add the second GEMM's epilogue), together with the shared experts
      (`mix.ffn`, `mix.sigmoid_gate`) or `mix.zeros_like` the combine adds into;
    - `lora`: `mix.linear` with the `mix.mix_lora` that adds onto it;
    - `aux_losses`: the load-balancing loss and z-loss of one router.
    Any other primitive becomes a kernel of its own, named after the op; the token dtype
    conversions of a bf16/f16 layer (`arith.extf`, `arith.truncf` on tensors) become kernels
    `widen_tokens` and `round_tokens`.
  }];
}

def TileKernels : Pass<"mix-tile", "::mlir::func::FuncOp"> {
  let summary = "Attach tile configurations from the target's tuning table";
  let description = [{
    Sets the `tiles` attribute of every `mix.kernel`: the list of
    `{max_tokens = N, ...tile sizes...}` buckets for its kind from the tuning table (a JSON
    file per target, `passes/tuning/<target>.json`, compiled in; `table` overrides it). The
    generated kernel picks the first bucket whose `max_tokens` is at least the run-time token
    count, so one artifact serves every batch size.

    On the cpu target it also decides, from the CPU (`cpu`: `native` or a named level), the
    matrix path of every kernel with expert GEMMs: `amx_bf16` (bf16 weights on a CPU with
    AMX), `avx512_bf16` (bf16 weights, AVX512-BF16 without AMX) or `fma_f32` (weights
    widened to f32), recorded as the kernel's `mix.matmul_path` attribute; its tiles come
    from that path's table (`passes/tuning/cpu-<path>.json`; for `fma_f32` `cpu-intel.json` on
    Intel CPUs, `cpu.json` otherwise). The
    CPU itself (its `-march` and features) is recorded as the function's `mix.cpu`
    attribute, which codegen builds for and the manifest lists.
  }];
  let options = [
    Option<"target", "target", "std::string", /*default=*/"\"cpu\"",
           "Target whose built-in tuning table is used (cpu or cuda)">,
    Option<"cpu", "cpu", "std::string", /*default=*/"\"native\"",
           "CPU the cpu target compiles for: native, x86-64, x86-64-v3, x86-64-v4, "
           "sapphirerapids, znver4, znver5">,
    Option<"table", "table", "std::string", /*default=*/"\"\"",
           "Path of a tuning table JSON file to use instead of the built-in one">
  ];
}

#endif // MIXTILE_PASSES_TD
