// RUN: mixtile-opt %s -split-input-file -verify-diagnostics

func.func @token_mix_x_rank(%x: tensor<?x64xf32>, %c: tensor<32x64xf32>) {
  // expected-error @+1 {{operand 'x' must have rank 3 [B, S, D], got [?, 64]}}
  %z, %m = mix.token_mix %x, %c {group_size = 4, temperature = 1.0} : tensor<?x64xf32>, tensor<32x64xf32> -> tensor<32x?x64xf32>, tensor<?x?x32xf32>
  return
}

// -----

func.func @token_mix_controller_rank(%x: tensor<?x?x64xf32>, %c: tensor<32x64x1xf32>) {
  // expected-error @+1 {{operand 'controller' must have rank 2 [E, D], got [32, 64, 1]}}
  %z, %m = mix.token_mix %x, %c {group_size = 4, temperature = 1.0} : tensor<?x?x64xf32>, tensor<32x64x1xf32> -> tensor<32x?x64xf32>, tensor<?x?x32xf32>
  return
}

// -----

func.func @token_mix_hidden(%x: tensor<?x?x48xf32>, %c: tensor<32x64xf32>) {
  // expected-error @+1 {{operand 'x' dim 2 (D) must be 64, the input size of 'controller'; got [?, ?, 48]}}
  %z, %m = mix.token_mix %x, %c {group_size = 4, temperature = 1.0} : tensor<?x?x48xf32>, tensor<32x64xf32> -> tensor<32x?x64xf32>, tensor<?x?x32xf32>
  return
}

// -----

func.func @token_mix_temperature(%x: tensor<?x?x64xf32>, %c: tensor<32x64xf32>) {
  // expected-error @+1 {{attribute 'temperature' must be a finite number > 0, got -5.000000e-01}}
  %z, %m = mix.token_mix %x, %c {group_size = 4, temperature = -0.5} : tensor<?x?x64xf32>, tensor<32x64xf32> -> tensor<32x?x64xf32>, tensor<?x?x32xf32>
  return
}

// -----

func.func @token_mix_group_size_zero(%x: tensor<?x?x64xf32>, %c: tensor<32x64xf32>) {
  // expected-error @+1 {{attribute 'group_size' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %z, %m = mix.token_mix %x, %c {group_size = 0, temperature = 1.0} : tensor<?x?x64xf32>, tensor<32x64xf32> -> tensor<32x?x64xf32>, tensor<?x?x32xf32>
  return
}

// -----

func.func @token_mix_group_divides(%x: tensor<6x?x64xf32>, %c: tensor<32x64xf32>) {
  // expected-error @+1 {{attribute 'group_size' (4) must divide the batch size B = 6 of 'x'}}
  %z, %m = mix.token_mix %x, %c {group_size = 4, temperature = 1.0} : tensor<6x?x64xf32>, tensor<32x64xf32> -> tensor<32x?x64xf32>, tensor<6x?x32xf32>
  return
}

// -----

func.func @token_mix_mixed_rank(%x: tensor<?x?x64xf32>, %c: tensor<32x64xf32>) {
  // expected-error @+1 {{result 'mixed' must have rank 3 [E, N, D], got [32, ?]}}
  %z, %m = mix.token_mix %x, %c {group_size = 4, temperature = 1.0} : tensor<?x?x64xf32>, tensor<32x64xf32> -> tensor<32x?xf32>, tensor<?x?x32xf32>
  return
}

// -----

func.func @token_mix_mixed_experts(%x: tensor<?x?x64xf32>, %c: tensor<32x64xf32>) {
  // expected-error @+1 {{result 'mixed' dim 0 (E) must be 32, the number of experts; got [16, ?, 64]}}
  %z, %m = mix.token_mix %x, %c {group_size = 4, temperature = 1.0} : tensor<?x?x64xf32>, tensor<32x64xf32> -> tensor<16x?x64xf32>, tensor<?x?x32xf32>
  return
}

// -----

func.func @token_mix_mixed_rows(%x: tensor<8x3x64xf32>, %c: tensor<32x64xf32>) {
  // expected-error @+1 {{result 'mixed' dim 1 (N) must be 6, (B / group_size) * S; got [32, 8, 64]}}
  %z, %m = mix.token_mix %x, %c {group_size = 4, temperature = 1.0} : tensor<8x3x64xf32>, tensor<32x64xf32> -> tensor<32x8x64xf32>, tensor<8x3x32xf32>
  return
}

// -----

func.func @token_mix_mixed_width(%x: tensor<?x?x64xf32>, %c: tensor<32x64xf32>) {
  // expected-error @+1 {{result 'mixed' dim 2 (D) must be 64, the hidden size; got [32, ?, 32]}}
  %z, %m = mix.token_mix %x, %c {group_size = 4, temperature = 1.0} : tensor<?x?x64xf32>, tensor<32x64xf32> -> tensor<32x?x32xf32>, tensor<?x?x32xf32>
  return
}

// -----

func.func @token_mix_emit_rank(%x: tensor<?x?x64xf32>, %c: tensor<32x64xf32>) {
  // expected-error @+1 {{result 'emit_weights' must have rank 3 [B, S, E], got [?, 32]}}
  %z, %m = mix.token_mix %x, %c {group_size = 4, temperature = 1.0} : tensor<?x?x64xf32>, tensor<32x64xf32> -> tensor<32x?x64xf32>, tensor<?x32xf32>
  return
}

// -----

func.func @token_mix_emit_batch(%x: tensor<8x?x64xf32>, %c: tensor<32x64xf32>) {
  // expected-error @+1 {{result 'emit_weights' dim 0 (B) must be 8, the batch size of 'x'; got [4, ?, 32]}}
  %z, %m = mix.token_mix %x, %c {group_size = 4, temperature = 1.0} : tensor<8x?x64xf32>, tensor<32x64xf32> -> tensor<32x?x64xf32>, tensor<4x?x32xf32>
  return
}

// -----

func.func @token_mix_emit_seq(%x: tensor<?x5x64xf32>, %c: tensor<32x64xf32>) {
  // expected-error @+1 {{result 'emit_weights' dim 1 (S) must be 5, the sequence length of 'x'; got [?, 6, 32]}}
  %z, %m = mix.token_mix %x, %c {group_size = 4, temperature = 1.0} : tensor<?x5x64xf32>, tensor<32x64xf32> -> tensor<32x?x64xf32>, tensor<?x6x32xf32>
  return
}

// -----

func.func @token_mix_emit_experts(%x: tensor<?x?x64xf32>, %c: tensor<32x64xf32>) {
  // expected-error @+1 {{result 'emit_weights' dim 2 (E) must be 32, the number of experts; got [?, ?, 16]}}
  %z, %m = mix.token_mix %x, %c {group_size = 4, temperature = 1.0} : tensor<?x?x64xf32>, tensor<32x64xf32> -> tensor<32x?x64xf32>, tensor<?x?x16xf32>
  return
}

// -----

func.func @batched_ffn_rank(%z: tensor<32x64xf32>, %u: tensor<32x16x64xf32>, %d: tensor<32x64x16xf32>) {
  // expected-error @+1 {{operand 'z' must have rank 3 [E, N, D], got [32, 64]}}
  %h = mix.batched_expert_ffn %z up(%u : tensor<32x16x64xf32>) down(%d : tensor<32x64x16xf32>) {activation = #mix.activation<relu>} : tensor<32x64xf32> -> tensor<32x64xf32>
  return
}

// -----

func.func @batched_ffn_dynamic_experts(%z: tensor<?x?x64xf32>, %u: tensor<32x16x64xf32>, %d: tensor<32x64x16xf32>) {
  // expected-error @+1 {{operand 'z' must have a static expert count E, got [?, ?, 64]}}
  %h = mix.batched_expert_ffn %z up(%u : tensor<32x16x64xf32>) down(%d : tensor<32x64x16xf32>) {activation = #mix.activation<relu>} : tensor<?x?x64xf32> -> tensor<?x?x64xf32>
  return
}

// -----

func.func @batched_ffn_weights(%z: tensor<32x?x64xf32>, %u: tensor<16x16x64xf32>, %d: tensor<32x64x16xf32>) {
  // expected-error @+1 {{operand 'up' dim 0 (E) must be 32, the number of experts; got [16, 16, 64]}}
  %h = mix.batched_expert_ffn %z up(%u : tensor<16x16x64xf32>) down(%d : tensor<32x64x16xf32>) {activation = #mix.activation<relu>} : tensor<32x?x64xf32> -> tensor<32x?x64xf32>
  return
}

// -----

func.func @batched_ffn_result(%z: tensor<32x?x64xf32>, %u: tensor<32x16x64xf32>, %d: tensor<32x64x16xf32>) {
  // expected-error @+1 {{result 'h' must have the type of operand 'z' ('tensor<32x?x64xf32>'), got 'tensor<32x?x16xf32>'}}
  %h = mix.batched_expert_ffn %z up(%u : tensor<32x16x64xf32>) down(%d : tensor<32x64x16xf32>) {activation = #mix.activation<relu>} : tensor<32x?x64xf32> -> tensor<32x?x16xf32>
  return
}

// -----

func.func @token_emit_h_rank(%h: tensor<32x64xf32>, %m: tensor<?x?x32xf32>) {
  // expected-error @+1 {{operand 'h' must have rank 3 [E, N, D], got [32, 64]}}
  %y = mix.token_emit %h, %m {group_size = 4} : tensor<32x64xf32>, tensor<?x?x32xf32> -> tensor<?x?x64xf32>
  return
}

// -----

func.func @token_emit_weights_rank(%h: tensor<32x?x64xf32>, %m: tensor<?x32xf32>) {
  // expected-error @+1 {{operand 'emit_weights' must have rank 3 [B, S, E], got [?, 32]}}
  %y = mix.token_emit %h, %m {group_size = 4} : tensor<32x?x64xf32>, tensor<?x32xf32> -> tensor<?x?x64xf32>
  return
}

// -----

func.func @token_emit_experts(%h: tensor<32x?x64xf32>, %m: tensor<?x?x16xf32>) {
  // expected-error @+1 {{operand 'emit_weights' dim 2 (E) must be 32, the expert count of 'h'; got [?, ?, 16]}}
  %y = mix.token_emit %h, %m {group_size = 4} : tensor<32x?x64xf32>, tensor<?x?x16xf32> -> tensor<?x?x64xf32>
  return
}

// -----

func.func @token_emit_group_divides(%h: tensor<32x?x64xf32>, %m: tensor<10x?x32xf32>) {
  // expected-error @+1 {{attribute 'group_size' (4) must divide the batch size B = 10 of 'emit_weights'}}
  %y = mix.token_emit %h, %m {group_size = 4} : tensor<32x?x64xf32>, tensor<10x?x32xf32> -> tensor<10x?x64xf32>
  return
}

// -----

func.func @token_emit_rows(%h: tensor<32x5x64xf32>, %m: tensor<8x2x32xf32>) {
  // expected-error @+1 {{operand 'h' dim 1 (N) must be 4, (B / group_size) * S; got [32, 5, 64]}}
  %y = mix.token_emit %h, %m {group_size = 4} : tensor<32x5x64xf32>, tensor<8x2x32xf32> -> tensor<8x2x64xf32>
  return
}

// -----

func.func @token_emit_result_rank(%h: tensor<32x?x64xf32>, %m: tensor<?x?x32xf32>) {
  // expected-error @+1 {{result 'y' must have rank 3 [B, S, D], got [?, 64]}}
  %y = mix.token_emit %h, %m {group_size = 4} : tensor<32x?x64xf32>, tensor<?x?x32xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @token_emit_result_batch(%h: tensor<32x?x64xf32>, %m: tensor<8x?x32xf32>) {
  // expected-error @+1 {{result 'y' dim 0 (B) must be 8, the batch size of 'emit_weights'; got [4, ?, 64]}}
  %y = mix.token_emit %h, %m {group_size = 4} : tensor<32x?x64xf32>, tensor<8x?x32xf32> -> tensor<4x?x64xf32>
  return
}

// -----

func.func @token_emit_result_seq(%h: tensor<32x?x64xf32>, %m: tensor<?x3x32xf32>) {
  // expected-error @+1 {{result 'y' dim 1 (S) must be 3, the sequence length of 'emit_weights'; got [?, 4, 64]}}
  %y = mix.token_emit %h, %m {group_size = 4} : tensor<32x?x64xf32>, tensor<?x3x32xf32> -> tensor<?x4x64xf32>
  return
}

// -----

func.func @token_emit_result_width(%h: tensor<32x?x64xf32>, %m: tensor<?x?x32xf32>) {
  // expected-error @+1 {{result 'y' dim 2 (D) must be 64, the row size of 'h'; got [?, ?, 32]}}
  %y = mix.token_emit %h, %m {group_size = 4} : tensor<32x?x64xf32>, tensor<?x?x32xf32> -> tensor<?x?x32xf32>
  return
}

// -----

func.func @mot_x_rank(%x: tensor<?x64xf32>, %c: tensor<32x64xf32>, %u: tensor<32x16x64xf32>, %d: tensor<32x64x16xf32>) {
  // expected-error @+1 {{operand 'x' must have rank 3 [B, S, D], got [?, 64]}}
  %y = mix.mixture_of_tokens %x controller(%c : tensor<32x64xf32>) experts up(%u : tensor<32x16x64xf32>) down(%d : tensor<32x64x16xf32>)
      {group_size = 4, temperature = 1.0, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @mot_controller_static(%x: tensor<?x?x64xf32>, %c: tensor<?x64xf32>, %u: tensor<32x16x64xf32>, %d: tensor<32x64x16xf32>) {
  // expected-error @+1 {{weight 'controller' must have a static shape [E, D], got [?, 64]}}
  %y = mix.mixture_of_tokens %x controller(%c : tensor<?x64xf32>) experts up(%u : tensor<32x16x64xf32>) down(%d : tensor<32x64x16xf32>)
      {group_size = 4, temperature = 1.0, activation = #mix.activation<relu>} : tensor<?x?x64xf32> -> tensor<?x?x64xf32>
  return
}

// -----

func.func @mot_hidden(%x: tensor<?x?x32xf32>, %c: tensor<32x64xf32>, %u: tensor<32x16x64xf32>, %d: tensor<32x64x16xf32>) {
  // expected-error @+1 {{operand 'x' dim 2 (D) must be 64, the input size of 'controller'; got [?, ?, 32]}}
  %y = mix.mixture_of_tokens %x controller(%c : tensor<32x64xf32>) experts up(%u : tensor<32x16x64xf32>) down(%d : tensor<32x64x16xf32>)
      {group_size = 4, temperature = 1.0, activation = #mix.activation<relu>} : tensor<?x?x32xf32> -> tensor<?x?x32xf32>
  return
}

// -----

func.func @mot_temperature(%x: tensor<?x?x64xf32>, %c: tensor<32x64xf32>, %u: tensor<32x16x64xf32>, %d: tensor<32x64x16xf32>) {
  // expected-error @+1 {{attribute 'temperature' must be a finite number > 0, got 0.000000e+00}}
  %y = mix.mixture_of_tokens %x controller(%c : tensor<32x64xf32>) experts up(%u : tensor<32x16x64xf32>) down(%d : tensor<32x64x16xf32>)
      {group_size = 4, temperature = 0.0, activation = #mix.activation<relu>} : tensor<?x?x64xf32> -> tensor<?x?x64xf32>
  return
}

// -----

func.func @mot_group_divides(%x: tensor<6x?x64xf32>, %c: tensor<32x64xf32>, %u: tensor<32x16x64xf32>, %d: tensor<32x64x16xf32>) {
  // expected-error @+1 {{attribute 'group_size' (4) must divide the batch size B = 6 of 'x'}}
  %y = mix.mixture_of_tokens %x controller(%c : tensor<32x64xf32>) experts up(%u : tensor<32x16x64xf32>) down(%d : tensor<32x64x16xf32>)
      {group_size = 4, temperature = 1.0, activation = #mix.activation<relu>} : tensor<6x?x64xf32> -> tensor<6x?x64xf32>
  return
}

// -----

func.func @mot_transition_needs_k(%x: tensor<?x?x64xf32>, %c: tensor<32x64xf32>, %u: tensor<32x16x64xf32>, %d: tensor<32x64x16xf32>) {
  // expected-error @+1 {{transition mode needs attribute 'k', the experts per token}}
  %y = mix.mixture_of_tokens %x controller(%c : tensor<32x64xf32>) experts up(%u : tensor<32x16x64xf32>) down(%d : tensor<32x64x16xf32>)
      {group_size = 4, temperature = 1.0, transition, activation = #mix.activation<relu>} : tensor<?x?x64xf32> -> tensor<?x?x64xf32>
  return
}

// -----

func.func @mot_k_without_transition(%x: tensor<?x?x64xf32>, %c: tensor<32x64xf32>, %u: tensor<32x16x64xf32>, %d: tensor<32x64x16xf32>) {
  // expected-error @+1 {{attribute 'k' applies only in transition mode ('transition')}}
  %y = mix.mixture_of_tokens %x controller(%c : tensor<32x64xf32>) experts up(%u : tensor<32x16x64xf32>) down(%d : tensor<32x64x16xf32>)
      {group_size = 4, temperature = 1.0, k = 2, activation = #mix.activation<relu>} : tensor<?x?x64xf32> -> tensor<?x?x64xf32>
  return
}

// -----

func.func @mot_k_above_experts(%x: tensor<?x?x64xf32>, %c: tensor<32x64xf32>, %u: tensor<32x16x64xf32>, %d: tensor<32x64x16xf32>) {
  // expected-error @+1 {{attribute 'k' (33) must not exceed the number of experts E = 32}}
  %y = mix.mixture_of_tokens %x controller(%c : tensor<32x64xf32>) experts up(%u : tensor<32x16x64xf32>) down(%d : tensor<32x64x16xf32>)
      {group_size = 4, temperature = 1.0, transition, k = 33, activation = #mix.activation<relu>} : tensor<?x?x64xf32> -> tensor<?x?x64xf32>
  return
}

// -----

func.func @mot_expert_weights(%x: tensor<?x?x64xf32>, %c: tensor<32x64xf32>, %u: tensor<32x16x64xf32>, %d: tensor<32x64x8xf32>) {
  // expected-error @+1 {{operand 'down' dim 2 (F) must be 16, the width of 'up'; got [32, 64, 8]}}
  %y = mix.mixture_of_tokens %x controller(%c : tensor<32x64xf32>) experts up(%u : tensor<32x16x64xf32>) down(%d : tensor<32x64x8xf32>)
      {group_size = 4, temperature = 1.0, activation = #mix.activation<relu>} : tensor<?x?x64xf32> -> tensor<?x?x64xf32>
  return
}

// -----

func.func @mot_result(%x: tensor<?x?x64xf32>, %c: tensor<32x64xf32>, %u: tensor<32x16x64xf32>, %d: tensor<32x64x16xf32>) {
  // expected-error @+1 {{result 'output' must have the type of operand 'x' ('tensor<?x?x64xf32>'), got 'tensor<?x64xf32>'}}
  %y = mix.mixture_of_tokens %x controller(%c : tensor<32x64xf32>) experts up(%u : tensor<32x16x64xf32>) down(%d : tensor<32x64x16xf32>)
      {group_size = 4, temperature = 1.0, activation = #mix.activation<relu>} : tensor<?x?x64xf32> -> tensor<?x64xf32>
  return
}
