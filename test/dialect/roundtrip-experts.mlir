// RUN: mixtile-opt %s | mixtile-opt | FileCheck %s
// RUN: mixtile-opt %s --mlir-print-op-generic | mixtile-opt | FileCheck %s

// CHECK-LABEL: func.func @expert_ffn_stacked
func.func @expert_ffn_stacked(%x: tensor<?x64xf32>, %o: tensor<5xi32>, %t: tensor<?xi32>,
    %g: tensor<4x32x64xbf16>, %u: tensor<4x32x64xbf16>, %d: tensor<4x64x32xbf16>) -> tensor<?x64xf32> {
  // CHECK: mix.expert_ffn %{{.*}}, %{{.*}}, %{{.*}} gate(%{{.*}} : tensor<4x32x64xbf16>) up(%{{.*}} : tensor<4x32x64xbf16>) down(%{{.*}} : tensor<4x64x32xbf16>) {activation = #mix.activation<silu>}
  // CHECK-SAME: : tensor<?x64xf32>, tensor<5xi32>, tensor<?xi32> -> tensor<?x64xf32>
  %h = mix.expert_ffn %x, %o, %t gate(%g : tensor<4x32x64xbf16>) up(%u : tensor<4x32x64xbf16>)
      down(%d : tensor<4x64x32xbf16>) {activation = #mix.activation<silu>}
      : tensor<?x64xf32>, tensor<5xi32>, tensor<?xi32> -> tensor<?x64xf32>
  return %h : tensor<?x64xf32>
}

// CHECK-LABEL: func.func @expert_ffn_per_expert_plain
func.func @expert_ffn_per_expert_plain(%x: tensor<?x8xf32>, %o: tensor<3xi32>, %t: tensor<?xi32>,
    %u0: tensor<16x8xf16>, %u1: tensor<16x8xf16>, %d0: tensor<8x16xf16>, %d1: tensor<8x16xf16>) -> tensor<?x8xf32> {
  // CHECK: mix.expert_ffn %{{.*}}, %{{.*}}, %{{.*}} up(%{{.*}}, %{{.*}} : tensor<16x8xf16>, tensor<16x8xf16>) down(%{{.*}}, %{{.*}} : tensor<8x16xf16>, tensor<8x16xf16>) {activation = #mix.activation<gelu_tanh>}
  %h = mix.expert_ffn %x, %o, %t up(%u0, %u1 : tensor<16x8xf16>, tensor<16x8xf16>)
      down(%d0, %d1 : tensor<8x16xf16>, tensor<8x16xf16>) {activation = #mix.activation<gelu_tanh>}
      : tensor<?x8xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x8xf32>
  return %h : tensor<?x8xf32>
}

// CHECK-LABEL: func.func @combine_and_zeros
func.func @combine_and_zeros(%x: tensor<?x64xf32>, %h: tensor<?x64xf32>, %t: tensor<?xi32>, %g: tensor<?xf32>)
    -> tensor<?x64xf32> {
  // CHECK: %[[Z:.*]] = mix.zeros_like %{{.*}} : tensor<?x64xf32>
  %z = mix.zeros_like %x : tensor<?x64xf32>
  // CHECK: mix.combine %{{.*}}, %{{.*}}, %{{.*}} into %[[Z]] : tensor<?x64xf32>, tensor<?xi32>, tensor<?xf32> into tensor<?x64xf32>
  %y = mix.combine %h, %t, %g into %z : tensor<?x64xf32>, tensor<?xi32>, tensor<?xf32> into tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// CHECK-LABEL: func.func @shared_expert
func.func @shared_expert(%x: tensor<?x64xf32>, %g: tensor<96x64xf32>, %u: tensor<96x64xf32>,
    %d: tensor<64x96xf32>, %sg: tensor<1x64xf32>) -> tensor<?x64xf32> {
  // CHECK: %[[S:.*]] = mix.ffn %{{.*}} gate(%{{.*}} : tensor<96x64xf32>) up(%{{.*}} : tensor<96x64xf32>) down(%{{.*}} : tensor<64x96xf32>) {activation = #mix.activation<silu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  %s = mix.ffn %x gate(%g : tensor<96x64xf32>) up(%u : tensor<96x64xf32>) down(%d : tensor<64x96xf32>)
      {activation = #mix.activation<silu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  // CHECK: mix.sigmoid_gate %{{.*}}, %{{.*}}, %[[S]] : tensor<?x64xf32>, tensor<1x64xf32>, tensor<?x64xf32> -> tensor<?x64xf32>
  %y = mix.sigmoid_gate %x, %sg, %s : tensor<?x64xf32>, tensor<1x64xf32>, tensor<?x64xf32> -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// CHECK-LABEL: func.func @plain_ffn_and_linear
func.func @plain_ffn_and_linear(%x: tensor<?x64xf32>, %u: tensor<96x64xbf16>, %d: tensor<64x96xbf16>,
    %w: tensor<32x64xf32>, %b: tensor<32xf32>) -> (tensor<?x64xf32>, tensor<?x32xf32>) {
  // CHECK: mix.ffn %{{.*}} up(%{{.*}} : tensor<96x64xbf16>) down(%{{.*}} : tensor<64x96xbf16>) {activation = #mix.activation<relu>}
  %s = mix.ffn %x up(%u : tensor<96x64xbf16>) down(%d : tensor<64x96xbf16>)
      {activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  // CHECK: mix.linear %{{.*}}, %{{.*}} bias(%{{.*}} : tensor<32xf32>) : tensor<?x64xf32>, tensor<32x64xf32> -> tensor<?x32xf32>
  %y = mix.linear %x, %w bias(%b : tensor<32xf32>) : tensor<?x64xf32>, tensor<32x64xf32> -> tensor<?x32xf32>
  return %s, %y : tensor<?x64xf32>, tensor<?x32xf32>
}

// CHECK-LABEL: func.func @lightweight_primitives
func.func @lightweight_primitives(%x: tensor<?x64xf32>, %h: tensor<?x128xf32>, %r: tensor<10x64xf32>,
    %v: tensor<10x128xf32>, %a: tensor<10x4x64xf32>, %b: tensor<10x32x4xf32>, %base: tensor<?x32xf32>)
    -> (tensor<?x128xf32>, tensor<?x32xf32>) {
  // CHECK: %[[P:.*]] = mix.soft_route %{{.*}}, %{{.*}} {k = 3 : i64} : tensor<?x64xf32>, tensor<10x64xf32> -> tensor<?x10xf32>
  %p = mix.soft_route %x, %r {k = 3} : tensor<?x64xf32>, tensor<10x64xf32> -> tensor<?x10xf32>
  // CHECK: mix.mix_vectors %{{.*}}, %[[P]], %{{.*}} : tensor<?x128xf32>, tensor<?x10xf32>, tensor<10x128xf32> -> tensor<?x128xf32>
  %y = mix.mix_vectors %h, %p, %v : tensor<?x128xf32>, tensor<?x10xf32>, tensor<10x128xf32> -> tensor<?x128xf32>
  // CHECK: mix.mix_lora %{{.*}}, %[[P]], %{{.*}}, %{{.*}} into %{{.*}} {alpha = 1.600000e+01 : f64}
  // CHECK-SAME: : tensor<?x64xf32>, tensor<?x10xf32>, tensor<10x4x64xf32>, tensor<10x32x4xf32> into tensor<?x32xf32>
  %l = mix.mix_lora %x, %p, %a, %b into %base {alpha = 16.0}
      : tensor<?x64xf32>, tensor<?x10xf32>, tensor<10x4x64xf32>, tensor<10x32x4xf32> into tensor<?x32xf32>
  return %y, %l : tensor<?x128xf32>, tensor<?x32xf32>
}

// CHECK-LABEL: func.func @mixture_of_tokens_primitives
func.func @mixture_of_tokens_primitives(%x: tensor<?x?x64xf32>, %c: tensor<32x64xf32>,
    %u: tensor<32x16x64xf32>, %d: tensor<32x64x16xf32>) -> tensor<?x?x64xf32> {
  // CHECK: %[[Z:.*]], %[[M:.*]] = mix.token_mix %{{.*}}, %{{.*}} {emit = #mix.emit<expert_softmax>, group_size = 4 : i64, temperature = 5.000000e-01 : f64}
  // CHECK-SAME: : tensor<?x?x64xf32>, tensor<32x64xf32> -> tensor<32x?x64xf32>, tensor<?x?x32xf32>
  %z, %m = mix.token_mix %x, %c {group_size = 4, temperature = 0.5, emit = #mix.emit<expert_softmax>}
      : tensor<?x?x64xf32>, tensor<32x64xf32> -> tensor<32x?x64xf32>, tensor<?x?x32xf32>
  // CHECK: %[[H:.*]] = mix.batched_expert_ffn %[[Z]] up(%{{.*}} : tensor<32x16x64xf32>) down(%{{.*}} : tensor<32x64x16xf32>) {activation = #mix.activation<relu>} : tensor<32x?x64xf32> -> tensor<32x?x64xf32>
  %h = mix.batched_expert_ffn %z up(%u : tensor<32x16x64xf32>) down(%d : tensor<32x64x16xf32>)
      {activation = #mix.activation<relu>} : tensor<32x?x64xf32> -> tensor<32x?x64xf32>
  // CHECK: mix.token_emit %[[H]], %[[M]] {group_size = 4 : i64} : tensor<32x?x64xf32>, tensor<?x?x32xf32> -> tensor<?x?x64xf32>
  %y = mix.token_emit %h, %m {group_size = 4} : tensor<32x?x64xf32>, tensor<?x?x32xf32> -> tensor<?x?x64xf32>
  return %y : tensor<?x?x64xf32>
}

// gpt-oss: expert biases and the clamped SwiGLU.
// CHECK-LABEL: func.func @expert_ffn_gpt_oss
func.func @expert_ffn_gpt_oss(%x: tensor<?x64xf32>, %o: tensor<5xi32>, %t: tensor<?xi32>,
    %g: tensor<4x32x64xbf16>, %u: tensor<4x32x64xbf16>, %d: tensor<4x64x32xbf16>,
    %gb: tensor<4x32xf32>, %ub: tensor<4x32xf32>, %db: tensor<4x64xf32>) -> tensor<?x64xf32> {
  // CHECK: mix.expert_ffn %{{.*}}, %{{.*}}, %{{.*}} gate(%{{.*}} : tensor<4x32x64xbf16>) up(%{{.*}} : tensor<4x32x64xbf16>) down(%{{.*}} : tensor<4x64x32xbf16>) gate_bias(%{{.*}} : tensor<4x32xf32>) up_bias(%{{.*}} : tensor<4x32xf32>) down_bias(%{{.*}} : tensor<4x64xf32>) {activation = #mix.activation<swiglu_oai>, swiglu_limit = 5.000000e+00 : f64}
  %h = mix.expert_ffn %x, %o, %t gate(%g : tensor<4x32x64xbf16>) up(%u : tensor<4x32x64xbf16>)
      down(%d : tensor<4x64x32xbf16>) gate_bias(%gb : tensor<4x32xf32>) up_bias(%ub : tensor<4x32xf32>)
      down_bias(%db : tensor<4x64xf32>) {activation = #mix.activation<swiglu_oai>, swiglu_limit = 5.0 : f64}
      : tensor<?x64xf32>, tensor<5xi32>, tensor<?xi32> -> tensor<?x64xf32>
  return %h : tensor<?x64xf32>
}
