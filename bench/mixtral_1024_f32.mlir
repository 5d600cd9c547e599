// The CPU benchmark's layer: a Mixtral-style block with hidden 1024, intermediate 3584,
// 8 experts, top-2, SwiGLU, f32 weights.
func.func @mixtral_block(
    %x: tensor<?x1024xf32> {mix.name = "hidden_states"},
    %router: tensor<8x1024xf32> {mix.name = "gate.weight"},
    %w1: tensor<8x3584x1024xf32> {mix.name = "experts.w1"},
    %w3: tensor<8x3584x1024xf32> {mix.name = "experts.w3"},
    %w2: tensor<8x1024x3584xf32> {mix.name = "experts.w2"})
    -> (tensor<?x1024xf32> {mix.name = "output"}) {
  %y = mix.token_choice_moe %x router(%router : tensor<8x1024xf32>)
      experts gate(%w1 : tensor<8x3584x1024xf32>) up(%w3 : tensor<8x3584x1024xf32>)
      down(%w2 : tensor<8x1024x3584xf32>)
      {k = 2, normalize, activation = #mix.activation<silu>}
      : tensor<?x1024xf32> -> tensor<?x1024xf32>
  return %y : tensor<?x1024xf32>
}
