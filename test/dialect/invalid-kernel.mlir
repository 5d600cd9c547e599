// RUN: mixtile-opt %s -split-input-file -verify-diagnostics

func.func @yield_types(%x: tensor<?x64xf32>) {
  // expected-error @+1 {{'mix.kernel' op yields 1 values whose types must match the kernel's 2 results}}
  %a, %b = mix.kernel "k" -> tensor<?x64xf32>, tensor<?x64xf32> {
    %z = mix.zeros_like %x : tensor<?x64xf32>
    mix.yield %z : tensor<?x64xf32>
  }
  return
}

// -----

func.func @empty_kind(%x: tensor<?x64xf32>) {
  // expected-error @+1 {{'mix.kernel' op attribute 'kind' must name the fusion pattern}}
  %a = mix.kernel "" -> tensor<?x64xf32> {
    %z = mix.zeros_like %x : tensor<?x64xf32>
    mix.yield %z : tensor<?x64xf32>
  }
  return
}

// -----

func.func @no_yield(%x: tensor<?x64xf32>) {
  // expected-error @+1 {{'mix.kernel' op body must end in 'mix.yield'}}
  "mix.kernel"() <{kind = "k"}> ({
    %z = mix.zeros_like %x : tensor<?x64xf32>
  }) : () -> ()
  return
}

// -----

func.func @yield_outside(%x: tensor<?x64xf32>) {
  // expected-error @+1 {{'mix.yield' op expects parent op 'mix.kernel'}}
  mix.yield %x : tensor<?x64xf32>
}

// -----

func.func @empty_body() {
  // expected-error @+1 {{'mix.kernel' op expects a non-empty block}}
  "mix.kernel"() <{kind = "k"}> ({
  ^bb0:
  }) : () -> ()
  return
}
