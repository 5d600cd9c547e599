// RUN: mixtile-opt %s -split-input-file -verify-diagnostics

func.func @ffn_no_up(%x: tensor<?x8xf32>, %o: tensor<2xi32>, %t: tensor<?xi32>, %d: tensor<1x8x16xf32>) {
  // expected-error @+1 {{expert weights need 'up' and 'down' tensors}}
  %h = "mix.expert_ffn"(%x, %o, %t, %d) <{activation = #mix.activation<silu>, operandSegmentSizes = array<i32: 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0>}>
      : (tensor<?x8xf32>, tensor<2xi32>, tensor<?xi32>, tensor<1x8x16xf32>) -> tensor<?x8xf32>
  return
}

// -----

func.func @ffn_down_count(%x: tensor<?x8xf32>, %o: tensor<3xi32>, %t: tensor<?xi32>, %u0: tensor<16x8xf32>, %u1: tensor<16x8xf32>, %d0: tensor<8x16xf32>) {
  // expected-error @+1 {{operand group 'down' must hold as many tensors as 'up' (2), got 1}}
  %h = mix.expert_ffn %x, %o, %t up(%u0, %u1 : tensor<16x8xf32>, tensor<16x8xf32>) down(%d0 : tensor<8x16xf32>)
      {activation = #mix.activation<relu>} : tensor<?x8xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x8xf32>
  return
}

// -----

func.func @ffn_gate_count(%x: tensor<?x8xf32>, %o: tensor<3xi32>, %t: tensor<?xi32>, %u0: tensor<16x8xf32>, %u1: tensor<16x8xf32>, %d0: tensor<8x16xf32>, %d1: tensor<8x16xf32>) {
  // expected-error @+1 {{operand group 'gate' must be empty or hold as many tensors as 'up' (2), got 1}}
  %h = mix.expert_ffn %x, %o, %t gate(%u0 : tensor<16x8xf32>) up(%u0, %u1 : tensor<16x8xf32>, tensor<16x8xf32>) down(%d0, %d1 : tensor<8x16xf32>, tensor<8x16xf32>)
      {activation = #mix.activation<relu>} : tensor<?x8xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x8xf32>
  return
}

// -----

func.func @ffn_mixed_dtypes(%x: tensor<?x8xf32>, %o: tensor<3xi32>, %t: tensor<?xi32>, %u: tensor<2x16x8xbf16>, %d: tensor<2x8x16xf32>) {
  // expected-error @+1 {{expert weights must share one dtype: 'up' is 'bf16' but another weight is 'f32'}}
  %h = mix.expert_ffn %x, %o, %t up(%u : tensor<2x16x8xbf16>) down(%d : tensor<2x8x16xf32>)
      {activation = #mix.activation<relu>} : tensor<?x8xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x8xf32>
  return
}

// -----

func.func @ffn_stacked_down_rank(%x: tensor<?x8xf32>, %o: tensor<3xi32>, %t: tensor<?xi32>, %u: tensor<2x16x8xf32>, %d: tensor<8x16xf32>) {
  // expected-error @+1 {{operand 'down' must have rank 3 [E, D, F], got [8, 16]}}
  %h = mix.expert_ffn %x, %o, %t up(%u : tensor<2x16x8xf32>) down(%d : tensor<8x16xf32>)
      {activation = #mix.activation<relu>} : tensor<?x8xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x8xf32>
  return
}

// -----

func.func @ffn_stacked_dynamic(%x: tensor<?x8xf32>, %o: tensor<3xi32>, %t: tensor<?xi32>, %u: tensor<2x?x8xf32>, %d: tensor<2x8x16xf32>) {
  // expected-error @+1 {{weight 'up' must have a static shape [E, F, D], got [2, ?, 8]}}
  %h = mix.expert_ffn %x, %o, %t up(%u : tensor<2x?x8xf32>) down(%d : tensor<2x8x16xf32>)
      {activation = #mix.activation<relu>} : tensor<?x8xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x8xf32>
  return
}

// -----

func.func @ffn_stacked_experts(%x: tensor<?x8xf32>, %o: tensor<4xi32>, %t: tensor<?xi32>, %u: tensor<2x16x8xf32>, %d: tensor<2x8x16xf32>) {
  // expected-error @+1 {{operand 'up' dim 0 (E) must be 3, the number of experts; got [2, 16, 8]}}
  %h = mix.expert_ffn %x, %o, %t up(%u : tensor<2x16x8xf32>) down(%d : tensor<2x8x16xf32>)
      {activation = #mix.activation<relu>} : tensor<?x8xf32>, tensor<4xi32>, tensor<?xi32> -> tensor<?x8xf32>
  return
}

// -----

func.func @ffn_stacked_hidden(%x: tensor<?x8xf32>, %o: tensor<3xi32>, %t: tensor<?xi32>, %u: tensor<2x16x4xf32>, %d: tensor<2x8x16xf32>) {
  // expected-error @+1 {{operand 'up' dim 2 (D) must be 8, the hidden size; got [2, 16, 4]}}
  %h = mix.expert_ffn %x, %o, %t up(%u : tensor<2x16x4xf32>) down(%d : tensor<2x8x16xf32>)
      {activation = #mix.activation<relu>} : tensor<?x8xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x8xf32>
  return
}

// -----

func.func @ffn_stacked_down_width(%x: tensor<?x8xf32>, %o: tensor<3xi32>, %t: tensor<?xi32>, %u: tensor<2x16x8xf32>, %d: tensor<2x8x12xf32>) {
  // expected-error @+1 {{operand 'down' dim 2 (F) must be 16, the width of 'up'; got [2, 8, 12]}}
  %h = mix.expert_ffn %x, %o, %t up(%u : tensor<2x16x8xf32>) down(%d : tensor<2x8x12xf32>)
      {activation = #mix.activation<relu>} : tensor<?x8xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x8xf32>
  return
}

// -----

func.func @ffn_stacked_down_hidden(%x: tensor<?x8xf32>, %o: tensor<3xi32>, %t: tensor<?xi32>, %u: tensor<2x16x8xf32>, %d: tensor<2x4x16xf32>) {
  // expected-error @+1 {{operand 'down' dim 1 (D) must be 8, the hidden size; got [2, 4, 16]}}
  %h = mix.expert_ffn %x, %o, %t up(%u : tensor<2x16x8xf32>) down(%d : tensor<2x4x16xf32>)
      {activation = #mix.activation<relu>} : tensor<?x8xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x8xf32>
  return
}

// -----

func.func @ffn_stacked_gate_width(%x: tensor<?x8xf32>, %o: tensor<3xi32>, %t: tensor<?xi32>, %g: tensor<2x12x8xf32>, %u: tensor<2x16x8xf32>, %d: tensor<2x8x16xf32>) {
  // expected-error @+1 {{operand 'gate' dim 1 (F) must be 16, the width of 'up'; got [2, 12, 8]}}
  %h = mix.expert_ffn %x, %o, %t gate(%g : tensor<2x12x8xf32>) up(%u : tensor<2x16x8xf32>) down(%d : tensor<2x8x16xf32>)
      {activation = #mix.activation<silu>} : tensor<?x8xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x8xf32>
  return
}

// -----

func.func @ffn_stacked_gate_rank(%x: tensor<?x8xf32>, %o: tensor<3xi32>, %t: tensor<?xi32>, %g: tensor<16x8xf32>, %u: tensor<2x16x8xf32>, %d: tensor<2x8x16xf32>) {
  // expected-error @+1 {{operand 'gate' must have rank 3 [E, F, D], got [16, 8]}}
  %h = mix.expert_ffn %x, %o, %t gate(%g : tensor<16x8xf32>) up(%u : tensor<2x16x8xf32>) down(%d : tensor<2x8x16xf32>)
      {activation = #mix.activation<silu>} : tensor<?x8xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x8xf32>
  return
}

// -----

func.func @ffn_per_expert_count(%x: tensor<?x8xf32>, %o: tensor<4xi32>, %t: tensor<?xi32>, %u0: tensor<16x8xf32>, %u1: tensor<16x8xf32>, %d0: tensor<8x16xf32>, %d1: tensor<8x16xf32>) {
  // expected-error @+1 {{operand group 'up' must hold one stacked [E, F, D] tensor or E = 3 tensors [F, D], got 2 tensors}}
  %h = mix.expert_ffn %x, %o, %t up(%u0, %u1 : tensor<16x8xf32>, tensor<16x8xf32>) down(%d0, %d1 : tensor<8x16xf32>, tensor<8x16xf32>)
      {activation = #mix.activation<relu>} : tensor<?x8xf32>, tensor<4xi32>, tensor<?xi32> -> tensor<?x8xf32>
  return
}

// -----

func.func @ffn_per_expert_rank(%x: tensor<?x8xf32>, %o: tensor<3xi32>, %t: tensor<?xi32>, %u0: tensor<16x8xf32>, %u1: tensor<1x16x8xf32>, %d0: tensor<8x16xf32>, %d1: tensor<8x16xf32>) {
  // expected-error @+1 {{operand 'up #1' must have rank 2 [F, D], got [1, 16, 8]}}
  %h = mix.expert_ffn %x, %o, %t up(%u0, %u1 : tensor<16x8xf32>, tensor<1x16x8xf32>) down(%d0, %d1 : tensor<8x16xf32>, tensor<8x16xf32>)
      {activation = #mix.activation<relu>} : tensor<?x8xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x8xf32>
  return
}

// -----

func.func @ffn_per_expert_width(%x: tensor<?x8xf32>, %o: tensor<3xi32>, %t: tensor<?xi32>, %u0: tensor<16x8xf32>, %u1: tensor<12x8xf32>, %d0: tensor<8x16xf32>, %d1: tensor<8x16xf32>) {
  // expected-error @+1 {{operand 'up #1' dim 0 (F) must be 16, the width of 'up #0'; got [12, 8]}}
  %h = mix.expert_ffn %x, %o, %t up(%u0, %u1 : tensor<16x8xf32>, tensor<12x8xf32>) down(%d0, %d1 : tensor<8x16xf32>, tensor<8x16xf32>)
      {activation = #mix.activation<relu>} : tensor<?x8xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x8xf32>
  return
}

// -----

func.func @ffn_per_expert_hidden(%x: tensor<?x8xf32>, %o: tensor<3xi32>, %t: tensor<?xi32>, %u0: tensor<16x4xf32>, %u1: tensor<16x4xf32>, %d0: tensor<8x16xf32>, %d1: tensor<8x16xf32>) {
  // expected-error @+1 {{operand 'up #0' dim 1 (D) must be 8, the hidden size; got [16, 4]}}
  %h = mix.expert_ffn %x, %o, %t up(%u0, %u1 : tensor<16x4xf32>, tensor<16x4xf32>) down(%d0, %d1 : tensor<8x16xf32>, tensor<8x16xf32>)
      {activation = #mix.activation<relu>} : tensor<?x8xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x8xf32>
  return
}

// -----

func.func @ffn_per_expert_down_hidden(%x: tensor<?x8xf32>, %o: tensor<3xi32>, %t: tensor<?xi32>, %u0: tensor<16x8xf32>, %u1: tensor<16x8xf32>, %d0: tensor<8x16xf32>, %d1: tensor<4x16xf32>) {
  // expected-error @+1 {{operand 'down #1' dim 0 (D) must be 8, the hidden size; got [4, 16]}}
  %h = mix.expert_ffn %x, %o, %t up(%u0, %u1 : tensor<16x8xf32>, tensor<16x8xf32>) down(%d0, %d1 : tensor<8x16xf32>, tensor<4x16xf32>)
      {activation = #mix.activation<relu>} : tensor<?x8xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x8xf32>
  return
}

// -----

func.func @ffn_per_expert_down_width(%x: tensor<?x8xf32>, %o: tensor<3xi32>, %t: tensor<?xi32>, %u0: tensor<16x8xf32>, %u1: tensor<16x8xf32>, %d0: tensor<8x16xf32>, %d1: tensor<8x15xf32>) {
  // expected-error @+1 {{operand 'down #1' dim 1 (F) must be 16, the width of 'up #0'; got [8, 15]}}
  %h = mix.expert_ffn %x, %o, %t up(%u0, %u1 : tensor<16x8xf32>, tensor<16x8xf32>) down(%d0, %d1 : tensor<8x16xf32>, tensor<8x15xf32>)
      {activation = #mix.activation<relu>} : tensor<?x8xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x8xf32>
  return
}

// -----

func.func @ffn_per_expert_gate(%x: tensor<?x8xf32>, %o: tensor<3xi32>, %t: tensor<?xi32>, %g0: tensor<16x8xf32>, %g1: tensor<16x9xf32>, %u0: tensor<16x8xf32>, %u1: tensor<16x8xf32>, %d0: tensor<8x16xf32>, %d1: tensor<8x16xf32>) {
  // expected-error @+1 {{operand 'gate #1' dim 1 (D) must be 8, the hidden size; got [16, 9]}}
  %h = mix.expert_ffn %x, %o, %t gate(%g0, %g1 : tensor<16x8xf32>, tensor<16x9xf32>) up(%u0, %u1 : tensor<16x8xf32>, tensor<16x8xf32>) down(%d0, %d1 : tensor<8x16xf32>, tensor<8x16xf32>)
      {activation = #mix.activation<silu>} : tensor<?x8xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x8xf32>
  return
}

// -----

func.func @ffn_x_rank(%x: tensor<?xf32>, %o: tensor<3xi32>, %t: tensor<?xi32>, %u: tensor<2x16x8xf32>, %d: tensor<2x8x16xf32>) {
  // expected-error @+1 {{operand 'x' must have rank 2 [T, D], got [?]}}
  %h = mix.expert_ffn %x, %o, %t up(%u : tensor<2x16x8xf32>) down(%d : tensor<2x8x16xf32>)
      {activation = #mix.activation<relu>} : tensor<?xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x8xf32>
  return
}

// -----

func.func @ffn_offsets_rank(%x: tensor<?x8xf32>, %o: tensor<3x1xi32>, %t: tensor<?xi32>, %u: tensor<2x16x8xf32>, %d: tensor<2x8x16xf32>) {
  // expected-error @+1 {{operand 'offsets' must have rank 1 [E+1], got [3, 1]}}
  %h = mix.expert_ffn %x, %o, %t up(%u : tensor<2x16x8xf32>) down(%d : tensor<2x8x16xf32>)
      {activation = #mix.activation<relu>} : tensor<?x8xf32>, tensor<3x1xi32>, tensor<?xi32> -> tensor<?x8xf32>
  return
}

// -----

func.func @ffn_offsets_dynamic(%x: tensor<?x8xf32>, %o: tensor<?xi32>, %t: tensor<?xi32>, %u: tensor<2x16x8xf32>, %d: tensor<2x8x16xf32>) {
  // expected-error @+1 {{operand 'offsets' must have a static size E+1 >= 2, got [?]}}
  %h = mix.expert_ffn %x, %o, %t up(%u : tensor<2x16x8xf32>) down(%d : tensor<2x8x16xf32>)
      {activation = #mix.activation<relu>} : tensor<?x8xf32>, tensor<?xi32>, tensor<?xi32> -> tensor<?x8xf32>
  return
}

// -----

func.func @ffn_tokens_rank(%x: tensor<?x8xf32>, %o: tensor<3xi32>, %t: tensor<?x2xi32>, %u: tensor<2x16x8xf32>, %d: tensor<2x8x16xf32>) {
  // expected-error @+1 {{operand 'tokens' must have rank 1 [A], got [?, 2]}}
  %h = mix.expert_ffn %x, %o, %t up(%u : tensor<2x16x8xf32>) down(%d : tensor<2x8x16xf32>)
      {activation = #mix.activation<relu>} : tensor<?x8xf32>, tensor<3xi32>, tensor<?x2xi32> -> tensor<?x8xf32>
  return
}

// -----

func.func @ffn_result_rows(%x: tensor<?x8xf32>, %o: tensor<3xi32>, %t: tensor<6xi32>, %u: tensor<2x16x8xf32>, %d: tensor<2x8x16xf32>) {
  // expected-error @+1 {{result 'h' dim 0 (A) must be 6, the length of 'tokens'; got [5, 8]}}
  %h = mix.expert_ffn %x, %o, %t up(%u : tensor<2x16x8xf32>) down(%d : tensor<2x8x16xf32>)
      {activation = #mix.activation<relu>} : tensor<?x8xf32>, tensor<3xi32>, tensor<6xi32> -> tensor<5x8xf32>
  return
}

// -----

func.func @ffn_result_width(%x: tensor<?x8xf32>, %o: tensor<3xi32>, %t: tensor<?xi32>, %u: tensor<2x16x8xf32>, %d: tensor<2x8x16xf32>) {
  // expected-error @+1 {{result 'h' dim 1 (D) must be 8, the hidden size of 'x'; got [?, 16]}}
  %h = mix.expert_ffn %x, %o, %t up(%u : tensor<2x16x8xf32>) down(%d : tensor<2x8x16xf32>)
      {activation = #mix.activation<relu>} : tensor<?x8xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x16xf32>
  return
}

// -----

func.func @ffn_result_rank(%x: tensor<?x8xf32>, %o: tensor<3xi32>, %t: tensor<?xi32>, %u: tensor<2x16x8xf32>, %d: tensor<2x8x16xf32>) {
  // expected-error @+1 {{result 'h' must have rank 2 [A, D], got [?]}}
  %h = mix.expert_ffn %x, %o, %t up(%u : tensor<2x16x8xf32>) down(%d : tensor<2x8x16xf32>)
      {activation = #mix.activation<relu>} : tensor<?x8xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?xf32>
  return
}

// -----

func.func @ffn_unknown_activation(%x: tensor<?x8xf32>, %o: tensor<3xi32>, %t: tensor<?xi32>, %u: tensor<2x16x8xf32>, %d: tensor<2x8x16xf32>) {
  %h = mix.expert_ffn %x, %o, %t up(%u : tensor<2x16x8xf32>) down(%d : tensor<2x8x16xf32>)
      // expected-error @+2 {{expected ::mlir::mix::Activation to be one of: silu, gelu, gelu_tanh, relu}}
      // expected-error @+1 {{failed to parse Mix_ActivationAttr parameter 'value'}}
      {activation = #mix.activation<tanh>} : tensor<?x8xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x8xf32>
  return
}

// -----

func.func @combine_h_rank(%h: tensor<?xf32>, %t: tensor<?xi32>, %g: tensor<?xf32>, %i: tensor<?x8xf32>) {
  // expected-error @+1 {{operand 'h' must have rank 2 [A, D], got [?]}}
  %y = mix.combine %h, %t, %g into %i : tensor<?xf32>, tensor<?xi32>, tensor<?xf32> into tensor<?x8xf32>
  return
}

// -----

func.func @combine_tokens_rank(%h: tensor<?x8xf32>, %t: tensor<?x1xi32>, %g: tensor<?xf32>, %i: tensor<?x8xf32>) {
  // expected-error @+1 {{operand 'tokens' must have rank 1 [A], got [?, 1]}}
  %y = mix.combine %h, %t, %g into %i : tensor<?x8xf32>, tensor<?x1xi32>, tensor<?xf32> into tensor<?x8xf32>
  return
}

// -----

func.func @combine_gates_rank(%h: tensor<?x8xf32>, %t: tensor<?xi32>, %g: tensor<?x1xf32>, %i: tensor<?x8xf32>) {
  // expected-error @+1 {{operand 'gates' must have rank 1 [A], got [?, 1]}}
  %y = mix.combine %h, %t, %g into %i : tensor<?x8xf32>, tensor<?xi32>, tensor<?x1xf32> into tensor<?x8xf32>
  return
}

// -----

func.func @combine_init_rank(%h: tensor<?x8xf32>, %t: tensor<?xi32>, %g: tensor<?xf32>, %i: tensor<?xf32>) {
  // expected-error @+1 {{operand 'init' must have rank 2 [T, D], got [?]}}
  %y = mix.combine %h, %t, %g into %i : tensor<?x8xf32>, tensor<?xi32>, tensor<?xf32> into tensor<?xf32>
  return
}

// -----

func.func @combine_tokens_length(%h: tensor<6x8xf32>, %t: tensor<5xi32>, %g: tensor<6xf32>, %i: tensor<?x8xf32>) {
  // expected-error @+1 {{operand 'tokens' dim 0 (A) must be 6, the row count of 'h'; got [5]}}
  %y = mix.combine %h, %t, %g into %i : tensor<6x8xf32>, tensor<5xi32>, tensor<6xf32> into tensor<?x8xf32>
  return
}

// -----

func.func @combine_gates_length(%h: tensor<6x8xf32>, %t: tensor<6xi32>, %g: tensor<7xf32>, %i: tensor<?x8xf32>) {
  // expected-error @+1 {{operand 'gates' dim 0 (A) must be 6, the row count of 'h'; got [7]}}
  %y = mix.combine %h, %t, %g into %i : tensor<6x8xf32>, tensor<6xi32>, tensor<7xf32> into tensor<?x8xf32>
  return
}

// -----

func.func @combine_width(%h: tensor<?x8xf32>, %t: tensor<?xi32>, %g: tensor<?xf32>, %i: tensor<?x4xf32>) {
  // expected-error @+1 {{operand 'init' dim 1 (D) must be 8, the row size of 'h'; got [?, 4]}}
  %y = mix.combine %h, %t, %g into %i : tensor<?x8xf32>, tensor<?xi32>, tensor<?xf32> into tensor<?x4xf32>
  return
}

// -----

func.func @zeros_like_type(%x: tensor<?x8xf32>) {
  // expected-error @+1 {{requires the same type for all operands and results}}
  %z = "mix.zeros_like"(%x) : (tensor<?x8xf32>) -> tensor<?x4xf32>
  return
}

// -----

func.func @dense_ffn_x_rank(%x: tensor<?xf32>, %u: tensor<16x8xf32>, %d: tensor<8x16xf32>) {
  // expected-error @+1 {{operand 'x' must have rank 2 [T, D], got [?]}}
  %y = mix.ffn %x up(%u : tensor<16x8xf32>) down(%d : tensor<8x16xf32>) {activation = #mix.activation<relu>} : tensor<?xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @dense_ffn_up_rank(%x: tensor<?x8xf32>, %u: tensor<1x16x8xf32>, %d: tensor<8x16xf32>) {
  // expected-error @+1 {{operand 'up' must have rank 2 [F, D], got [1, 16, 8]}}
  %y = mix.ffn %x up(%u : tensor<1x16x8xf32>) down(%d : tensor<8x16xf32>) {activation = #mix.activation<relu>} : tensor<?x8xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @dense_ffn_down_rank(%x: tensor<?x8xf32>, %u: tensor<16x8xf32>, %d: tensor<8xf32>) {
  // expected-error @+1 {{operand 'down' must have rank 2 [D, F], got [8]}}
  %y = mix.ffn %x up(%u : tensor<16x8xf32>) down(%d : tensor<8xf32>) {activation = #mix.activation<relu>} : tensor<?x8xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @dense_ffn_up_hidden(%x: tensor<?x8xf32>, %u: tensor<16x4xf32>, %d: tensor<8x16xf32>) {
  // expected-error @+1 {{operand 'up' dim 1 (D) must be 8, the hidden size of 'x'; got [16, 4]}}
  %y = mix.ffn %x up(%u : tensor<16x4xf32>) down(%d : tensor<8x16xf32>) {activation = #mix.activation<relu>} : tensor<?x8xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @dense_ffn_down_hidden(%x: tensor<?x8xf32>, %u: tensor<16x8xf32>, %d: tensor<4x16xf32>) {
  // expected-error @+1 {{operand 'down' dim 0 (D) must be 8, the hidden size of 'x'; got [4, 16]}}
  %y = mix.ffn %x up(%u : tensor<16x8xf32>) down(%d : tensor<4x16xf32>) {activation = #mix.activation<relu>} : tensor<?x8xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @dense_ffn_down_width(%x: tensor<?x8xf32>, %u: tensor<16x8xf32>, %d: tensor<8x12xf32>) {
  // expected-error @+1 {{operand 'down' dim 1 (F) must be 16, the width of 'up'; got [8, 12]}}
  %y = mix.ffn %x up(%u : tensor<16x8xf32>) down(%d : tensor<8x12xf32>) {activation = #mix.activation<relu>} : tensor<?x8xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @dense_ffn_gate_width(%x: tensor<?x8xf32>, %g: tensor<12x8xf32>, %u: tensor<16x8xf32>, %d: tensor<8x16xf32>) {
  // expected-error @+1 {{operand 'gate' dim 0 (F) must be 16, the width of 'up'; got [12, 8]}}
  %y = mix.ffn %x gate(%g : tensor<12x8xf32>) up(%u : tensor<16x8xf32>) down(%d : tensor<8x16xf32>) {activation = #mix.activation<silu>} : tensor<?x8xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @dense_ffn_gate_hidden(%x: tensor<?x8xf32>, %g: tensor<16x4xf32>, %u: tensor<16x8xf32>, %d: tensor<8x16xf32>) {
  // expected-error @+1 {{operand 'gate' dim 1 (D) must be 8, the hidden size of 'x'; got [16, 4]}}
  %y = mix.ffn %x gate(%g : tensor<16x4xf32>) up(%u : tensor<16x8xf32>) down(%d : tensor<8x16xf32>) {activation = #mix.activation<silu>} : tensor<?x8xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @dense_ffn_gate_rank(%x: tensor<?x8xf32>, %g: tensor<16xf32>, %u: tensor<16x8xf32>, %d: tensor<8x16xf32>) {
  // expected-error @+1 {{operand 'gate' must have rank 2 [F, D], got [16]}}
  %y = mix.ffn %x gate(%g : tensor<16xf32>) up(%u : tensor<16x8xf32>) down(%d : tensor<8x16xf32>) {activation = #mix.activation<silu>} : tensor<?x8xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @dense_ffn_result(%x: tensor<?x8xf32>, %u: tensor<16x8xf32>, %d: tensor<8x16xf32>) {
  // expected-error @+1 {{result 'y' dim 1 (D) must be 8, fixed by the operands; got [?, 16]}}
  %y = mix.ffn %x up(%u : tensor<16x8xf32>) down(%d : tensor<8x16xf32>) {activation = #mix.activation<relu>} : tensor<?x8xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @dense_ffn_result_tokens(%x: tensor<3x8xf32>, %u: tensor<16x8xf32>, %d: tensor<8x16xf32>) {
  // expected-error @+1 {{result 'y' dim 0 (T) must be 3, the token count of 'x'; got [4, 8]}}
  %y = mix.ffn %x up(%u : tensor<16x8xf32>) down(%d : tensor<8x16xf32>) {activation = #mix.activation<relu>} : tensor<3x8xf32> -> tensor<4x8xf32>
  return
}

// -----

func.func @sigmoid_gate_rows(%x: tensor<?x8xf32>, %w: tensor<2x8xf32>, %s: tensor<?x8xf32>) {
  // expected-error @+1 {{operand 'gate_weight' dim 0 (rows) must be 1, one gate logit per token; got [2, 8]}}
  %y = mix.sigmoid_gate %x, %w, %s : tensor<?x8xf32>, tensor<2x8xf32>, tensor<?x8xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @sigmoid_gate_hidden(%x: tensor<?x8xf32>, %w: tensor<1x4xf32>, %s: tensor<?x8xf32>) {
  // expected-error @+1 {{operand 'gate_weight' dim 1 (D) must be 8, the hidden size of 'x'; got [1, 4]}}
  %y = mix.sigmoid_gate %x, %w, %s : tensor<?x8xf32>, tensor<1x4xf32>, tensor<?x8xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @sigmoid_gate_weight_rank(%x: tensor<?x8xf32>, %w: tensor<8xf32>, %s: tensor<?x8xf32>) {
  // expected-error @+1 {{operand 'gate_weight' must have rank 2 [1, D], got [8]}}
  %y = mix.sigmoid_gate %x, %w, %s : tensor<?x8xf32>, tensor<8xf32>, tensor<?x8xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @sigmoid_gate_x_rank(%x: tensor<8xf32>, %w: tensor<1x8xf32>, %s: tensor<?x8xf32>) {
  // expected-error @+1 {{operand 'x' must have rank 2 [T, D], got [8]}}
  %y = mix.sigmoid_gate %x, %w, %s : tensor<8xf32>, tensor<1x8xf32>, tensor<?x8xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @sigmoid_gate_y_rank(%x: tensor<?x8xf32>, %w: tensor<1x8xf32>, %s: tensor<?xf32>) {
  // expected-error @+1 {{operand 'y' must have rank 2 [T, H], got [?]}}
  %y = mix.sigmoid_gate %x, %w, %s : tensor<?x8xf32>, tensor<1x8xf32>, tensor<?xf32> -> tensor<?xf32>
  return
}

// -----

func.func @sigmoid_gate_tokens(%x: tensor<3x8xf32>, %w: tensor<1x8xf32>, %s: tensor<4x8xf32>) {
  // expected-error @+1 {{operand 'y' dim 0 (T) must be 3, the token count of 'x'; got [4, 8]}}
  %y = mix.sigmoid_gate %x, %w, %s : tensor<3x8xf32>, tensor<1x8xf32>, tensor<4x8xf32> -> tensor<4x8xf32>
  return
}

// -----

func.func @sigmoid_gate_result(%x: tensor<?x8xf32>, %w: tensor<1x8xf32>, %s: tensor<?x8xf32>) {
  // expected-error @+1 {{result 'gated' must have the type of operand 'y' ('tensor<?x8xf32>'), got 'tensor<?x4xf32>'}}
  %y = mix.sigmoid_gate %x, %w, %s : tensor<?x8xf32>, tensor<1x8xf32>, tensor<?x8xf32> -> tensor<?x4xf32>
  return
}

// -----

func.func @linear_x_rank(%x: tensor<?xf32>, %w: tensor<4x8xf32>) {
  // expected-error @+1 {{operand 'x' must have rank 2 [T, D_in], got [?]}}
  %y = mix.linear %x, %w : tensor<?xf32>, tensor<4x8xf32> -> tensor<?x4xf32>
  return
}

// -----

func.func @linear_weight_rank(%x: tensor<?x8xf32>, %w: tensor<8xf32>) {
  // expected-error @+1 {{operand 'weight' must have rank 2 [D_out, D_in], got [8]}}
  %y = mix.linear %x, %w : tensor<?x8xf32>, tensor<8xf32> -> tensor<?x4xf32>
  return
}

// -----

func.func @linear_in(%x: tensor<?x8xf32>, %w: tensor<4x6xf32>) {
  // expected-error @+1 {{operand 'x' dim 1 (D_in) must be 6, the input size of 'weight'; got [?, 8]}}
  %y = mix.linear %x, %w : tensor<?x8xf32>, tensor<4x6xf32> -> tensor<?x4xf32>
  return
}

// -----

func.func @linear_bias(%x: tensor<?x8xf32>, %w: tensor<4x8xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{operand 'bias' dim 0 (D_out) must be 4, the output size of 'weight'; got [8]}}
  %y = mix.linear %x, %w bias(%b : tensor<8xf32>) : tensor<?x8xf32>, tensor<4x8xf32> -> tensor<?x4xf32>
  return
}

// -----

func.func @linear_bias_rank(%x: tensor<?x8xf32>, %w: tensor<4x8xf32>, %b: tensor<1x4xf32>) {
  // expected-error @+1 {{operand 'bias' must have rank 1 [D_out], got [1, 4]}}
  %y = mix.linear %x, %w bias(%b : tensor<1x4xf32>) : tensor<?x8xf32>, tensor<4x8xf32> -> tensor<?x4xf32>
  return
}

// -----

func.func @linear_result(%x: tensor<?x8xf32>, %w: tensor<4x8xf32>) {
  // expected-error @+1 {{result 'y' dim 1 (D_out) must be 4, fixed by the operands; got [?, 8]}}
  %y = mix.linear %x, %w : tensor<?x8xf32>, tensor<4x8xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @oai_ungated(%x: tensor<?x8xf32>, %o: tensor<3xi32>, %t: tensor<?xi32>, %u: tensor<2x16x8xf32>, %d: tensor<2x8x16xf32>) {
  // expected-error @+1 {{activation 'swiglu_oai' needs gate weights}}
  %h = mix.expert_ffn %x, %o, %t up(%u : tensor<2x16x8xf32>) down(%d : tensor<2x8x16xf32>)
      {activation = #mix.activation<swiglu_oai>} : tensor<?x8xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x8xf32>
  return
}

// -----

func.func @oai_limit(%x: tensor<?x8xf32>, %o: tensor<3xi32>, %t: tensor<?xi32>, %u: tensor<2x16x8xf32>, %d: tensor<2x8x16xf32>) {
  // expected-error @+1 {{attributes 'swiglu_alpha' and 'swiglu_limit' must be finite and positive, got 1.702000e+00 and -1.000000e+00}}
  %h = mix.expert_ffn %x, %o, %t gate(%u : tensor<2x16x8xf32>) up(%u : tensor<2x16x8xf32>) down(%d : tensor<2x8x16xf32>)
      {activation = #mix.activation<swiglu_oai>, swiglu_limit = -1.0 : f64} : tensor<?x8xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x8xf32>
  return
}

// -----

func.func @bias_shape(%x: tensor<?x8xf32>, %o: tensor<3xi32>, %t: tensor<?xi32>, %u: tensor<2x16x8xf32>, %d: tensor<2x8x16xf32>, %b: tensor<2x8xf32>) {
  // expected-error @+1 {{operand 'up_bias' dim 1 (F) must be 16, the experts' width F; got [2, 8]}}
  %h = mix.expert_ffn %x, %o, %t gate(%u : tensor<2x16x8xf32>) up(%u : tensor<2x16x8xf32>) down(%d : tensor<2x8x16xf32>) up_bias(%b : tensor<2x8xf32>)
      {activation = #mix.activation<silu>} : tensor<?x8xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x8xf32>
  return
}

// -----

func.func @gate_bias_ungated(%x: tensor<?x8xf32>, %o: tensor<3xi32>, %t: tensor<?xi32>, %u: tensor<2x16x8xf32>, %d: tensor<2x8x16xf32>, %b: tensor<2x16xf32>) {
  // expected-error @+1 {{operand 'gate_bias' needs gate weights}}
  %h = mix.expert_ffn %x, %o, %t up(%u : tensor<2x16x8xf32>) down(%d : tensor<2x8x16xf32>) gate_bias(%b : tensor<2x16xf32>)
      {activation = #mix.activation<relu>} : tensor<?x8xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x8xf32>
  return
}

// -----

func.func @oai_dense(%x: tensor<?x8xf32>, %u: tensor<16x8xf32>, %d: tensor<8x16xf32>) {
  // expected-error @+1 {{activation 'swiglu_oai' is supported by mix.expert_ffn and mix.token_choice_moe only}}
  %y = mix.ffn %x gate(%u : tensor<16x8xf32>) up(%u : tensor<16x8xf32>) down(%d : tensor<8x16xf32>)
      {activation = #mix.activation<swiglu_oai>} : tensor<?x8xf32> -> tensor<?x8xf32>
  return
}
