// A MoV layer (Zadouri et al., 2023): an activation h [T, 512] scaled by a softmax mixture
// of 10 (IA)3 vectors, routed on the layer input x [T, 256].
func.func @mov(
    %x: tensor<?x256xf32> {mix.name = "hidden_states"},
    %h: tensor<?x512xf32> {mix.name = "activation"},
    %router: tensor<10x256xf32> {mix.name = "router.weight"},
    %vectors: tensor<10x512xf32> {mix.name = "ia3_vectors"})
    -> (tensor<?x512xf32> {mix.name = "output"}) {
  %y = mix.mov %x, %h router(%router : tensor<10x256xf32>) vectors(%vectors : tensor<10x512xf32>)
      : tensor<?x256xf32>, tensor<?x512xf32> -> tensor<?x512xf32>
  return %y : tensor<?x512xf32>
}
