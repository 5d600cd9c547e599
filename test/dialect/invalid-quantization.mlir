// RUN: mixtile-opt %s -split-input-file -verify-diagnostics
// mix.weight_quantization: a module attribute {format = "fp8_e4m3", block = [rows, cols]}.

// expected-error @+1 {{'mix.weight_quantization' must be a module attribute {format = "fp8_e4m3", block = [rows, cols]} with positive block sizes}}
module attributes {mix.weight_quantization = {format = "int4", block = [128, 128]}} {
}

// -----

// expected-error @+1 {{'mix.weight_quantization' must be a module attribute}}
module attributes {mix.weight_quantization = {format = "fp8_e4m3", block = [128, 0]}} {
}

// -----

// expected-error @+1 {{'mix.weight_quantization' must be a module attribute}}
module attributes {mix.weight_quantization = {format = "fp8_e4m3", block = [128]}} {
}

// -----

// expected-error @+1 {{'mix.weight_quantization' must be a module attribute}}
module attributes {mix.weight_quantization = "fp8"} {
}

// -----

module {
  // expected-error @+1 {{'mix.weight_quantization' must be a module attribute}}
  func.func @f() attributes {mix.weight_quantization = {format = "fp8_e4m3", block = [128, 128]}} {
    return
  }
}
