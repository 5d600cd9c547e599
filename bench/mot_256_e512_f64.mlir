// The Mixture-of-Tokens rows of the sparse-kinds benchmark: hidden 256, group size 32,
// 512 ReLU experts of width 64 (llm-random's continuous_moe.py shapes), f32 weights.
func.func @mixture_of_tokens(
    %x: tensor<?x?x256xf32> {mix.name = "hidden_states"},
    %controller: tensor<512x256xf32> {mix.name = "controller"},
    %wi: tensor<512x64x256xf32> {mix.name = "experts.lin1"},
    %wo: tensor<512x256x64xf32> {mix.name = "experts.lin2"})
    -> (tensor<?x?x256xf32> {mix.name = "output"}) {
  %y = mix.mixture_of_tokens %x controller(%controller : tensor<512x256xf32>)
      experts up(%wi : tensor<512x64x256xf32>) down(%wo : tensor<512x256x64xf32>)
      {group_size = 32, temperature = 1.0, activation = #mix.activation<relu>}
      : tensor<?x?x256xf32> -> tensor<?x?x256xf32>
  return %y : tensor<?x?x256xf32>
}
