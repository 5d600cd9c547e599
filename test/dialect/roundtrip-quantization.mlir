// RUN: mixtile-opt %s | mixtile-opt | FileCheck %s
// RUN: mixtile-opt %s --mlir-print-op-generic | mixtile-opt | FileCheck %s
// A checkpoint's fp8 weights with block scales (docs/MixDialect.md, "Weight quantization").

// CHECK: module attributes {mix.weight_quantization = {block = [16, 24], format = "fp8_e4m3"}}
module attributes {mix.weight_quantization = {format = "fp8_e4m3", block = [16, 24]}} {
  // CHECK: func.func @f
  func.func @f(%x: tensor<?x8xf32>) -> tensor<?x8xf32> {
    return %x : tensor<?x8xf32>
  }
}

// fp8 routed experts used in place: e4m3 codes per expert with their f32 block scales.

// CHECK-LABEL: func.func @fp8_experts
// CHECK: mix.expert_ffn %{{.*}}, %{{.*}}, %{{.*}} gate(%{{.*}}, %{{.*}} : tensor<40x64xf8E4M3FN>, tensor<40x64xf8E4M3FN>) up(%{{.*}}, %{{.*}} : tensor<40x64xf8E4M3FN>, tensor<40x64xf8E4M3FN>) down(%{{.*}}, %{{.*}} : tensor<64x40xf8E4M3FN>, tensor<64x40xf8E4M3FN>) gate_scale(%{{.*}}, %{{.*}} : tensor<3x3xf32>, tensor<3x3xf32>) up_scale(%{{.*}}, %{{.*}} : tensor<3x3xf32>, tensor<3x3xf32>) down_scale(%{{.*}}, %{{.*}} : tensor<4x2xf32>, tensor<4x2xf32>) {activation = #mix.activation<silu>, weight_block = array<i64: 16, 24>}
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

// CHECK-LABEL: func.func @fp8_layer
// CHECK: mix.token_choice_moe %{{.*}} router(%{{.*}} : tensor<2x64xf32>) experts up(%{{.*}}, %{{.*}} : tensor<40x64xf8E4M3FN>, tensor<40x64xf8E4M3FN>) down(%{{.*}}, %{{.*}} : tensor<64x40xf8E4M3FN>, tensor<64x40xf8E4M3FN>) up_scale(%{{.*}}, %{{.*}} : tensor<1x1xf32>, tensor<1x1xf32>) down_scale(%{{.*}}, %{{.*}} : tensor<1x1xf32>, tensor<1x1xf32>) {activation = #mix.activation<gelu>, k = 1 : i64, weight_block = array<i64: 128, 128>} : tensor<?x64xbf16> -> tensor<?x64xbf16>
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

// MXFP4 routed experts used in place (gpt-oss's hub checkpoints): stacked e2m1 codes, stacked
// e8m0 scales of 32 values each, read from the checkpoint's blocks and scales (mix.stored).

// CHECK-LABEL: func.func @mxfp4_experts
// CHECK-SAME: tensor<2x32x64xf4E2M1FN> {mix.stored = {format = "mxfp4", name = "experts.gate_up_proj", offset = 0 : i64, stride = 2 : i64, transpose}}
// CHECK: mix.expert_ffn %{{.*}}, %{{.*}}, %{{.*}} gate(%{{.*}} : tensor<2x32x64xf4E2M1FN>) up(%{{.*}} : tensor<2x32x64xf4E2M1FN>) down(%{{.*}} : tensor<2x64x32xf4E2M1FN>) gate_scale(%{{.*}} : tensor<2x32x2xf8E8M0FNU>) up_scale(%{{.*}} : tensor<2x32x2xf8E8M0FNU>) down_scale(%{{.*}} : tensor<2x64x1xf8E8M0FNU>) {activation = #mix.activation<silu>}
func.func @mxfp4_experts(%x: tensor<?x64xf32>, %off: tensor<3xi32>, %tok: tensor<?xi32>,
                         %g: tensor<2x32x64xf4E2M1FN> {mix.stored = {name = "experts.gate_up_proj", stride = 2, offset = 0, transpose, format = "mxfp4"}},
                         %u: tensor<2x32x64xf4E2M1FN>, %d: tensor<2x64x32xf4E2M1FN>,
                         %gs: tensor<2x32x2xf8E8M0FNU>, %us: tensor<2x32x2xf8E8M0FNU>,
                         %ds: tensor<2x64x1xf8E8M0FNU>) -> tensor<?x64xf32> {
  %h = mix.expert_ffn %x, %off, %tok gate(%g : tensor<2x32x64xf4E2M1FN>)
      up(%u : tensor<2x32x64xf4E2M1FN>) down(%d : tensor<2x64x32xf4E2M1FN>)
      gate_scale(%gs : tensor<2x32x2xf8E8M0FNU>) up_scale(%us : tensor<2x32x2xf8E8M0FNU>)
      down_scale(%ds : tensor<2x64x1xf8E8M0FNU>)
      {activation = #mix.activation<silu>}
      : tensor<?x64xf32>, tensor<3xi32>, tensor<?xi32> -> tensor<?x64xf32>
  return %h : tensor<?x64xf32>
}
