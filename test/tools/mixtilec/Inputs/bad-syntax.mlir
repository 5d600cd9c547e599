func.func @f(%x: tensor<?x64xf32>) -> tensor<?x64xf32> {
  %y = mix.no_such_op %x : tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
