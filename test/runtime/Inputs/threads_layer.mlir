// The layer the threads test runs concurrently: a token-choice block with bf16 experts, so
// sessions on several threads take the host's bf16 matrix path (AMX tiles configured per
// thread, AVX512-BF16, or widened f32) and the small-token vector path.
func.func @threads_moe(
    %x: tensor<?x256xf32> {mix.name = "hidden_states"},
    %router: tensor<8x256xf32> {mix.name = "gate.weight"},
    %w1: tensor<8x512x256xbf16> {mix.name = "experts.w1"},
    %w3: tensor<8x512x256xbf16> {mix.name = "experts.w3"},
    %w2: tensor<8x256x512xbf16> {mix.name = "experts.w2"})
    -> (tensor<?x256xf32> {mix.name = "output"}) {
  %y = mix.token_choice_moe %x router(%router : tensor<8x256xf32>)
      experts gate(%w1 : tensor<8x512x256xbf16>) up(%w3 : tensor<8x512x256xbf16>)
      down(%w2 : tensor<8x256x512xbf16>)
      {k = 2, normalize, activation = #mix.activation<silu>}
      : tensor<?x256xf32> -> tensor<?x256xf32>
  return %y : tensor<?x256xf32>
}
