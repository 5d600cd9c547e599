func.func @f(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) -> tensor<?x64xf32> {
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>)
      {k = 9, activation = #mix.activation<relu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
