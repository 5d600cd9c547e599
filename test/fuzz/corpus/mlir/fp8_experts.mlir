func.func @fp8_experts(%x: tensor<?x64xf32>, %off: tensor<3xi32>, %tok: tensor<?xi32>,
                       %g0: tensor<40x64xf8E4M3FN>, %g1: tensor<40x64xf8E4M3FN>,
                       %u0: tensor<40x64xf8E4M3FN>, %u1: tensor<40x64xf8E4M3FN>,
                       %d0: tensor<64x40xf8E4M3FN>, %d1: tensor<64x40xf8E4M3FN>,
                       %gs0: tensor<3x3xf32>, %gs1: tensor<3x3xf32>, %us0: tensor<3x3xf32>,
                       %us1: tensor<3x3xf32>, %ds0: tensor<4x2xf32>, %ds1: tensor<4x2xf32>) -> tensor<?x64xf32> {
  %h = mix.expert_ffn %x, %off, %tok gate(%g0, %g1 : tensor<40x64xf8E4M3FN>, tensor<40x64xf8E4M3FN>)
      up(%u0, %u1 : tensor<40x64xf8E4M3FN>, tensor<40x64xf8E4M3FN>)
      down(%d0, %d1 : tensor<64x40xf8E4M3FN>, tensor<64x40xf8E4M3FN>)
      gate_scale(%gs0, %gs1 : tensor<3x3xf32>, tensor<3x3xf32>)
      up_scale(%us0, %us1 : tensor<3x3xf32>, tensor<3x3xf32>)
      down_scale(%ds0, %ds1 : tensor<4x2xf32>, tensor<4x2xf32>)
      {activation = #mix.activation<silu>, weight_block = array<i64: 16, 24>}
      : tensor<?x64xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x64xf32>
  return %h : tensor<?x64xf32>
}

func.func @fp8_layer(%x: tensor<?x64xbf16>, %r: tensor<2x64xf32>,
                     %u0: tensor<40x64xf8E4M3FN>, %u1: tensor<40x64xf8E4M3FN>,
                     %d0: tensor<64x40xf8E4M3FN>, %d1: tensor<64x40xf8E4M3FN>,
                     %us0: tensor<1x1xf32>, %us1: tensor<1x1xf32>,
                     %ds0: tensor<1x1xf32>, %ds1: tensor<1x1xf32>) -> tensor<?x64xbf16> {
  %y = mix.token_choice_moe %x router(%r : tensor<2x64xf32>)
      experts up(%u0, %u1 : tensor<40x64xf8E4M3FN>, tensor<40x64xf8E4M3FN>)
      down(%d0, %d1 : tensor<64x40xf8E4M3FN>, tensor<64x40xf8E4M3FN>)
      up_scale(%us0, %us1 : tensor<1x1xf32>, tensor<1x1xf32>)
      down_scale(%ds0, %ds1 : tensor<1x1xf32>, tensor<1x1xf32>)
      {k = 1, activation = #mix.activation<gelu>, weight_block = array<i64: 128, 128>}
      : tensor<?x64xbf16> -> tensor<?x64xbf16>
  return %y : tensor<?x64xbf16>
}
