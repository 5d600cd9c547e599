// A Switch-Transformers-style block: top-1 softmax routing without renormalization, each
// expert accepting at most ceil(1.25 · T / E) tokens in token order (later ones are dropped
// and contribute 0), plain ReLU experts (wi, wo).
func.func @switch_moe(
    %x: tensor<?x128xf32> {mix.name = "hidden_states"},
    %router: tensor<8x128xf32> {mix.name = "mlp.router.classifier.weight"},
    %wi: tensor<8x512x128xf32> {mix.name = "mlp.experts.wi"},
    %wo: tensor<8x128x512xf32> {mix.name = "mlp.experts.wo"})
    -> (tensor<?x128xf32> {mix.name = "output"}) {
  %y = mix.token_choice_moe %x router(%router : tensor<8x128xf32>)
      experts up(%wi : tensor<8x512x128xf32>) down(%wo : tensor<8x128x512xf32>)
      {k = 1, capacity_factor = 1.25, activation = #mix.activation<relu>}
      : tensor<?x128xf32> -> tensor<?x128xf32>
  return %y : tensor<?x128xf32>
}
