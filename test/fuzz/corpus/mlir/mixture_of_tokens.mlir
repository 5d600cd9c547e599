// A Mixture-of-Tokens block (Antoniak et al., 2023): on [B, S, D], groups of 8 examples at
// each position are mixed per expert by a softmax over the group (temperature 1), 64 ReLU
// experts of width 16 process the mixtures, and the results are redistributed with the
// merge weights. Fully differentiable; no token is dropped.
func.func @mixture_of_tokens(
    %x: tensor<?x?x128xf32> {mix.name = "hidden_states"},
    %controller: tensor<64x128xf32> {mix.name = "controller"},
    %wi: tensor<64x16x128xf32> {mix.name = "experts.lin1"},
    %wo: tensor<64x128x16xf32> {mix.name = "experts.lin2"})
    -> (tensor<?x?x128xf32> {mix.name = "output"}) {
  %y = mix.mixture_of_tokens %x controller(%controller : tensor<64x128xf32>)
      experts up(%wi : tensor<64x16x128xf32>) down(%wo : tensor<64x128x16xf32>)
      {group_size = 8, temperature = 1.0, activation = #mix.activation<relu>}
      : tensor<?x?x128xf32> -> tensor<?x?x128xf32>
  return %y : tensor<?x?x128xf32>
}

// The same weights in transition mode, for decoding: a token-choice top-2 router over the
// controller, any batch size.
func.func @mixture_of_tokens_transition(
    %x: tensor<?x?x128xf32> {mix.name = "hidden_states"},
    %controller: tensor<64x128xf32> {mix.name = "controller"},
    %wi: tensor<64x16x128xf32> {mix.name = "experts.lin1"},
    %wo: tensor<64x128x16xf32> {mix.name = "experts.lin2"})
    -> (tensor<?x?x128xf32> {mix.name = "output"}) {
  %y = mix.mixture_of_tokens %x controller(%controller : tensor<64x128xf32>)
      experts up(%wi : tensor<64x16x128xf32>) down(%wo : tensor<64x128x16xf32>)
      {group_size = 8, temperature = 1.0, transition, k = 2,
       activation = #mix.activation<relu>}
      : tensor<?x?x128xf32> -> tensor<?x?x128xf32>
  return %y : tensor<?x?x128xf32>
}
