// A token-choice layer for workspace-bounds.test: 64 experts of 4096, top-8, on 16-wide tokens.
func.func @wide(
    %x: tensor<?x16xf32> {mix.name = "x"},
    %router: tensor<64x16xf32> {mix.name = "router"},
    %w1: tensor<64x4096x16xf32> {mix.name = "w1"},
    %w3: tensor<64x4096x16xf32> {mix.name = "w3"},
    %w2: tensor<64x16x4096xf32> {mix.name = "w2"})
    -> (tensor<?x16xf32> {mix.name = "output"}) {
  %y = mix.token_choice_moe %x router(%router : tensor<64x16xf32>)
      experts gate(%w1 : tensor<64x4096x16xf32>) up(%w3 : tensor<64x4096x16xf32>)
      down(%w2 : tensor<64x16x4096xf32>)
      {k = 8, normalize, activation = #mix.activation<silu>}
      : tensor<?x16xf32> -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}
