// A Qwen2-MoE-style block: softmax top-4 of 16 experts without renormalization, experts
// stored one tensor per expert (as the checkpoint does), and a shared expert scaled by
// sigmoid(x · shared_expert_gateᵀ). Also returns the router logits and the auxiliary losses.
func.func @qwen2_moe(
    %x: tensor<?x128xf32> {mix.name = "hidden_states"},
    %router: tensor<4x128xf32> {mix.name = "gate.weight"},
    %g0: tensor<32x128xf32> {mix.name = "experts.0.gate_proj.weight"},
    %g1: tensor<32x128xf32> {mix.name = "experts.1.gate_proj.weight"},
    %g2: tensor<32x128xf32> {mix.name = "experts.2.gate_proj.weight"},
    %g3: tensor<32x128xf32> {mix.name = "experts.3.gate_proj.weight"},
    %u0: tensor<32x128xf32> {mix.name = "experts.0.up_proj.weight"},
    %u1: tensor<32x128xf32> {mix.name = "experts.1.up_proj.weight"},
    %u2: tensor<32x128xf32> {mix.name = "experts.2.up_proj.weight"},
    %u3: tensor<32x128xf32> {mix.name = "experts.3.up_proj.weight"},
    %d0: tensor<128x32xf32> {mix.name = "experts.0.down_proj.weight"},
    %d1: tensor<128x32xf32> {mix.name = "experts.1.down_proj.weight"},
    %d2: tensor<128x32xf32> {mix.name = "experts.2.down_proj.weight"},
    %d3: tensor<128x32xf32> {mix.name = "experts.3.down_proj.weight"},
    %sg: tensor<64x128xf32> {mix.name = "shared_expert.gate_proj.weight"},
    %su: tensor<64x128xf32> {mix.name = "shared_expert.up_proj.weight"},
    %sd: tensor<128x64xf32> {mix.name = "shared_expert.down_proj.weight"},
    %seg: tensor<1x128xf32> {mix.name = "shared_expert_gate.weight"})
    -> (tensor<?x128xf32> {mix.name = "output"},
        tensor<?x4xf32> {mix.name = "router_logits"},
        tensor<f32> {mix.name = "aux_loss"},
        tensor<f32> {mix.name = "z_loss"}) {
  %y, %logits, %aux, %z = mix.token_choice_moe %x router(%router : tensor<4x128xf32>)
      experts
      gate(%g0, %g1, %g2, %g3 : tensor<32x128xf32>, tensor<32x128xf32>, tensor<32x128xf32>, tensor<32x128xf32>)
      up(%u0, %u1, %u2, %u3 : tensor<32x128xf32>, tensor<32x128xf32>, tensor<32x128xf32>, tensor<32x128xf32>)
      down(%d0, %d1, %d2, %d3 : tensor<128x32xf32>, tensor<128x32xf32>, tensor<128x32xf32>, tensor<128x32xf32>)
      shared_gate(%sg : tensor<64x128xf32>) shared_up(%su : tensor<64x128xf32>)
      shared_down(%sd : tensor<128x64xf32>) shared_expert_gate(%seg : tensor<1x128xf32>)
      {k = 2, activation = #mix.activation<silu>}
      : tensor<?x128xf32> -> tensor<?x128xf32> router_logits tensor<?x4xf32>
        aux_loss tensor<f32> z_loss tensor<f32>
  return %y, %logits, %aux, %z : tensor<?x128xf32>, tensor<?x4xf32>, tensor<f32>, tensor<f32>
}
