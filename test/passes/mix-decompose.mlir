// RUN: mixtile-opt %s --mix-decompose --split-input-file | FileCheck %s

// Mixtral: route → dispatch → expert_ffn → combine into zeros.
// CHECK-LABEL: func.func @mixtral
// CHECK-SAME: (%[[X:[^:]*]]: tensor<?x64xf32>, %[[R:[^:]*]]: tensor<8x64xf32>, %[[G:[^:]*]]: tensor<8x32x64xf32>, %[[U:[^:]*]]: tensor<8x32x64xf32>, %[[D:[^:]*]]: tensor<8x64x32xf32>)
// CHECK: %[[W:.*]], %[[IDX:.*]], %{{.*}} = mix.route %[[X]], %[[R]] {k = 2 : i64, normalize}
// CHECK: %[[Z:.*]] = mix.zeros_like %[[X]]
// CHECK: %[[OFF:.*]], %[[TOK:.*]], %[[GATE:.*]] = mix.dispatch %[[W]], %[[IDX]] {num_experts = 8 : i64} : tensor<?x2xf32>, tensor<?x2xi32> -> tensor<9xi32>, tensor<?xi32>, tensor<?xf32>
// CHECK: %[[H:.*]] = mix.expert_ffn %[[X]], %[[OFF]], %[[TOK]] gate(%[[G]] : tensor<8x32x64xf32>) up(%[[U]] : tensor<8x32x64xf32>) down(%[[D]] : tensor<8x64x32xf32>) {activation = #mix.activation<silu>}
// CHECK: %[[Y:.*]] = mix.combine %[[H]], %[[TOK]], %[[GATE]] into %[[Z]]
// CHECK: return %[[Y]]
// CHECK-NOT: mix.token_choice_moe
func.func @mixtral(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %g: tensor<8x32x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) -> tensor<?x64xf32> {
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts gate(%g : tensor<8x32x64xf32>) up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>)
      {k = 2, normalize, activation = #mix.activation<silu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// DeepSeek-V3: every routing attribute carries over; shared experts are the combine's init.
// CHECK-LABEL: func.func @deepseek_v3
// CHECK: %[[W:.*]], %[[IDX:.*]], %{{.*}} = mix.route %[[X:.*]], %{{.*}} selection_bias(%{{.*}} : tensor<16xf32>) {group_score = #mix.group_score<top2_sum>, k = 4 : i64, n_group = 4 : i64, norm_epsilon = 9.9999999999999995E-21 : f64, normalize, scale = 2.500000e+00 : f64, scoring = #mix.scoring<sigmoid>, topk_group = 2 : i64}
// CHECK: %[[S:.*]] = mix.ffn %[[X]] gate(%{{.*}} : tensor<48x64xbf16>) up(%{{.*}} : tensor<48x64xbf16>) down(%{{.*}} : tensor<64x48xbf16>) {activation = #mix.activation<silu>}
// CHECK: mix.dispatch %[[W]], %[[IDX]] {num_experts = 16 : i64}
// CHECK: mix.expert_ffn
// CHECK: mix.combine %{{.*}}, %{{.*}}, %{{.*}} into %[[S]]
func.func @deepseek_v3(%x: tensor<?x64xf32>, %r: tensor<16x64xf32>, %b: tensor<16xf32>, %g: tensor<16x32x64xbf16>, %u: tensor<16x32x64xbf16>, %d: tensor<16x64x32xbf16>,
    %sg: tensor<48x64xbf16>, %su: tensor<48x64xbf16>, %sd: tensor<64x48xbf16>) -> tensor<?x64xf32> {
  %y = mix.token_choice_moe %x router(%r : tensor<16x64xf32>) selection_bias(%b : tensor<16xf32>)
      experts gate(%g : tensor<16x32x64xbf16>) up(%u : tensor<16x32x64xbf16>) down(%d : tensor<16x64x32xbf16>)
      shared_gate(%sg : tensor<48x64xbf16>) shared_up(%su : tensor<48x64xbf16>) shared_down(%sd : tensor<64x48xbf16>)
      {k = 4, scoring = #mix.scoring<sigmoid>, n_group = 4, topk_group = 2, group_score = #mix.group_score<top2_sum>,
       normalize, norm_epsilon = 1.0e-20, scale = 2.5, activation = #mix.activation<silu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// Qwen2-MoE: the shared expert is gated by sigmoid(x · w); the optional results map to
// the router logits and the two losses over the post-capacity choices.
// CHECK-LABEL: func.func @qwen2_switch_capacity_aux
// CHECK: %{{.*}}, %[[IDX:.*]], %[[LOGITS:.*]] = mix.route
// CHECK: %[[KEPT:.*]] = mix.capacity %[[IDX]] {capacity = 3 : i64, num_experts = 8 : i64}
// CHECK: %[[S:.*]] = mix.ffn
// CHECK: %[[SG:.*]] = mix.sigmoid_gate %{{.*}}, %{{.*}}, %[[S]]
// CHECK: mix.dispatch %{{.*}}, %[[KEPT]]
// CHECK: %[[Y:.*]] = mix.combine %{{.*}}, %{{.*}}, %{{.*}} into %[[SG]]
// CHECK: %[[AUX:.*]] = mix.load_balancing_loss %[[LOGITS]], %[[KEPT]]
// CHECK: %[[ZL:.*]] = mix.z_loss %[[LOGITS]]
// CHECK: return %[[Y]], %[[LOGITS]], %[[AUX]], %[[ZL]]
func.func @qwen2_switch_capacity_aux(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>,
    %su: tensor<48x64xf32>, %sd: tensor<64x48xf32>, %seg: tensor<1x64xf32>) -> (tensor<?x64xf32>, tensor<?x8xf32>, tensor<f32>, tensor<f32>) {
  %y, %l, %a, %z = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>)
      shared_up(%su : tensor<48x64xf32>) shared_down(%sd : tensor<64x48xf32>) shared_expert_gate(%seg : tensor<1x64xf32>)
      {k = 1, capacity = 3, activation = #mix.activation<relu>}
      : tensor<?x64xf32> -> tensor<?x64xf32> router_logits tensor<?x8xf32> aux_loss tensor<f32> z_loss tensor<f32>
  return %y, %l, %a, %z : tensor<?x64xf32>, tensor<?x8xf32>, tensor<f32>, tensor<f32>
}

// -----

// CHECK-LABEL: func.func @expert_choice
// CHECK: %[[OFF:.*]], %[[TOK:.*]], %[[GATE:.*]], %[[LOGITS:.*]] = mix.expert_choice %[[X:.*]], %{{.*}} {capacity_factor = 2.000000e+00 : f64} : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<9xi32>, tensor<?xi32>, tensor<?xf32>, tensor<?x8xf32>
// CHECK: %[[H:.*]] = mix.expert_ffn %[[X]], %[[OFF]], %[[TOK]]
// CHECK: %[[Z:.*]] = mix.zeros_like %[[X]]
// CHECK: %[[Y:.*]] = mix.combine %[[H]], %[[TOK]], %[[GATE]] into %[[Z]]
// CHECK: %[[ZL:.*]] = mix.z_loss %[[LOGITS]]
// CHECK: return %[[Y]], %[[ZL]]
func.func @expert_choice(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) -> (tensor<?x64xf32>, tensor<f32>) {
  %y, %z = mix.expert_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>)
      {capacity_factor = 2.0, activation = #mix.activation<gelu>} : tensor<?x64xf32> -> tensor<?x64xf32> z_loss tensor<f32>
  return %y, %z : tensor<?x64xf32>, tensor<f32>
}

// -----

// CHECK-LABEL: func.func @mixture_of_tokens
// CHECK: %[[Z:.*]], %[[M:.*]] = mix.token_mix %{{.*}}, %{{.*}} {group_size = 4 : i64, temperature = 5.000000e-01 : f64} : tensor<8x?x64xf32>, tensor<32x64xf32> -> tensor<32x?x64xf32>, tensor<8x?x32xf32>
// CHECK: %[[H:.*]] = mix.batched_expert_ffn %[[Z]] up(%{{.*}} : tensor<32x16x64xf32>) down(%{{.*}} : tensor<32x64x16xf32>) {activation = #mix.activation<relu>}
// CHECK: %[[Y:.*]] = mix.token_emit %[[H]], %[[M]] {group_size = 4 : i64} : tensor<32x?x64xf32>, tensor<8x?x32xf32> -> tensor<8x?x64xf32>
// CHECK: return %[[Y]]
func.func @mixture_of_tokens(%x: tensor<8x?x64xf32>, %c: tensor<32x64xf32>, %u: tensor<32x16x64xf32>, %d: tensor<32x64x16xf32>) -> tensor<8x?x64xf32> {
  %y = mix.mixture_of_tokens %x controller(%c : tensor<32x64xf32>) experts up(%u : tensor<32x16x64xf32>) down(%d : tensor<32x64x16xf32>)
      {group_size = 4, temperature = 0.5, activation = #mix.activation<relu>} : tensor<8x?x64xf32> -> tensor<8x?x64xf32>
  return %y : tensor<8x?x64xf32>
}

// -----

// Transition mode: the flattened tokens take the token-choice path, renormalized top-k.
// CHECK-LABEL: func.func @mixture_of_tokens_transition
// CHECK-SAME: (%[[X:[^:]*]]: tensor<?x?x64xf32>
// CHECK: %[[FLAT:.*]] = tensor.collapse_shape %[[X]] {{\[\[}}0, 1], [2]] : tensor<?x?x64xf32> into tensor<?x64xf32>
// CHECK: mix.route %[[FLAT]], %{{.*}} {k = 2 : i64, normalize}
// CHECK: %[[OUT:.*]] = mix.combine
// CHECK-DAG: %[[B:.*]] = tensor.dim %[[X]], %{{.*}}
// CHECK-DAG: %[[S:.*]] = tensor.dim %[[X]], %{{.*}}
// CHECK: %[[Y:.*]] = tensor.expand_shape %[[OUT]] {{\[\[}}0, 1], [2]] output_shape [%[[B]], %[[S]], 64] : tensor<?x64xf32> into tensor<?x?x64xf32>
// CHECK: return %[[Y]]
func.func @mixture_of_tokens_transition(%x: tensor<?x?x64xf32>, %c: tensor<32x64xf32>, %u: tensor<32x16x64xf32>, %d: tensor<32x64x16xf32>) -> tensor<?x?x64xf32> {
  %y = mix.mixture_of_tokens %x controller(%c : tensor<32x64xf32>) experts up(%u : tensor<32x16x64xf32>) down(%d : tensor<32x64x16xf32>)
      {group_size = 4, temperature = 0.5, transition, k = 2, activation = #mix.activation<relu>} : tensor<?x?x64xf32> -> tensor<?x?x64xf32>
  return %y : tensor<?x?x64xf32>
}

// -----

// CHECK-LABEL: func.func @mov_and_molora
// CHECK: %[[P:.*]] = mix.soft_route %[[X:.*]], %[[R:.*]] {k = 2 : i64} : tensor<?x64xf32>, tensor<10x64xf32> -> tensor<?x10xf32>
// CHECK: %[[V:.*]] = mix.mix_vectors %{{.*}}, %[[P]], %{{.*}}
// CHECK: %[[P2:.*]] = mix.soft_route %[[X]], %[[R]] : tensor<?x64xf32>, tensor<10x64xf32> -> tensor<?x10xf32>
// CHECK: %[[BASE:.*]] = mix.linear %[[X]], %{{.*}} : tensor<?x64xf32>, tensor<32x64xf32> -> tensor<?x32xf32>
// CHECK: %[[L:.*]] = mix.mix_lora %[[X]], %[[P2]], %{{.*}}, %{{.*}} into %[[BASE]] {alpha = 8.000000e+00 : f64}
// CHECK: return %[[V]], %[[L]]
func.func @mov_and_molora(%x: tensor<?x64xf32>, %h: tensor<?x128xf32>, %r: tensor<10x64xf32>, %v: tensor<10x128xf32>,
    %w0: tensor<32x64xf32>, %a: tensor<10x4x64xf32>, %b: tensor<10x32x4xf32>) -> (tensor<?x128xf32>, tensor<?x32xf32>) {
  %y = mix.mov %x, %h router(%r : tensor<10x64xf32>) vectors(%v : tensor<10x128xf32>) {k = 2} : tensor<?x64xf32>, tensor<?x128xf32> -> tensor<?x128xf32>
  %l = mix.molora %x base(%w0 : tensor<32x64xf32>) router(%r : tensor<10x64xf32>) lora_a(%a : tensor<10x4x64xf32>) lora_b(%b : tensor<10x32x4xf32>) {alpha = 8.0} : tensor<?x64xf32> -> tensor<?x32xf32>
  return %y, %l : tensor<?x128xf32>, tensor<?x32xf32>
}
