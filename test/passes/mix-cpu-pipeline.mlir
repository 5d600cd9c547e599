// RUN: mixtile-opt %s --mix-cpu-pipeline | FileCheck %s
// RUN: mixtile-opt %s --mix-cuda-pipeline | FileCheck %s --check-prefix=CUDA

// The whole CPU pipeline on a Mixtral-style layer: decomposed, fused into router, dispatch
// and experts kernels, each tiled from the built-in cpu table; nothing else is left.
// CHECK-LABEL: func.func @mixtral
// CHECK: mix.kernel "router"
// CHECK: } attributes {tiles = [{max_tokens = -1 : i64{{.*}}}]}
// CHECK: mix.kernel "dispatch"
// CHECK: %[[Y:.*]] = mix.kernel "moe_experts" -> tensor<?x64xf32> {
// CHECK-NEXT: mix.zeros_like
// CHECK-NEXT: mix.expert_ffn
// CHECK-NEXT: mix.combine
// CHECK-NEXT: mix.yield
// CHECK-NEXT: } attributes {mix.matmul_path = "fma_f32", tiles = [{kc = 256 : i64, max_tokens = 128 : i64, mc = 112 : i64, nc = 512 : i64, small_m_max = 32 : i64{{.*}}}, {{.*}}max_tokens = -1 : i64{{.*}}]}
// CHECK-NEXT: return %[[Y]]
// CUDA: mix.kernel "moe_experts"
// CUDA: attributes {tiles = [{block_k = 64 : i64, block_m = 16 : i64, block_n = 64 : i64, max_tokens = 16 : i64, warps = 4 : i64}
func.func @mixtral(%x: tensor<?x64xf32>, %r: tensor<8x64xf32>, %g: tensor<8x32x64xf32>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xf32>) -> tensor<?x64xf32> {
  %y = mix.token_choice_moe %x router(%r : tensor<8x64xf32>) experts gate(%g : tensor<8x32x64xf32>) up(%u : tensor<8x32x64xf32>) down(%d : tensor<8x64x32xf32>)
      {k = 2, normalize, activation = #mix.activation<silu>} : tensor<?x64xf32> -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
