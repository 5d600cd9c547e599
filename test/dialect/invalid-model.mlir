// RUN: mixtile-opt %s -split-input-file -verify-diagnostics

func.func @cache_not_state(%q: tensor<?x64xf32>, %k: tensor<?x32xf32>, %p: tensor<?xi32>,
    %kc: tensor<?x?x2x16xf32>, %vc: tensor<?x?x2x16xf32> {mix.state}) -> tensor<?x64xf32> {
  // expected-error @+1 {{operand 'k_cache' must be a function argument marked 'mix.state' (the cache is updated in place)}}
  %a = mix.attention %q, %k, %k, %p, %p, %kc, %vc
      {heads = 4, kv_heads = 2, head_dim = 16, inv_freq = array<f64: 1.0>, softmax_scale = 0.25}
      : tensor<?x64xf32>, tensor<?x32xf32>, tensor<?x32xf32>, tensor<?xi32>, tensor<?xi32>,
        tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32> -> tensor<?x64xf32>
  return %a : tensor<?x64xf32>
}

// -----

func.func @kv_heads(%q: tensor<?x64xf32>, %k: tensor<?x48xf32>, %p: tensor<?xi32>,
    %kc: tensor<?x?x3x16xf32> {mix.state}, %vc: tensor<?x?x3x16xf32> {mix.state}) -> tensor<?x64xf32> {
  // expected-error @+1 {{attribute 'kv_heads' (3) must divide 'heads' (4)}}
  %a = mix.attention %q, %k, %k, %p, %p, %kc, %vc
      {heads = 4, kv_heads = 3, head_dim = 16, inv_freq = array<f64: 1.0>, softmax_scale = 0.25}
      : tensor<?x64xf32>, tensor<?x48xf32>, tensor<?x48xf32>, tensor<?xi32>, tensor<?xi32>,
        tensor<?x?x3x16xf32>, tensor<?x?x3x16xf32> -> tensor<?x64xf32>
  return %a : tensor<?x64xf32>
}

// -----

func.func @rotary_too_wide(%q: tensor<?x64xf32>, %k: tensor<?x32xf32>, %p: tensor<?xi32>,
    %kc: tensor<?x?x2x16xf32> {mix.state}, %vc: tensor<?x?x2x16xf32> {mix.state}) -> tensor<?x64xf32> {
  // expected-error @+1 {{attribute 'inv_freq' has 9 frequencies; rope_offset (0) + 2 x that must not exceed head_dim = 16}}
  %a = mix.attention %q, %k, %k, %p, %p, %kc, %vc
      {heads = 4, kv_heads = 2, head_dim = 16, inv_freq = array<f64: 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0>,
       softmax_scale = 0.25}
      : tensor<?x64xf32>, tensor<?x32xf32>, tensor<?x32xf32>, tensor<?xi32>, tensor<?xi32>,
        tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32> -> tensor<?x64xf32>
  return %a : tensor<?x64xf32>
}

// -----

func.func @q_width(%q: tensor<?x60xf32>, %k: tensor<?x32xf32>, %p: tensor<?xi32>,
    %kc: tensor<?x?x2x16xf32> {mix.state}, %vc: tensor<?x?x2x16xf32> {mix.state}) -> tensor<?x64xf32> {
  // expected-error @+1 {{operand 'q' dim 1 (heads * head_dim) must be 64, heads x head_dim; got [?, 60]}}
  %a = mix.attention %q, %k, %k, %p, %p, %kc, %vc
      {heads = 4, kv_heads = 2, head_dim = 16, inv_freq = array<f64: 1.0>, softmax_scale = 0.25}
      : tensor<?x60xf32>, tensor<?x32xf32>, tensor<?x32xf32>, tensor<?xi32>, tensor<?xi32>,
        tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32> -> tensor<?x64xf32>
  return %a : tensor<?x64xf32>
}

// -----

func.func @negative_clip(%q: tensor<?x64xf32>, %k: tensor<?x32xf32>, %p: tensor<?xi32>,
    %kc: tensor<?x?x2x16xf32> {mix.state}, %vc: tensor<?x?x2x16xf32> {mix.state}) -> tensor<?x64xf32> {
  // expected-error @+1 {{attribute 'clip' must be a finite number >= 0, got -1}}
  %a = mix.attention %q, %k, %k, %p, %p, %kc, %vc
      {heads = 4, kv_heads = 2, head_dim = 16, inv_freq = array<f64: 1.0>, softmax_scale = 0.25, clip = -1.0}
      : tensor<?x64xf32>, tensor<?x32xf32>, tensor<?x32xf32>, tensor<?xi32>, tensor<?xi32>,
        tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32> -> tensor<?x64xf32>
  return %a : tensor<?x64xf32>
}

// -----

func.func @norm_width(%x: tensor<?x64xf32>, %w: tensor<32xf32>) -> tensor<?x64xf32> {
  // expected-error @+1 {{operand 'x' dim 1 (D) must be 32, the size of 'weight'; got [?, 64]}}
  %y = mix.rms_norm %x, %w {epsilon = 1.0e-6} : tensor<?x64xf32>, tensor<32xf32> -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

func.func @norm_epsilon(%x: tensor<?x64xf32>, %w: tensor<64xf32>) -> tensor<?x64xf32> {
  // expected-error @+1 {{attribute 'epsilon' must be a finite number >= 0, got -1}}
  %y = mix.rms_norm %x, %w {epsilon = -1.0} : tensor<?x64xf32>, tensor<64xf32> -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

func.func @gather_width(%ids: tensor<?xi32>, %t: tensor<256x64xbf16>) -> tensor<?x32xf32> {
  // expected-error @+1 {{result 'rows' dim 1 (D) must be 64, the row width of 'table'; got [?, 32]}}
  %x = mix.gather %t[%ids] : tensor<256x64xbf16>, tensor<?xi32> -> tensor<?x32xf32>
  return %x : tensor<?x32xf32>
}

// -----

// expected-error @+1 {{'mix.symbols' of argument #0 dim 0 must name the symbol of the dynamic dim}}
func.func @symbols_missing(%ids: tensor<?xi32> {mix.symbols = [""]}) {
  return
}

// -----

// expected-error @+1 {{'mix.symbols' of argument #0 must be an array of one string per dim of a ranked tensor}}
func.func @symbols_rank(%ids: tensor<?xi32> {mix.symbols = ["T", "S"]}) {
  return
}

// -----

// expected-error @+1 {{'mix.state' of argument #0 must be a unit attribute}}
func.func @state_value(%c: tensor<?x?x2x16xf32> {mix.state = 1 : i64}) {
  return
}

// -----

func.func @slice_outside(%x: tensor<?x40xf32>) -> tensor<?x8xf32> {
  // expected-error @+1 {{columns [36, 44) do not lie inside the 40 columns of 'x'}}
  %y = mix.slice %x {offset = 36} : tensor<?x40xf32> -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

// -----

func.func @slice_leading(%x: tensor<?x2x40xf32>) -> tensor<?x3x8xf32> {
  // expected-error @+1 {{result 'y' must keep every dim of 'x' [?, 2, 40] but the last, got [?, 3, 8]}}
  %y = mix.slice %x {offset = 0} : tensor<?x2x40xf32> -> tensor<?x3x8xf32>
  return %y : tensor<?x3x8xf32>
}

// -----

func.func @rope_key_not_last(%q: tensor<?x96xf32>, %k: tensor<?x64xf32>, %r: tensor<?x8xf32>,
    %v: tensor<?x48xf32>, %p: tensor<?xi32>,
    %kc: tensor<?x?x2x48xf32> {mix.state}, %vc: tensor<?x?x2x24xf32> {mix.state}) -> tensor<?x48xf32> {
  // expected-error @+1 {{operand 'rope_key' needs the rotary dims to be each head's last: rope_offset (32) + 2 x 4 frequencies must equal head_dim = 48}}
  %a = mix.attention %q, %k, %v, %p, %p, %kc, %vc rope_key %r : tensor<?x8xf32>
      {heads = 2, kv_heads = 2, head_dim = 48, v_head_dim = 24, rope_offset = 32,
       inv_freq = array<f64: 1.0, 0.1, 0.01, 0.001>, softmax_scale = 0.25}
      : tensor<?x96xf32>, tensor<?x64xf32>, tensor<?x48xf32>, tensor<?xi32>, tensor<?xi32>,
        tensor<?x?x2x48xf32>, tensor<?x?x2x24xf32> -> tensor<?x48xf32>
  return %a : tensor<?x48xf32>
}

// -----

func.func @value_cache_width(%q: tensor<?x96xf32>, %k: tensor<?x80xf32>, %r: tensor<?x8xf32>,
    %v: tensor<?x48xf32>, %p: tensor<?xi32>,
    %kc: tensor<?x?x2x48xf32> {mix.state}, %vc: tensor<?x?x2x48xf32> {mix.state}) -> tensor<?x48xf32> {
  // expected-error @+1 {{operand 'v_cache' dim 3 (head width) must be 24, attribute 'v_head_dim'; got [?, ?, 2, 48]}}
  %a = mix.attention %q, %k, %v, %p, %p, %kc, %vc rope_key %r : tensor<?x8xf32>
      {heads = 2, kv_heads = 2, head_dim = 48, v_head_dim = 24, rope_offset = 40,
       inv_freq = array<f64: 1.0, 0.1, 0.01, 0.001>, softmax_scale = 0.25}
      : tensor<?x96xf32>, tensor<?x80xf32>, tensor<?x48xf32>, tensor<?xi32>, tensor<?xi32>,
        tensor<?x?x2x48xf32>, tensor<?x?x2x48xf32> -> tensor<?x48xf32>
  return %a : tensor<?x48xf32>
}

// -----

func.func @mla_key_width(%q: tensor<?x96xf32>, %k: tensor<?x96xf32>, %r: tensor<?x8xf32>,
    %v: tensor<?x48xf32>, %p: tensor<?xi32>,
    %kc: tensor<?x?x2x48xf32> {mix.state}, %vc: tensor<?x?x2x24xf32> {mix.state}) -> tensor<?x48xf32> {
  // expected-error @+1 {{operand 'k' dim 1 (kv_heads * width) must be 80, kv_heads x rope_offset; got [?, 96]}}
  %a = mix.attention %q, %k, %v, %p, %p, %kc, %vc rope_key %r : tensor<?x8xf32>
      {heads = 2, kv_heads = 2, head_dim = 48, v_head_dim = 24, rope_offset = 40,
       inv_freq = array<f64: 1.0, 0.1, 0.01, 0.001>, softmax_scale = 0.25}
      : tensor<?x96xf32>, tensor<?x96xf32>, tensor<?x48xf32>, tensor<?xi32>, tensor<?xi32>,
        tensor<?x?x2x48xf32>, tensor<?x?x2x24xf32> -> tensor<?x48xf32>
  return %a : tensor<?x48xf32>
}

// -----

func.func @latent_cache_not_state(%q: tensor<?x48xf32>, %l: tensor<?x16xf32>, %r: tensor<?x4xf32>,
    %w: tensor<64x16xbf16>, %p: tensor<?xi32>, %c: tensor<?x?x1x20xbf16> ) -> tensor<?x32xf32> {
  // expected-error @+1 {{operand 'cache' must be a function argument marked 'mix.state' (the cache is updated in place)}}
  %a = mix.latent_attention %q, %l, %r, %w, %p, %p, %c
      {heads = 4, nope_dim = 8, v_head_dim = 8, inv_freq = array<f64: 1.0, 0.1>, softmax_scale = 0.25}
      : tensor<?x48xf32>, tensor<?x16xf32>, tensor<?x4xf32>, tensor<64x16xbf16>, tensor<?xi32>,
        tensor<?xi32>, tensor<?x?x1x20xbf16> -> tensor<?x32xf32>
  return %a : tensor<?x32xf32>
}

// -----

func.func @latent_kv_b_rows(%q: tensor<?x48xf32>, %l: tensor<?x16xf32>, %r: tensor<?x4xf32>,
    %w: tensor<60x16xbf16>, %p: tensor<?xi32>, %c: tensor<?x?x1x20xbf16> {mix.state}) -> tensor<?x32xf32> {
  // expected-error @+1 {{operand 'kv_b' dim 0 (heads * (nope_dim + v_head_dim)) must be 64, heads x (nope_dim + v_head_dim); got [60, 16]}}
  %a = mix.latent_attention %q, %l, %r, %w, %p, %p, %c
      {heads = 4, nope_dim = 8, v_head_dim = 8, inv_freq = array<f64: 1.0, 0.1>, softmax_scale = 0.25}
      : tensor<?x48xf32>, tensor<?x16xf32>, tensor<?x4xf32>, tensor<60x16xbf16>, tensor<?xi32>,
        tensor<?xi32>, tensor<?x?x1x20xbf16> -> tensor<?x32xf32>
  return %a : tensor<?x32xf32>
}

// -----

func.func @latent_q_width(%q: tensor<?x40xf32>, %l: tensor<?x16xf32>, %r: tensor<?x4xf32>,
    %w: tensor<64x16xbf16>, %p: tensor<?xi32>, %c: tensor<?x?x1x20xbf16> {mix.state}) -> tensor<?x32xf32> {
  // expected-error @+1 {{operand 'q' dim 1 (width) must be 48, heads x (nope_dim + 2 x the frequencies in 'inv_freq'); got [?, 40]}}
  %a = mix.latent_attention %q, %l, %r, %w, %p, %p, %c
      {heads = 4, nope_dim = 8, v_head_dim = 8, inv_freq = array<f64: 1.0, 0.1>, softmax_scale = 0.25}
      : tensor<?x40xf32>, tensor<?x16xf32>, tensor<?x4xf32>, tensor<64x16xbf16>, tensor<?xi32>,
        tensor<?xi32>, tensor<?x?x1x20xbf16> -> tensor<?x32xf32>
  return %a : tensor<?x32xf32>
}

// -----

func.func @latent_width(%q: tensor<?x48xf32>, %l: tensor<?x12xf32>, %r: tensor<?x4xf32>,
    %w: tensor<64x16xbf16>, %p: tensor<?xi32>, %c: tensor<?x?x1x20xbf16> {mix.state}) -> tensor<?x32xf32> {
  // expected-error @+1 {{operand 'latent' dim 1 (width) must be 16, dim 1 of 'kv_b' (rank); got [?, 12]}}
  %a = mix.latent_attention %q, %l, %r, %w, %p, %p, %c
      {heads = 4, nope_dim = 8, v_head_dim = 8, inv_freq = array<f64: 1.0, 0.1>, softmax_scale = 0.25}
      : tensor<?x48xf32>, tensor<?x12xf32>, tensor<?x4xf32>, tensor<64x16xbf16>, tensor<?xi32>,
        tensor<?xi32>, tensor<?x?x1x20xbf16> -> tensor<?x32xf32>
  return %a : tensor<?x32xf32>
}

// -----

func.func @latent_cache_width(%q: tensor<?x48xf32>, %l: tensor<?x16xf32>, %r: tensor<?x4xf32>,
    %w: tensor<64x16xbf16>, %p: tensor<?xi32>, %c: tensor<?x?x1x16xbf16> {mix.state}) -> tensor<?x32xf32> {
  // expected-error @+1 {{operand 'cache' dim 3 (rank + rope_dim) must be 20, the latent's width plus the rotary key's; got [?, ?, 1, 16]}}
  %a = mix.latent_attention %q, %l, %r, %w, %p, %p, %c
      {heads = 4, nope_dim = 8, v_head_dim = 8, inv_freq = array<f64: 1.0, 0.1>, softmax_scale = 0.25}
      : tensor<?x48xf32>, tensor<?x16xf32>, tensor<?x4xf32>, tensor<64x16xbf16>, tensor<?xi32>,
        tensor<?xi32>, tensor<?x?x1x16xbf16> -> tensor<?x32xf32>
  return %a : tensor<?x32xf32>
}

// -----

func.func @latent_cache_dtype(%q: tensor<?x48xf32>, %l: tensor<?x16xf32>, %r: tensor<?x4xf32>,
    %w: tensor<64x16xbf16>, %p: tensor<?xi32>, %c: tensor<?x?x1x20xf32> {mix.state}) -> tensor<?x32xf32> {
  // expected-error @+1 {{operand 'cache' must have the element type of 'kv_b', got 'tensor<?x?x1x20xf32>' and 'tensor<64x16xbf16>'}}
  %a = mix.latent_attention %q, %l, %r, %w, %p, %p, %c
      {heads = 4, nope_dim = 8, v_head_dim = 8, inv_freq = array<f64: 1.0, 0.1>, softmax_scale = 0.25}
      : tensor<?x48xf32>, tensor<?x16xf32>, tensor<?x4xf32>, tensor<64x16xbf16>, tensor<?xi32>,
        tensor<?xi32>, tensor<?x?x1x20xf32> -> tensor<?x32xf32>
  return %a : tensor<?x32xf32>
}

// -----

func.func @latent_no_rope(%q: tensor<?x32xf32>, %l: tensor<?x16xf32>, %r: tensor<?x0xf32>,
    %w: tensor<64x16xbf16>, %p: tensor<?xi32>, %c: tensor<?x?x1x16xbf16> {mix.state}) -> tensor<?x32xf32> {
  // expected-error @+1 {{attribute 'inv_freq' must hold the rotary key's frequencies (at least one)}}
  %a = mix.latent_attention %q, %l, %r, %w, %p, %p, %c
      {heads = 4, nope_dim = 8, v_head_dim = 8, inv_freq = array<f64>, softmax_scale = 0.25}
      : tensor<?x32xf32>, tensor<?x16xf32>, tensor<?x0xf32>, tensor<64x16xbf16>, tensor<?xi32>,
        tensor<?xi32>, tensor<?x?x1x16xbf16> -> tensor<?x32xf32>
  return %a : tensor<?x32xf32>
}

// -----

func.func @latent_out_width(%q: tensor<?x48xf32>, %l: tensor<?x16xf32>, %r: tensor<?x4xf32>,
    %w: tensor<64x16xbf16>, %p: tensor<?xi32>, %c: tensor<?x?x1x20xbf16> {mix.state}) -> tensor<?x36xf32> {
  // expected-error @+1 {{result 'out' dim 1 (heads * v_head_dim) must be 32}}
  %a = mix.latent_attention %q, %l, %r, %w, %p, %p, %c
      {heads = 4, nope_dim = 8, v_head_dim = 8, inv_freq = array<f64: 1.0, 0.1>, softmax_scale = 0.25}
      : tensor<?x48xf32>, tensor<?x16xf32>, tensor<?x4xf32>, tensor<64x16xbf16>, tensor<?xi32>,
        tensor<?xi32>, tensor<?x?x1x20xbf16> -> tensor<?x36xf32>
  return %a : tensor<?x36xf32>
}

// -----

func.func @latent_huge_heads(%q: tensor<?x48xf32>, %l: tensor<?x16xf32>, %r: tensor<?x4xf32>,
    %w: tensor<64x16xbf16>, %p: tensor<?xi32>, %c: tensor<?x?x1x20xbf16> {mix.state}) -> tensor<?x32xf32> {
  // expected-error @+1 {{attribute 'heads' (4611686018427387904) exceeds the bound 16777216 of a dim}}
  %a = mix.latent_attention %q, %l, %r, %w, %p, %p, %c
      {heads = 4611686018427387904, nope_dim = 8, v_head_dim = 8, inv_freq = array<f64: 1.0, 0.1>, softmax_scale = 0.25}
      : tensor<?x48xf32>, tensor<?x16xf32>, tensor<?x4xf32>, tensor<64x16xbf16>, tensor<?xi32>,
        tensor<?xi32>, tensor<?x?x1x20xbf16> -> tensor<?x32xf32>
  return %a : tensor<?x32xf32>
}

// -----

func.func @sinks_per_head(%q: tensor<?x64xf32>, %k: tensor<?x32xf32>, %p: tensor<?xi32>,
    %kc: tensor<?x?x2x16xf32> {mix.state}, %vc: tensor<?x?x2x16xf32> {mix.state}, %s: tensor<2xf32>) -> tensor<?x64xf32> {
  // expected-error @+1 {{operand 'sinks' dim 0 (heads) must be 4, attribute 'heads'; got [2]}}
  %a = mix.attention %q, %k, %k, %p, %p, %kc, %vc sinks %s : tensor<2xf32>
      {heads = 4, kv_heads = 2, head_dim = 16, inv_freq = array<f64: 1.0>, softmax_scale = 0.25}
      : tensor<?x64xf32>, tensor<?x32xf32>, tensor<?x32xf32>, tensor<?xi32>, tensor<?xi32>,
        tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32> -> tensor<?x64xf32>
  return %a : tensor<?x64xf32>
}

// -----

// expected-error @+1 {{'mix.stored' of argument #0 must be {name = "<tensor>", stride = s, offset = o(, transpose(, format = "mxfp4"))} with 1 <= s <= 64 and 0 <= o < s, on a static tensor (rank >= 2 with transpose)}}
func.func @stored_offset(%w: tensor<2x8x4xbf16> {mix.stored = {name = "w", stride = 2, offset = 2, transpose}}) {
  return
}

// -----

// expected-error @+1 {{'mix.stored' of argument #0 must be {name = "<tensor>", stride = s, offset = o(, transpose(, format = "mxfp4"))} with 1 <= s <= 64 and 0 <= o < s, on a static tensor (rank >= 2 with transpose)}}
func.func @stored_rank(%w: tensor<8xbf16> {mix.stored = {name = "w", stride = 1, offset = 0, transpose}}) {
  return
}
