// An expert-choice MoE block (Zhou et al., 2022): each of 16 experts takes its top
// C = ceil(2 · T / 16) tokens by softmax score; GELU experts. Not causal.
func.func @expert_choice_moe(
    %x: tensor<?x128xf32> {mix.name = "hidden_states"},
    %router: tensor<16x128xf32> {mix.name = "router.weight"},
    %wi: tensor<16x256x128xf32> {mix.name = "experts.wi"},
    %wo: tensor<16x128x256xf32> {mix.name = "experts.wo"})
    -> (tensor<?x128xf32> {mix.name = "output"}) {
  %y = mix.expert_choice_moe %x router(%router : tensor<16x128xf32>)
      experts up(%wi : tensor<16x256x128xf32>) down(%wo : tensor<16x128x256xf32>)
      {capacity_factor = 2.0, activation = #mix.activation<gelu>}
      : tensor<?x128xf32> -> tensor<?x128xf32>
  return %y : tensor<?x128xf32>
}
