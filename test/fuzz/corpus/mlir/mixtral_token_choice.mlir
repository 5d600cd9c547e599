// A Mixtral-style token-choice MoE block: 8 experts, top-2 with renormalized softmax
// weights, SwiGLU experts stacked [E, out, in]. Shapes scaled down from Mixtral-8x7B
// (hidden 4096, intermediate 14336) so the example runs in a second on a laptop.
func.func @mixtral_moe(
    %x: tensor<?x256xf32> {mix.name = "hidden_states"},
    %router: tensor<8x256xf32> {mix.name = "gate.weight"},
    %w1: tensor<8x512x256xf32> {mix.name = "experts.w1"},
    %w3: tensor<8x512x256xf32> {mix.name = "experts.w3"},
    %w2: tensor<8x256x512xf32> {mix.name = "experts.w2"})
    -> (tensor<?x256xf32> {mix.name = "output"}) {
  %y = mix.token_choice_moe %x router(%router : tensor<8x256xf32>)
      experts gate(%w1 : tensor<8x512x256xf32>) up(%w3 : tensor<8x512x256xf32>)
      down(%w2 : tensor<8x256x512xf32>)
      {k = 2, normalize, activation = #mix.activation<silu>}
      : tensor<?x256xf32> -> tensor<?x256xf32>
  return %y : tensor<?x256xf32>
}
