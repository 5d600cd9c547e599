// RUN: mixtile-opt %s | mixtile-opt | FileCheck %s
// RUN: mixtile-opt %s --mlir-print-op-generic | mixtile-opt | FileCheck %s

// CHECK-LABEL: func.func @kernel
func.func @kernel(%x: tensor<?x64xf32>) -> (tensor<?x64xf32>, tensor<?x64xf32>) {
  // CHECK: %[[K:.*]]:2 = mix.kernel "pair" -> tensor<?x64xf32>, tensor<?x64xf32> {
  // CHECK-NEXT: %[[Z:.*]] = mix.zeros_like %{{.*}} : tensor<?x64xf32>
  // CHECK-NEXT: mix.yield %[[Z]], %[[Z]] : tensor<?x64xf32>, tensor<?x64xf32>
  // CHECK-NEXT: } attributes {tiles = [{max_tokens = -1 : i64, mc = 8 : i64}]}
  %a, %b = mix.kernel "pair" -> tensor<?x64xf32>, tensor<?x64xf32> {
    %z = mix.zeros_like %x : tensor<?x64xf32>
    mix.yield %z, %z : tensor<?x64xf32>, tensor<?x64xf32>
  } attributes {tiles = [{max_tokens = -1 : i64, mc = 8 : i64}]}
  // CHECK: mix.kernel "nothing" {
  // CHECK-NEXT: mix.yield
  // CHECK-NEXT: }
  mix.kernel "nothing" {
    mix.yield
  }
  return %a, %b : tensor<?x64xf32>, tensor<?x64xf32>
}
