// RUN: mixtile-opt %s | mixtile-opt | FileCheck %s
// RUN: mixtile-opt %s --mlir-print-op-generic | mixtile-opt | FileCheck %s

// CHECK-LABEL: func.func @layer
// CHECK-SAME: mix.state, mix.symbols = ["B", "S", "", ""]
func.func @layer(%x: tensor<?x64xf32>, %pos: tensor<?xi32> {mix.symbols = ["T"]},
    %seq: tensor<?xi32> {mix.symbols = ["T"]},
    %kc: tensor<?x?x2x16xbf16> {mix.state, mix.symbols = ["B", "S", "", ""]},
    %vc: tensor<?x?x2x16xbf16> {mix.state, mix.symbols = ["B", "S", "", ""]},
    %ln: tensor<64xbf16>, %wq: tensor<64x64xbf16>, %wk: tensor<32x64xbf16>,
    %wv: tensor<32x64xbf16>, %qn: tensor<16xbf16>) -> tensor<?x64xf32> {
  // CHECK: mix.rms_norm %{{.*}}, %{{.*}} {epsilon = 1.000000e-05 : f64} : tensor<?x64xf32>, tensor<64xbf16> -> tensor<?x64xf32>
  %h = mix.rms_norm %x, %ln {epsilon = 1.0e-5} : tensor<?x64xf32>, tensor<64xbf16> -> tensor<?x64xf32>
  %q = mix.linear %h, %wq : tensor<?x64xf32>, tensor<64x64xbf16> -> tensor<?x64xf32>
  %k = mix.linear %h, %wk : tensor<?x64xf32>, tensor<32x64xbf16> -> tensor<?x32xf32>
  %v = mix.linear %h, %wv : tensor<?x64xf32>, tensor<32x64xbf16> -> tensor<?x32xf32>
  // A per-head norm on a [T, H, D] view.
  // CHECK: mix.rms_norm %{{.*}}, %{{.*}} {epsilon = 1.000000e-05 : f64} : tensor<?x4x16xf32>, tensor<16xbf16> -> tensor<?x4x16xf32>
  %c0 = arith.constant 0 : index
  %t = tensor.dim %q, %c0 : tensor<?x64xf32>
  %view = tensor.expand_shape %q [[0], [1, 2]] output_shape [%t, 4, 16] : tensor<?x64xf32> into tensor<?x4x16xf32>
  %normed = mix.rms_norm %view, %qn {epsilon = 1.0e-5} : tensor<?x4x16xf32>, tensor<16xbf16> -> tensor<?x4x16xf32>
  %q2 = tensor.collapse_shape %normed [[0], [1, 2]] : tensor<?x4x16xf32> into tensor<?x64xf32>
  // CHECK: mix.attention
  // CHECK-SAME: clip = 8.000000e+00 : f64, head_dim = 16 : i64, heads = 4 : i64
  // CHECK-SAME: inv_freq = array<f64: 1.000000e+00, 1.000000e-01>, kv_heads = 2 : i64
  // CHECK-SAME: rope_interleaved, rope_scale = 1.100000e+00 : f64, softmax_scale = 2.500000e-01 : f64, window = 4 : i64
  // CHECK-SAME: : tensor<?x64xf32>, tensor<?x32xf32>, tensor<?x32xf32>, tensor<?xi32>, tensor<?xi32>, tensor<?x?x2x16xbf16>, tensor<?x?x2x16xbf16> -> tensor<?x64xf32>
  %a = mix.attention %q2, %k, %v, %pos, %seq, %kc, %vc
      {heads = 4, kv_heads = 2, head_dim = 16, inv_freq = array<f64: 1.0, 0.1>,
       rope_scale = 1.1, rope_interleaved, softmax_scale = 0.25, clip = 8.0, window = 4}
      : tensor<?x64xf32>, tensor<?x32xf32>, tensor<?x32xf32>, tensor<?xi32>, tensor<?xi32>,
        tensor<?x?x2x16xbf16>, tensor<?x?x2x16xbf16> -> tensor<?x64xf32>
  %y = arith.addf %x, %a : tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// CHECK-LABEL: func.func @embed_and_head
func.func @embed_and_head(%ids: tensor<?xi32> {mix.symbols = ["T"]},
    %rows: tensor<?xi32> {mix.symbols = ["R"]}, %table: tensor<256x64xbf16>) -> tensor<?x256xf32> {
  // CHECK: mix.gather %{{.*}}[%{{.*}}] : tensor<256x64xbf16>, tensor<?xi32> -> tensor<?x64xf32>
  %x = mix.gather %table[%ids] : tensor<256x64xbf16>, tensor<?xi32> -> tensor<?x64xf32>
  // CHECK: mix.gather %{{.*}}[%{{.*}}] : tensor<?x64xf32>, tensor<?xi32> -> tensor<?x64xf32>
  %picked = mix.gather %x[%rows] : tensor<?x64xf32>, tensor<?xi32> -> tensor<?x64xf32>
  %logits = mix.linear %picked, %table : tensor<?x64xf32>, tensor<256x64xbf16> -> tensor<?x256xf32>
  return %logits : tensor<?x256xf32>
}
