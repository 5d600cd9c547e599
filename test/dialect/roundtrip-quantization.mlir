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
