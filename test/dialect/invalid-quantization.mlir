// RUN: mixtile-opt %s -split-input-file -verify-diagnostics
// mix.weight_quantization: a module attribute {format = "fp8_e4m3", block = [rows, cols]}.

// expected-error @+1 {{'mix.weight_quantization' must be a module attribute {format = "fp8_e4m3", block = [rows, cols]} with positive block sizes}}
module attributes {mix.weight_quantization = {format = "int4", block = [128, 128]}} {
}

// -----

// expected-error @+1 {{'mix.weight_quantization' must be a module attribute}}
module attributes {mix.weight_quantization = {format = "fp8_e4m3", block = [128, 0]}} {
}

// -----

// expected-error @+1 {{'mix.weight_quantization' must be a module attribute}}
module attributes {mix.weight_quantization = {format = "fp8_e4m3", block = [128]}} {
}

// -----

// expected-error @+1 {{'mix.weight_quantization' must be a module attribute}}
module attributes {mix.weight_quantization = "fp8"} {
}

// -----

module {
  // expected-error @+1 {{'mix.weight_quantization' must be a module attribute}}
  func.func @f() attributes {mix.weight_quantization = {format = "fp8_e4m3", block = [128, 128]}} {
    return
  }
}

// -----
// fp8 expert weights: per expert, each with its block scales, and weight_block.

func.func @scales_without_fp8(%x: tensor<?x64xf32>, %off: tensor<2xi32>, %tok: tensor<?xi32>,
                              %u: tensor<40x64xbf16>, %d: tensor<64x40xbf16>, %s: tensor<1x1xf32>) {
  // expected-error @+1 {{block scales and 'weight_block' belong to f8E4M3FN or f4E2M1FN expert weights; these are 'bf16'}}
  %h = mix.expert_ffn %x, %off, %tok up(%u : tensor<40x64xbf16>) down(%d : tensor<64x40xbf16>)
      up_scale(%s : tensor<1x1xf32>) down_scale(%s : tensor<1x1xf32>)
      {activation = #mix.activation<relu>, weight_block = array<i64: 128, 128>}
      : tensor<?x64xf32>, tensor<2xi32>, tensor<?xi32> -> tensor<?x64xf32>
  return
}

// -----

func.func @fp8_without_block(%x: tensor<?x64xf32>, %off: tensor<2xi32>, %tok: tensor<?xi32>,
                             %u: tensor<40x64xf8E4M3FN>, %d: tensor<64x40xf8E4M3FN>, %s: tensor<1x1xf32>) {
  // expected-error @+1 {{f8E4M3FN expert weights need 'weight_block' = array<i64: rows, cols>, two positive sizes}}
  %h = mix.expert_ffn %x, %off, %tok up(%u : tensor<40x64xf8E4M3FN>) down(%d : tensor<64x40xf8E4M3FN>)
      up_scale(%s : tensor<1x1xf32>) down_scale(%s : tensor<1x1xf32>)
      {activation = #mix.activation<relu>}
      : tensor<?x64xf32>, tensor<2xi32>, tensor<?xi32> -> tensor<?x64xf32>
  return
}

// -----

func.func @fp8_missing_scales(%x: tensor<?x64xf32>, %off: tensor<2xi32>, %tok: tensor<?xi32>,
                              %u: tensor<40x64xf8E4M3FN>, %d: tensor<64x40xf8E4M3FN>, %s: tensor<1x1xf32>) {
  // expected-error @+1 {{operand group 'down_scale' must hold one tensor per 'down' weight (1), got 0}}
  %h = mix.expert_ffn %x, %off, %tok up(%u : tensor<40x64xf8E4M3FN>) down(%d : tensor<64x40xf8E4M3FN>)
      up_scale(%s : tensor<1x1xf32>)
      {activation = #mix.activation<relu>, weight_block = array<i64: 128, 128>}
      : tensor<?x64xf32>, tensor<2xi32>, tensor<?xi32> -> tensor<?x64xf32>
  return
}

// -----

func.func @fp8_scale_grid(%x: tensor<?x64xf32>, %off: tensor<2xi32>, %tok: tensor<?xi32>,
                          %u: tensor<40x64xf8E4M3FN>, %d: tensor<64x40xf8E4M3FN>,
                          %s: tensor<3x3xf32>, %t: tensor<4x2xf32>) {
  // expected-error @+1 {{operand 'down_scale #0' must be f32 [4, 2] (blocks of 16 x 24 of 'down #0' [64, 40]), got [3, 3]}}
  %h = mix.expert_ffn %x, %off, %tok up(%u : tensor<40x64xf8E4M3FN>) down(%d : tensor<64x40xf8E4M3FN>)
      up_scale(%s : tensor<3x3xf32>) down_scale(%s : tensor<3x3xf32>)
      {activation = #mix.activation<relu>, weight_block = array<i64: 16, 24>}
      : tensor<?x64xf32>, tensor<2xi32>, tensor<?xi32> -> tensor<?x64xf32>
  return
}

// -----

func.func @fp8_stacked(%x: tensor<?x64xf32>, %off: tensor<3xi32>, %tok: tensor<?xi32>,
                       %u: tensor<2x40x64xf8E4M3FN>, %d: tensor<2x64x40xf8E4M3FN>, %s: tensor<1x1xf32>) {
  // expected-error @+1 {{f8E4M3FN expert weights must be one tensor per expert [F, D] / [D, F], not stacked}}
  %h = mix.expert_ffn %x, %off, %tok up(%u : tensor<2x40x64xf8E4M3FN>) down(%d : tensor<2x64x40xf8E4M3FN>)
      {activation = #mix.activation<relu>, weight_block = array<i64: 128, 128>}
      : tensor<?x64xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x64xf32>
  return
}

// -----

func.func @fp8_layer_scales(%x: tensor<?x64xbf16>, %r: tensor<2x64xf32>,
                            %u0: tensor<40x64xf8E4M3FN>, %u1: tensor<40x64xf8E4M3FN>,
                            %d0: tensor<64x40xf8E4M3FN>, %d1: tensor<64x40xf8E4M3FN>,
                            %s: tensor<1x1xf32>) {
  // expected-error @+1 {{operand group 'up_scale' must hold one tensor per 'up' weight (2), got 1}}
  %y = mix.token_choice_moe %x router(%r : tensor<2x64xf32>)
      experts up(%u0, %u1 : tensor<40x64xf8E4M3FN>, tensor<40x64xf8E4M3FN>)
      down(%d0, %d1 : tensor<64x40xf8E4M3FN>, tensor<64x40xf8E4M3FN>)
      up_scale(%s : tensor<1x1xf32>) down_scale(%s, %s : tensor<1x1xf32>, tensor<1x1xf32>)
      {k = 1, activation = #mix.activation<gelu>, weight_block = array<i64: 128, 128>}
      : tensor<?x64xbf16> -> tensor<?x64xbf16>
  return
}

// -----

func.func @fp8_shared_expert(%x: tensor<?x64xbf16>, %r: tensor<1x64xf32>, %u: tensor<40x64xbf16>,
                             %d: tensor<64x40xbf16>, %su: tensor<40x64xf8E4M3FN>) {
  // expected-error @+1 {{operand #4 must be ranked tensor of 32-bit float or bfloat16 type or 16-bit float values, but got 'tensor<40x64xf8E4M3FN>'}}
  %y = mix.token_choice_moe %x router(%r : tensor<1x64xf32>)
      experts up(%u : tensor<40x64xbf16>) down(%d : tensor<64x40xbf16>)
      shared_up(%su : tensor<40x64xf8E4M3FN>) shared_down(%d : tensor<64x40xbf16>)
      {k = 1, activation = #mix.activation<gelu>}
      : tensor<?x64xbf16> -> tensor<?x64xbf16>
  return
}

// -----
// MXFP4 expert weights: stacked f4E2M1FN codes with stacked f8E8M0FNU scales, one per 32 values.

func.func @mxfp4_per_expert(%x: tensor<?x64xf32>, %off: tensor<2xi32>, %tok: tensor<?xi32>,
                            %u: tensor<32x64xf4E2M1FN>, %d: tensor<64x32xf4E2M1FN>,
                            %us: tensor<32x2xf8E8M0FNU>, %ds: tensor<64x1xf8E8M0FNU>) {
  // expected-error @+1 {{f4E2M1FN (MXFP4) expert weights must be stacked [E, F, D] / [E, D, F], not one tensor per expert}}
  %h = mix.expert_ffn %x, %off, %tok up(%u : tensor<32x64xf4E2M1FN>) down(%d : tensor<64x32xf4E2M1FN>)
      up_scale(%us : tensor<32x2xf8E8M0FNU>) down_scale(%ds : tensor<64x1xf8E8M0FNU>)
      {activation = #mix.activation<relu>}
      : tensor<?x64xf32>, tensor<2xi32>, tensor<?xi32> -> tensor<?x64xf32>
  return
}

// -----

func.func @mxfp4_block(%x: tensor<?x64xf32>, %off: tensor<3xi32>, %tok: tensor<?xi32>,
                       %u: tensor<2x32x64xf4E2M1FN>, %d: tensor<2x64x32xf4E2M1FN>,
                       %us: tensor<2x32x2xf8E8M0FNU>, %ds: tensor<2x64x1xf8E8M0FNU>) {
  // expected-error @+1 {{f4E2M1FN (MXFP4) expert weights take no 'weight_block' (each scale covers 32 values of a row)}}
  %h = mix.expert_ffn %x, %off, %tok up(%u : tensor<2x32x64xf4E2M1FN>) down(%d : tensor<2x64x32xf4E2M1FN>)
      up_scale(%us : tensor<2x32x2xf8E8M0FNU>) down_scale(%ds : tensor<2x64x1xf8E8M0FNU>)
      {activation = #mix.activation<relu>, weight_block = array<i64: 1, 32>}
      : tensor<?x64xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x64xf32>
  return
}

// -----

func.func @mxfp4_width(%x: tensor<?x64xf32>, %off: tensor<3xi32>, %tok: tensor<?xi32>,
                       %u: tensor<2x40x64xf4E2M1FN>, %d: tensor<2x64x40xf4E2M1FN>,
                       %us: tensor<2x40x2xf8E8M0FNU>, %ds: tensor<2x64x1xf8E8M0FNU>) {
  // expected-error @+1 {{f4E2M1FN (MXFP4) expert weights need D and F multiples of 32 (blocks of 32 values), got D = 64, F = 40}}
  %h = mix.expert_ffn %x, %off, %tok up(%u : tensor<2x40x64xf4E2M1FN>) down(%d : tensor<2x64x40xf4E2M1FN>)
      up_scale(%us : tensor<2x40x2xf8E8M0FNU>) down_scale(%ds : tensor<2x64x1xf8E8M0FNU>)
      {activation = #mix.activation<relu>}
      : tensor<?x64xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x64xf32>
  return
}

// -----

func.func @mxfp4_missing_scales(%x: tensor<?x64xf32>, %off: tensor<3xi32>, %tok: tensor<?xi32>,
                                %u: tensor<2x32x64xf4E2M1FN>, %d: tensor<2x64x32xf4E2M1FN>,
                                %us: tensor<2x32x2xf8E8M0FNU>) {
  // expected-error @+1 {{operand group 'down_scale' must hold the e8m0 scales of each 'down' weight (1 tensor), got 0}}
  %h = mix.expert_ffn %x, %off, %tok up(%u : tensor<2x32x64xf4E2M1FN>) down(%d : tensor<2x64x32xf4E2M1FN>)
      up_scale(%us : tensor<2x32x2xf8E8M0FNU>)
      {activation = #mix.activation<relu>}
      : tensor<?x64xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x64xf32>
  return
}

// -----

func.func @mxfp4_scale_shape(%x: tensor<?x64xf32>, %off: tensor<3xi32>, %tok: tensor<?xi32>,
                             %u: tensor<2x32x64xf4E2M1FN>, %d: tensor<2x64x32xf4E2M1FN>,
                             %us: tensor<2x32x2xf8E8M0FNU>, %ds: tensor<2x64x2xf8E8M0FNU>) {
  // expected-error @+1 {{operand 'down_scale' must be f8E8M0FNU [2, 64, 1] (one scale per 32 values of 'down' [2, 64, 32]), got [2, 64, 2]}}
  %h = mix.expert_ffn %x, %off, %tok up(%u : tensor<2x32x64xf4E2M1FN>) down(%d : tensor<2x64x32xf4E2M1FN>)
      up_scale(%us : tensor<2x32x2xf8E8M0FNU>) down_scale(%ds : tensor<2x64x2xf8E8M0FNU>)
      {activation = #mix.activation<relu>}
      : tensor<?x64xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x64xf32>
  return
}

// -----

func.func @mxfp4_f32_scales(%x: tensor<?x64xf32>, %off: tensor<3xi32>, %tok: tensor<?xi32>,
                            %u: tensor<2x32x64xf4E2M1FN>, %d: tensor<2x64x32xf4E2M1FN>,
                            %us: tensor<2x32x2xf32>, %ds: tensor<2x64x1xf32>) {
  // expected-error @+1 {{operand 'up_scale' must be f8E8M0FNU [2, 32, 2] (one scale per 32 values of 'up' [2, 32, 64]), got [2, 32, 2]}}
  %h = mix.expert_ffn %x, %off, %tok up(%u : tensor<2x32x64xf4E2M1FN>) down(%d : tensor<2x64x32xf4E2M1FN>)
      up_scale(%us : tensor<2x32x2xf32>) down_scale(%ds : tensor<2x64x1xf32>)
      {activation = #mix.activation<relu>}
      : tensor<?x64xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x64xf32>
  return
}

// -----

func.func @fp8_e8m0_scales(%x: tensor<?x64xf32>, %off: tensor<2xi32>, %tok: tensor<?xi32>,
                           %u: tensor<40x64xf8E4M3FN>, %d: tensor<64x40xf8E4M3FN>, %s: tensor<1x1xf8E8M0FNU>) {
  // expected-error @+1 {{operand 'up_scale #0' must be f32 [1, 1] (blocks of 128 x 128 of 'up #0' [40, 64]), got [1, 1]}}
  %h = mix.expert_ffn %x, %off, %tok up(%u : tensor<40x64xf8E4M3FN>) down(%d : tensor<64x40xf8E4M3FN>)
      up_scale(%s : tensor<1x1xf8E8M0FNU>) down_scale(%s : tensor<1x1xf8E8M0FNU>)
      {activation = #mix.activation<relu>, weight_block = array<i64: 128, 128>}
      : tensor<?x64xf32>, tensor<2xi32>, tensor<?xi32> -> tensor<?x64xf32>
  return
}

// -----

// expected-error @+1 {{'mix.stored' of argument #0 ('f4E2M1FN') must say format = "mxfp4"}}
func.func @mxfp4_stored_format(%w: tensor<2x32x64xf4E2M1FN> {mix.stored = {name = "w", stride = 1, offset = 0, transpose}}) {
  return
}
