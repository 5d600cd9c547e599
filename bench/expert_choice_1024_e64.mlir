// The expert-choice rows of the sparse-kinds benchmark: hidden 1024, 64 GELU experts of
// width 1024, capacity factor 2 (each expert takes C = ceil(2 · T / 64) tokens), f32.
func.func @expert_choice_moe(
    %x: tensor<?x1024xf32> {mix.name = "hidden_states"},
    %router: tensor<64x1024xf32> {mix.name = "router.weight"},
    %wi: tensor<64x1024x1024xf32> {mix.name = "experts.wi"},
    %wo: tensor<64x1024x1024xf32> {mix.name = "experts.wo"})
    -> (tensor<?x1024xf32> {mix.name = "output"}) {
  %y = mix.expert_choice_moe %x router(%router : tensor<64x1024xf32>)
      experts up(%wi : tensor<64x1024x1024xf32>) down(%wo : tensor<64x1024x1024xf32>)
      {capacity_factor = 2.0, activation = #mix.activation<gelu>}
      : tensor<?x1024xf32> -> tensor<?x1024xf32>
  return %y : tensor<?x1024xf32>
}
