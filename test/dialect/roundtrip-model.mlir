// RUN: mixtile-opt %s | mixtile-opt | FileCheck %s
// RUN: mixtile-opt %s --mlir-print-op-generic | mixtile-opt | FileCheck %s

// CHECK-LABEL: func.func @layer
// CHECK-SAME: mix.state, mix.symbols = ["B", "S", "", ""]
func.func @layer(%x: tensor<?x64xf32>, %pos: tensor<?xi32> {mix.symbols = ["T"]},
    %seq: tensor<?xi32> {mix.symbols = ["T"]},
    %kc: tensor<?x?x2x16xbf16> {mix.state, mix.symbols = ["B", "S", "", ""]},
    %vc: tensor<?x?x2x16xbf16> {mix.state, mix.symbols = ["B", "S", "", ""]},
    %ln: tensor<64xbf16>, %wq: tensor<64x64xbf16>, %wk: tensor<32x64xbf16>,
    %wv: tensor<32x64xbf16>, %qn: tensor<16xbf16>) -> tensor<?x64xf32> {
  // CHECK: mix.rms_norm %{{.*}}, %{{.*}} {epsilon = 1.000000e-05 : f64} : tensor<?x64xf32>, tensor<64xbf16> -> tensor<?x64xf32>
  %h = mix.rms_norm %x, %ln {epsilon = 1.0e-5} : tensor<?x64xf32>, tensor<64xbf16> -> tensor<?x64xf32>
  %q = mix.linear %h, %wq : tensor<?x64xf32>, tensor<64x64xbf16> -> tensor<?x64xf32>
  %k = mix.linear %h, %wk : tensor<?x64xf32>, tensor<32x64xbf16> -> tensor<?x32xf32>
  %v = mix.linear %h, %wv : tensor<?x64xf32>, tensor<32x64xbf16> -> tensor<?x32xf32>
  // A per-head norm on a [T, H, D] view.
  // CHECK: mix.rms_norm %{{.*}}, %{{.*}} {epsilon = 1.000000e-05 : f64} : tensor<?x4x16xf32>, tensor<16xbf16> -> tensor<?x4x16xf32>
  %c0 = arith.constant 0 : index
  %t = tensor.dim %q, %c0 : tensor<?x64xf32>
  %view = tensor.expand_shape %q [[0], [1, 2]] output_shape [%t, 4, 16] : tensor<?x64xf32> into tensor<?x4x16xf32>
  %normed = mix.rms_norm %view, %qn {epsilon = 1.0e-5} : tensor<?x4x16xf32>, tensor<16xbf16> -> tensor<?x4x16xf32>
  %q2 = tensor.collapse_shape %normed [[0], [1, 2]] : tensor<?x4x16xf32> into tensor<?x64xf32>
  // CHECK: mix.attention
  // CHECK-SAME: clip = 8.000000e+00 : f64, head_dim = 16 : i64, heads = 4 : i64
  // CHECK-SAME: inv_freq = array<f64: 1.000000e+00, 1.000000e-01>, kv_heads = 2 : i64
  // CHECK-SAME: rope_interleaved, rope_scale = 1.100000e+00 : f64, softmax_scale = 2.500000e-01 : f64, window = 4 : i64
  // CHECK-SAME: : tensor<?x64xf32>, tensor<?x32xf32>, tensor<?x32xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x?x2x16xbf16>, tensor<?x?x2x16xbf16> -> tensor<?x64xf32>
  %a = mix.attention %q2, %k, %v, %pos, %seq, %kc, %vc
      {heads = 4, kv_heads = 2, head_dim = 16, inv_freq = array<f64: 1.0, 0.1>,
       rope_scale = 1.1, rope_interleaved, softmax_scale = 0.25, clip = 8.0, window = 4}
      : tensor<?x64xf32>, tensor<?x32xf32>, tensor<?x32xf32>, tensor<?xi32>, tensor<?xi32>,
        tensor<?x?x2x16xbf16>, tensor<?x?x2x16xbf16> -> tensor<?x64xf32>
  %y = arith.addf %x, %a : tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// CHECK-LABEL: func.func @embed_and_head
func.func @embed_and_head(%ids: tensor<?xi32> {mix.symbols = ["T"]},
    %rows: tensor<?xi32> {mix.symbols = ["R"]}, %table: tensor<256x64xbf16>) -> tensor<?x256xf32> {
  // CHECK: mix.gather %{{.*}}[%{{.*}}] : tensor<256x64xbf16>, tensor<?xi32> -> tensor<?x64xf32>
  %x = mix.gather %table[%ids] : tensor<256x64xbf16>, tensor<?xi32> -> tensor<?x64xf32>
  // CHECK: mix.gather %{{.*}}[%{{.*}}] : tensor<?x64xf32>, tensor<?xi32> -> tensor<?x64xf32>
  %picked = mix.gather %x[%rows] : tensor<?x64xf32>, tensor<?xi32> -> tensor<?x64xf32>
  %logits = mix.linear %picked, %table : tensor<?x64xf32>, tensor<256x64xbf16> -> tensor<?x256xf32>
  return %logits : tensor<?x256xf32>
}

// Multi-head latent attention (DeepSeek): the latent split by mix.slice, a shared rotary key,
// value heads narrower than the query/key heads, the rotary dims at each head's end.
// CHECK-LABEL: func.func @mla
func.func @mla(%q: tensor<?x96xf32>, %latent: tensor<?x40xf32>, %kv: tensor<?x2x56xf32>,
    %pos: tensor<?xi32>, %seq: tensor<?xi32>,
    %kc: tensor<?x?x2x48xbf16> {mix.state}, %vc: tensor<?x?x2x24xbf16> {mix.state})
    -> tensor<?x48xf32> {
  // CHECK: mix.slice %{{.*}} {offset = 32 : i64} : tensor<?x40xf32> -> tensor<?x8xf32>
  %rope = mix.slice %latent {offset = 32} : tensor<?x40xf32> -> tensor<?x8xf32>
  // CHECK: mix.slice %{{.*}} {offset = 0 : i64} : tensor<?x2x56xf32> -> tensor<?x2x40xf32>
  %k3 = mix.slice %kv {offset = 0} : tensor<?x2x56xf32> -> tensor<?x2x40xf32>
  %k = tensor.collapse_shape %k3 [[0], [1, 2]] : tensor<?x2x40xf32> into tensor<?x80xf32>
  %vv = mix.slice %kv {offset = 32} : tensor<?x2x56xf32> -> tensor<?x2x24xf32>
  %vflat = tensor.collapse_shape %vv [[0], [1, 2]] : tensor<?x2x24xf32> into tensor<?x48xf32>
  // CHECK: mix.attention %{{.*}} rope_key %{{.*}} : tensor<?x8xf32>
  // CHECK-SAME: head_dim = 48 : i64, heads = 2 : i64
  // CHECK-SAME: rope_interleaved, rope_offset = 40 : i64, softmax_scale = 2.500000e-01 : f64, v_head_dim = 24 : i64
  // CHECK-SAME: -> tensor<?x48xf32>
  %a = mix.attention %q, %k, %vflat, %pos, %seq, %kc, %vc rope_key %rope : tensor<?x8xf32>
      {heads = 2, kv_heads = 2, head_dim = 48, v_head_dim = 24, rope_offset = 40,
       inv_freq = array<f64: 1.0, 0.1, 0.01, 0.001>, rope_interleaved, softmax_scale = 0.25}
      : tensor<?x96xf32>, tensor<?x80xf32>, tensor<?x48xf32>, tensor<?xi32>, tensor<?xi32>,
        tensor<?x?x2x48xbf16>, tensor<?x?x2x24xbf16> -> tensor<?x48xf32>
  return %a : tensor<?x48xf32>
}

// Multi-head latent attention over a cache of latents: 4 heads of 8 nope + 4 rope dims, values
// of 8, a latent of 16; the cache holds latent and rotary key, [B, S, 1, 20].
// CHECK-LABEL: func.func @latent_attention
func.func @latent_attention(%q: tensor<?x48xf32>, %latent: tensor<?x16xf32>,
    %rope: tensor<?x4xf32>, %kvb: tensor<64x16xbf16>, %pos: tensor<?xi32>, %seq: tensor<?xi32>,
    %cache: tensor<?x?x1x20xbf16> {mix.state}) -> tensor<?x32xf32> {
  // CHECK: mix.latent_attention %arg0, %arg1, %arg2, %arg3, %arg4, %arg5, %arg6
  // CHECK-SAME: heads = 4 : i64, inv_freq = array<f64: 1.000000e+00, 1.000000e-01>, nope_dim = 8 : i64
  // CHECK-SAME: rope_interleaved, rope_scale = 1.100000e+00 : f64, softmax_scale = 2.500000e-01 : f64, v_head_dim = 8 : i64, window = 3 : i64
  // CHECK-SAME: : tensor<?x48xf32>, tensor<?x16xf32>, tensor<?x4xf32>, tensor<64x16xbf16>, tensor<?xi32>, tensor<?xi32>, tensor<?x?x1x20xbf16> -> tensor<?x32xf32>
  %a = mix.latent_attention %q, %latent, %rope, %kvb, %pos, %seq, %cache
      {heads = 4, nope_dim = 8, v_head_dim = 8, inv_freq = array<f64: 1.0, 0.1>,
       rope_scale = 1.1, rope_interleaved, softmax_scale = 0.25, window = 3}
      : tensor<?x48xf32>, tensor<?x16xf32>, tensor<?x4xf32>, tensor<64x16xbf16>, tensor<?xi32>,
        tensor<?xi32>, tensor<?x?x1x20xbf16> -> tensor<?x32xf32>
  return %a : tensor<?x32xf32>
}

// gpt-oss: a learned sink logit per head; an expert weight the checkpoint stores transposed and
// interleaved (mix.stored).
// CHECK-LABEL: func.func @sinks
// CHECK-SAME: mix.stored = {name = "experts.gate_up_proj", offset = 1 : i64, stride = 2 : i64, transpose}
func.func @sinks(%q: tensor<?x64xf32>, %k: tensor<?x32xf32>, %v: tensor<?x32xf32>,
    %pos: tensor<?xi32>, %seq: tensor<?xi32>,
    %kc: tensor<?x?x2x16xbf16> {mix.state}, %vc: tensor<?x?x2x16xbf16> {mix.state},
    %s: tensor<4xf32>,
    %up: tensor<2x8x64xbf16> {mix.name = "experts.gate_up_proj[up]",
                              mix.stored = {name = "experts.gate_up_proj", stride = 2, offset = 1, transpose}})
    -> tensor<?x64xf32> {
  // CHECK: mix.attention %{{.*}} sinks %{{.*}} : tensor<4xf32>
  // CHECK-SAME: window = 3 : i64
  %a = mix.attention %q, %k, %v, %pos, %seq, %kc, %vc sinks %s : tensor<4xf32>
      {heads = 4, kv_heads = 2, head_dim = 16, inv_freq = array<f64: 1.0, 0.1>,
       softmax_scale = 0.25, window = 3}
      : tensor<?x64xf32>, tensor<?x32xf32>, tensor<?x32xf32>, tensor<?xi32>, tensor<?xi32>,
        tensor<?x?x2x16xbf16>, tensor<?x?x2x16xbf16> -> tensor<?x64xf32>
  return %a : tensor<?x64xf32>
}
