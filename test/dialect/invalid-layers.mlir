// RUN: mixtile-opt %s -split-input-file -verify-diagnostics

func.func @tc_router_hidden(%x: tensor<?x32xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{operand 'x' dim 1 (D) must be 64, the input size of 'router'; got [?, 32]}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>)
      {k = 2, activation = #mix.activation<relu>} : tensor<?x32xf32> -> tensor<?x32xf32>
  return
}

// -----

func.func @tc_router_rank(%x: tensor<?x64xf32>, %r: tensor<512xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{operand 'router' must have rank 2 [E, D], got [512]}}
  %y = mix.token_choice_moe %x router(%r : tensor<512xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>)
      {k = 2, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @tc_router_bias(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %b: tensor<4xf32>) {
  // expected-error @+1 {{operand 'router_bias' dim 0 (E) must be 8, the number of router rows; got [4]}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) router_bias(%b : tensor<4xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>)
      {k = 2, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @tc_selection_bias(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %b: tensor<?xf32>) {
  // expected-error @+1 {{weight 'selection_bias' must have a static shape [E], got [?]}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) selection_bias(%b : tensor<?xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>)
      {k = 2, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @tc_k(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{attribute 'k' (9) must not exceed the number of experts E = 8}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>)
      {k = 9, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @tc_n_group(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{attribute 'n_group' (3) must divide the number of experts E = 8}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>)
      {k = 2, n_group = 3, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @tc_topk_group(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{attribute 'topk_group' (3) must not exceed 'n_group' (2)}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>)
      {k = 2, n_group = 2, topk_group = 3, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @tc_top2_sum(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{group_score top2_sum needs at least 2 experts per group, but E / n_group = 1}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>)
      {k = 2, n_group = 8, topk_group = 2, group_score = #mix.group_score<top2_sum>, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @tc_selectable(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{attribute 'k' (5) must not exceed the 4 experts selectable in 'topk_group' groups of E / n_group = 4}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>)
      {k = 5, n_group = 2, topk_group = 1, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @tc_epsilon(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{attribute 'norm_epsilon' must be a finite number >= 0, got -1.000000e+00}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>)
      {k = 2, normalize, norm_epsilon = -1.0, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @tc_scale(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{attribute 'scale' must be a finite number > 0, got -2.000000e+00}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>)
      {k = 2, scale = -2.0, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @tc_capacity_both(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{attributes 'capacity' and 'capacity_factor' are exclusive: give one}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>)
      {k = 1, capacity = 4, capacity_factor = 1.0, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @tc_capacity_factor(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{attribute 'capacity_factor' must be a finite number > 0, got 0.000000e+00}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>)
      {k = 1, capacity_factor = 0.0, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @tc_expert_count(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<4x32x64xf32>, %d: tensor<4x64x32xf32>) {
  // expected-error @+1 {{operand 'up' dim 0 (E) must be 8, the number of experts; got [4, 32, 64]}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<4x32x64xf32>) down(%d : tensor<4x64x32xf32>)
      {k = 2, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @tc_per_expert_count(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<32x64xf32>, %d: tensor<64x32xf32>) {
  // expected-error @+1 {{operand group 'up' must hold one stacked [E, F, D] tensor or E = 8 tensors [F, D], got 1 tensors}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<32x64xf32>) down(%d : tensor<64x32xf32>)
      {k = 2, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @tc_shared_up_only(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %su: tensor<48x64xf32>) {
  // expected-error @+1 {{shared experts need both 'shared_up' and 'shared_down'}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>) shared_up(%su : tensor<48x64xf32>)
      {k = 2, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @tc_shared_gate_alone(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %sg: tensor<48x64xf32>) {
  // expected-error @+1 {{operand 'shared_gate' needs 'shared_up' and 'shared_down'}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>) shared_gate(%sg : tensor<48x64xf32>)
      {k = 2, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @tc_shared_expert_gate_alone(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %g: tensor<1x64xf32>) {
  // expected-error @+1 {{operand 'shared_expert_gate' needs shared experts ('shared_up' and 'shared_down')}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>) shared_expert_gate(%g : tensor<1x64xf32>)
      {k = 2, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @tc_shared_up_hidden(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %su: tensor<48x32xf32>, %sd: tensor<64x48xf32>) {
  // expected-error @+1 {{operand 'shared_up' dim 1 (D) must be 64, the hidden size of 'x'; got [48, 32]}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>) shared_up(%su : tensor<48x32xf32>) shared_down(%sd : tensor<64x48xf32>)
      {k = 2, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @tc_shared_up_rank(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %su: tensor<1x48x64xf32>, %sd: tensor<64x48xf32>) {
  // expected-error @+1 {{operand 'shared_up' must have rank 2 [F, D], got [1, 48, 64]}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>) shared_up(%su : tensor<1x48x64xf32>) shared_down(%sd : tensor<64x48xf32>)
      {k = 2, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @tc_shared_down_rank(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %su: tensor<48x64xf32>, %sd: tensor<64xf32>) {
  // expected-error @+1 {{operand 'shared_down' must have rank 2 [D, F], got [64]}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>) shared_up(%su : tensor<48x64xf32>) shared_down(%sd : tensor<64xf32>)
      {k = 2, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @tc_shared_down_hidden(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %su: tensor<48x64xf32>, %sd: tensor<32x48xf32>) {
  // expected-error @+1 {{operand 'shared_down' dim 0 (D) must be 64, the hidden size of 'x'; got [32, 48]}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>) shared_up(%su : tensor<48x64xf32>) shared_down(%sd : tensor<32x48xf32>)
      {k = 2, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @tc_shared_down_width(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %su: tensor<48x64xf32>, %sd: tensor<64x40xf32>) {
  // expected-error @+1 {{operand 'shared_down' dim 1 (F) must be 48, the width of 'shared_up'; got [64, 40]}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>) shared_up(%su : tensor<48x64xf32>) shared_down(%sd : tensor<64x40xf32>)
      {k = 2, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @tc_shared_gate_width(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %su: tensor<48x64xf32>, %sd: tensor<64x48xf32>, %sg: tensor<40x64xf32>) {
  // expected-error @+1 {{operand 'shared_gate' dim 0 (F) must be 48, the width of 'shared_up'; got [40, 64]}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>) shared_gate(%sg : tensor<40x64xf32>) shared_up(%su : tensor<48x64xf32>) shared_down(%sd : tensor<64x48xf32>)
      {k = 2, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @tc_shared_gate_hidden(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %su: tensor<48x64xf32>, %sd: tensor<64x48xf32>, %sg: tensor<48x32xf32>) {
  // expected-error @+1 {{operand 'shared_gate' dim 1 (D) must be 64, the hidden size of 'x'; got [48, 32]}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>) shared_gate(%sg : tensor<48x32xf32>) shared_up(%su : tensor<48x64xf32>) shared_down(%sd : tensor<64x48xf32>)
      {k = 2, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @tc_shared_gate_rank(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %su: tensor<48x64xf32>, %sd: tensor<64x48xf32>, %sg: tensor<48xf32>) {
  // expected-error @+1 {{operand 'shared_gate' must have rank 2 [F, D], got [48]}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>) shared_gate(%sg : tensor<48xf32>) shared_up(%su : tensor<48x64xf32>) shared_down(%sd : tensor<64x48xf32>)
      {k = 2, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @tc_shared_expert_gate_rows(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %su: tensor<48x64xf32>, %sd: tensor<64x48xf32>, %g: tensor<2x64xf32>) {
  // expected-error @+1 {{operand 'shared_expert_gate' dim 0 (rows) must be 1, one gate logit per token; got [2, 64]}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>) shared_up(%su : tensor<48x64xf32>) shared_down(%sd : tensor<64x48xf32>) shared_expert_gate(%g : tensor<2x64xf32>)
      {k = 2, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @tc_shared_expert_gate_hidden(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %su: tensor<48x64xf32>, %sd: tensor<64x48xf32>, %g: tensor<1x32xf32>) {
  // expected-error @+1 {{operand 'shared_expert_gate' dim 1 (D) must be 64, the hidden size of 'x'; got [1, 32]}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>) shared_up(%su : tensor<48x64xf32>) shared_down(%sd : tensor<64x48xf32>) shared_expert_gate(%g : tensor<1x32xf32>)
      {k = 2, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @tc_shared_expert_gate_rank(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>, %su: tensor<48x64xf32>, %sd: tensor<64x48xf32>, %g: tensor<64xf32>) {
  // expected-error @+1 {{operand 'shared_expert_gate' must have rank 2 [1, D], got [64]}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>) shared_up(%su : tensor<48x64xf32>) shared_down(%sd : tensor<64x48xf32>) shared_expert_gate(%g : tensor<64xf32>)
      {k = 2, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @tc_output(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{result 'output' dim 1 (D) must be 64, fixed by the operands; got [?, 32]}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>)
      {k = 2, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x32xf32>
  return
}

// -----

func.func @tc_output_rank(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{result 'output' must have rank 2 [T, D], got [?]}}
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>)
      {k = 2, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?xf32>
  return
}

// -----

func.func @tc_router_logits(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{result 'router_logits' dim 1 (E) must be 8, fixed by the operands; got [?, 4]}}
  %y, %l = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>)
      {k = 2, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32> router_logits tensor<?x4xf32>
  return
}

// -----

func.func @tc_aux_loss_type(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{result #1 must be 0D tensor of 32-bit float values, but got 'tensor<1xf32>'}}
  %y, %l = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>)
      {k = 2, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32> aux_loss tensor<1xf32>
  return
}

// -----

func.func @ec_router_hidden(%x: tensor<?x32xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{operand 'x' dim 1 (D) must be 64, the input size of 'router'; got [?, 32]}}
  %y = mix.expert_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>)
      {capacity_factor = 2.0, activation = #mix.activation<gelu>} : tensor<?x32xf32> -> tensor<?x32xf32>
  return
}

// -----

func.func @ec_router_static(%x: tensor<?x64xf32>, %r: tensor<?x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{weight 'router' must have a static shape [E, D], got [?, 64]}}
  %y = mix.expert_choice_moe %x router(%r : tensor<?x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>)
      {capacity_factor = 2.0, activation = #mix.activation<gelu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @ec_capacity_factor(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{attribute 'capacity_factor' must be a finite number > 0, got -1.000000e+00}}
  %y = mix.expert_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>)
      {capacity_factor = -1.0, activation = #mix.activation<gelu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @ec_expert_weights(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<4x64x32xf32>) {
  // expected-error @+1 {{operand 'down' dim 0 (E) must be 8, the number of experts; got [4, 64, 32]}}
  %y = mix.expert_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<4x64x32xf32>)
      {capacity_factor = 2.0, activation = #mix.activation<gelu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @ec_output(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{result 'output' dim 1 (D) must be 64, fixed by the operands; got [?, 16]}}
  %y = mix.expert_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>)
      {capacity_factor = 2.0, activation = #mix.activation<gelu>} : tensor<?x64xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @ec_output_tokens(%x: tensor<3x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{result 'output' dim 0 (T) must be 3, the token count of 'x'; got [4, 64]}}
  %y = mix.expert_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>)
      {capacity_factor = 2.0, activation = #mix.activation<gelu>} : tensor<3x64xf32> -> tensor<4x64xf32>
  return
}

// -----

func.func @ec_router_logits(%x: tensor<3x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) {
  // expected-error @+1 {{result 'router_logits' dim 0 (T) must be 3, the token count of 'x'; got [5, 8]}}
  %y, %l = mix.expert_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>)
      {capacity_factor = 2.0, activation = #mix.activation<gelu>} : tensor<3x64xf32> -> tensor<3x64xf32> router_logits tensor<5x8xf32>
  return
}
