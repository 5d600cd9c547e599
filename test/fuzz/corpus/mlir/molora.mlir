// A MoLoRA layer (Zadouri et al., 2023): a frozen 256x256 base weight plus a softmax mixture
// of 8 rank-4 LoRA adapters, scaled by alpha / r = 16 / 4.
func.func @molora(
    %x: tensor<?x256xf32> {mix.name = "hidden_states"},
    %base: tensor<256x256xf32> {mix.name = "base.weight"},
    %router: tensor<8x256xf32> {mix.name = "router.weight"},
    %a: tensor<8x4x256xf32> {mix.name = "lora_a"},
    %b: tensor<8x256x4xf32> {mix.name = "lora_b"})
    -> (tensor<?x256xf32> {mix.name = "output"}) {
  %y = mix.molora %x base(%base : tensor<256x256xf32>) router(%router : tensor<8x256xf32>)
      lora_a(%a : tensor<8x4x256xf32>) lora_b(%b : tensor<8x256x4xf32>) {alpha = 16.0}
      : tensor<?x256xf32> -> tensor<?x256xf32>
  return %y : tensor<?x256xf32>
}
