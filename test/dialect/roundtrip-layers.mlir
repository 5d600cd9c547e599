// RUN: mixtile-opt %s | mixtile-opt | FileCheck %s
// RUN: mixtile-opt %s --mlir-print-op-generic | mixtile-opt | FileCheck %s

// CHECK-LABEL: func.func @token_choice_everything
func.func @token_choice_everything(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %rb: tensor<8xf32>,
    %sb: tensor<8xf32>, %g: tensor<8x32x64xbf16>, %u: tensor<8x32x64xbf16>, %d: tensor<8x64x32xbf16>,
    %sg: tensor<48x64xbf16>, %su: tensor<48x64xbf16>, %sd: tensor<64x48xbf16>, %seg: tensor<1x64xbf16>)
    -> (tensor<?x64xf32>, tensor<?x8xf32>, tensor<f32>, tensor<f32>) {
  // CHECK: %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} = mix.token_choice_moe %{{.*}} router(%{{.*}} : tensor<8x64xf32>) router_bias(%{{.*}} : tensor<8xf32>) selection_bias(%{{.*}} : tensor<8xf32>)
  // CHECK-SAME: experts gate(%{{.*}} : tensor<8x32x64xbf16>) up(%{{.*}} : tensor<8x32x64xbf16>) down(%{{.*}} : tensor<8x64x32xbf16>)
  // CHECK-SAME: shared_gate(%{{.*}} : tensor<48x64xbf16>) shared_up(%{{.*}} : tensor<48x64xbf16>) shared_down(%{{.*}} : tensor<64x48xbf16>) shared_expert_gate(%{{.*}} : tensor<1x64xbf16>)
  // CHECK-SAME: {activation = #mix.activation<gelu>, capacity = 3 : i64, k = 2 : i64, n_group = 2 : i64, normalize}
  // CHECK-SAME: : tensor<?x64xf32> -> tensor<?x64xf32> router_logits tensor<?x8xf32> aux_loss tensor<f32> z_loss tensor<f32>
  %y, %l, %a, %z = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) router_bias(%rb : tensor<8xf32>)
      selection_bias(%sb : tensor<8xf32>)
      experts gate(%g : tensor<8x32x64xbf16>) up(%u : tensor<8x32x64xbf16>) down(%d : tensor<8x64x32xbf16>)
      shared_gate(%sg : tensor<48x64xbf16>) shared_up(%su : tensor<48x64xbf16>) shared_down(%sd : tensor<64x48xbf16>)
      shared_expert_gate(%seg : tensor<1x64xbf16>)
      {k = 2, normalize, n_group = 2, topk_group = 1, group_score = #mix.group_score<max>, capacity = 3,
       activation = #mix.activation<gelu>}
      : tensor<?x64xf32> -> tensor<?x64xf32> router_logits tensor<?x8xf32> aux_loss tensor<f32> z_loss tensor<f32>
  return %y, %l, %a, %z : tensor<?x64xf32>, tensor<?x8xf32>, tensor<f32>, tensor<f32>
}

// Only some optional results: the parser must know which ones.
// CHECK-LABEL: func.func @token_choice_z_loss_only
func.func @token_choice_z_loss_only(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>,
    %d: tensor<8x64x32xf32>) -> tensor<f32> {
  // CHECK: mix.token_choice_moe %{{.*}} router(%{{.*}} : tensor<8x64xf32>) experts up(%{{.*}} : tensor<8x32x64xf32>) down(%{{.*}} : tensor<8x64x32xf32>)
  // CHECK-SAME: {activation = #mix.activation<relu>, capacity_factor = 1.000000e+00 : f64, k = 1 : i64} : tensor<?x64xf32> -> tensor<?x64xf32> z_loss tensor<f32>
  %y, %z = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>)
      down(%d : tensor<8x64x32xf32>) {k = 1, capacity_factor = 1.0, activation = #mix.activation<relu>}
      : tensor<?x64xf32> -> tensor<?x64xf32> z_loss tensor<f32>
  return %z : tensor<f32>
}

// CHECK-LABEL: func.func @expert_choice_layer
func.func @expert_choice_layer(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>,
    %d: tensor<8x64x32xf32>) -> (tensor<?x64xf32>, tensor<?x8xf32>) {
  // CHECK: mix.expert_choice_moe %{{.*}} router(%{{.*}} : tensor<8x64xf32>) experts up(%{{.*}} : tensor<8x32x64xf32>) down(%{{.*}} : tensor<8x64x32xf32>)
  // CHECK-SAME: {activation = #mix.activation<gelu>, capacity_factor = 2.000000e+00 : f64} : tensor<?x64xf32> -> tensor<?x64xf32> router_logits tensor<?x8xf32>
  %y, %l = mix.expert_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>)
      down(%d : tensor<8x64x32xf32>) {capacity_factor = 2.0, activation = #mix.activation<gelu>}
      : tensor<?x64xf32> -> tensor<?x64xf32> router_logits tensor<?x8xf32>
  return %y, %l : tensor<?x64xf32>, tensor<?x8xf32>
}

// CHECK-LABEL: func.func @mixture_of_tokens_layer
func.func @mixture_of_tokens_layer(%x: tensor<?x?x64xf32>, %c: tensor<32x64xf32>, %u: tensor<32x16x64xf32>,
    %d: tensor<32x64x16xf32>) -> (tensor<?x?x64xf32>, tensor<?x?x64xf32>) {
  // CHECK: mix.mixture_of_tokens %{{.*}} controller(%{{.*}} : tensor<32x64xf32>) experts up(%{{.*}} : tensor<32x16x64xf32>) down(%{{.*}} : tensor<32x64x16xf32>)
  // CHECK-SAME: {activation = #mix.activation<relu>, group_size = 8 : i64, temperature = 1.000000e+00 : f64} : tensor<?x?x64xf32> -> tensor<?x?x64xf32>
  %y = mix.mixture_of_tokens %x controller(%c : tensor<32x64xf32>) experts up(%u : tensor<32x16x64xf32>)
      down(%d : tensor<32x64x16xf32>) {group_size = 8, temperature = 1.0, emit = #mix.emit<merge>,
      activation = #mix.activation<relu>} : tensor<?x?x64xf32> -> tensor<?x?x64xf32>
  // CHECK: mix.mixture_of_tokens
  // CHECK-SAME: k = 2 : i64
  // CHECK-SAME: transition
  %t = mix.mixture_of_tokens %x controller(%c : tensor<32x64xf32>) experts up(%u : tensor<32x16x64xf32>)
      down(%d : tensor<32x64x16xf32>) {group_size = 8, temperature = 1.0, transition, k = 2,
      activation = #mix.activation<relu>} : tensor<?x?x64xf32> -> tensor<?x?x64xf32>
  return %y, %t : tensor<?x?x64xf32>, tensor<?x?x64xf32>
}

// CHECK-LABEL: func.func @lightweight_layers
func.func @lightweight_layers(%x: tensor<?x64xf32>, %h: tensor<?x128xf32>, %r: tensor<10x64xf32>,
    %v: tensor<10x128xf32>, %w0: tensor<32x64xf32>, %a: tensor<10x4x64xf32>, %b: tensor<10x32x4xf32>)
    -> (tensor<?x128xf32>, tensor<?x32xf32>) {
  // CHECK: mix.mov %{{.*}}, %{{.*}} router(%{{.*}} : tensor<10x64xf32>) vectors(%{{.*}} : tensor<10x128xf32>) {k = 2 : i64} : tensor<?x64xf32>, tensor<?x128xf32> -> tensor<?x128xf32>
  %y = mix.mov %x, %h router(%r : tensor<10x64xf32>) vectors(%v : tensor<10x128xf32>) {k = 2}
      : tensor<?x64xf32>, tensor<?x128xf32> -> tensor<?x128xf32>
  // CHECK: mix.molora %{{.*}} base(%{{.*}} : tensor<32x64xf32>) router(%{{.*}} : tensor<10x64xf32>) lora_a(%{{.*}} : tensor<10x4x64xf32>) lora_b(%{{.*}} : tensor<10x32x4xf32>) {alpha = 8.000000e+00 : f64} : tensor<?x64xf32> -> tensor<?x32xf32>
  %l = mix.molora %x base(%w0 : tensor<32x64xf32>) router(%r : tensor<10x64xf32>) lora_a(%a : tensor<10x4x64xf32>)
      lora_b(%b : tensor<10x32x4xf32>) {alpha = 8.0} : tensor<?x64xf32> -> tensor<?x32xf32>
  return %y, %l : tensor<?x128xf32>, tensor<?x32xf32>
}

// Tensor names the runtime binds by.
// CHECK-LABEL: func.func @named
// CHECK-SAME: {mix.name = "hidden_states"}
// CHECK-SAME: -> (tensor<?x64xf32> {mix.name = "output"})
func.func @named(%x: tensor<?x64xf32> {mix.name = "hidden_states"}) -> (tensor<?x64xf32> {mix.name = "output"}) {
  return %x : tensor<?x64xf32>
}
