// RUN: mixtile-opt %s | mixtile-opt | FileCheck %s
// RUN: mixtile-opt %s --mlir-print-op-generic | mixtile-opt | FileCheck %s

// CHECK-LABEL: func.func @route_plain
func.func @route_plain(%x: tensor<?x64xf32>, %r: tensor<8x64xbf16>)
    -> (tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>) {
  // CHECK: %{{.*}}, %{{.*}}, %{{.*}} = mix.route %{{.*}}, %{{.*}} {k = 2 : i64, normalize}
  // CHECK-SAME: : tensor<?x64xf32>, tensor<8x64xbf16> -> tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>
  %w, %i, %l = mix.route %x, %r {k = 2, normalize}
      : tensor<?x64xf32>, tensor<8x64xbf16> -> tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>
  return %w, %i, %l : tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>
}

// CHECK-LABEL: func.func @route_deepseek_v3
func.func @route_deepseek_v3(%x: tensor<?x64xf32>, %r: tensor<16x64xf32>, %b: tensor<16xf32>)
    -> (tensor<?x4xf32>, tensor<?x4xi32>) {
  // CHECK: mix.route %[[X:.*]], %[[R:.*]] selection_bias(%[[B:.*]] : tensor<16xf32>)
  // CHECK-SAME: group_score = #mix.group_score<top2_sum>
  // CHECK-SAME: k = 4 : i64, n_group = 4 : i64, norm_epsilon = 9.9999999999999995E-21 : f64, normalize
  // CHECK-SAME: scale = 2.500000e+00 : f64, scoring = #mix.scoring<sigmoid>, topk_group = 2 : i64
  %w, %i, %l = mix.route %x, %r selection_bias(%b : tensor<16xf32>)
      {k = 4, scoring = #mix.scoring<sigmoid>, n_group = 4, topk_group = 2,
       group_score = #mix.group_score<top2_sum>, normalize, norm_epsilon = 1.0e-20, scale = 2.5}
      : tensor<?x64xf32>, tensor<16x64xf32> -> tensor<?x4xf32>, tensor<?x4xi32>, tensor<?x16xf32>
  return %w, %i : tensor<?x4xf32>, tensor<?x4xi32>
}

// CHECK-LABEL: func.func @route_with_router_bias
func.func @route_with_router_bias(%x: tensor<5x64xf32>, %r: tensor<8x64xf16>, %b: tensor<8xf16>)
    -> tensor<5x1xi32> {
  // CHECK: mix.route %{{.*}}, %{{.*}} bias(%{{.*}} : tensor<8xf16>) {k = 1 : i64}
  %w, %i, %l = mix.route %x, %r bias(%b : tensor<8xf16>) {k = 1}
      : tensor<5x64xf32>, tensor<8x64xf16> -> tensor<5x1xf32>, tensor<5x1xi32>, tensor<5x8xf32>
  return %i : tensor<5x1xi32>
}

// CHECK-LABEL: func.func @capacity
func.func @capacity(%i: tensor<?x1xi32>) -> (tensor<?x1xi32>, tensor<?x1xi32>) {
  // CHECK: mix.capacity %{{.*}} {capacity_factor = 1.250000e+00 : f64, num_experts = 8 : i64} : tensor<?x1xi32> -> tensor<?x1xi32>
  %a = mix.capacity %i {num_experts = 8, capacity_factor = 1.25} : tensor<?x1xi32> -> tensor<?x1xi32>
  // CHECK: mix.capacity %{{.*}} {capacity = 0 : i64, num_experts = 8 : i64}
  %b = mix.capacity %i {num_experts = 8, capacity = 0} : tensor<?x1xi32> -> tensor<?x1xi32>
  return %a, %b : tensor<?x1xi32>, tensor<?x1xi32>
}

// CHECK-LABEL: func.func @expert_choice
func.func @expert_choice(%x: tensor<?x64xf32>, %r: tensor<16x64xf32>)
    -> (tensor<17xi32>, tensor<?xi32>, tensor<?xf32>, tensor<?x16xf32>) {
  // CHECK: mix.expert_choice %{{.*}}, %{{.*}} {capacity_factor = 2.000000e+00 : f64}
  // CHECK-SAME: -> tensor<17xi32>, tensor<?xi32>, tensor<?xf32>, tensor<?x16xf32>
  %o, %t, %g, %l = mix.expert_choice %x, %r {capacity_factor = 2.0}
      : tensor<?x64xf32>, tensor<16x64xf32> -> tensor<17xi32>, tensor<?xi32>, tensor<?xf32>, tensor<?x16xf32>
  return %o, %t, %g, %l : tensor<17xi32>, tensor<?xi32>, tensor<?xf32>, tensor<?x16xf32>
}

// CHECK-LABEL: func.func @dispatch
func.func @dispatch(%w: tensor<?x2xf32>, %i: tensor<?x2xi32>)
    -> (tensor<9xi32>, tensor<?xi32>, tensor<?xf32>) {
  // CHECK: mix.dispatch %{{.*}}, %{{.*}} {num_experts = 8 : i64}
  // CHECK-SAME: : tensor<?x2xf32>, tensor<?x2xi32> -> tensor<9xi32>, tensor<?xi32>, tensor<?xf32>
  %o, %t, %g = mix.dispatch %w, %i {num_experts = 8}
      : tensor<?x2xf32>, tensor<?x2xi32> -> tensor<9xi32>, tensor<?xi32>, tensor<?xf32>
  return %o, %t, %g : tensor<9xi32>, tensor<?xi32>, tensor<?xf32>
}

// CHECK-LABEL: func.func @aux_losses
func.func @aux_losses(%l: tensor<?x8xf32>, %i: tensor<?x2xi32>) -> (tensor<f32>, tensor<f32>) {
  // CHECK: mix.load_balancing_loss %{{.*}}, %{{.*}} : tensor<?x8xf32>, tensor<?x2xi32> -> tensor<f32>
  %a = mix.load_balancing_loss %l, %i : tensor<?x8xf32>, tensor<?x2xi32> -> tensor<f32>
  // CHECK: mix.z_loss %{{.*}} : tensor<?x8xf32> -> tensor<f32>
  %z = mix.z_loss %l : tensor<?x8xf32> -> tensor<f32>
  return %a, %z : tensor<f32>, tensor<f32>
}
