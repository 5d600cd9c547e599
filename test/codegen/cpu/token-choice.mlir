// The emitted C++ of a DeepSeek-style layer: one router kernel with every routing constant,
// the dispatch, and one experts kernel where the shared expert writes the output the routed
// experts scatter-add into, with tiles chosen by token count.
// RUN: rm -rf %t && mixtilec %s --cpu x86-64-v4 --emit source -o %t
// RUN: FileCheck %s --input-file %t/token_choice.cpp
// RUN: FileCheck %s --check-prefix=HEADER --input-file %t/token_choice.h
// RUN: FileCheck %s --check-prefix=MANIFEST --input-file %t/manifest.json
// RUN: not test -e %t/libtoken_choice.so
// RUN: test -f %t/mixtile_kernels/kernels.h
// The matrix path follows the CPU: bf16 weights take AMX tiles on Sapphire Rapids and
// VDPBF16PS on Zen 5; x86-64-v4 (above) widens them to f32.
// RUN: rm -rf %t.spr && mixtilec %s --cpu sapphirerapids --emit source -o %t.spr
// RUN: FileCheck %s --check-prefix=AMX --input-file %t.spr/token_choice.cpp
// RUN: FileCheck %s --check-prefix=AMX-MANIFEST --input-file %t.spr/manifest.json
// RUN: rm -rf %t.zen && mixtilec %s --cpu znver5 --emit source -o %t.zen
// RUN: FileCheck %s --check-prefix=ZEN --input-file %t.zen/token_choice.cpp
// RUN: FileCheck %s --check-prefix=ZEN-MANIFEST --input-file %t.zen/manifest.json
// RUN: not mixtilec %s --cpu pentium4 -o %t.bad 2>&1 | FileCheck %s --check-prefix=BADCPU
// RUN: not test -e %t.bad

// AMX: "the OS did not grant this process the AMX tile state
// AMX: mixtile::cpu::expert_ffn_workspace_size({{.*}}, mixtile::cpu::MatmulPath::amx_bf16)
// AMX: if (!mixtile::cpu::amx_ready())
// AMX-NEXT: return {{[0-9]+}};
// AMX-NEXT: mixtile::cpu::expert_ffn<mixtile::cpu::WeightType::bf16, mixtile::cpu::Activation::silu, true, mixtile::cpu::MatmulPath::amx_bf16>(p, tiles_layer_k2(T));
// AMX-MANIFEST: "cpu": {
// AMX-MANIFEST: "march": "sapphirerapids",
// AMX-MANIFEST-NEXT: "matmul_paths": [
// AMX-MANIFEST-NEXT: {
// AMX-MANIFEST-NEXT: "kernel": "moe_experts",
// AMX-MANIFEST-NEXT: "matmul_path": "amx_bf16"
// AMX-MANIFEST: "name": "sapphirerapids",
// AMX-MANIFEST-NEXT: "required_features": [
// AMX-MANIFEST: "amx_tile",
// AMX-MANIFEST-NEXT: "amx_bf16"
// ZEN-NOT: amx_ready
// ZEN: mixtile::cpu::expert_ffn<mixtile::cpu::WeightType::bf16, mixtile::cpu::Activation::silu, true, mixtile::cpu::MatmulPath::avx512_bf16>(p, tiles_layer_k2(T));
// ZEN-MANIFEST: "isa_flags": [
// ZEN-MANIFEST: "-mavx512bf16",
// ZEN-MANIFEST: "march": "znver3",
// ZEN-MANIFEST: "matmul_path": "avx512_bf16"
// ZEN-MANIFEST-NOT: amx
// BADCPU: mixtilec: error: unknown --cpu 'pentium4' (expected one of native, x86-64, x86-64-v3, x86-64-v4, sapphirerapids, cooperlake, znver4, znver5)

// CHECK: static mixtile::cpu::TileConfig tiles_layer_k2(int64_t tokens) {
// CHECK-NEXT: mixtile::cpu::TileConfig c = mixtile::cpu::default_tile_config(tokens);
// CHECK-NEXT: if (tokens <= {{[0-9]+}}) { c.{{.*}} return c; }
// CHECK: struct layer_plan {
// CHECK: extern "C" size_t layer_workspace_size(int64_t T) {
// CHECK: extern "C" int layer(int64_t T, const float *hidden_states, const float *gate_weight, const float *gate_e_score_correction_bias, const uint16_t *experts_gate, const uint16_t *experts_up, const uint16_t *experts_down, const uint16_t *shared_gate, const uint16_t *shared_up, const uint16_t *shared_down, float *output, void *workspace, int num_threads) {
// CHECK: // Kernel 0 'router': mix.route.
// CHECK: config.experts = 16; config.hidden = 64; config.k = 4;
// CHECK-NEXT: config.sigmoid = true; config.normalize = true; config.norm_epsilon = 1.000000e-20f; config.scale = 2.500000e+00f;
// CHECK-NEXT: config.n_group = 4; config.topk_group = 2; config.group_top2_sum = true;
// CHECK-NEXT: mixtile::cpu::route<mixtile::cpu::WeightType::f32>(config, T, hidden_states, gate_weight, mixtile::cpu::ExpertVector{}, mixtile::cpu::ExpertVector{gate_e_score_correction_bias, mixtile::cpu::WeightType::f32}, [[W:t[0-9]+]], [[IDX:t[0-9]+]], [[LOGITS:t[0-9]+]], threads);
// CHECK: // Kernel 1 'dispatch': mix.dispatch.
// CHECK: mixtile::cpu::dispatch(T, 4, 16, [[W]], [[IDX]], [[OFF:t[0-9]+]], [[TOK:t[0-9]+]], [[GATE:t[0-9]+]]);
// CHECK: // Kernel 2 'moe_experts': mix.ffn + mix.expert_ffn + mix.combine.
// CHECK: // Dense FFN over every token
// CHECK: p.num_experts = 1; p.hidden = 64; p.inter = 96;
// CHECK: p.y = output; p.out_rows = nullptr; p.zero_rows = 0;
// CHECK: mixtile::cpu::expert_ffn<mixtile::cpu::WeightType::bf16, mixtile::cpu::Activation::silu, true>(p, tiles_layer_k2(T));
// CHECK: const void *gate_w[16] = {experts_gate + 0, experts_gate + 2048,
// CHECK: p.num_experts = 16; p.hidden = 64; p.inter = 32;
// CHECK-NEXT: p.x = hidden_states; p.offsets = [[OFF]]; p.tokens = [[TOK]]; p.gates = [[GATE]];
// CHECK: p.y = output; p.out_rows = [[TOK]]; p.zero_rows = 0;
// CHECK: mixtile::cpu::expert_ffn<mixtile::cpu::WeightType::bf16, mixtile::cpu::Activation::silu, true>(p, tiles_layer_k2(T));
// CHECK: extern "C" int layer_packed(void *const *tensors, const int64_t *dims, void *workspace, int num_threads) {
// CHECK: return layer(dims[0], static_cast<const float *>(tensors[0]),

// HEADER: #ifndef MIXTILE_TOKEN_CHOICE_H
// HEADER: extern "C" {
// HEADER: int layer(int64_t T, const float *hidden_states,
// HEADER: size_t layer_workspace_size(int64_t T);
// HEADER: int layer_packed(void *const *tensors, const int64_t *dims, void *workspace, int num_threads);
// HEADER: const char *token_choice_error_message(int code);

// MANIFEST: "cpu": {
// MANIFEST: "march": "x86-64-v4",
// MANIFEST: "matmul_path": "fma_f32"
// MANIFEST: "name": "x86-64-v4",
// MANIFEST-NEXT: "required_features": [
// MANIFEST-NEXT: "avx2",
// MANIFEST-NOT: bf16
// MANIFEST: "entry_points": [
// MANIFEST: "arguments": [
// MANIFEST: "c_name": "hidden_states",
// MANIFEST-NEXT: "dtype": "f32",
// MANIFEST-NEXT: "kind": "input",
// MANIFEST-NEXT: "name": "hidden_states",
// MANIFEST-NEXT: "shape": [
// MANIFEST-NEXT: null,
// MANIFEST-NEXT: 64
// MANIFEST-NEXT: ],
// MANIFEST-NEXT: "symbols": [
// MANIFEST-NEXT: "T",
// MANIFEST-NEXT: null
// MANIFEST: "name": "gate.e_score_correction_bias",
// MANIFEST: "cost": {
// MANIFEST: "experts_per_token": 4,
// MANIFEST: "num_experts": 16
// MANIFEST: "dynamic_dims": [
// MANIFEST-NEXT: "T"
// MANIFEST: "fused_ops": [
// MANIFEST-NEXT: "mix.route"
// MANIFEST: "fused_ops": [
// MANIFEST-NEXT: "mix.dispatch"
// MANIFEST: "fused_ops": [
// MANIFEST-NEXT: "mix.ffn",
// MANIFEST-NEXT: "mix.expert_ffn",
// MANIFEST-NEXT: "mix.combine"
// MANIFEST: "kind": "moe_experts",
// MANIFEST: "target": "cpu"

func.func @layer(%x: tensor<?x64xf32> {mix.name = "hidden_states"},
    %router: tensor<16x64xf32> {mix.name = "gate.weight"},
    %bias: tensor<16xf32> {mix.name = "gate.e_score_correction_bias"},
    %g: tensor<16x32x64xbf16> {mix.name = "experts.gate"},
    %u: tensor<16x32x64xbf16> {mix.name = "experts.up"},
    %d: tensor<16x64x32xbf16> {mix.name = "experts.down"},
    %sg: tensor<96x64xbf16> {mix.name = "shared.gate"},
    %su: tensor<96x64xbf16> {mix.name = "shared.up"},
    %sd: tensor<64x96xbf16> {mix.name = "shared.down"}) -> (tensor<?x64xf32> {mix.name = "output"}) {
  %y = mix.token_choice_moe %x router(%router : tensor<16x64xf32>) selection_bias(%bias : tensor<16xf32>)
      experts gate(%g : tensor<16x32x64xbf16>) up(%u : tensor<16x32x64xbf16>) down(%d : tensor<16x64x32xbf16>)
      shared_gate(%sg : tensor<96x64xbf16>) shared_up(%su : tensor<96x64xbf16>) shared_down(%sd : tensor<64x96xbf16>)
      {k = 4, scoring = #mix.scoring<sigmoid>, n_group = 4, topk_group = 2, group_score = #mix.group_score<top2_sum>,
       normalize, norm_epsilon = 1.0e-20, scale = 2.5, activation = #mix.activation<silu>}
      : tensor<?x64xf32> -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
