// The emitted CUDA of a DeepSeek-style layer: the fused router with every routing constant,
// the device-side dispatch, and one experts kernel where the shared expert stores the output
// the routed experts scatter-add into, on tensor cores (bf16), tiles chosen by token count.
// No host synchronization anywhere: offsets stay on the device.
// RUN: rm -rf %t && mixtilec %s --target cuda --emit source -o %t
// RUN: FileCheck %s --input-file %t/token_choice.cu
// RUN: FileCheck %s --check-prefix=HEADER --input-file %t/token_choice.h
// RUN: FileCheck %s --check-prefix=MANIFEST --input-file %t/manifest.json
// RUN: not test -e %t/libtoken_choice.so
// RUN: test -f %t/mixtile_kernels/kernels.cuh && test -f %t/mixtile_kernels/expert_ffn.cuh
// RUN: not test -e %t/token_choice.cpp

// CHECK: #include "mixtile_kernels/kernels.cuh"
// CHECK: #define MIXTILE_CHECK(call)
// CHECK: "a CUDA kernel launch failed (cudaGetLastError)",
// CHECK: struct layer_plan {
// CHECK: at += mixtile::cuda::detail::align256(
// CHECK: const size_t bytes = (size_t)(mixtile::cuda::dispatch_workspace_size(16));
// CHECK: const size_t bytes = (size_t)(mixtile::cuda::expert_ffn_workspace_size<mixtile::cuda::WeightType::bf16>(T * 4, 32));
// CHECK: extern "C" size_t layer_workspace_size(int64_t T) {
// CHECK: extern "C" int layer(int64_t T, const float *hidden_states, const float *gate_weight, const float *gate_e_score_correction_bias, const uint16_t *experts_gate, const uint16_t *experts_up, const uint16_t *experts_down, const uint16_t *shared_gate, const uint16_t *shared_up, const uint16_t *shared_down, float *output, void *workspace, void *stream) {
// CHECK: const cudaStream_t cuda_stream = static_cast<cudaStream_t>(stream);
// CHECK-NOT: cudaStreamSynchronize
// CHECK-NOT: cudaDeviceSynchronize
// CHECK-NOT: cudaMemcpy
// CHECK: // Kernel 0 'router': mix.route.
// CHECK: config.experts = 16; config.hidden = 64; config.k = 4;
// CHECK-NEXT: config.sigmoid = true; config.normalize = true; config.norm_epsilon = 1.000000e-20f; config.scale = 2.500000e+00f;
// CHECK-NEXT: config.n_group = 4; config.topk_group = 2; config.group_top2_sum = true;
// CHECK-NEXT: MIXTILE_CHECK(mixtile::cuda::route<mixtile::cuda::WeightType::f32>(config, T, hidden_states, gate_weight, mixtile::cuda::ExpertVector{}, mixtile::cuda::ExpertVector{gate_e_score_correction_bias, mixtile::cuda::WeightType::f32}, [[W:t[0-9]+]], [[IDX:t[0-9]+]], [[LOGITS:t[0-9]+]], cuda_stream));
// CHECK: // Kernel 1 'dispatch': mix.dispatch.
// CHECK: MIXTILE_CHECK(mixtile::cuda::dispatch(T, 4, 16, [[W]], [[IDX]], [[OFF:t[0-9]+]], [[TOK:t[0-9]+]], [[GATE:t[0-9]+]], scratch, cuda_stream));
// CHECK: // Kernel 2 'moe_experts': mix.ffn + mix.expert_ffn + mix.combine.
// CHECK: // Dense FFN over every token
// CHECK: const mixtile::cuda::ExpertPointers<1> gate_w = {{[{][{]}}shared_gate{{[}][}]}};
// CHECK: p.num_experts = 1; p.hidden = 64; p.inter = 96;
// CHECK-NEXT: p.segments = mixtile::cuda::SegmentTable{nullptr, T}; p.max_assignments = T;
// CHECK: p.y = output; p.out_rows = nullptr; p.zero_rows = 0;
// CHECK-NEXT: if (T <= 16) MIXTILE_CHECK((mixtile::cuda::expert_ffn<mixtile::cuda::WeightType::bf16, mixtile::cuda::Activation::silu, true, 16, 64, 64, 4, 1>(p, gate_w, up_w, down_w, scratch, cuda_stream)));
// CHECK-NEXT: else if (T <= 1024) MIXTILE_CHECK((mixtile::cuda::expert_ffn<{{.*}}, 64, 128, 32, 4, 1>(
// CHECK-NEXT: else MIXTILE_CHECK((mixtile::cuda::expert_ffn<{{.*}}, 128, 128, 32, 8, 1>(
// CHECK: const mixtile::cuda::ExpertPointers<16> gate_w = {{[{][{]}}experts_gate + 0, experts_gate + 2048,
// CHECK: p.num_experts = 16; p.hidden = 64; p.inter = 32;
// CHECK-NEXT: p.segments = mixtile::cuda::SegmentTable{[[OFF]], 0}; p.max_assignments = T * 4;
// CHECK-NEXT: p.x = hidden_states; p.tokens = [[TOK]]; p.gates = [[GATE]];
// CHECK-NEXT: p.y = output; p.out_rows = [[TOK]]; p.zero_rows = 0;
// CHECK-NEXT: if (T <= 16) MIXTILE_CHECK((mixtile::cuda::expert_ffn<mixtile::cuda::WeightType::bf16, mixtile::cuda::Activation::silu, true, 16, 64, 64, 4, 16>(p, gate_w, up_w, down_w, scratch, cuda_stream)));
// CHECK: extern "C" int layer_packed(void *const *tensors, const int64_t *dims, void *workspace, void *stream) {
// CHECK: return layer(dims[0], static_cast<const float *>(tensors[0]),
// CHECK-SAME: static_cast<float *>(tensors[9]), workspace, stream);
// CHECK: extern "C" size_t layer_packed_workspace_size(const int64_t *dims) {

// HEADER: (mixtilec {{.*}}, target cuda)
// HEADER: #ifndef MIXTILE_TOKEN_CHOICE_H
// HEADER: extern "C" {
// HEADER: int layer(int64_t T, const float *hidden_states,
// HEADER-SAME: float *output, void *workspace, void *stream);
// HEADER: size_t layer_workspace_size(int64_t T);
// HEADER: int layer_packed(void *const *tensors, const int64_t *dims, void *workspace, void *stream);
// HEADER: size_t layer_packed_workspace_size(const int64_t *dims);
// HEADER: const char *token_choice_error_message(int code);

// MANIFEST: "entry_points": [
// MANIFEST: "c_name": "hidden_states",
// MANIFEST-NEXT: "dtype": "f32",
// MANIFEST-NEXT: "kind": "input",
// MANIFEST: "experts_per_token": 4,
// MANIFEST: "num_experts": 16
// MANIFEST: "fused_ops": [
// MANIFEST-NEXT: "mix.route"
// MANIFEST: "fused_ops": [
// MANIFEST-NEXT: "mix.dispatch"
// MANIFEST: "fused_ops": [
// MANIFEST-NEXT: "mix.ffn",
// MANIFEST-NEXT: "mix.expert_ffn",
// MANIFEST-NEXT: "mix.combine"
// MANIFEST: "kind": "moe_experts",
// MANIFEST-NEXT: "name": "k2_moe_experts",
// MANIFEST-NEXT: "tiles": [
// MANIFEST-NEXT: {
// MANIFEST-NEXT: "block_k": 64,
// MANIFEST-NEXT: "block_m": 16,
// MANIFEST: "max_tokens": null,
// MANIFEST: "source": "token_choice.cu",
// MANIFEST: "target": "cuda"

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
