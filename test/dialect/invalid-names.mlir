// RUN: mixtile-opt %s -split-input-file -verify-diagnostics

// expected-error @+1 {{'mix.name' of argument #0 must be a non-empty string}}
func.func @empty_name(%x: tensor<?x8xf32> {mix.name = ""}) {
  return
}

// -----

// expected-error @+1 {{'mix.name' of argument #0 must be a non-empty string}}
func.func @not_a_string(%x: tensor<?x8xf32> {mix.name = 3 : i64}) {
  return
}

// -----

// expected-error @+1 {{'mix.name' "x" of argument #1 is already the name of argument #0}}
func.func @duplicate_argument(%x: tensor<?x8xf32> {mix.name = "x"}, %y: tensor<?x8xf32> {mix.name = "x"}) {
  return
}

// -----

// expected-error @+1 {{'mix.name' "x" of result #0 is already the name of argument #0}}
func.func @result_reuses_argument(%x: tensor<?x8xf32> {mix.name = "x"}) -> (tensor<?x8xf32> {mix.name = "x"}) {
  return %x : tensor<?x8xf32>
}

// -----

// expected-error @+1 {{'mix.name' "y" of result #1 is already the name of result #0}}
func.func @duplicate_result(%x: tensor<?x8xf32>) -> (tensor<?x8xf32> {mix.name = "y"}, tensor<?x8xf32> {mix.name = "y"}) {
  return %x, %x : tensor<?x8xf32>, tensor<?x8xf32>
}

// -----

// expected-error @+1 {{unknown mix dialect attribute 'mix.label' on a function argument}}
func.func @unknown_attribute(%x: tensor<?x8xf32> {mix.label = "x"}) {
  return
}
