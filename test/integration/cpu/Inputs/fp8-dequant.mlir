// y = x w^T over fp8 weights with blocks of 4 x 8 (test/helpers/fp8_dequant_case.py): with
// x the identity, y is the dequantized w transposed, in f32 (w) and in bf16 (wb).
module attributes {mix.weight_quantization = {format = "fp8_e4m3", block = [4, 8]}} {
  func.func @dequant(%x: tensor<?x32xf32> {mix.name = "x"},
                     %w: tensor<24x32xf32> {mix.name = "w"},
                     %wb: tensor<24x32xbf16> {mix.name = "wb"})
      -> (tensor<?x24xf32> {mix.name = "y"}, tensor<?x24xf32> {mix.name = "yb"}) {
    %y = mix.linear %x, %w : tensor<?x32xf32>, tensor<24x32xf32> -> tensor<?x24xf32>
    %yb = mix.linear %x, %wb : tensor<?x32xf32>, tensor<24x32xbf16> -> tensor<?x24xf32>
    return %y, %yb : tensor<?x24xf32>, tensor<?x24xf32>
  }
}
