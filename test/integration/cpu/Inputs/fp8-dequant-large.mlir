// fp8-dequant.mlir's identity GEMM on weights of 65536 x 64 in blocks of 128 x 32: 4M elements
// each, which the runtime dequantizes on several threads (test/helpers/fp8_dequant_case.py
// --large).
module attributes {mix.weight_quantization = {format = "fp8_e4m3", block = [128, 32]}} {
  func.func @dequant(%x: tensor<?x64xf32> {mix.name = "x"},
                     %w: tensor<65536x64xf32> {mix.name = "w"},
                     %wb: tensor<65536x64xbf16> {mix.name = "wb"})
      -> (tensor<?x65536xf32> {mix.name = "y"}, tensor<?x65536xf32> {mix.name = "yb"}) {
    %y = mix.linear %x, %w : tensor<?x64xf32>, tensor<65536x64xf32> -> tensor<?x65536xf32>
    %yb = mix.linear %x, %wb : tensor<?x64xf32>, tensor<65536x64xbf16> -> tensor<?x65536xf32>
    return %y, %yb : tensor<?x65536xf32>, tensor<?x65536xf32>
  }
}
