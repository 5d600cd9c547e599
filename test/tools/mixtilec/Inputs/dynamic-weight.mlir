func.func @f(%x: tensor<?x64xf32>, %w: tensor<64x?xf32>) -> tensor<?x64xf32> {
  return %x : tensor<?x64xf32>
}
