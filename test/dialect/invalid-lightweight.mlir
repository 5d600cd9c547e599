// RUN: mixtile-opt %s -split-input-file -verify-diagnostics

func.func @soft_route_hidden(%x: tensor<?x32xf32>, %r: tensor<10x64xf32>) {
  // expected-error @+1 {{operand 'x' dim 1 (D) must be 64, the input size of 'router'; got [?, 32]}}
  %p = mix.soft_route %x, %r : tensor<?x32xf32>, tensor<10x64xf32> -> tensor<?x10xf32>
  return
}

// -----

func.func @soft_route_k(%x: tensor<?x64xf32>, %r: tensor<10x64xf32>) {
  // expected-error @+1 {{attribute 'k' (11) must not exceed the number of experts E = 10}}
  %p = mix.soft_route %x, %r {k = 11} : tensor<?x64xf32>, tensor<10x64xf32> -> tensor<?x10xf32>
  return
}

// -----

func.func @soft_route_result(%x: tensor<?x64xf32>, %r: tensor<10x64xf32>) {
  // expected-error @+1 {{result 'probs' dim 1 (E) must be 10, fixed by the operands; got [?, 8]}}
  %p = mix.soft_route %x, %r : tensor<?x64xf32>, tensor<10x64xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @soft_route_router_static(%x: tensor<?x64xf32>, %r: tensor<?x64xf32>) {
  // expected-error @+1 {{weight 'router' must have a static shape [E, D], got [?, 64]}}
  %p = mix.soft_route %x, %r : tensor<?x64xf32>, tensor<?x64xf32> -> tensor<?x10xf32>
  return
}

// -----

func.func @mix_vectors_h_rank(%h: tensor<?xf32>, %p: tensor<?x10xf32>, %v: tensor<10x128xf32>) {
  // expected-error @+1 {{operand 'h' must have rank 2 [T, H], got [?]}}
  %y = mix.mix_vectors %h, %p, %v : tensor<?xf32>, tensor<?x10xf32>, tensor<10x128xf32> -> tensor<?xf32>
  return
}

// -----

func.func @mix_vectors_probs_rank(%h: tensor<?x128xf32>, %p: tensor<?xf32>, %v: tensor<10x128xf32>) {
  // expected-error @+1 {{operand 'probs' must have rank 2 [T, E], got [?]}}
  %y = mix.mix_vectors %h, %p, %v : tensor<?x128xf32>, tensor<?xf32>, tensor<10x128xf32> -> tensor<?x128xf32>
  return
}

// -----

func.func @mix_vectors_vectors_rank(%h: tensor<?x128xf32>, %p: tensor<?x10xf32>, %v: tensor<1280xf32>) {
  // expected-error @+1 {{operand 'vectors' must have rank 2 [E, H], got [1280]}}
  %y = mix.mix_vectors %h, %p, %v : tensor<?x128xf32>, tensor<?x10xf32>, tensor<1280xf32> -> tensor<?x128xf32>
  return
}

// -----

func.func @mix_vectors_tokens(%h: tensor<3x128xf32>, %p: tensor<4x10xf32>, %v: tensor<10x128xf32>) {
  // expected-error @+1 {{operand 'probs' dim 0 (T) must be 3, the token count of 'h'; got [4, 10]}}
  %y = mix.mix_vectors %h, %p, %v : tensor<3x128xf32>, tensor<4x10xf32>, tensor<10x128xf32> -> tensor<3x128xf32>
  return
}

// -----

func.func @mix_vectors_experts(%h: tensor<?x128xf32>, %p: tensor<?x8xf32>, %v: tensor<10x128xf32>) {
  // expected-error @+1 {{operand 'probs' dim 1 (E) must be 10, the number of rows of 'vectors'; got [?, 8]}}
  %y = mix.mix_vectors %h, %p, %v : tensor<?x128xf32>, tensor<?x8xf32>, tensor<10x128xf32> -> tensor<?x128xf32>
  return
}

// -----

func.func @mix_vectors_width(%h: tensor<?x128xf32>, %p: tensor<?x10xf32>, %v: tensor<10x64xf32>) {
  // expected-error @+1 {{operand 'vectors' dim 1 (H) must be 128, the row size of 'h'; got [10, 64]}}
  %y = mix.mix_vectors %h, %p, %v : tensor<?x128xf32>, tensor<?x10xf32>, tensor<10x64xf32> -> tensor<?x128xf32>
  return
}

// -----

func.func @mix_vectors_result(%h: tensor<?x128xf32>, %p: tensor<?x10xf32>, %v: tensor<10x128xf32>) {
  // expected-error @+1 {{result 'y' must have the type of operand 'h' ('tensor<?x128xf32>'), got 'tensor<?x64xf32>'}}
  %y = mix.mix_vectors %h, %p, %v : tensor<?x128xf32>, tensor<?x10xf32>, tensor<10x128xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @mix_lora_x_rank(%x: tensor<?xf32>, %p: tensor<?x10xf32>, %a: tensor<10x4x64xf32>, %b: tensor<10x32x4xf32>, %i: tensor<?x32xf32>) {
  // expected-error @+1 {{operand 'x' must have rank 2 [T, D_in], got [?]}}
  %y = mix.mix_lora %x, %p, %a, %b into %i {alpha = 1.0} : tensor<?xf32>, tensor<?x10xf32>, tensor<10x4x64xf32>, tensor<10x32x4xf32> into tensor<?x32xf32>
  return
}

// -----

func.func @mix_lora_probs_rank(%x: tensor<?x64xf32>, %p: tensor<?xf32>, %a: tensor<10x4x64xf32>, %b: tensor<10x32x4xf32>, %i: tensor<?x32xf32>) {
  // expected-error @+1 {{operand 'probs' must have rank 2 [T, E], got [?]}}
  %y = mix.mix_lora %x, %p, %a, %b into %i {alpha = 1.0} : tensor<?x64xf32>, tensor<?xf32>, tensor<10x4x64xf32>, tensor<10x32x4xf32> into tensor<?x32xf32>
  return
}

// -----

func.func @mix_lora_init_rank(%x: tensor<?x64xf32>, %p: tensor<?x10xf32>, %a: tensor<10x4x64xf32>, %b: tensor<10x32x4xf32>, %i: tensor<?xf32>) {
  // expected-error @+1 {{operand 'init' must have rank 2 [T, D_out], got [?]}}
  %y = mix.mix_lora %x, %p, %a, %b into %i {alpha = 1.0} : tensor<?x64xf32>, tensor<?x10xf32>, tensor<10x4x64xf32>, tensor<10x32x4xf32> into tensor<?xf32>
  return
}

// -----

func.func @mix_lora_probs_tokens(%x: tensor<3x64xf32>, %p: tensor<4x10xf32>, %a: tensor<10x4x64xf32>, %b: tensor<10x32x4xf32>, %i: tensor<3x32xf32>) {
  // expected-error @+1 {{operand 'probs' dim 0 (T) must be 3, the token count of 'x'; got [4, 10]}}
  %y = mix.mix_lora %x, %p, %a, %b into %i {alpha = 1.0} : tensor<3x64xf32>, tensor<4x10xf32>, tensor<10x4x64xf32>, tensor<10x32x4xf32> into tensor<3x32xf32>
  return
}

// -----

func.func @mix_lora_init_tokens(%x: tensor<3x64xf32>, %p: tensor<3x10xf32>, %a: tensor<10x4x64xf32>, %b: tensor<10x32x4xf32>, %i: tensor<5x32xf32>) {
  // expected-error @+1 {{operand 'init' dim 0 (T) must be 3, the token count of 'x'; got [5, 32]}}
  %y = mix.mix_lora %x, %p, %a, %b into %i {alpha = 1.0} : tensor<3x64xf32>, tensor<3x10xf32>, tensor<10x4x64xf32>, tensor<10x32x4xf32> into tensor<5x32xf32>
  return
}

// -----

func.func @mix_lora_a_rank(%x: tensor<?x64xf32>, %p: tensor<?x10xf32>, %a: tensor<4x64xf32>, %b: tensor<10x32x4xf32>, %i: tensor<?x32xf32>) {
  // expected-error @+1 {{operand 'lora_a' must have rank 3 [E, r, D_in], got [4, 64]}}
  %y = mix.mix_lora %x, %p, %a, %b into %i {alpha = 1.0} : tensor<?x64xf32>, tensor<?x10xf32>, tensor<4x64xf32>, tensor<10x32x4xf32> into tensor<?x32xf32>
  return
}

// -----

func.func @mix_lora_probs_experts(%x: tensor<?x64xf32>, %p: tensor<?x8xf32>, %a: tensor<10x4x64xf32>, %b: tensor<10x32x4xf32>, %i: tensor<?x32xf32>) {
  // expected-error @+1 {{operand 'probs' dim 1 (E) must be 10, the number of adapters in 'lora_a'; got [?, 8]}}
  %y = mix.mix_lora %x, %p, %a, %b into %i {alpha = 1.0} : tensor<?x64xf32>, tensor<?x8xf32>, tensor<10x4x64xf32>, tensor<10x32x4xf32> into tensor<?x32xf32>
  return
}

// -----

func.func @mix_lora_a_input(%x: tensor<?x64xf32>, %p: tensor<?x10xf32>, %a: tensor<10x4x32xf32>, %b: tensor<10x32x4xf32>, %i: tensor<?x32xf32>) {
  // expected-error @+1 {{operand 'lora_a' dim 2 (D_in) must be 64, the input size; got [10, 4, 32]}}
  %y = mix.mix_lora %x, %p, %a, %b into %i {alpha = 1.0} : tensor<?x64xf32>, tensor<?x10xf32>, tensor<10x4x32xf32>, tensor<10x32x4xf32> into tensor<?x32xf32>
  return
}

// -----

func.func @mix_lora_b_rank(%x: tensor<?x64xf32>, %p: tensor<?x10xf32>, %a: tensor<10x4x64xf32>, %b: tensor<32x4xf32>, %i: tensor<?x32xf32>) {
  // expected-error @+1 {{operand 'lora_b' must have rank 3 [E, D_out, r], got [32, 4]}}
  %y = mix.mix_lora %x, %p, %a, %b into %i {alpha = 1.0} : tensor<?x64xf32>, tensor<?x10xf32>, tensor<10x4x64xf32>, tensor<32x4xf32> into tensor<?x32xf32>
  return
}

// -----

func.func @mix_lora_b_experts(%x: tensor<?x64xf32>, %p: tensor<?x10xf32>, %a: tensor<10x4x64xf32>, %b: tensor<9x32x4xf32>, %i: tensor<?x32xf32>) {
  // expected-error @+1 {{operand 'lora_b' dim 0 (E) must be 10, the number of experts; got [9, 32, 4]}}
  %y = mix.mix_lora %x, %p, %a, %b into %i {alpha = 1.0} : tensor<?x64xf32>, tensor<?x10xf32>, tensor<10x4x64xf32>, tensor<9x32x4xf32> into tensor<?x32xf32>
  return
}

// -----

func.func @mix_lora_b_output(%x: tensor<?x64xf32>, %p: tensor<?x10xf32>, %a: tensor<10x4x64xf32>, %b: tensor<10x16x4xf32>, %i: tensor<?x32xf32>) {
  // expected-error @+1 {{operand 'lora_b' dim 1 (D_out) must be 32, the output size; got [10, 16, 4]}}
  %y = mix.mix_lora %x, %p, %a, %b into %i {alpha = 1.0} : tensor<?x64xf32>, tensor<?x10xf32>, tensor<10x4x64xf32>, tensor<10x16x4xf32> into tensor<?x32xf32>
  return
}

// -----

func.func @mix_lora_b_rank_dim(%x: tensor<?x64xf32>, %p: tensor<?x10xf32>, %a: tensor<10x4x64xf32>, %b: tensor<10x32x8xf32>, %i: tensor<?x32xf32>) {
  // expected-error @+1 {{operand 'lora_b' dim 2 (r) must be 4, the rank of 'lora_a'; got [10, 32, 8]}}
  %y = mix.mix_lora %x, %p, %a, %b into %i {alpha = 1.0} : tensor<?x64xf32>, tensor<?x10xf32>, tensor<10x4x64xf32>, tensor<10x32x8xf32> into tensor<?x32xf32>
  return
}

// -----

func.func @mix_lora_alpha(%x: tensor<?x64xf32>, %p: tensor<?x10xf32>, %a: tensor<10x4x64xf32>, %b: tensor<10x32x4xf32>, %i: tensor<?x32xf32>) {
  // expected-error @+1 {{attribute 'alpha' must be finite, got INF}}
  %y = mix.mix_lora %x, %p, %a, %b into %i {alpha = 0x7FF0000000000000 : f64} : tensor<?x64xf32>, tensor<?x10xf32>, tensor<10x4x64xf32>, tensor<10x32x4xf32> into tensor<?x32xf32>
  return
}

// -----

func.func @mix_lora_weight_static(%x: tensor<?x64xf32>, %p: tensor<?x10xf32>, %a: tensor<10x?x64xf32>, %b: tensor<10x32x4xf32>, %i: tensor<?x32xf32>) {
  // expected-error @+1 {{weight 'lora_a' must have a static shape [E, r, D_in], got [10, ?, 64]}}
  %y = mix.mix_lora %x, %p, %a, %b into %i {alpha = 1.0} : tensor<?x64xf32>, tensor<?x10xf32>, tensor<10x?x64xf32>, tensor<10x32x4xf32> into tensor<?x32xf32>
  return
}

// -----

func.func @mov_k(%x: tensor<?x64xf32>, %h: tensor<?x128xf32>, %r: tensor<10x64xf32>, %v: tensor<10x128xf32>) {
  // expected-error @+1 {{attribute 'k' (12) must not exceed the number of experts E = 10}}
  %y = mix.mov %x, %h router(%r : tensor<10x64xf32>) vectors(%v : tensor<10x128xf32>) {k = 12} : tensor<?x64xf32>, tensor<?x128xf32> -> tensor<?x128xf32>
  return
}

// -----

func.func @mov_router_hidden(%x: tensor<?x64xf32>, %h: tensor<?x128xf32>, %r: tensor<10x32xf32>, %v: tensor<10x128xf32>) {
  // expected-error @+1 {{operand 'x' dim 1 (D) must be 32, the input size of 'router'; got [?, 64]}}
  %y = mix.mov %x, %h router(%r : tensor<10x32xf32>) vectors(%v : tensor<10x128xf32>) : tensor<?x64xf32>, tensor<?x128xf32> -> tensor<?x128xf32>
  return
}

// -----

func.func @mov_h_rank(%x: tensor<?x64xf32>, %h: tensor<?xf32>, %r: tensor<10x64xf32>, %v: tensor<10x128xf32>) {
  // expected-error @+1 {{operand 'h' must have rank 2 [T, H], got [?]}}
  %y = mix.mov %x, %h router(%r : tensor<10x64xf32>) vectors(%v : tensor<10x128xf32>) : tensor<?x64xf32>, tensor<?xf32> -> tensor<?xf32>
  return
}

// -----

func.func @mov_h_tokens(%x: tensor<3x64xf32>, %h: tensor<4x128xf32>, %r: tensor<10x64xf32>, %v: tensor<10x128xf32>) {
  // expected-error @+1 {{operand 'h' dim 0 (T) must be 3, the token count of 'x'; got [4, 128]}}
  %y = mix.mov %x, %h router(%r : tensor<10x64xf32>) vectors(%v : tensor<10x128xf32>) : tensor<3x64xf32>, tensor<4x128xf32> -> tensor<4x128xf32>
  return
}

// -----

func.func @mov_vectors_rank(%x: tensor<?x64xf32>, %h: tensor<?x128xf32>, %r: tensor<10x64xf32>, %v: tensor<128xf32>) {
  // expected-error @+1 {{operand 'vectors' must have rank 2 [E, H], got [128]}}
  %y = mix.mov %x, %h router(%r : tensor<10x64xf32>) vectors(%v : tensor<128xf32>) : tensor<?x64xf32>, tensor<?x128xf32> -> tensor<?x128xf32>
  return
}

// -----

func.func @mov_vectors_experts(%x: tensor<?x64xf32>, %h: tensor<?x128xf32>, %r: tensor<10x64xf32>, %v: tensor<8x128xf32>) {
  // expected-error @+1 {{operand 'vectors' dim 0 (E) must be 10, the number of router rows; got [8, 128]}}
  %y = mix.mov %x, %h router(%r : tensor<10x64xf32>) vectors(%v : tensor<8x128xf32>) : tensor<?x64xf32>, tensor<?x128xf32> -> tensor<?x128xf32>
  return
}

// -----

func.func @mov_vectors_width(%x: tensor<?x64xf32>, %h: tensor<?x128xf32>, %r: tensor<10x64xf32>, %v: tensor<10x96xf32>) {
  // expected-error @+1 {{operand 'h' dim 1 (H) must be 96, the row size of 'vectors'; got [?, 128]}}
  %y = mix.mov %x, %h router(%r : tensor<10x64xf32>) vectors(%v : tensor<10x96xf32>) : tensor<?x64xf32>, tensor<?x128xf32> -> tensor<?x128xf32>
  return
}

// -----

func.func @mov_result(%x: tensor<?x64xf32>, %h: tensor<?x128xf32>, %r: tensor<10x64xf32>, %v: tensor<10x128xf32>) {
  // expected-error @+1 {{result 'y' must have the type of operand 'h' ('tensor<?x128xf32>'), got 'tensor<?x64xf32>'}}
  %y = mix.mov %x, %h router(%r : tensor<10x64xf32>) vectors(%v : tensor<10x128xf32>) : tensor<?x64xf32>, tensor<?x128xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @molora_k(%x: tensor<?x64xf32>, %w: tensor<32x64xf32>, %r: tensor<10x64xf32>, %a: tensor<10x4x64xf32>, %b: tensor<10x32x4xf32>) {
  // expected-error @+1 {{attribute 'k' (11) must not exceed the number of experts E = 10}}
  %y = mix.molora %x base(%w : tensor<32x64xf32>) router(%r : tensor<10x64xf32>) lora_a(%a : tensor<10x4x64xf32>) lora_b(%b : tensor<10x32x4xf32>) {alpha = 8.0, k = 11} : tensor<?x64xf32> -> tensor<?x32xf32>
  return
}

// -----

func.func @molora_router_hidden(%x: tensor<?x64xf32>, %w: tensor<32x64xf32>, %r: tensor<10x48xf32>, %a: tensor<10x4x64xf32>, %b: tensor<10x32x4xf32>) {
  // expected-error @+1 {{operand 'x' dim 1 (D) must be 48, the input size of 'router'; got [?, 64]}}
  %y = mix.molora %x base(%w : tensor<32x64xf32>) router(%r : tensor<10x48xf32>) lora_a(%a : tensor<10x4x64xf32>) lora_b(%b : tensor<10x32x4xf32>) {alpha = 8.0} : tensor<?x64xf32> -> tensor<?x32xf32>
  return
}

// -----

func.func @molora_base_rank(%x: tensor<?x64xf32>, %w: tensor<64xf32>, %r: tensor<10x64xf32>, %a: tensor<10x4x64xf32>, %b: tensor<10x32x4xf32>) {
  // expected-error @+1 {{operand 'base' must have rank 2 [D_out, D_in], got [64]}}
  %y = mix.molora %x base(%w : tensor<64xf32>) router(%r : tensor<10x64xf32>) lora_a(%a : tensor<10x4x64xf32>) lora_b(%b : tensor<10x32x4xf32>) {alpha = 8.0} : tensor<?x64xf32> -> tensor<?x32xf32>
  return
}

// -----

func.func @molora_base_input(%x: tensor<?x64xf32>, %w: tensor<32x48xf32>, %r: tensor<10x64xf32>, %a: tensor<10x4x64xf32>, %b: tensor<10x32x4xf32>) {
  // expected-error @+1 {{operand 'base' dim 1 (D_in) must be 64, the input size of 'router'; got [32, 48]}}
  %y = mix.molora %x base(%w : tensor<32x48xf32>) router(%r : tensor<10x64xf32>) lora_a(%a : tensor<10x4x64xf32>) lora_b(%b : tensor<10x32x4xf32>) {alpha = 8.0} : tensor<?x64xf32> -> tensor<?x32xf32>
  return
}

// -----

func.func @molora_adapters(%x: tensor<?x64xf32>, %w: tensor<32x64xf32>, %r: tensor<10x64xf32>, %a: tensor<8x4x64xf32>, %b: tensor<10x32x4xf32>) {
  // expected-error @+1 {{operand 'lora_a' dim 0 (E) must be 10, the number of experts; got [8, 4, 64]}}
  %y = mix.molora %x base(%w : tensor<32x64xf32>) router(%r : tensor<10x64xf32>) lora_a(%a : tensor<8x4x64xf32>) lora_b(%b : tensor<10x32x4xf32>) {alpha = 8.0} : tensor<?x64xf32> -> tensor<?x32xf32>
  return
}

// -----

func.func @molora_b_output(%x: tensor<?x64xf32>, %w: tensor<32x64xf32>, %r: tensor<10x64xf32>, %a: tensor<10x4x64xf32>, %b: tensor<10x16x4xf32>) {
  // expected-error @+1 {{operand 'lora_b' dim 1 (D_out) must be 32, the output size; got [10, 16, 4]}}
  %y = mix.molora %x base(%w : tensor<32x64xf32>) router(%r : tensor<10x64xf32>) lora_a(%a : tensor<10x4x64xf32>) lora_b(%b : tensor<10x16x4xf32>) {alpha = 8.0} : tensor<?x64xf32> -> tensor<?x32xf32>
  return
}

// -----

func.func @molora_alpha(%x: tensor<?x64xf32>, %w: tensor<32x64xf32>, %r: tensor<10x64xf32>, %a: tensor<10x4x64xf32>, %b: tensor<10x32x4xf32>) {
  // expected-error @+1 {{attribute 'alpha' must be finite, got nan}}
  %y = mix.molora %x base(%w : tensor<32x64xf32>) router(%r : tensor<10x64xf32>) lora_a(%a : tensor<10x4x64xf32>) lora_b(%b : tensor<10x32x4xf32>) {alpha = 0x7FF8000000000000 : f64} : tensor<?x64xf32> -> tensor<?x32xf32>
  return
}

// -----

func.func @molora_result(%x: tensor<?x64xf32>, %w: tensor<32x64xf32>, %r: tensor<10x64xf32>, %a: tensor<10x4x64xf32>, %b: tensor<10x32x4xf32>) {
  // expected-error @+1 {{result 'y' dim 1 (D_out) must be 32, fixed by the operands; got [?, 64]}}
  %y = mix.molora %x base(%w : tensor<32x64xf32>) router(%r : tensor<10x64xf32>) lora_a(%a : tensor<10x4x64xf32>) lora_b(%b : tensor<10x32x4xf32>) {alpha = 8.0} : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}
