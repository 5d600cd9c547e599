// RUN: mixtile-opt %s --mix-fuse --split-input-file | FileCheck %s

// The router keeps its capacity drop; the shared expert, its sigmoid gate, the routed
// expert FFN and the combine form one kernel; the two losses share one.
// CHECK-LABEL: func.func @token_choice
// CHECK: %[[ROUTER:.*]]:3 = mix.kernel "router" -> tensor<?x1xf32>, tensor<?x8xf32>, tensor<?x1xi32> {
// CHECK-NEXT: %[[W:.*]], %[[IDX:.*]], %[[L:.*]] = mix.route
// CHECK-NEXT: %[[KEPT:.*]] = mix.capacity %[[IDX]]
// CHECK-NEXT: mix.yield %[[W]], %[[L]], %[[KEPT]]
// CHECK-NEXT: }
// CHECK: %[[SEG:.*]]:3 = mix.kernel "dispatch" -> tensor<9xi32>, tensor<?xi32>, tensor<?xf32> {
// CHECK-NEXT: mix.dispatch %[[ROUTER]]#0, %[[ROUTER]]#2
// CHECK: %[[Y:.*]] = mix.kernel "moe_experts" -> tensor<?x64xf32> {
// CHECK-NEXT: %[[S:.*]] = mix.ffn
// CHECK-NEXT: %[[SG:.*]] = mix.sigmoid_gate %{{.*}}, %{{.*}}, %[[S]]
// CHECK-NEXT: %[[H:.*]] = mix.expert_ffn %{{.*}}, %[[SEG]]#0, %[[SEG]]#1
// CHECK-NEXT: %[[C:.*]] = mix.combine %[[H]], %[[SEG]]#1, %[[SEG]]#2 into %[[SG]]
// CHECK-NEXT: mix.yield %[[C]] : tensor<?x64xf32>
// CHECK-NEXT: }
// CHECK: %[[LOSS:.*]]:2 = mix.kernel "aux_losses" -> tensor<f32>, tensor<f32> {
// CHECK-NEXT: mix.load_balancing_loss %[[ROUTER]]#1, %[[ROUTER]]#2
// CHECK-NEXT: mix.z_loss %[[ROUTER]]#1
// CHECK: return %[[Y]], %[[LOSS]]#0, %[[LOSS]]#1
func.func @token_choice(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>,
    %su: tensor<48x64xf32>, %sd: tensor<64x48xf32>, %seg: tensor<1x64xf32>) -> (tensor<?x64xf32>, tensor<f32>, tensor<f32>) {
  %w, %idx, %l = mix.route %x, %r {k = 1} : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x1xf32>, tensor<?x1xi32>, tensor<?x8xf32>
  %kept = mix.capacity %idx {num_experts = 8, capacity = 3} : tensor<?x1xi32> -> tensor<?x1xi32>
  %s = mix.ffn %x up(%su : tensor<48x64xf32>) down(%sd : tensor<64x48xf32>) {activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  %sg = mix.sigmoid_gate %x, %seg, %s : tensor<?x64xf32>, tensor<1x64xf32>, tensor<?x64xf32> -> tensor<?x64xf32>
  %off, %tok, %gate = mix.dispatch %w, %kept {num_experts = 8} : tensor<?x1xf32>, tensor<?x1xi32> -> tensor<9xi32>, tensor<?xi32>, tensor<?xf32>
  %h = mix.expert_ffn %x, %off, %tok up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>) {activation = #mix.activation<relu>}
      : tensor<?x64xf32>, tensor<9xi32>, tensor<?xi32> -> tensor<?x64xf32>
  %y = mix.combine %h, %tok, %gate into %sg : tensor<?x64xf32>, tensor<?xi32>, tensor<?xf32> into tensor<?x64xf32>
  %a = mix.load_balancing_loss %l, %kept : tensor<?x8xf32>, tensor<?x1xi32> -> tensor<f32>
  %z = mix.z_loss %l : tensor<?x8xf32> -> tensor<f32>
  return %y, %a, %z : tensor<?x64xf32>, tensor<f32>, tensor<f32>
}

// -----

// An expert output also returned by the function must be materialized: it is not fused
// into the combine's kernel, and the router logits escape the router kernel.
// CHECK-LABEL: func.func @escaping_expert_output
// CHECK: %[[R:.*]]:3 = mix.kernel "router"
// CHECK: mix.kernel "dispatch"
// CHECK: %[[H:.*]] = mix.kernel "expert_ffn" -> tensor<?x64xf32> {
// CHECK: %[[Y:.*]] = mix.kernel "combine" -> tensor<?x64xf32> {
// CHECK-NEXT: mix.zeros_like
// CHECK-NEXT: mix.combine %[[H]]
// CHECK: return %[[Y]], %[[H]], %[[R]]#2
func.func @escaping_expert_output(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>)
    -> (tensor<?x64xf32>, tensor<?x64xf32>, tensor<?x8xf32>) {
  %w, %idx, %l = mix.route %x, %r {k = 2} : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>
  %off, %tok, %gate = mix.dispatch %w, %idx {num_experts = 8} : tensor<?x2xf32>, tensor<?x2xi32> -> tensor<9xi32>, tensor<?xi32>, tensor<?xf32>
  %h = mix.expert_ffn %x, %off, %tok up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>) {activation = #mix.activation<relu>}
      : tensor<?x64xf32>, tensor<9xi32>, tensor<?xi32> -> tensor<?x64xf32>
  %z = mix.zeros_like %x : tensor<?x64xf32>
  %y = mix.combine %h, %tok, %gate into %z : tensor<?x64xf32>, tensor<?xi32>, tensor<?xf32> into tensor<?x64xf32>
  return %y, %h, %l : tensor<?x64xf32>, tensor<?x64xf32>, tensor<?x8xf32>
}

// -----

// MoLoRA: the frozen base GEMM and the adapter mixture add up in one kernel; the router
// probabilities come from their own.
// CHECK-LABEL: func.func @molora
// CHECK: %[[P:.*]] = mix.kernel "soft_route"
// CHECK: mix.kernel "lora" -> tensor<?x32xf32> {
// CHECK-NEXT: %[[B:.*]] = mix.linear
// CHECK-NEXT: mix.mix_lora %{{.*}}, %[[P]], %{{.*}}, %{{.*}} into %[[B]]
func.func @molora(%x: tensor<?x64xf32>, %r: tensor<10x64xf32>, %w0: tensor<32x64xf32>, %a: tensor<10x4x64xf32>, %b: tensor<10x32x4xf32>) -> tensor<?x32xf32> {
  %p = mix.soft_route %x, %r : tensor<?x64xf32>, tensor<10x64xf32> -> tensor<?x10xf32>
  %base = mix.linear %x, %w0 : tensor<?x64xf32>, tensor<32x64xf32> -> tensor<?x32xf32>
  %y = mix.mix_lora %x, %p, %a, %b into %base {alpha = 8.0} : tensor<?x64xf32>, tensor<?x10xf32>, tensor<10x4x64xf32>, tensor<10x32x4xf32> into tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}

// -----

// Mixture of Tokens: three kernels, in order.
// CHECK-LABEL: func.func @mixture_of_tokens
// CHECK: mix.kernel "token_mix"
// CHECK: mix.kernel "batched_expert_ffn"
// CHECK: mix.kernel "token_emit"
func.func @mixture_of_tokens(%x: tensor<?x?x64xf32>, %c: tensor<32x64xf32>, %u: tensor<32x16x64xf32>, %d: tensor<32x64x16xf32>) -> tensor<?x?x64xf32> {
  %z, %m = mix.token_mix %x, %c {group_size = 4, temperature = 1.0} : tensor<?x?x64xf32>, tensor<32x64xf32> -> tensor<32x?x64xf32>, tensor<?x?x32xf32>
  %h = mix.batched_expert_ffn %z up(%u : tensor<32x16x64xf32>) down(%d : tensor<32x64x16xf32>) {activation = #mix.activation<relu>} : tensor<32x?x64xf32> -> tensor<32x?x64xf32>
  %y = mix.token_emit %h, %m {group_size = 4} : tensor<32x?x64xf32>, tensor<?x?x32xf32> -> tensor<?x?x64xf32>
  return %y : tensor<?x?x64xf32>
}
