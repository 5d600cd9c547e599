// Ops of the `mix` dialect: primitives that passes fuse and tile, and layer ops that
// decompose into them. Shapes, dtypes and attribute ranges are checked in MixVerify.cpp.
#ifndef MIX_OPS_TD
#define MIX_OPS_TD

include "dialect/MixDialect.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "mlir/Interfaces/ControlFlowInterfaces.td"

defvar Mix_Positive = ConfinedAttr<I64Attr, [IntPositive]>;
defvar Mix_NonNegative = ConfinedAttr<I64Attr, [IntNonNegative]>;

//===----------------------------------------------------------------------===//
// Routing primitives
//===----------------------------------------------------------------------===//

def Mix_RouteOp : Mix_Op<"route", [Pure, AttrSizedOperandSegments]> {
  let summary = "token-choice routing: router scores, top-k selection and weights";
  let description = [{
    Computes `logits = x · routerᵀ (+ router_bias)`, scores `s = softmax(logits)` or
    `sigmoid(logits)` over the E experts, and for each token the `k` chosen experts
    (descending, ties to the lower index) with their weights (layers.md §1-2).

    - `selection_bias` (DeepSeek-V3 `e_score_correction_bias`): experts are chosen by
      `s + selection_bias` but weighed by the unbiased `s`.
    - `n_group`/`topk_group` (group-limited selection): the experts form `n_group` groups of
      consecutive experts, each scored by the max of its scores (`group_score = max`,
      DeepSeek-V2) or the sum of its two best (biased) scores (`top2_sum`, DeepSeek-V3); only
      the `topk_group` best groups stay selectable.
    - `normalize`: `w ← w / (Σw + norm_epsilon)`; then `w ← w · scale`.

    Results: the weights `[T, k]` (f32), the chosen experts `[T, k]` (i32) and the router
    logits `[T, E]` (f32, for auxiliary losses).

    Example (Mixtral):
    ```mlir
    %w, %idx, %logits = mix.route %x, %router {k = 2, normalize}
        : tensor<?x4096xf32>, tensor<8x4096xbf16>
        -> tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>
    ```
  }];
  let arguments = (ins
    Mix_Activations:$x,
    Mix_Weight:$router,
    Optional<Mix_Weight>:$router_bias,
    Optional<Mix_Weight>:$selection_bias,
    Mix_Positive:$k,
    DefaultValuedAttr<Mix_ScoringAttr, "::mlir::mix::Scoring::softmax">:$scoring,
    UnitAttr:$normalize,
    DefaultValuedAttr<F64Attr, "0.0">:$norm_epsilon,
    DefaultValuedAttr<F64Attr, "1.0">:$scale,
    DefaultValuedAttr<Mix_Positive, "1">:$n_group,
    DefaultValuedAttr<Mix_Positive, "1">:$topk_group,
    DefaultValuedAttr<Mix_GroupScoreAttr, "::mlir::mix::GroupScore::max">:$group_score
  );
  let results = (outs Mix_Activations:$weights, Mix_Indices:$experts,
                      Mix_Activations:$logits);
  let assemblyFormat = [{
    $x `,` $router
    (`bias` `(` $router_bias^ `:` type($router_bias) `)`)?
    (`selection_bias` `(` $selection_bias^ `:` type($selection_bias) `)`)?
    attr-dict `:` type($x) `,` type($router) `->` type(results)
  }];
  let hasVerifier = 1;
}

def Mix_CapacityOp : Mix_Op<"capacity", [Pure]> {
  let summary = "drop token-choice assignments beyond each expert's capacity";
  let description = [{
    Each expert accepts at most `C` assignments: a fixed `capacity`, or
    `C = ceil(capacity_factor · T · k / E)` (Switch Transformers, GShard). Assignments claim
    slots in token order (then in order of choice); one beyond C is dropped: its expert
    index becomes -1, so `mix.dispatch` skips it and it contributes 0 (layers.md §4).
    Exactly one of `capacity` and `capacity_factor` is given.

    Example (Switch, capacity factor 1.25):
    ```mlir
    %kept = mix.capacity %idx {num_experts = 8, capacity_factor = 1.25}
        : tensor<?x1xi32> -> tensor<?x1xi32>
    ```
  }];
  let arguments = (ins Mix_Indices:$experts, Mix_Positive:$num_experts,
                       OptionalAttr<Mix_NonNegative>:$capacity,
                       OptionalAttr<F64Attr>:$capacity_factor);
  let results = (outs Mix_Indices:$kept);
  let assemblyFormat = "$experts attr-dict `:` type($experts) `->` type($kept)";
  let hasVerifier = 1;
}

def Mix_ExpertChoiceOp : Mix_Op<"expert_choice", [Pure]> {
  let summary = "expert-choice routing: each expert picks its top-C tokens";
  let description = [{
    Zhou et al., 2022 (layers.md §5). `s = softmax(x · routerᵀ)` over experts; capacity
    `C = min(T, ceil(capacity_factor · T / E))`; expert e takes the C tokens with the largest
    `s[:, e]` (ties to the lower token index). The result is a set of expert segments, the
    same form `mix.dispatch` produces: `offsets [E+1]` (segment e is
    `[offsets[e], offsets[e+1])`), the `tokens` of each assignment and its `gates` (the score
    `s[t, e]`), plus the router logits.

    ```mlir
    %off, %tok, %gate, %logits = mix.expert_choice %x, %router {capacity_factor = 2.0}
        : tensor<?x1024xf32>, tensor<64x1024xf32>
        -> tensor<65xi32>, tensor<?xi32>, tensor<?xf32>, tensor<?x64xf32>
    ```
  }];
  let arguments = (ins Mix_Activations:$x, Mix_Weight:$router, F64Attr:$capacity_factor);
  let results = (outs Mix_Indices:$offsets, Mix_Indices:$tokens, Mix_Activations:$gates,
                      Mix_Activations:$logits);
  let assemblyFormat = [{
    $x `,` $router attr-dict `:` type($x) `,` type($router) `->` type(results)
  }];
  let hasVerifier = 1;
}

def Mix_DispatchOp : Mix_Op<"dispatch", [Pure]> {
  let summary = "group token-choice assignments into expert segments";
  let description = [{
    Sorts the `[T, k]` assignments by expert, stably (token order within an expert), and
    returns the expert segments: `offsets [E+1]` (segment e is `[offsets[e], offsets[e+1])`),
    the token of each assignment and its gate (routing weight). Assignments whose expert is
    negative (dropped by `mix.capacity`) are left out. No token is copied: later ops gather
    tokens through `tokens`.

    ```mlir
    %off, %tok, %gate = mix.dispatch %w, %idx {num_experts = 8}
        : tensor<?x2xf32>, tensor<?x2xi32> -> tensor<9xi32>, tensor<?xi32>, tensor<?xf32>
    ```
  }];
  let arguments = (ins Mix_Activations:$weights, Mix_Indices:$experts,
                       Mix_Positive:$num_experts);
  let results = (outs Mix_Indices:$offsets, Mix_Indices:$tokens, Mix_Activations:$gates);
  let assemblyFormat = [{
    $weights `,` $experts attr-dict `:` type($weights) `,` type($experts) `->` type(results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Expert computation primitives
//===----------------------------------------------------------------------===//

def Mix_ExpertFFNOp : Mix_Op<"expert_ffn", [Pure, AttrSizedOperandSegments]> {
  let summary = "grouped expert FFN over expert segments";
  let description = [{
    For every assignment a in segment e, `h[a] = FFN_e(x[tokens[a]])` (layers.md §3): gated
    `down · (act(gate · x) ⊙ (up · x))` when `gate` weights are given (SwiGLU, GeGLU), plain
    `down · act(up · x)` otherwise. Weights are stacked (`[E, F, D]`, `[E, D, F]`, one tensor
    each) or one tensor per expert (`E` tensors `[F, D]`, `[D, F]`), all of one dtype.

    fp8 weights (the fine-grained fp8 checkpoints of DeepSeek-V3 and Qwen3): per-expert
    `f8E4M3FN` tensors, each with its f32 block scales in `gate_scale`, `up_scale`,
    `down_scale` (`[ceil(rows / r), ceil(cols / c)]` for `weight_block = array<i64: r, c>`):
    weight `[i, j]` is `code[i, j] * scale[i / r, j / c]`. They are read in place; the CPU
    kernels multiply a segment of at most 4 rows with exactly that value, larger ones with
    it rounded to bf16 (as transformers dequantizes such a checkpoint on a CPU).

    MXFP4 weights (gpt-oss's hub checkpoints): stacked `f4E2M1FN` tensors, each with one
    stacked `f8E8M0FNU` tensor of scales in `gate_scale`, `up_scale`, `down_scale`
    (`[E, F, D / 32]`, `[E, F, D / 32]`, `[E, D, F / 32]`; D and F multiples of 32, no
    `weight_block`): weight `[e, i, j]` is `code[e, i, j] * 2^(scale[e, i, j / 32] - 127)`, exact
    in bf16 for every scale but the extremes, where it is rounded to bf16 as transformers does.
    They are read in place (4.25 bits a weight).

    Expert biases (gpt-oss), f32 and stacked: `gate_bias`/`up_bias` `[E, F]` add to the gate
    and up projections before the activation, `down_bias` `[E, D]` to the down projection's
    output (before the routing weight scales it). `#mix.activation<swiglu_oai>` (gated only)
    is gpt-oss's clamped SwiGLU with `swiglu_alpha` and `swiglu_limit`.

    ```mlir
    %h = mix.expert_ffn %x, %off, %tok
        gate(%w1 : tensor<8x14336x4096xbf16>) up(%w3 : tensor<8x14336x4096xbf16>)
        down(%w2 : tensor<8x4096x14336xbf16>) {activation = #mix.activation<silu>}
        : tensor<?x4096xf32>, tensor<9xi32>, tensor<?xi32> -> tensor<?x4096xf32>
    ```
  }];
  let arguments = (ins Mix_Activations:$x, Mix_Indices:$offsets, Mix_Indices:$tokens,
                       Variadic<Mix_ExpertWeight>:$gate, Variadic<Mix_ExpertWeight>:$up,
                       Variadic<Mix_ExpertWeight>:$down,
                       Variadic<Mix_BlockScales>:$gate_scale, Variadic<Mix_BlockScales>:$up_scale,
                       Variadic<Mix_BlockScales>:$down_scale,
                       Optional<Mix_F32Weight>:$gate_bias, Optional<Mix_F32Weight>:$up_bias,
                       Optional<Mix_F32Weight>:$down_bias, Mix_ActivationAttr:$activation,
                       DefaultValuedAttr<F64Attr, "1.702">:$swiglu_alpha,
                       DefaultValuedAttr<F64Attr, "7.0">:$swiglu_limit,
                       OptionalAttr<DenseI64ArrayAttr>:$weight_block);
  let results = (outs Mix_Activations:$h);
  let assemblyFormat = [{
    $x `,` $offsets `,` $tokens
    (`gate` `(` $gate^ `:` type($gate) `)`)?
    `up` `(` $up `:` type($up) `)` `down` `(` $down `:` type($down) `)`
    (`gate_scale` `(` $gate_scale^ `:` type($gate_scale) `)`)?
    (`up_scale` `(` $up_scale^ `:` type($up_scale) `)`)?
    (`down_scale` `(` $down_scale^ `:` type($down_scale) `)`)?
    (`gate_bias` `(` $gate_bias^ `:` type($gate_bias) `)`)?
    (`up_bias` `(` $up_bias^ `:` type($up_bias) `)`)?
    (`down_bias` `(` $down_bias^ `:` type($down_bias) `)`)?
    attr-dict `:` type($x) `,` type($offsets) `,` type($tokens) `->` type($h)
  }];
  let hasVerifier = 1;
}

def Mix_CombineOp : Mix_Op<"combine", [Pure, AllTypesMatch<["init", "y"]>]> {
  let summary = "weighted scatter-add of expert outputs back to token order";
  let description = [{
    `y = init; y[tokens[a]] += gates[a] · h[a]` for every assignment a. `init` is the
    starting value (zeros, or the shared experts' output that routed experts add to).

    ```mlir
    %y = mix.combine %h, %tok, %gate into %zeros
        : tensor<?x4096xf32>, tensor<?xi32>, tensor<?xf32> into tensor<?x4096xf32>
    ```
  }];
  let arguments = (ins Mix_Activations:$h, Mix_Indices:$tokens, Mix_Activations:$gates,
                       Mix_Activations:$init);
  let results = (outs Mix_Activations:$y);
  let assemblyFormat = [{
    $h `,` $tokens `,` $gates `into` $init attr-dict `:` type($h) `,` type($tokens) `,`
    type($gates) `into` type($init)
  }];
  let hasVerifier = 1;
}

def Mix_ZerosLikeOp : Mix_Op<"zeros_like", [Pure, SameOperandsAndResultType]> {
  let summary = "a zero tensor of the same (run-time) shape as its operand";
  let description = [{
    The starting value of a `mix.combine` with nothing to add to.

    ```mlir
    %z = mix.zeros_like %x : tensor<?x4096xf32>
    ```
  }];
  let arguments = (ins Mix_Activations:$like);
  let results = (outs Mix_Activations:$zeros);
  let assemblyFormat = "$like attr-dict `:` type($like)";
}

def Mix_FFNOp : Mix_Op<"ffn", [Pure]> {
  let summary = "a dense FFN applied to every token (shared experts)";
  let description = [{
    `y = down · (act(gate · x) ⊙ (up · x))`, or `down · act(up · x)` without `gate`. Shared
    experts (Qwen2-MoE, DeepSeek) are one such FFN; DeepSeek's `n_shared_experts` are one
    FFN of width `n_shared · F`.

    ```mlir
    %s = mix.ffn %x gate(%g : tensor<2816x2048xbf16>) up(%u : tensor<2816x2048xbf16>)
        down(%d : tensor<2048x2816xbf16>) {activation = #mix.activation<silu>}
        : tensor<?x2048xf32> -> tensor<?x2048xf32>
    ```
  }];
  let arguments = (ins Mix_Activations:$x, Optional<Mix_Weight>:$gate, Mix_Weight:$up,
                       Mix_Weight:$down, Mix_ActivationAttr:$activation);
  let results = (outs Mix_Activations:$y);
  let assemblyFormat = [{
    $x (`gate` `(` $gate^ `:` type($gate) `)`)? `up` `(` $up `:` type($up) `)`
    `down` `(` $down `:` type($down) `)` attr-dict `:` type($x) `->` type($y)
  }];
  let hasVerifier = 1;
}

def Mix_SigmoidGateOp : Mix_Op<"sigmoid_gate", [Pure]> {
  let summary = "scale each token's row of y by sigmoid(x · gate_weightᵀ)";
  let description = [{
    Qwen2-MoE's `shared_expert_gate`: `y[t] · sigmoid(x[t] · gate_weight[0])`, with
    `gate_weight` of shape `[1, D]`.

    ```mlir
    %g = mix.sigmoid_gate %x, %w_sg, %s
        : tensor<?x2048xf32>, tensor<1x2048xbf16>, tensor<?x2048xf32> -> tensor<?x2048xf32>
    ```
  }];
  let arguments = (ins Mix_Activations:$x, Mix_Weight:$gate_weight, Mix_Activations:$y);
  let results = (outs Mix_Activations:$gated);
  let assemblyFormat = [{
    $x `,` $gate_weight `,` $y attr-dict `:` type($x) `,` type($gate_weight) `,` type($y)
    `->` type($gated)
  }];
  let hasVerifier = 1;
}

def Mix_LinearOp : Mix_Op<"linear", [Pure]> {
  let summary = "a dense linear map: x · weightᵀ (+ bias)";
  let description = [{
    `torch.nn.Linear`: `weight` is `[out, in]`, the optional `bias` is `[out]`. Used for
    the frozen base weight of MoLoRA.

    ```mlir
    %y = mix.linear %x, %w0 : tensor<?x768xf32>, tensor<768x768xf32> -> tensor<?x768xf32>
    ```
  }];
  let arguments = (ins Mix_Activations:$x, Mix_Weight:$weight, Optional<Mix_Weight>:$bias);
  let results = (outs Mix_Activations:$y);
  let assemblyFormat = [{
    $x `,` $weight (`bias` `(` $bias^ `:` type($bias) `)`)? attr-dict `:` type($x) `,`
    type($weight) `->` type($y)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Dense model primitives: what the rest of a decoder-only model computes around its sparse
// blocks (mixtilec --hf-config --model)
//===----------------------------------------------------------------------===//

def Mix_GatherOp : Mix_Op<"gather", [Pure]> {
  let summary = "rows of a table, widened to f32 (token embeddings, the rows logits are for)";
  let description = [{
    `rows[r] = table[indices[r]]`. The table is a weight (an embedding `[V, D]`) or an
    activation (the hidden states of the tokens whose logits a model computes). An index
    outside `[0, N)` is a run-time error of the entry point on the CPU, with nothing written;
    on CUDA (which never reads device data back inside an entry point) its row is zeros. The
    runtime checks token ids against the vocabulary before it calls a model.

    ```mlir
    %x = mix.gather %embed[%ids] : tensor<50304x2048xbf16>, tensor<?xi32> -> tensor<?x2048xf32>
    ```
  }];
  let arguments = (ins Mix_Tokens:$table, Mix_Indices:$indices);
  let results = (outs Mix_Activations:$rows);
  let assemblyFormat = [{
    $table `[` $indices `]` attr-dict `:` type($table) `,` type($indices) `->` type($rows)
  }];
  let hasVerifier = 1;
}

def Mix_RMSNormOp : Mix_Op<"rms_norm", [Pure]> {
  let summary = "RMSNorm over the last dimension (Zhang & Sennrich, 2019)";
  let description = [{
    `y = weight ⊙ x / sqrt(mean(x²) + epsilon)` over the last dimension, in f32, as the
    `RMSNorm` of every family `--model` knows. Per-head q/k norms (Qwen3-MoE) apply it to a
    `[T, H, head_dim]` view; full-width ones (OLMoE) to `[T, H·head_dim]`.

    ```mlir
    %h = mix.rms_norm %x, %w {epsilon = 1.0e-06}
        : tensor<?x2048xf32>, tensor<2048xbf16> -> tensor<?x2048xf32>
    ```
  }];
  let arguments = (ins Mix_Activations:$x, Mix_Weight:$weight, F64Attr:$epsilon);
  let results = (outs Mix_Activations:$y);
  let assemblyFormat = [{
    $x `,` $weight attr-dict `:` type($x) `,` type($weight) `->` type($y)
  }];
  let hasVerifier = 1;
}

def Mix_SliceOp : Mix_Op<"slice", [Pure]> {
  let summary = "a run of columns of the last dimension";
  let description = [{
    `y[..., j] = x[..., offset + j]` for `j` below the result's last dim; every leading dim
    is kept. Multi-head latent attention (DeepSeek-V2/V3) splits its latent projection into
    the compressed key/value and the rotary key, and the expanded latent's `[T, H, ·]` view
    into each head's key and value parts.

    ```mlir
    %r = mix.slice %latent {offset = 512} : tensor<?x576xf32> -> tensor<?x64xf32>
    ```
  }];
  let arguments = (ins Mix_Activations:$x, Mix_NonNegative:$offset);
  let results = (outs Mix_Activations:$y);
  let assemblyFormat = [{
    $x attr-dict `:` type($x) `->` type($y)
  }];
  let hasVerifier = 1;
}

def Mix_AttentionOp : Mix_Op<"attention", [MemoryEffects<[MemRead, MemWrite]>,
                                           AttrSizedOperandSegments]> {
  let summary = "causal self-attention with rotary embeddings over a KV cache";
  let description = [{
    Token `t` sits at position `positions[t]` of cache row `sequences[t]`. The op first
    writes every token's rotated key and its value into `k_cache` and `v_cache`
    `[B, S, kv_heads, head_dim]` at that row and position (rounded to the caches' dtype),
    then each query head `h` attends over its row's keys at positions `0..positions[t]`
    (the last `window` of them when `window > 0`) read back from the caches, with key/value
    head `h / (heads / kv_heads)` (grouped-query attention): one op serves a prefill, a
    decode step and a batch mixing both. The caches must be function arguments marked
    `mix.state`: the entry point updates them in place and the runtime keeps them between
    calls. A position outside `[0, S)` or a row outside `[0, B)` is a run-time error of the
    entry point on the CPU, with nothing written; on CUDA that token writes no cache entry and
    its output is zeros (the runtime checks positions against the cache before each call).

    RoPE rotates the first `2 · len(inv_freq)` dims of each q/k head: pair `i` at position
    `p` turns by `p · inv_freq[i]`, pairs being `(i, i + len)` (`rotate_half`) or `(2i, 2i+1)`
    with `rope_interleaved`; cos and sin are scaled by `rope_scale` (YaRN's attention
    factor). The compiler computes `inv_freq` from the config's RoPE type. With
    `clip > 0`, q, k and v are first clamped to `[-clip, clip]` (OLMoE's `clip_qkv`).
    Scores are `q · k · softmax_scale`. With `sinks` (f32 `[heads]`, gpt-oss), each head's
    softmax also counts one more logit, `sinks[h]`, whose probability is dropped: the weights
    are `exp(s_j) / (Σ exp(s) + exp(sinks[h]))`.

    Multi-head latent attention (DeepSeek-V2/V3) over expanded keys and values takes three
    more pieces (`mix.latent_attention`, which `--model` uses, caches the latents instead).
    `v_head_dim`
    (default: `head_dim`) sets the width of each value head, of `v_cache`'s last dim and of
    each head of `out`. `rope_offset` moves the rotated dims to
    `[rope_offset, rope_offset + 2 · len(inv_freq))` of each q/k head. With the `rope_key`
    operand `[T, 2 · len(inv_freq)]`, the keys' rotary dims are one shared head: `k` then holds
    only each kv head's first `rope_offset` dims `[T, kv_heads * rope_offset]`, the rotary
    dims must be each head's last (`rope_offset + 2 · len(inv_freq) = head_dim`), and every kv
    head's cached key is its own `k` part followed by the rotated `rope_key`.

    ```mlir
    %o = mix.attention %q, %k, %v, %pos, %seq, %kc, %vc
        {heads = 4, kv_heads = 2, head_dim = 16, inv_freq = array<f64: 1.0, 0.1>,
         softmax_scale = 0.25}
        : tensor<?x64xf32>, tensor<?x32xf32>, tensor<?x32xf32>, tensor<?xi32>, tensor<?xi32>,
          tensor<?x?x2x16xbf16>, tensor<?x?x2x16xbf16> -> tensor<?x64xf32>
    ```
  }];
  let arguments = (ins Mix_Activations:$q, Mix_Activations:$k, Mix_Activations:$v,
                       Mix_Indices:$positions, Mix_Indices:$sequences,
                       Mix_Tokens:$k_cache, Mix_Tokens:$v_cache,
                       Optional<Mix_Activations>:$rope_key,
                       Optional<Mix_F32Weight>:$sinks,
                       Mix_Positive:$heads, Mix_Positive:$kv_heads, Mix_Positive:$head_dim,
                       DenseF64ArrayAttr:$inv_freq,
                       DefaultValuedAttr<F64Attr, "1.0">:$rope_scale,
                       UnitAttr:$rope_interleaved,
                       F64Attr:$softmax_scale,
                       DefaultValuedAttr<F64Attr, "0.0">:$clip,
                       DefaultValuedAttr<Mix_NonNegative, "0">:$window,
                       DefaultValuedAttr<Mix_NonNegative, "0">:$v_head_dim,
                       DefaultValuedAttr<Mix_NonNegative, "0">:$rope_offset);
  let results = (outs Mix_Activations:$out);
  let assemblyFormat = [{
    $q `,` $k `,` $v `,` $positions `,` $sequences `,` $k_cache `,` $v_cache
    (`rope_key` $rope_key^ `:` type($rope_key))? (`sinks` $sinks^ `:` type($sinks))? attr-dict `:`
    type($q) `,` type($k) `,` type($v) `,` type($positions) `,` type($sequences) `,`
    type($k_cache) `,` type($v_cache) `->` type($out)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// Width of each value head (and of each head of `out`).
    int64_t getValueHeadDim() { return getVHeadDim() ? getVHeadDim() : getHeadDim(); }
  }];
}

def Mix_LatentAttentionOp : Mix_Op<"latent_attention", [MemoryEffects<[MemRead, MemWrite]>]> {
  let summary = "multi-head latent attention (DeepSeek-V2/V3) over a cache of latents";
  let description = [{
    DeepSeek's multi-head latent attention with the cache holding what each token's keys and
    values are made from (Liu et al., 2024): per token the normalized latent `latent`
    `[T, rank]` and the rotated shared rotary key, `rank + rope_dim` values in
    `cache[B, S, 1, rank + rope_dim]` (rounded to the cache's dtype), instead of every head's
    expanded key and value (`heads · (nope_dim + rope_dim + v_head_dim)` values: 4.4x as many
    for DeepSeek-V2-Lite, 71x for V3).

    Token `t` sits at position `positions[t]` of cache row `sequences[t]`. The op first writes
    every token's cache entry: `latent[t]` followed by `rope_key[t]` `[T, rope_dim]` rotated
    at its position. Then with `c(s)` the cached latent and `r(s)` the cached rotary key at
    position `s`, and `kv_b` `[heads · (nope_dim + v_head_dim), rank]` (the checkpoint's
    `kv_b_proj.weight`, rows of head `h` at `h · (nope_dim + v_head_dim)`: its `nope_dim` key
    rows `W_k[h]`, then its `v_head_dim` value rows `W_v[h]`), head `h` of token `t` attends
    with query `q[t, h]` (`[nope_dim | rope_dim]`, the rotary part rotated at the token's
    position) over keys `k_h(s) = [W_k[h] · c(s) | r(s)]` and values `v_h(s) = W_v[h] · c(s)`
    at positions `0..positions[t]` of its row (the last `window` of them when `window > 0`),
    scores `q · k · softmax_scale`. The same result in any order of evaluation: the CPU
    expands keys and values for sequences this call fills from position 0 (a prefill) and
    folds `W_k` into the query and `W_v` into the output otherwise (decode: each cached
    position is read once per token, `rank + rope_dim` values for all heads).

    RoPE as `mix.attention`'s (`inv_freq`, `rope_scale`, `rope_interleaved`) over the last
    `rope_dim = 2 · len(inv_freq)` dims of each query head and over `rope_key`. The cache must
    be a function argument marked `mix.state`. A position outside `[0, S)` or a row outside
    `[0, B)` is a run-time error on the CPU, with nothing written; on CUDA that token writes
    nothing and its output is zeros.

    ```mlir
    %o = mix.latent_attention %q, %latent, %rope_key, %kv_b, %pos, %seq, %cache
        {heads = 4, nope_dim = 8, v_head_dim = 8, inv_freq = array<f64: 1.0, 0.1>,
         softmax_scale = 0.25}
        : tensor<?x48xf32>, tensor<?x16xf32>, tensor<?x4xf32>, tensor<64x16xbf16>,
          tensor<?xi32>, tensor<?xi32>, tensor<?x?x1x20xbf16> -> tensor<?x32xf32>
    ```
  }];
  let arguments = (ins Mix_Activations:$q, Mix_Activations:$latent, Mix_Activations:$rope_key,
                       Mix_Weight:$kv_b, Mix_Indices:$positions, Mix_Indices:$sequences,
                       Mix_Tokens:$cache,
                       Mix_Positive:$heads, Mix_Positive:$nope_dim, Mix_Positive:$v_head_dim,
                       DenseF64ArrayAttr:$inv_freq,
                       DefaultValuedAttr<F64Attr, "1.0">:$rope_scale,
                       UnitAttr:$rope_interleaved,
                       F64Attr:$softmax_scale,
                       DefaultValuedAttr<Mix_NonNegative, "0">:$window);
  let results = (outs Mix_Activations:$out);
  let assemblyFormat = [{
    $q `,` $latent `,` $rope_key `,` $kv_b `,` $positions `,` $sequences `,` $cache attr-dict
    `:` type($q) `,` type($latent) `,` type($rope_key) `,` type($kv_b) `,` type($positions) `,`
    type($sequences) `,` type($cache) `->` type($out)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// Dims of the shared rotary key (and of each query head's rotated tail).
    int64_t getRopeDim() { return 2 * static_cast<int64_t>(getInvFreq().size()); }
    /// Width of the latent (the cache's entries are rank + rope_dim wide).
    int64_t getRank() {
      return cast<RankedTensorType>(getKvB().getType()).getDimSize(1);
    }
  }];
}

//===----------------------------------------------------------------------===//
// Lightweight-expert primitives (Zadouri et al., 2023)
//===----------------------------------------------------------------------===//

def Mix_SoftRouteOp : Mix_Op<"soft_route", [Pure]> {
  let summary = "dense router probabilities, optionally masked to the top-k";
  let description = [{
    `p = softmax(x · routerᵀ)` over the E experts, `[T, E]`. With `k`, entries outside each
    token's top-k are set to 0 and the rest are not renormalized (layers.md §7).

    ```mlir
    %p = mix.soft_route %x, %router {k = 2}
        : tensor<?x768xf32>, tensor<10x768xf32> -> tensor<?x10xf32>
    ```
  }];
  let arguments = (ins Mix_Activations:$x, Mix_Weight:$router, OptionalAttr<Mix_Positive>:$k);
  let results = (outs Mix_Activations:$probs);
  let assemblyFormat = [{
    $x `,` $router attr-dict `:` type($x) `,` type($router) `->` type($probs)
  }];
  let hasVerifier = 1;
}

def Mix_MixVectorsOp : Mix_Op<"mix_vectors", [Pure]> {
  let summary = "MoV: scale an activation by a mixture of (IA)3 vectors";
  let description = [{
    `y = h ⊙ (probs · vectors)` with `vectors [E, H]` a stack of (IA)3 scaling vectors.

    ```mlir
    %y = mix.mix_vectors %h, %p, %v
        : tensor<?x2048xf32>, tensor<?x10xf32>, tensor<10x2048xf32> -> tensor<?x2048xf32>
    ```
  }];
  let arguments = (ins Mix_Activations:$h, Mix_Activations:$probs, Mix_Weight:$vectors);
  let results = (outs Mix_Activations:$y);
  let assemblyFormat = [{
    $h `,` $probs `,` $vectors attr-dict `:` type($h) `,` type($probs) `,` type($vectors)
    `->` type($y)
  }];
  let hasVerifier = 1;
}

def Mix_MixLoRAOp : Mix_Op<"mix_lora", [Pure, AllTypesMatch<["init", "y"]>]> {
  let summary = "MoLoRA: add a probability-weighted mixture of LoRA adapters";
  let description = [{
    `y = init + (alpha / r) · Σ_e probs[:, e] · (x · lora_a[e]ᵀ) · lora_b[e]ᵀ`, with
    `lora_a [E, r, D_in]` and `lora_b [E, D_out, r]`.

    ```mlir
    %y = mix.mix_lora %x, %p, %a, %b into %base {alpha = 16.0}
        : tensor<?x768xf32>, tensor<?x10xf32>, tensor<10x4x768xf32>, tensor<10x768x4xf32>
        into tensor<?x768xf32>
    ```
  }];
  let arguments = (ins Mix_Activations:$x, Mix_Activations:$probs, Mix_Weight:$lora_a,
                       Mix_Weight:$lora_b, Mix_Activations:$init, F64Attr:$alpha);
  let results = (outs Mix_Activations:$y);
  let assemblyFormat = [{
    $x `,` $probs `,` $lora_a `,` $lora_b `into` $init attr-dict `:` type($x) `,`
    type($probs) `,` type($lora_a) `,` type($lora_b) `into` type($init)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Mixture-of-Tokens primitives (Antoniak et al., 2023)
//===----------------------------------------------------------------------===//

def Mix_TokenMixOp : Mix_Op<"token_mix", [Pure]> {
  let summary = "Mixture of Tokens: mix each group's tokens per expert";
  let description = [{
    `x [B, S, D]`; for every position s the B examples form B/G groups of `group_size` G
    consecutive examples. `logits = x · controllerᵀ`; merge weights
    `m = softmax over the group of (logits / temperature)`, per expert; the mixed token of
    expert e in a group is `Σ_i m[i, e] · x_i` (layers.md §6).

    Results: `mixed [E, N, D]` with `N = (B / G) · S` (row `g · S + s` is group g at position
    s), and the emit weights `[B, S, E]`: the merge weights (`emit = merge`) or the softmax
    over experts of `logits / temperature` (`emit = expert_softmax`).

    ```mlir
    %z, %m = mix.token_mix %x, %c {group_size = 32, temperature = 1.0}
        : tensor<?x?x256xf32>, tensor<512x256xf32> -> tensor<512x?x256xf32>, tensor<?x?x512xf32>
    ```
  }];
  let arguments = (ins Mix_Activations:$x, Mix_Weight:$controller, Mix_Positive:$group_size,
                       F64Attr:$temperature,
                       DefaultValuedAttr<Mix_EmitWeightsAttr,
                                         "::mlir::mix::EmitWeights::merge">:$emit);
  let results = (outs Mix_Activations:$mixed, Mix_Activations:$emit_weights);
  let assemblyFormat = [{
    $x `,` $controller attr-dict `:` type($x) `,` type($controller) `->` type(results)
  }];
  let hasVerifier = 1;
}

def Mix_BatchedExpertFFNOp : Mix_Op<"batched_expert_ffn", [Pure, AttrSizedOperandSegments]> {
  let summary = "apply expert e's FFN to every row of z[e]";
  let description = [{
    `h[e, n] = FFN_e(z[e, n])` for `z [E, N, D]`; weights as in `mix.expert_ffn`.

    ```mlir
    %h = mix.batched_expert_ffn %z up(%wi : tensor<512x16x256xf32>)
        down(%wo : tensor<512x256x16xf32>) {activation = #mix.activation<relu>}
        : tensor<512x?x256xf32> -> tensor<512x?x256xf32>
    ```
  }];
  let arguments = (ins Mix_Activations:$z, Variadic<Mix_Weight>:$gate,
                       Variadic<Mix_Weight>:$up, Variadic<Mix_Weight>:$down,
                       Mix_ActivationAttr:$activation);
  let results = (outs Mix_Activations:$h);
  let assemblyFormat = [{
    $z (`gate` `(` $gate^ `:` type($gate) `)`)?
    `up` `(` $up `:` type($up) `)` `down` `(` $down `:` type($down) `)`
    attr-dict `:` type($z) `->` type($h)
  }];
  let hasVerifier = 1;
}

def Mix_TokenEmitOp : Mix_Op<"token_emit", [Pure]> {
  let summary = "Mixture of Tokens: redistribute expert outputs to the group's tokens";
  let description = [{
    `out[b, s] = Σ_e emit_weights[b, s, e] · h[e, (b / G) · S + s]`, the inverse of
    `mix.token_mix`'s grouping.

    ```mlir
    %y = mix.token_emit %h, %m {group_size = 32}
        : tensor<512x?x256xf32>, tensor<?x?x512xf32> -> tensor<?x?x256xf32>
    ```
  }];
  let arguments = (ins Mix_Activations:$h, Mix_Activations:$emit_weights,
                       Mix_Positive:$group_size);
  let results = (outs Mix_Activations:$y);
  let assemblyFormat = [{
    $h `,` $emit_weights attr-dict `:` type($h) `,` type($emit_weights) `->` type($y)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Auxiliary results
//===----------------------------------------------------------------------===//

def Mix_LoadBalancingLossOp : Mix_Op<"load_balancing_loss", [Pure]> {
  let summary = "Switch load-balancing loss E · Σ_e f_e · P_e";
  let description = [{
    Hugging Face's `load_balancing_loss_func`: `f_e` is the fraction of the T·k assignments
    in `experts` that went to e, `P_e` the mean over tokens of `softmax(logits)[:, e]`.
    Dropped assignments (-1) count in the denominator but for no expert. 0 when T = 0.

    ```mlir
    %l = mix.load_balancing_loss %logits, %idx
        : tensor<?x8xf32>, tensor<?x2xi32> -> tensor<f32>
    ```
  }];
  let arguments = (ins Mix_Activations:$logits, Mix_Indices:$experts);
  let results = (outs Mix_Scalar:$loss);
  let assemblyFormat = [{
    $logits `,` $experts attr-dict `:` type($logits) `,` type($experts) `->` type($loss)
  }];
  let hasVerifier = 1;
}

def Mix_ZLossOp : Mix_Op<"z_loss", [Pure]> {
  let summary = "router z-loss: mean_t (logsumexp_e logits)²";
  let description = [{
    ST-MoE's router z-loss. 0 when T = 0.

    ```mlir
    %z = mix.z_loss %logits : tensor<?x8xf32> -> tensor<f32>
    ```
  }];
  let arguments = (ins Mix_Activations:$logits);
  let results = (outs Mix_Scalar:$loss);
  let assemblyFormat = "$logits attr-dict `:` type($logits) `->` type($loss)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Layer ops
//===----------------------------------------------------------------------===//

def Mix_TokenChoiceMoEOp : Mix_Op<"token_choice_moe",
    [Pure, AttrSizedOperandSegments, AttrSizedResultSegments]> {
  let summary = "a token-choice Mixture-of-Experts layer (Mixtral, Qwen-MoE, OLMoE, "
                "DeepSeek, Switch)";
  let description = [{
    `y_t = Σ_j w_{t,j} · FFN_{idx_{t,j}}(x_t) (+ shared(x_t))` with routing as `mix.route`
    (all its attributes apply), optional capacity as `mix.capacity` (`capacity` or
    `capacity_factor`; neither means dropless), experts as `mix.expert_ffn` (fp8 experts with
    their block scales and `weight_block`, MXFP4 experts with their e8m0 scales, as there) and optional
    shared experts as `mix.ffn`, optionally scaled by `sigmoid(x · shared_expert_gateᵀ)`.

    Optional results, in this order when present: `router_logits [T, E]`,
    `aux_loss` (`mix.load_balancing_loss`) and `z_loss` (`mix.z_loss`).

    Example (Mixtral-8x7B):
    ```mlir
    %y = mix.token_choice_moe %x router(%wr : tensor<8x4096xbf16>)
        experts gate(%w1 : tensor<8x14336x4096xbf16>) up(%w3 : tensor<8x14336x4096xbf16>)
        down(%w2 : tensor<8x4096x14336xbf16>)
        {k = 2, normalize, activation = #mix.activation<silu>}
        : tensor<?x4096xf32> -> tensor<?x4096xf32>
    ```
  }];
  let arguments = (ins
    Mix_Tokens:$x,
    Mix_Weight:$router,
    Optional<Mix_Weight>:$router_bias,
    Optional<Mix_Weight>:$selection_bias,
    Variadic<Mix_ExpertWeight>:$gate,
    Variadic<Mix_ExpertWeight>:$up,
    Variadic<Mix_ExpertWeight>:$down,
    Variadic<Mix_BlockScales>:$gate_scale,
    Variadic<Mix_BlockScales>:$up_scale,
    Variadic<Mix_BlockScales>:$down_scale,
    Optional<Mix_Weight>:$shared_gate,
    Optional<Mix_Weight>:$shared_up,
    Optional<Mix_Weight>:$shared_down,
    Optional<Mix_Weight>:$shared_expert_gate,
    Optional<Mix_F32Weight>:$gate_bias,
    Optional<Mix_F32Weight>:$up_bias,
    Optional<Mix_F32Weight>:$down_bias,
    Mix_Positive:$k,
    DefaultValuedAttr<Mix_ScoringAttr, "::mlir::mix::Scoring::softmax">:$scoring,
    UnitAttr:$normalize,
    DefaultValuedAttr<F64Attr, "0.0">:$norm_epsilon,
    DefaultValuedAttr<F64Attr, "1.0">:$scale,
    DefaultValuedAttr<Mix_Positive, "1">:$n_group,
    DefaultValuedAttr<Mix_Positive, "1">:$topk_group,
    DefaultValuedAttr<Mix_GroupScoreAttr, "::mlir::mix::GroupScore::max">:$group_score,
    OptionalAttr<Mix_NonNegative>:$capacity,
    OptionalAttr<F64Attr>:$capacity_factor,
    Mix_ActivationAttr:$activation,
    DefaultValuedAttr<F64Attr, "1.702">:$swiglu_alpha,
    DefaultValuedAttr<F64Attr, "7.0">:$swiglu_limit,
    OptionalAttr<DenseI64ArrayAttr>:$weight_block
  );
  let results = (outs Mix_Tokens:$output,
                      Optional<Mix_Activations>:$router_logits,
                      Optional<Mix_Scalar>:$aux_loss,
                      Optional<Mix_Scalar>:$z_loss);
  let assemblyFormat = [{
    $x `router` `(` $router `:` type($router) `)`
    (`router_bias` `(` $router_bias^ `:` type($router_bias) `)`)?
    (`selection_bias` `(` $selection_bias^ `:` type($selection_bias) `)`)?
    `experts` (`gate` `(` $gate^ `:` type($gate) `)`)?
    `up` `(` $up `:` type($up) `)` `down` `(` $down `:` type($down) `)`
    (`gate_scale` `(` $gate_scale^ `:` type($gate_scale) `)`)?
    (`up_scale` `(` $up_scale^ `:` type($up_scale) `)`)?
    (`down_scale` `(` $down_scale^ `:` type($down_scale) `)`)?
    (`shared_gate` `(` $shared_gate^ `:` type($shared_gate) `)`)?
    (`shared_up` `(` $shared_up^ `:` type($shared_up) `)`)?
    (`shared_down` `(` $shared_down^ `:` type($shared_down) `)`)?
    (`shared_expert_gate` `(` $shared_expert_gate^ `:` type($shared_expert_gate) `)`)?
    (`gate_bias` `(` $gate_bias^ `:` type($gate_bias) `)`)?
    (`up_bias` `(` $up_bias^ `:` type($up_bias) `)`)?
    (`down_bias` `(` $down_bias^ `:` type($down_bias) `)`)?
    attr-dict `:` type($x) `->` type($output)
    (`router_logits` type($router_logits)^)?
    (`aux_loss` type($aux_loss)^)?
    (`z_loss` type($z_loss)^)?
  }];
  let hasVerifier = 1;
}

def Mix_ExpertChoiceMoEOp : Mix_Op<"expert_choice_moe",
    [Pure, AttrSizedOperandSegments, AttrSizedResultSegments]> {
  let summary = "an expert-choice Mixture-of-Experts layer (Zhou et al., 2022)";
  let description = [{
    `mix.expert_choice` routing with `capacity_factor`, experts as `mix.expert_ffn`, the
    outputs combined with the chosen scores. Optional results: `router_logits` and `z_loss`.
    Not causal: for training and non-autoregressive use.

    ```mlir
    %y = mix.expert_choice_moe %x router(%wr : tensor<64x1024xf32>)
        experts up(%wi : tensor<64x4096x1024xf32>) down(%wo : tensor<64x1024x4096xf32>)
        {capacity_factor = 2.0, activation = #mix.activation<gelu>}
        : tensor<?x1024xf32> -> tensor<?x1024xf32>
    ```
  }];
  let arguments = (ins
    Mix_Tokens:$x,
    Mix_Weight:$router,
    Variadic<Mix_Weight>:$gate,
    Variadic<Mix_Weight>:$up,
    Variadic<Mix_Weight>:$down,
    F64Attr:$capacity_factor,
    Mix_ActivationAttr:$activation
  );
  let results = (outs Mix_Tokens:$output,
                      Optional<Mix_Activations>:$router_logits,
                      Optional<Mix_Scalar>:$z_loss);
  let assemblyFormat = [{
    $x `router` `(` $router `:` type($router) `)`
    `experts` (`gate` `(` $gate^ `:` type($gate) `)`)?
    `up` `(` $up `:` type($up) `)` `down` `(` $down `:` type($down) `)`
    attr-dict `:` type($x) `->` type($output)
    (`router_logits` type($router_logits)^)?
    (`z_loss` type($z_loss)^)?
  }];
  let hasVerifier = 1;
}

def Mix_MixtureOfTokensOp : Mix_Op<"mixture_of_tokens", [Pure, AttrSizedOperandSegments]> {
  let summary = "a Mixture-of-Tokens layer (Antoniak et al., 2023)";
  let description = [{
    On `x [B, S, D]`: `mix.token_mix` with `group_size`, `temperature` and `emit`, the
    experts as `mix.batched_expert_ffn`, and `mix.token_emit` (layers.md §6). `B` must be a
    multiple of `group_size` at run time.

    With `transition`, the same controller and experts run as a token-choice top-`k` layer
    (softmax over experts, plain selection, renormalized) on each token: the decoding mode,
    valid for any B.

    ```mlir
    %y = mix.mixture_of_tokens %x controller(%c : tensor<512x256xf32>)
        experts up(%wi : tensor<512x16x256xf32>) down(%wo : tensor<512x256x16xf32>)
        {group_size = 32, temperature = 1.0, activation = #mix.activation<relu>}
        : tensor<?x?x256xf32> -> tensor<?x?x256xf32>
    ```
  }];
  let arguments = (ins
    Mix_Tokens:$x,
    Mix_Weight:$controller,
    Variadic<Mix_Weight>:$gate,
    Variadic<Mix_Weight>:$up,
    Variadic<Mix_Weight>:$down,
    Mix_Positive:$group_size,
    F64Attr:$temperature,
    DefaultValuedAttr<Mix_EmitWeightsAttr, "::mlir::mix::EmitWeights::merge">:$emit,
    UnitAttr:$transition,
    OptionalAttr<Mix_Positive>:$k,
    Mix_ActivationAttr:$activation
  );
  let results = (outs Mix_Tokens:$output);
  let assemblyFormat = [{
    $x `controller` `(` $controller `:` type($controller) `)`
    `experts` (`gate` `(` $gate^ `:` type($gate) `)`)?
    `up` `(` $up `:` type($up) `)` `down` `(` $down `:` type($down) `)`
    attr-dict `:` type($x) `->` type($output)
  }];
  let hasVerifier = 1;
}

def Mix_MoVOp : Mix_Op<"mov", [Pure]> {
  let summary = "a Mixture-of-Vectors layer (MoV, Zadouri et al., 2023)";
  let description = [{
    `y = h ⊙ (softmax(x · routerᵀ) · vectors)`, the router optionally masked to its top-`k`
    without renormalization. `x [T, D]` is the router's input, `h [T, H]` the activation the
    (IA)3 vectors `[E, H]` scale.

    ```mlir
    %y = mix.mov %x, %h router(%wr : tensor<10x768xf32>) vectors(%v : tensor<10x2048xf32>)
        : tensor<?x768xf32>, tensor<?x2048xf32> -> tensor<?x2048xf32>
    ```
  }];
  let arguments = (ins Mix_Tokens:$x, Mix_Tokens:$h, Mix_Weight:$router,
                       Mix_Weight:$vectors, OptionalAttr<Mix_Positive>:$k);
  let results = (outs Mix_Tokens:$y);
  let assemblyFormat = [{
    $x `,` $h `router` `(` $router `:` type($router) `)`
    `vectors` `(` $vectors `:` type($vectors) `)` attr-dict `:` type($x) `,` type($h)
    `->` type($y)
  }];
  let hasVerifier = 1;
}

def Mix_MoLoRAOp : Mix_Op<"molora", [Pure]> {
  let summary = "a Mixture-of-LoRA layer (MoLoRA, Zadouri et al., 2023)";
  let description = [{
    `y = x · baseᵀ + (alpha / r) · Σ_e p_e · B_e · (A_e · x)` with
    `p = softmax(x · routerᵀ)` (optionally masked to its top-`k`), `lora_a [E, r, D_in]`,
    `lora_b [E, D_out, r]` and the frozen `base [D_out, D_in]`.

    ```mlir
    %y = mix.molora %x base(%w0 : tensor<768x768xf32>) router(%wr : tensor<10x768xf32>)
        lora_a(%a : tensor<10x4x768xf32>) lora_b(%b : tensor<10x768x4xf32>) {alpha = 16.0}
        : tensor<?x768xf32> -> tensor<?x768xf32>
    ```
  }];
  let arguments = (ins Mix_Tokens:$x, Mix_Weight:$base, Mix_Weight:$router,
                       Mix_Weight:$lora_a, Mix_Weight:$lora_b, F64Attr:$alpha,
                       OptionalAttr<Mix_Positive>:$k);
  let results = (outs Mix_Tokens:$y);
  let assemblyFormat = [{
    $x `base` `(` $base `:` type($base) `)` `router` `(` $router `:` type($router) `)`
    `lora_a` `(` $lora_a `:` type($lora_a) `)` `lora_b` `(` $lora_b `:` type($lora_b) `)`
    attr-dict `:` type($x) `->` type($y)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Fusion groups
//===----------------------------------------------------------------------===//

def Mix_KernelOp : Mix_Op<"kernel", [SingleBlock, RecursiveMemoryEffects]> {
  let summary = "a group of mix ops fused into one generated kernel";
  let description = [{
    Made by `mix-fuse`: the ops in the body run as one kernel, and only the values the
    body yields are materialized; values that stay inside (an expert FFN's per-assignment
    outputs consumed by the combine, a shared expert's output the routed experts add to)
    never reach memory as whole tensors. `kind` names the fusion pattern codegen emits;
    `tiles` (set by `mix-tile` from the target's tuning table) lists the tile
    configurations by token-count bucket, chosen at run time.

    ```mlir
    %y = mix.kernel "moe_experts" -> tensor<?x64xf32> {
      %z = mix.zeros_like %x : tensor<?x64xf32>
      %h = mix.expert_ffn %x, %off, %tok up(%u : tensor<8x32x64xf32>)
          down(%d : tensor<8x64x32xf32>) {activation = #mix.activation<relu>}
          : tensor<?x64xf32>, tensor<9xi32>, tensor<?xi32> -> tensor<?x64xf32>
      %c = mix.combine %h, %tok, %gate into %z
          : tensor<?x64xf32>, tensor<?xi32>, tensor<?xf32> into tensor<?x64xf32>
      mix.yield %c : tensor<?x64xf32>
    }
    ```
  }];
  let arguments = (ins StrAttr:$kind, OptionalAttr<ArrayAttr>:$tiles);
  let results = (outs Variadic<AnyType>:$results);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = [{
    $kind (`->` type($results)^)? $body attr-dict-with-keyword
  }];
  let hasVerifier = 1;
}

def Mix_YieldOp : Mix_Op<"yield", [Pure, Terminator, ReturnLike, HasParent<"KernelOp">]> {
  let summary = "the values a fused kernel materializes";
  let description = [{
    Terminates a `mix.kernel`; its operands become the kernel's results.

    ```mlir
    mix.yield %y : tensor<?x64xf32>
    ```
  }];
  let arguments = (ins Variadic<AnyType>:$values);
  let assemblyFormat = "attr-dict ($values^ `:` type($values))?";
}

#endif // MIX_OPS_TD
