// RUN: mixtile-opt %s --mix-tile="table=%S/Inputs/tiny-table.json" | FileCheck %s
// RUN: mixtile-opt %s --mix-tile | FileCheck %s --check-prefix=BUILTIN
// RUN: not mixtile-opt %s --mix-tile="table=%S/Inputs/bounded-table.json" 2>&1 | FileCheck %s --check-prefix=BOUNDED
// RUN: not mixtile-opt %s --mix-tile="table=%S/Inputs/no-default-table.json" 2>&1 | FileCheck %s --check-prefix=NODEFAULT
// RUN: not mixtile-opt %s --mix-tile="table=%S/Inputs/bad-value-table.json" 2>&1 | FileCheck %s --check-prefix=BADVALUE
// RUN: not mixtile-opt %s --mix-tile="table=%S/Inputs/malformed-table.json" 2>&1 | FileCheck %s --check-prefix=MALFORMED
// RUN: not mixtile-opt %s --mix-tile="table=%S/Inputs/missing.json" 2>&1 | FileCheck %s --check-prefix=MISSING
// RUN: not mixtile-opt %s --mix-tile="target=tpu" 2>&1 | FileCheck %s --check-prefix=TARGET
// RUN: mixtile-opt %s --mix-tile="cpu=sapphirerapids" | FileCheck %s --check-prefix=INTEL
// RUN: mixtile-opt %s --mix-tile="cpu=znver5" | FileCheck %s --check-prefix=GENERIC
// RUN: mixtile-opt %s --mix-tile="cpu=x86-64-v4" | FileCheck %s --check-prefix=GENERIC

// CHECK-LABEL: func.func @kernels
// CHECK: mix.kernel "moe_experts"
// CHECK: } attributes {tiles = [{kc = 32 : i64, max_tokens = 4 : i64, mc = 4 : i64, nc = 64 : i64}, {kc = 64 : i64, max_tokens = -1 : i64, mc = 32 : i64, nc = 128 : i64}]}
// CHECK: mix.kernel "zeros"
// CHECK: } attributes {tiles = [{kc = 8 : i64, max_tokens = -1 : i64, mc = 8 : i64, nc = 8 : i64}]}

// The built-in CPU table ends in an unbounded bucket for every kernel.
// BUILTIN: mix.kernel "moe_experts"
// BUILTIN: attributes {tiles = [{{.*}}max_tokens = -1 : i64{{.*}}]}
// BUILTIN: mix.kernel "zeros"
// BUILTIN: attributes {tiles = [{{.*}}max_tokens = -1 : i64{{.*}}]}

// The f32 FMA path's table by CPU vendor: Intel's prefetches the GEMV path's weights in software
// from one row (cpu-intel.json), Zen's and the generic levels' leave small rows to the hardware.
// INTEL: mix.kernel "moe_experts"
// INTEL: attributes {tiles = [{kc = 256 : i64, max_tokens = 128 : i64, mc = 112 : i64, nc = 512 : i64, small_m_max = 32 : i64, small_prefetch_rows = 1 : i64}
// GENERIC: mix.kernel "moe_experts"
// GENERIC: attributes {tiles = [{kc = 256 : i64, max_tokens = 128 : i64, mc = 112 : i64, nc = 512 : i64, small_m_max = 32 : i64}

// BOUNDED: error: the last tuning bucket of kernel 'moe_experts' must have "max_tokens": null so every token count has one
// NODEFAULT: error: tuning table ({{.*}}) has no buckets for kernel 'zeros' and no 'default'
// BADVALUE: error: tuning table entry 'mc' must be an integer
// MALFORMED: error: tuning table ({{.*}}malformed-table.json) is not valid JSON
// MISSING: error: cannot read tuning table '{{.*}}missing.json'
// TARGET: error: no built-in tuning table for target 'tpu'
func.func @kernels(%x: tensor<?x64xf32>) -> (tensor<?x64xf32>, tensor<?x64xf32>) {
  %a = mix.kernel "moe_experts" -> tensor<?x64xf32> {
    %z = mix.zeros_like %x : tensor<?x64xf32>
    mix.yield %z : tensor<?x64xf32>
  }
  %b = mix.kernel "zeros" -> tensor<?x64xf32> {
    %z = mix.zeros_like %x : tensor<?x64xf32>
    mix.yield %z : tensor<?x64xf32>
  }
  return %a, %b : tensor<?x64xf32>, tensor<?x64xf32>
}

// Token-choice routers with AMX: a wide one (64 experts) on tokens widened from bf16 takes the
// tiles; a narrow one (8 experts) and one on f32 tokens (the tiles would round them) keep f32
// FMA, as does every router on CPUs without AMX.
// INTEL-LABEL: func.func @routers
// INTEL: mix.kernel "router"
// INTEL: } attributes {mix.matmul_path = "amx_bf16"
// INTEL: mix.kernel "narrow_router"
// INTEL-NOT: mix.matmul_path
// INTEL: mix.kernel "f32_router"
// INTEL-NOT: mix.matmul_path
// INTEL: return
// GENERIC-LABEL: func.func @routers
// GENERIC-NOT: mix.matmul_path
// GENERIC: return
func.func @routers(%h: tensor<?x64xbf16>, %f: tensor<?x64xf32>, %wide: tensor<64x64xbf16>,
                   %narrow: tensor<8x64xbf16>) -> (tensor<?x2xi32>, tensor<?x2xi32>, tensor<?x2xi32>) {
  %x = mix.kernel "widen_tokens" -> tensor<?x64xf32> {
    %e = arith.extf %h : tensor<?x64xbf16> to tensor<?x64xf32>
    mix.yield %e : tensor<?x64xf32>
  }
  %a = mix.kernel "router" -> tensor<?x2xi32> {
    %w, %i, %l = mix.route %x, %wide {k = 2 : i64} : tensor<?x64xf32>, tensor<64x64xbf16> -> tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x64xf32>
    mix.yield %i : tensor<?x2xi32>
  }
  %b = mix.kernel "narrow_router" -> tensor<?x2xi32> {
    %w, %i, %l = mix.route %x, %narrow {k = 2 : i64} : tensor<?x64xf32>, tensor<8x64xbf16> -> tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x8xf32>
    mix.yield %i : tensor<?x2xi32>
  }
  %c = mix.kernel "f32_router" -> tensor<?x2xi32> {
    %w, %i, %l = mix.route %f, %wide {k = 2 : i64} : tensor<?x64xf32>, tensor<64x64xbf16> -> tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x64xf32>
    mix.yield %i : tensor<?x2xi32>
  }
  return %a, %b, %c : tensor<?x2xi32>, tensor<?x2xi32>, tensor<?x2xi32>
}
