// A DeepSeek-V3-style MoE block: 32 fine-grained experts in 4 groups, sigmoid scores with a
// selection bias, group-limited top-8 (top-2-sum group scores, best 2 groups), renormalized
// and scaled weights, plus one always-on shared expert. Shapes scaled down from V3 (hidden
// 7168, 256 experts of width 2048).
func.func @deepseek_v3_moe(
    %x: tensor<?x256xf32> {mix.name = "hidden_states"},
    %router: tensor<32x256xf32> {mix.name = "mlp.gate.weight"},
    %bias: tensor<32xf32> {mix.name = "mlp.gate.e_score_correction_bias"},
    %gate: tensor<32x64x256xbf16> {mix.name = "mlp.experts.gate_proj"},
    %up: tensor<32x64x256xbf16> {mix.name = "mlp.experts.up_proj"},
    %down: tensor<32x256x64xbf16> {mix.name = "mlp.experts.down_proj"},
    %s_gate: tensor<64x256xbf16> {mix.name = "mlp.shared_experts.gate_proj.weight"},
    %s_up: tensor<64x256xbf16> {mix.name = "mlp.shared_experts.up_proj.weight"},
    %s_down: tensor<256x64xbf16> {mix.name = "mlp.shared_experts.down_proj.weight"})
    -> (tensor<?x256xf32> {mix.name = "output"}) {
  %y = mix.token_choice_moe %x router(%router : tensor<32x256xf32>)
      selection_bias(%bias : tensor<32xf32>)
      experts gate(%gate : tensor<32x64x256xbf16>) up(%up : tensor<32x64x256xbf16>)
      down(%down : tensor<32x256x64xbf16>)
      shared_gate(%s_gate : tensor<64x256xbf16>) shared_up(%s_up : tensor<64x256xbf16>)
      shared_down(%s_down : tensor<256x64xbf16>)
      {k = 8, scoring = #mix.scoring<sigmoid>, n_group = 4, topk_group = 2,
       group_score = #mix.group_score<top2_sum>, normalize, norm_epsilon = 1.0e-20,
       scale = 2.5, activation = #mix.activation<silu>}
      : tensor<?x256xf32> -> tensor<?x256xf32>
  return %y : tensor<?x256xf32>
}
