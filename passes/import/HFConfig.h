// The Hugging Face front door: builds the mix IR of one layer's sparse block from a model's
// config.json, with every weight argument named after the checkpoint tensor it binds to.
#ifndef MIXTILE_PASSES_IMPORT_HFCONFIG_H
#define MIXTILE_PASSES_IMPORT_HFCONFIG_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

#include <string>

namespace mlir::mix {

/// Reads `configPath` and returns a module with one function, `sparse_block`, computing
/// layer `layer`'s sparse block (the first sparse layer when `layer` < 0) with weights of
/// `dtype` ("f32", "bf16", "f16"; empty: the config's `dtype` (transformers 5.x) or
/// `torch_dtype` (4.x), else f32). The block takes and returns hidden states of `tokenDtype`
/// (empty: the weights' dtype, as the model does). On a config it cannot honour, returns null
/// and sets `error` to one line naming the field. `name` is set to `<model_type>_layer<N>`.
/// With `fusedExperts`, the expert weights are the two tensors transformers 5.x holds in
/// memory, `model.layers.<N>.mlp.experts.gate_up_proj` [E, 2F, D] (each expert's gate rows,
/// then its up rows) and `...experts.down_proj` [E, D, F], used in place (each expert's
/// matrices are contiguous blocks of them); the other weights keep their names. With
/// `fp8InPlace` (mixtilec: the CPU target with AVX-512 BW and VL) and a fine-grained fp8 checkpoint compiled to bf16, the routed
/// experts take the e4m3 weights in place with their `<name>_scale_inv` block scales; without
/// it (or for the model's other weights) the runtime dequantizes them when it binds them.
OwningOpRef<ModuleOp> importHFConfig(MLIRContext *context, StringRef configPath, int layer,
                                     StringRef dtype, StringRef tokenDtype, std::string &name,
                                     std::string &error, bool fusedExperts = false,
                                     bool fp8InPlace = false);

/// Reads `configPath` and returns the module of the whole decoder-only model (`--model`):
/// one function per distinct decoder-layer kind (`decoder_layer_moe`, `decoder_layer_mlp`,
/// ...) and `forward`, which embeds `input_ids`, runs every layer over the KV caches (one
/// `mix.state` pair per layer), and returns the logits of the `logit_rows`. The module's
/// `mix.model` attribute holds what the runtime needs to run and generate. Weights of
/// `dtype` as in importHFConfig; the KV caches have the weights' dtype. Families: mixtral,
/// qwen2_moe, qwen3_moe, olmoe. `name` is set to `<model_type>_model`.
OwningOpRef<ModuleOp> importHFModel(MLIRContext *context, StringRef configPath, StringRef dtype,
                                    std::string &name, std::string &error,
                                    bool fp8InPlace = false);

} // namespace mlir::mix

#endif // MIXTILE_PASSES_IMPORT_HFCONFIG_H
