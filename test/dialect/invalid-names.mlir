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

// The first clash is named (on the later of its two), wherever it is among unnamed and named
// arguments and results.
// expected-error @+1 {{'mix.name' "a" of argument #2 is already the name of argument #0}}
func.func @duplicate_before_others(%a: tensor<?x8xf32> {mix.name = "a"}, %b: tensor<?x8xf32>, %c: tensor<?x8xf32> {mix.name = "a"}, %d: tensor<?x8xf32> {mix.name = "d"}, %e: tensor<?x8xf32> {mix.name = "d"}, %f: tensor<?x8xf32> {mix.name = "f"}, %g: tensor<?x8xf32>) {
  return
}

// -----

// expected-error @+1 {{'mix.name' "b" of result #2 is already the name of argument #1}}
func.func @result_clash_before_others(%a: tensor<?x8xf32> {mix.name = "a"}, %b: tensor<?x8xf32> {mix.name = "b"}) -> (tensor<?x8xf32> {mix.name = "r"}, tensor<?x8xf32>, tensor<?x8xf32> {mix.name = "b"}, tensor<?x8xf32> {mix.name = "r"}, tensor<?x8xf32> {mix.name = "s"}) {
  return %a, %a, %a, %a, %a : tensor<?x8xf32>, tensor<?x8xf32>, tensor<?x8xf32>, tensor<?x8xf32>, tensor<?x8xf32>
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
