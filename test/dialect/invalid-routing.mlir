// RUN: mixtile-opt %s -split-input-file -verify-diagnostics

func.func @route_x_rank(%x: tensor<?x4x64xf32>, %r: tensor<8x64xf32>) {
  // expected-error @+1 {{operand 'x' must have rank 2 [T, D], got [?, 4, 64]}}
  %w, %i, %l = mix.route %x, %r {k = 2} : tensor<?x4x64xf32>, tensor<8x64xf32> -> tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>
  return
}

// -----

func.func @route_router_rank(%x: tensor<?x64xf32>, %r: tensor<8x64x1xf32>) {
  // expected-error @+1 {{operand 'router' must have rank 2 [E, D], got [8, 64, 1]}}
  %w, %i, %l = mix.route %x, %r {k = 2} : tensor<?x64xf32>, tensor<8x64x1xf32> -> tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>
  return
}

// -----

func.func @route_router_dynamic(%x: tensor<?x64xf32>, %r: tensor<?x64xf32>) {
  // expected-error @+1 {{weight 'router' must have a static shape [E, D], got [?, 64]}}
  %w, %i, %l = mix.route %x, %r {k = 2} : tensor<?x64xf32>, tensor<?x64xf32> -> tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>
  return
}

// -----

func.func @route_hidden_mismatch(%x: tensor<?x32xf32>, %r: tensor<8x64xf32>) {
  // expected-error @+1 {{operand 'x' dim 1 (D) must be 64, the input size of 'router'; got [?, 32]}}
  %w, %i, %l = mix.route %x, %r {k = 2} : tensor<?x32xf32>, tensor<8x64xf32> -> tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>
  return
}

// -----

func.func @route_activation_dtype(%x: tensor<?x64xbf16>, %r: tensor<8x64xf32>) {
  // expected-error @+1 {{operand #0 must be ranked tensor of 32-bit float values}}
  %w, %i, %l = mix.route %x, %r {k = 2} : tensor<?x64xbf16>, tensor<8x64xf32> -> tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>
  return
}

// -----

func.func @route_weight_dtype(%x: tensor<?x64xf32>, %r: tensor<8x64xi8>) {
  // expected-error @+1 {{operand #1 must be ranked tensor of 32-bit float or bfloat16 type or 16-bit float values}}
  %w, %i, %l = mix.route %x, %r {k = 2} : tensor<?x64xf32>, tensor<8x64xi8> -> tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>
  return
}

// -----

func.func @route_k_zero(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>) {
  // expected-error @+1 {{attribute 'k' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %w, %i, %l = mix.route %x, %r {k = 0} : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x0xf32>, tensor<?x0xi32>, tensor<?x8xf32>
  return
}

// -----

func.func @route_k_above_experts(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>) {
  // expected-error @+1 {{attribute 'k' (9) must not exceed the number of experts E = 8}}
  %w, %i, %l = mix.route %x, %r {k = 9} : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x9xf32>, tensor<?x9xi32>, tensor<?x8xf32>
  return
}

// -----

func.func @route_router_bias_shape(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %b: tensor<4xf32>) {
  // expected-error @+1 {{operand 'router_bias' dim 0 (E) must be 8, the number of router rows; got [4]}}
  %w, %i, %l = mix.route %x, %r bias(%b : tensor<4xf32>) {k = 2} : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>
  return
}

// -----

func.func @route_selection_bias_rank(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %b: tensor<1x8xf32>) {
  // expected-error @+1 {{operand 'selection_bias' must have rank 1 [E], got [1, 8]}}
  %w, %i, %l = mix.route %x, %r selection_bias(%b : tensor<1x8xf32>) {k = 2} : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>
  return
}

// -----

func.func @route_groups_do_not_divide(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>) {
  // expected-error @+1 {{attribute 'n_group' (3) must divide the number of experts E = 8}}
  %w, %i, %l = mix.route %x, %r {k = 2, n_group = 3} : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>
  return
}

// -----

func.func @route_topk_group_above_n_group(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>) {
  // expected-error @+1 {{attribute 'topk_group' (5) must not exceed 'n_group' (4)}}
  %w, %i, %l = mix.route %x, %r {k = 2, n_group = 4, topk_group = 5} : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>
  return
}

// -----

func.func @route_top2_sum_single_expert_groups(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>) {
  // expected-error @+1 {{group_score top2_sum needs at least 2 experts per group, but E / n_group = 1}}
  %w, %i, %l = mix.route %x, %r {k = 2, n_group = 8, topk_group = 4, group_score = #mix.group_score<top2_sum>} : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>
  return
}

// -----

func.func @route_k_above_selectable(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>) {
  // expected-error @+1 {{attribute 'k' (3) must not exceed the 2 experts selectable in 'topk_group' groups of E / n_group = 2}}
  %w, %i, %l = mix.route %x, %r {k = 3, n_group = 4, topk_group = 1} : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x3xf32>, tensor<?x3xi32>, tensor<?x8xf32>
  return
}

// -----

func.func @route_negative_epsilon(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>) {
  // expected-error @+1 {{attribute 'norm_epsilon' must be a finite number >= 0, got -1.000000e-03}}
  %w, %i, %l = mix.route %x, %r {k = 2, normalize, norm_epsilon = -0.001} : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>
  return
}

// -----

func.func @route_zero_scale(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>) {
  // expected-error @+1 {{attribute 'scale' must be a finite number > 0, got 0.000000e+00}}
  %w, %i, %l = mix.route %x, %r {k = 2, scale = 0.0} : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>
  return
}

// -----

func.func @route_weights_result_k(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>) {
  // expected-error @+1 {{result 'weights' dim 1 (k) must be 2, fixed by the operands; got [?, 3]}}
  %w, %i, %l = mix.route %x, %r {k = 2} : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x3xf32>, tensor<?x2xi32>, tensor<?x8xf32>
  return
}

// -----

func.func @route_experts_result_tokens(%x: tensor<5x64xf32>, %r: tensor<8x64xf32>) {
  // expected-error @+1 {{result 'experts' dim 0 (T) must be 5, the token count of 'x'; got [6, 2]}}
  %w, %i, %l = mix.route %x, %r {k = 2} : tensor<5x64xf32>, tensor<8x64xf32> -> tensor<5x2xf32>, tensor<6x2xi32>, tensor<5x8xf32>
  return
}

// -----

func.func @route_logits_result_rank(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>) {
  // expected-error @+1 {{result 'logits' must have rank 2 [T, E], got [?]}}
  %w, %i, %l = mix.route %x, %r {k = 2} : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x2xf32>, tensor<?x2xi32>, tensor<?xf32>
  return
}

// -----

func.func @capacity_both(%i: tensor<?x1xi32>) {
  // expected-error @+1 {{attributes 'capacity' and 'capacity_factor' are exclusive: give one}}
  %a = mix.capacity %i {num_experts = 8, capacity = 4, capacity_factor = 1.25} : tensor<?x1xi32> -> tensor<?x1xi32>
  return
}

// -----

func.func @capacity_neither(%i: tensor<?x1xi32>) {
  // expected-error @+1 {{needs one of the attributes 'capacity' or 'capacity_factor'}}
  %a = mix.capacity %i {num_experts = 8} : tensor<?x1xi32> -> tensor<?x1xi32>
  return
}

// -----

func.func @capacity_factor_negative(%i: tensor<?x1xi32>) {
  // expected-error @+1 {{attribute 'capacity_factor' must be a finite number > 0, got -1.000000e+00}}
  %a = mix.capacity %i {num_experts = 8, capacity_factor = -1.0} : tensor<?x1xi32> -> tensor<?x1xi32>
  return
}

// -----

func.func @capacity_negative(%i: tensor<?x1xi32>) {
  // expected-error @+1 {{attribute 'capacity' failed to satisfy constraint: 64-bit signless integer attribute whose value is non-negative}}
  %a = mix.capacity %i {num_experts = 8, capacity = -1} : tensor<?x1xi32> -> tensor<?x1xi32>
  return
}

// -----

func.func @capacity_rank(%i: tensor<?xi32>) {
  // expected-error @+1 {{operand 'experts' must have rank 2 [T, k], got [?]}}
  %a = mix.capacity %i {num_experts = 8, capacity = 2} : tensor<?xi32> -> tensor<?xi32>
  return
}

// -----

func.func @capacity_result_type(%i: tensor<?x2xi32>) {
  // expected-error @+1 {{result 'kept' must have the type of operand 'experts' ('tensor<?x2xi32>'), got 'tensor<?x1xi32>'}}
  %a = mix.capacity %i {num_experts = 8, capacity = 2} : tensor<?x2xi32> -> tensor<?x1xi32>
  return
}

// -----

func.func @expert_choice_factor(%x: tensor<?x64xf32>, %r: tensor<16x64xf32>) {
  // expected-error @+1 {{attribute 'capacity_factor' must be a finite number > 0, got 0.000000e+00}}
  %o, %t, %g, %l = mix.expert_choice %x, %r {capacity_factor = 0.0} : tensor<?x64xf32>, tensor<16x64xf32> -> tensor<17xi32>, tensor<?xi32>, tensor<?xf32>, tensor<?x16xf32>
  return
}

// -----

func.func @expert_choice_offsets(%x: tensor<?x64xf32>, %r: tensor<16x64xf32>) {
  // expected-error @+1 {{result 'offsets' dim 0 (E+1) must be 17, one more than the number of experts; got [16]}}
  %o, %t, %g, %l = mix.expert_choice %x, %r {capacity_factor = 2.0} : tensor<?x64xf32>, tensor<16x64xf32> -> tensor<16xi32>, tensor<?xi32>, tensor<?xf32>, tensor<?x16xf32>
  return
}

// -----

func.func @expert_choice_hidden(%x: tensor<?x32xf32>, %r: tensor<16x64xf32>) {
  // expected-error @+1 {{operand 'x' dim 1 (D) must be 64, the input size of 'router'; got [?, 32]}}
  %o, %t, %g, %l = mix.expert_choice %x, %r {capacity_factor = 2.0} : tensor<?x32xf32>, tensor<16x64xf32> -> tensor<17xi32>, tensor<?xi32>, tensor<?xf32>, tensor<?x16xf32>
  return
}

// -----

func.func @expert_choice_logits(%x: tensor<?x64xf32>, %r: tensor<16x64xf32>) {
  // expected-error @+1 {{result 'logits' dim 1 (E) must be 16, fixed by the operands; got [?, 8]}}
  %o, %t, %g, %l = mix.expert_choice %x, %r {capacity_factor = 2.0} : tensor<?x64xf32>, tensor<16x64xf32> -> tensor<17xi32>, tensor<?xi32>, tensor<?xf32>, tensor<?x8xf32>
  return
}

// -----

func.func @dispatch_shapes(%w: tensor<?x2xf32>, %i: tensor<?x1xi32>) {
  // expected-error @+1 {{operand 'experts' dim 1 (k) must be 2, as in 'weights'; got [?, 1]}}
  %o, %t, %g = mix.dispatch %w, %i {num_experts = 8} : tensor<?x2xf32>, tensor<?x1xi32> -> tensor<9xi32>, tensor<?xi32>, tensor<?xf32>
  return
}

// -----

func.func @dispatch_tokens(%w: tensor<4x2xf32>, %i: tensor<5x2xi32>) {
  // expected-error @+1 {{operand 'experts' dim 0 (T) must be 4, as in 'weights'; got [5, 2]}}
  %o, %t, %g = mix.dispatch %w, %i {num_experts = 8} : tensor<4x2xf32>, tensor<5x2xi32> -> tensor<9xi32>, tensor<?xi32>, tensor<?xf32>
  return
}

// -----

func.func @dispatch_weights_rank(%w: tensor<?xf32>, %i: tensor<?x1xi32>) {
  // expected-error @+1 {{operand 'weights' must have rank 2 [T, k], got [?]}}
  %o, %t, %g = mix.dispatch %w, %i {num_experts = 8} : tensor<?xf32>, tensor<?x1xi32> -> tensor<9xi32>, tensor<?xi32>, tensor<?xf32>
  return
}

// -----

func.func @dispatch_offsets(%w: tensor<?x2xf32>, %i: tensor<?x2xi32>) {
  // expected-error @+1 {{result 'offsets' dim 0 (E+1) must be 9, one more than the number of experts; got [8]}}
  %o, %t, %g = mix.dispatch %w, %i {num_experts = 8} : tensor<?x2xf32>, tensor<?x2xi32> -> tensor<8xi32>, tensor<?xi32>, tensor<?xf32>
  return
}

// -----

func.func @dispatch_tokens_rank(%w: tensor<?x2xf32>, %i: tensor<?x2xi32>) {
  // expected-error @+1 {{result 'tokens' must have rank 1 [A], got [?, 2]}}
  %o, %t, %g = mix.dispatch %w, %i {num_experts = 8} : tensor<?x2xf32>, tensor<?x2xi32> -> tensor<9xi32>, tensor<?x2xi32>, tensor<?xf32>
  return
}

// -----

func.func @dispatch_gates_rank(%w: tensor<?x2xf32>, %i: tensor<?x2xi32>) {
  // expected-error @+1 {{result 'gates' must have rank 1 [A], got [?, 2]}}
  %o, %t, %g = mix.dispatch %w, %i {num_experts = 8} : tensor<?x2xf32>, tensor<?x2xi32> -> tensor<9xi32>, tensor<?xi32>, tensor<?x2xf32>
  return
}

// -----

func.func @dispatch_gates_length(%w: tensor<4x2xf32>, %i: tensor<4x2xi32>) {
  // expected-error @+1 {{result 'gates' dim 0 (A) must be 8, the length of 'tokens'; got [7]}}
  %o, %t, %g = mix.dispatch %w, %i {num_experts = 8} : tensor<4x2xf32>, tensor<4x2xi32> -> tensor<9xi32>, tensor<8xi32>, tensor<7xf32>
  return
}

// -----

func.func @dispatch_num_experts(%w: tensor<?x2xf32>, %i: tensor<?x2xi32>) {
  // expected-error @+1 {{attribute 'num_experts' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %o, %t, %g = mix.dispatch %w, %i {num_experts = 0} : tensor<?x2xf32>, tensor<?x2xi32> -> tensor<1xi32>, tensor<?xi32>, tensor<?xf32>
  return
}

// -----

func.func @dispatch_index_dtype(%w: tensor<?x2xf32>, %i: tensor<?x2xi64>) {
  // expected-error @+1 {{operand #1 must be ranked tensor of 32-bit signless integer values}}
  %o, %t, %g = mix.dispatch %w, %i {num_experts = 8} : tensor<?x2xf32>, tensor<?x2xi64> -> tensor<9xi32>, tensor<?xi32>, tensor<?xf32>
  return
}

// -----

func.func @lb_loss_tokens(%l: tensor<4x8xf32>, %i: tensor<5x2xi32>) {
  // expected-error @+1 {{operand 'experts' dim 0 (T) must be 4, the token count of 'logits'; got [5, 2]}}
  %a = mix.load_balancing_loss %l, %i : tensor<4x8xf32>, tensor<5x2xi32> -> tensor<f32>
  return
}

// -----

func.func @lb_loss_logits_rank(%l: tensor<?xf32>, %i: tensor<?x2xi32>) {
  // expected-error @+1 {{operand 'logits' must have rank 2 [T, E], got [?]}}
  %a = mix.load_balancing_loss %l, %i : tensor<?xf32>, tensor<?x2xi32> -> tensor<f32>
  return
}

// -----

func.func @lb_loss_experts_rank(%l: tensor<?x8xf32>, %i: tensor<?xi32>) {
  // expected-error @+1 {{operand 'experts' must have rank 2 [T, k], got [?]}}
  %a = mix.load_balancing_loss %l, %i : tensor<?x8xf32>, tensor<?xi32> -> tensor<f32>
  return
}

// -----

func.func @lb_loss_dynamic_experts(%l: tensor<?x?xf32>, %i: tensor<?x2xi32>) {
  // expected-error @+1 {{operand 'logits' must have a static expert count E, got [?, ?]}}
  %a = mix.load_balancing_loss %l, %i : tensor<?x?xf32>, tensor<?x2xi32> -> tensor<f32>
  return
}

// -----

func.func @lb_loss_result(%l: tensor<?x8xf32>, %i: tensor<?x2xi32>) {
  // expected-error @+1 {{result #0 must be 0D tensor of 32-bit float values}}
  %a = mix.load_balancing_loss %l, %i : tensor<?x8xf32>, tensor<?x2xi32> -> tensor<1xf32>
  return
}

// -----

func.func @z_loss_rank(%l: tensor<?xf32>) {
  // expected-error @+1 {{operand 'logits' must have rank 2 [T, E], got [?]}}
  %z = mix.z_loss %l : tensor<?xf32> -> tensor<f32>
  return
}

// -----

// Size bounds (every mix op): a dim past 2^24.
func.func @route_dim_bound(%x: tensor<?x16777217xf32>, %r: tensor<8x16777217xf32>) {
  // expected-error @+1 {{operand #0 has a dim of 16777217, past the bound of 2^24 = 16777216: [?, 16777217]}}
  %w, %i, %l = mix.route %x, %r {k = 2} : tensor<?x16777217xf32>, tensor<8x16777217xf32> -> tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>
  return
}

// -----

// Size bounds: a tensor of more than 2^40 elements (65536 x 16777216 = 2^40 is allowed).
func.func @route_elements_bound(%x: tensor<?x16777216xf32>, %r: tensor<65537x16777216xf32>) {
  // expected-error @+1 {{operand #1 [65537, 16777216] has more than 2^40 elements (the bound of one tensor)}}
  %w, %i, %l = mix.route %x, %r {k = 2} : tensor<?x16777216xf32>, tensor<65537x16777216xf32> -> tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x65537xf32>
  return
}
