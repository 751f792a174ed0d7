// Every verifier error of the xfmr dialect, with the message a user sees.
// RUN: xfmr-opt %s -split-input-file -verify-diagnostics

func.func @weight_empty_name() {
  // expected-error @+1 {{'xfmr.weight' op needs a non-empty weight name}}
  %0 = xfmr.weight "" : tensor<4xf32>
  return
}

// -----

func.func @weight_two_stars() {
  // expected-error @+1 {{name 'a.*.b.*' has more than one '*' placeholder}}
  %0 = xfmr.weight "a.*.b.*" : tensor<2x2x4xf32>
  return
}

// -----

func.func @weight_dynamic() {
  // expected-error @+1 {{weight 'w' must have a static shape, got 'tensor<?x4xf32>'}}
  %0 = xfmr.weight "w" : tensor<?x4xf32>
  return
}

// -----

func.func @weight_stacked_scalar() {
  // expected-error @+1 {{stacked weight 'experts.*.w' needs a leading stacking dimension}}
  %0 = xfmr.weight "experts.*.w" : tensor<f32>
  return
}

// -----

func.func @embedding_hidden(%t: tensor<32x8xf32>, %ids: tensor<?xi32>) {
  // expected-error @+1 {{result hidden size 16 differs from the table's 8}}
  %0 = xfmr.embedding %t[%ids] : tensor<32x8xf32>, tensor<?xi32> -> tensor<?x16xf32>
  return
}

// -----

func.func @embedding_tokens(%t: tensor<32x8xf32>, %ids: tensor<3xi32>) {
  // expected-error @+1 {{result has 4 tokens but there are 3 ids}}
  %0 = xfmr.embedding %t[%ids] : tensor<32x8xf32>, tensor<3xi32> -> tensor<4x8xf32>
  return
}

// -----

func.func @embedding_fp8(%t: tensor<32x8xf8E4M3FN>, %ids: tensor<?xi32>) {
  // expected-error @+1 {{expects a f32/bf16/f16 table, got 'tensor<32x8xf8E4M3FN>'}}
  %0 = xfmr.embedding %t[%ids] : tensor<32x8xf8E4M3FN>, tensor<?xi32> -> tensor<?x8xf32>
  return
}

// -----

func.func @embedding_table_rank(%t: tensor<32xf32>, %ids: tensor<?xi32>) {
  // expected-error @+1 {{expects a table [vocab, hidden] of rank 2, got rank 1}}
  %0 = xfmr.embedding %t[%ids] : tensor<32xf32>, tensor<?xi32> -> tensor<?x8xf32>
  return
}

// -----

func.func @rms_norm_size(%x: tensor<?x64xf32>, %w: tensor<32xf32>) {
  // expected-error @+1 {{weight has 32 elements but the input's last dimension is 64}}
  %0 = xfmr.rms_norm %x, %w {eps = 1.0e-5 : f64} : tensor<?x64xf32>, tensor<32xf32>
  return
}

// -----

func.func @rms_norm_eps(%x: tensor<?x64xf32>, %w: tensor<64xf32>) {
  // expected-error @+1 {{eps must be positive and finite, got 0.0}}
  %0 = xfmr.rms_norm %x, %w {eps = 0.0 : f64} : tensor<?x64xf32>, tensor<64xf32>
  return
}

// -----

func.func @rms_norm_weight_rank(%x: tensor<?x64xf32>, %w: tensor<1x64xf32>) {
  // expected-error @+1 {{expects a weight [hidden] of rank 1, got rank 2}}
  %0 = xfmr.rms_norm %x, %w {eps = 1.0e-5 : f64} : tensor<?x64xf32>, tensor<1x64xf32>
  return
}

// -----

func.func @linear_in(%x: tensor<?x64xf32>, %w: tensor<128x32xf32>) {
  // expected-error @+1 {{input has 64 features but the weight [128, 32] expects 32}}
  %0 = xfmr.linear %x, %w : tensor<?x64xf32>, tensor<128x32xf32> -> tensor<?x128xf32>
  return
}

// -----

func.func @linear_out(%x: tensor<?x64xf32>, %w: tensor<128x64xf32>) {
  // expected-error @+1 {{result has 64 features but the weight [128, 64] produces 128}}
  %0 = xfmr.linear %x, %w : tensor<?x64xf32>, tensor<128x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @linear_rank(%x: tensor<?x64xf32>, %w: tensor<128x64xf32>) {
  // expected-error @+1 {{result rank 3 differs from input rank 2}}
  %0 = xfmr.linear %x, %w : tensor<?x64xf32>, tensor<128x64xf32> -> tensor<?x1x128xf32>
  return
}

// -----

func.func @linear_tokens(%x: tensor<3x64xf32>, %w: tensor<128x64xf32>) {
  // expected-error @+1 {{leading dimensions of input [3, 64] and result [4, 128] differ}}
  %0 = xfmr.linear %x, %w : tensor<3x64xf32>, tensor<128x64xf32> -> tensor<4x128xf32>
  return
}

// -----

func.func @linear_element(%x: tensor<?x64xf32>, %w: tensor<128x64xf32>) {
  // expected-error @+1 {{input element type 'f32' differs from result element type 'bf16'}}
  %0 = xfmr.linear %x, %w : tensor<?x64xf32>, tensor<128x64xf32> -> tensor<?x128xbf16>
  return
}

// -----

func.func @linear_weight_rank(%x: tensor<?x64xf32>, %w: tensor<64xf32>) {
  // expected-error @+1 {{expects a weight [out, in] of rank 2, got rank 1}}
  %0 = xfmr.linear %x, %w : tensor<?x64xf32>, tensor<64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @linear_bias(%x: tensor<?x64xf32>, %w: tensor<128x64xf32>, %b: tensor<64xf32>) {
  // expected-error @+1 {{bias [64] must have shape [128]}}
  %0 = xfmr.linear %x, %w bias(%b : tensor<64xf32>) : tensor<?x64xf32>, tensor<128x64xf32> -> tensor<?x128xf32>
  return
}

// -----

func.func @linear_fp8_needs_scale(%x: tensor<?x64xf32>, %w: tensor<128x64xf8E4M3FN>) {
  // expected-error @+1 {{weight 'tensor<128x64xf8E4M3FN>' is quantized and needs a scale tensor}}
  %0 = xfmr.linear %x, %w : tensor<?x64xf32>, tensor<128x64xf8E4M3FN> -> tensor<?x128xf32>
  return
}

// -----

func.func @linear_int4_needs_f16_scales(%x: tensor<?x64xf32>, %w: tensor<128x64xi4>, %s: tensor<128x2xf32>) {
  // expected-error @+1 {{weight 'tensor<128x64xi4>' needs f16 scales, got 'tensor<128x2xf32>'}}
  %0 = xfmr.linear %x, %w scale(%s : tensor<128x2xf32>) {scale_layout = #xfmr.scale_layout<block [1, 32]>}
      : tensor<?x64xf32>, tensor<128x64xi4> -> tensor<?x128xf32>
  return
}

// -----

func.func @linear_int8_f32_scales_only(%x: tensor<?x64xf32>, %w: tensor<128x64xi8>, %s: tensor<128x1xf16>) {
  // expected-error @+1 {{weight 'tensor<128x64xi8>' needs f32 scales, got 'tensor<128x1xf16>'}}
  %0 = xfmr.linear %x, %w scale(%s : tensor<128x1xf16>) {scale_layout = #xfmr.scale_layout<block [1, 64]>}
      : tensor<?x64xf32>, tensor<128x64xi8> -> tensor<?x128xf32>
  return
}

// -----

func.func @linear_scale_unquantized(%x: tensor<?x64xf32>, %w: tensor<128x64xbf16>, %s: tensor<1x1xf32>) {
  // expected-error @+1 {{weight 'tensor<128x64xbf16>' is not quantized but has a scale tensor}}
  %0 = xfmr.linear %x, %w scale(%s : tensor<1x1xf32>) {scale_layout = #xfmr.scale_layout<block [128, 128]>}
      : tensor<?x64xf32>, tensor<128x64xbf16> -> tensor<?x128xf32>
  return
}

// -----

func.func @linear_scale_needs_layout(%x: tensor<?x64xf32>, %w: tensor<128x64xf8E4M3FN>, %s: tensor<1x1xf32>) {
  // expected-error @+1 {{needs a 'scale_layout' for the scale of weight}}
  %0 = xfmr.linear %x, %w scale(%s : tensor<1x1xf32>) : tensor<?x64xf32>, tensor<128x64xf8E4M3FN> -> tensor<?x128xf32>
  return
}

// -----

func.func @linear_scale_shape(%x: tensor<?x200xf32>, %w: tensor<300x200xf8E4M3FN>, %s: tensor<2x2xf32>) {
  // expected-error @+1 {{scale of weight has shape [2, 2] but layout #xfmr.scale_layout<block [128, 128]> of a [300, 200] weight needs [3, 2]}}
  %0 = xfmr.linear %x, %w scale(%s : tensor<2x2xf32>) {scale_layout = #xfmr.scale_layout<block [128, 128]>}
      : tensor<?x200xf32>, tensor<300x200xf8E4M3FN> -> tensor<?x300xf32>
  return
}

// -----

func.func @split_heads_product(%x: tensor<?x64xf32>) {
  // expected-error @+1 {{8 heads x 16 channels != 64 features}}
  %0 = xfmr.split_heads %x : tensor<?x64xf32> -> tensor<?x8x16xf32>
  return
}

// -----

func.func @split_heads_rank(%x: tensor<?x64xf32>) {
  // expected-error @+1 {{reshapes [tokens, heads * dim] <-> [tokens, heads, dim]}}
  %0 = xfmr.split_heads %x : tensor<?x64xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @split_heads_tokens(%x: tensor<3x64xf32>) {
  // expected-error @+1 {{token counts differ: 3 vs 4}}
  %0 = xfmr.split_heads %x : tensor<3x64xf32> -> tensor<4x8x8xf32>
  return
}

// -----

func.func @split_heads_element(%x: tensor<?x64xf32>) {
  // expected-error @+1 {{element types differ}}
  %0 = xfmr.split_heads %x : tensor<?x64xf32> -> tensor<?x8x8xbf16>
  return
}

// -----

func.func @split_heads_dynamic(%x: tensor<?x64xf32>) {
  // expected-error @+1 {{heads and head_dim must be static}}
  %0 = xfmr.split_heads %x : tensor<?x64xf32> -> tensor<?x?x8xf32>
  return
}

// -----

func.func @merge_heads_product(%x: tensor<?x4x8xf32>) {
  // expected-error @+1 {{4 heads x 8 channels != 64 features}}
  %0 = xfmr.merge_heads %x : tensor<?x4x8xf32> -> tensor<?x64xf32>
  return
}

// -----

func.func @split_sum(%x: tensor<?x40xf32>) {
  // expected-error @+1 {{pieces add up to 36 channels but the input has 40}}
  %0:2 = xfmr.split %x : tensor<?x40xf32> -> tensor<?x32xf32>, tensor<?x4xf32>
  return
}

// -----

func.func @split_piece(%x: tensor<?x40xf32>) {
  // expected-error @+1 {{result 'tensor<?x1x8xf32>' must match the input 'tensor<?x40xf32>' except in the last dimension}}
  %0:2 = xfmr.split %x : tensor<?x40xf32> -> tensor<?x32xf32>, tensor<?x1x8xf32>
  return
}

// -----

func.func @rope_rank(%x: tensor<?x64xf32>, %p: index) {
  // expected-error @+1 {{expects an input [tokens, heads, dim] of rank 3, got rank 2}}
  %0 = xfmr.rope %x at %p {config = #xfmr.rope<theta = 10000.0>} : tensor<?x64xf32>
  return
}

// -----

func.func @rope_odd_head(%x: tensor<?x2x7xf32>, %p: index) {
  // expected-error @+1 {{rotary dimension 7 must be even (channels rotate in pairs)}}
  %0 = xfmr.rope %x at %p {config = #xfmr.rope<theta = 10000.0>} : tensor<?x2x7xf32>
  return
}

// -----

func.func @rope_range(%x: tensor<?x2x16xf32>, %p: index) {
  // expected-error @+1 {{rotates channels [12, 20) of a head of 16}}
  %0 = xfmr.rope %x at %p {config = #xfmr.rope<theta = 10000.0, rotary_dim = 8, rotary_offset = 12>} : tensor<?x2x16xf32>
  return
}

// -----

// expected-error @+1 {{rope rotary_dim must be even and >= 0, got 7}}
func.func private @rope_attr_odd() attributes {r = #xfmr.rope<theta = 10000.0, rotary_dim = 7>}

// -----

// expected-error @+1 {{rope theta must be a positive finite number, got 0.0}}
func.func private @rope_attr_theta() attributes {r = #xfmr.rope<theta = 0.0>}

// -----

// expected-error @+1 {{rope scaling 'llama3' needs original_max_positions > 0}}
func.func private @rope_attr_llama3() attributes {r = #xfmr.rope<theta = 500000.0, scaling = llama3, factor = 8.0>}

// -----

// expected-error @+1 {{yarn rope scaling needs beta_fast (1.0) > beta_slow (32.0)}}
func.func private @rope_attr_yarn() attributes {r = #xfmr.rope<theta = 10000.0, scaling = yarn, factor = 40.0, original_max_positions = 4096, beta_fast = 1.0, beta_slow = 32.0>}

// -----

// expected-error @+1 {{rope scaling factor must be positive, got -2.0}}
func.func private @rope_attr_factor() attributes {r = #xfmr.rope<theta = 10000.0, scaling = linear, factor = -2.0>}

// -----

// expected-error @+1 {{llama3 rope scaling needs high_freq_factor (1.0) > low_freq_factor (4.0)}}
func.func private @rope_attr_llama3_freqs() attributes {r = #xfmr.rope<theta = 500000.0, scaling = llama3, factor = 8.0, original_max_positions = 8192, low_freq_factor = 4.0, high_freq_factor = 1.0>}

// -----

// expected-error @+1 {{rope rotary_offset must be >= 0, got -1}}
func.func private @rope_attr_offset() attributes {r = #xfmr.rope<theta = 10000.0, rotary_offset = -1>}

// -----

!cache = !xfmr.kv_cache<f32, capacity = 16, heads = 3, key_dim = 8, value_dim = 8>
func.func @attention_gqa(%q: tensor<?x8x8xf32>, %k: tensor<?x3x8xf32>, %v: tensor<?x3x8xf32>, %c: !cache, %p: index) {
  // expected-error @+1 {{query heads (8) must be a multiple of KV heads (3)}}
  %o, %c1 = xfmr.attention %q, %k, %v, %c[%p] {scale = 0.35 : f64}
      : tensor<?x8x8xf32>, tensor<?x3x8xf32>, tensor<?x3x8xf32>, !cache -> tensor<?x8x8xf32>
  return
}

// -----

!cache = !xfmr.kv_cache<f32, capacity = 16, heads = 2, key_dim = 8, value_dim = 8>
func.func @attention_cache_heads(%q: tensor<?x8x8xf32>, %k: tensor<?x4x8xf32>, %v: tensor<?x4x8xf32>, %c: !cache, %p: index) {
  // expected-error @+1 {{key/value have 4 heads but the cache holds 2}}
  %o, %c1 = xfmr.attention %q, %k, %v, %c[%p] {scale = 0.35 : f64}
      : tensor<?x8x8xf32>, tensor<?x4x8xf32>, tensor<?x4x8xf32>, !cache -> tensor<?x8x8xf32>
  return
}

// -----

!cache = !xfmr.kv_cache<f32, capacity = 16, heads = 4, key_dim = 8, value_dim = 8>
func.func @attention_kv_heads(%q: tensor<?x8x8xf32>, %k: tensor<?x4x8xf32>, %v: tensor<?x2x8xf32>, %c: !cache, %p: index) {
  // expected-error @+1 {{key has 4 heads but value has 2}}
  %o, %c1 = xfmr.attention %q, %k, %v, %c[%p] {scale = 0.35 : f64}
      : tensor<?x8x8xf32>, tensor<?x4x8xf32>, tensor<?x2x8xf32>, !cache -> tensor<?x8x8xf32>
  return
}

// -----

!cache = !xfmr.kv_cache<f32, capacity = 16, heads = 4, key_dim = 16, value_dim = 8>
func.func @attention_key_dim(%q: tensor<?x8x8xf32>, %k: tensor<?x4x8xf32>, %v: tensor<?x4x8xf32>, %c: !cache, %p: index) {
  // expected-error @+1 {{query/key head dims 8/8 must equal the cache key_dim 16}}
  %o, %c1 = xfmr.attention %q, %k, %v, %c[%p] {scale = 0.35 : f64}
      : tensor<?x8x8xf32>, tensor<?x4x8xf32>, tensor<?x4x8xf32>, !cache -> tensor<?x8x8xf32>
  return
}

// -----

!cache = !xfmr.kv_cache<f32, capacity = 16, heads = 4, key_dim = 8, value_dim = 4>
func.func @attention_value_dim(%q: tensor<?x8x8xf32>, %k: tensor<?x4x8xf32>, %v: tensor<?x4x8xf32>, %c: !cache, %p: index) {
  // expected-error @+1 {{value head dim 8 differs from the cache value_dim 4}}
  %o, %c1 = xfmr.attention %q, %k, %v, %c[%p] {scale = 0.35 : f64}
      : tensor<?x8x8xf32>, tensor<?x4x8xf32>, tensor<?x4x8xf32>, !cache -> tensor<?x8x8xf32>
  return
}

// -----

!cache = !xfmr.kv_cache<f32, capacity = 16, heads = 4, key_dim = 8, value_dim = 8>
func.func @attention_output(%q: tensor<?x8x8xf32>, %k: tensor<?x4x8xf32>, %v: tensor<?x4x8xf32>, %c: !cache, %p: index) {
  // expected-error @+1 {{output must be [tokens, 8, 8], got [?, 4, 8]}}
  %o, %c1 = xfmr.attention %q, %k, %v, %c[%p] {scale = 0.35 : f64}
      : tensor<?x8x8xf32>, tensor<?x4x8xf32>, tensor<?x4x8xf32>, !cache -> tensor<?x4x8xf32>
  return
}

// -----

!cache = !xfmr.kv_cache<f32, capacity = 16, heads = 4, key_dim = 8, value_dim = 8>
func.func @attention_tokens(%q: tensor<2x8x8xf32>, %k: tensor<3x4x8xf32>, %v: tensor<3x4x8xf32>, %c: !cache, %p: index) {
  // expected-error @+1 {{query, key, value and output token counts differ: [2, 8, 8], [3, 4, 8], [3, 4, 8], [2, 8, 8]}}
  %o, %c1 = xfmr.attention %q, %k, %v, %c[%p] {scale = 0.35 : f64}
      : tensor<2x8x8xf32>, tensor<3x4x8xf32>, tensor<3x4x8xf32>, !cache -> tensor<2x8x8xf32>
  return
}

// -----

!cache = !xfmr.kv_cache<f32, capacity = 16, heads = 4, key_dim = 8, value_dim = 8>
func.func @attention_element(%q: tensor<?x8x8xbf16>, %k: tensor<?x4x8xf32>, %v: tensor<?x4x8xf32>, %c: !cache, %p: index) {
  // expected-error @+1 {{query, key, value and output element types differ}}
  %o, %c1 = xfmr.attention %q, %k, %v, %c[%p] {scale = 0.35 : f64}
      : tensor<?x8x8xbf16>, tensor<?x4x8xf32>, tensor<?x4x8xf32>, !cache -> tensor<?x8x8xbf16>
  return
}

// -----

!cache = !xfmr.kv_cache<f32, capacity = 16, heads = 4, key_dim = 8, value_dim = 8>
func.func @attention_window(%q: tensor<?x8x8xf32>, %k: tensor<?x4x8xf32>, %v: tensor<?x4x8xf32>, %c: !cache, %p: index) {
  // expected-error @+1 {{sliding_window must be positive, got 0}}
  %o, %c1 = xfmr.attention %q, %k, %v, %c[%p] {scale = 0.35 : f64, sliding_window = 0 : i64}
      : tensor<?x8x8xf32>, tensor<?x4x8xf32>, tensor<?x4x8xf32>, !cache -> tensor<?x8x8xf32>
  return
}

// -----

!cache = !xfmr.kv_cache<f32, capacity = 16, heads = 4, key_dim = 8, value_dim = 8>
func.func @attention_sinks_without_window(%q: tensor<?x8x8xf32>, %k: tensor<?x4x8xf32>, %v: tensor<?x4x8xf32>, %c: !cache, %p: index) {
  // expected-error @+1 {{sinks (an evicting cache) needs a sliding_window}}
  %o, %c1 = xfmr.attention %q, %k, %v, %c[%p] {scale = 0.35 : f64, sinks = 4 : i64}
      : tensor<?x8x8xf32>, tensor<?x4x8xf32>, tensor<?x4x8xf32>, !cache -> tensor<?x8x8xf32>
  return
}

// -----

!cache = !xfmr.kv_cache<f32, capacity = 16, heads = 4, key_dim = 8, value_dim = 8>
func.func @attention_ring_capacity(%q: tensor<?x8x8xf32>, %k: tensor<?x4x8xf32>, %v: tensor<?x4x8xf32>, %c: !cache, %p: index) {
  // expected-error @+1 {{an evicting cache holds sinks + sliding_window = 12 entries, but its capacity is 16}}
  %o, %c1 = xfmr.attention %q, %k, %v, %c[%p] {scale = 0.35 : f64, sinks = 4 : i64, sliding_window = 8 : i64}
      : tensor<?x8x8xf32>, tensor<?x4x8xf32>, tensor<?x4x8xf32>, !cache -> tensor<?x8x8xf32>
  return
}

// -----

!cache = !xfmr.latent_cache<f32, capacity = 16, latent_dim = 32, rope_dim = 8>
func.func @mla_ring_capacity(%q: tensor<?x4x24xf32>, %ckv: tensor<?x32xf32>, %kpe: tensor<?x1x8xf32>, %w: tensor<128x32xf32>, %c: !cache, %p: index) {
  // expected-error @+1 {{an evicting cache holds sinks + sliding_window = 10 entries, but its capacity is 16}}
  %o, %c1 = xfmr.mla_attention %q, %ckv, %kpe, %w, %c[%p] {scale = 0.2 : f64, sinks = 2 : i64, sliding_window = 8 : i64}
      : tensor<?x4x24xf32>, tensor<?x32xf32>, tensor<?x1x8xf32>, tensor<128x32xf32>, !cache -> tensor<?x4x16xf32>
  return
}

// -----

!cache = !xfmr.kv_cache<f32, capacity = 16, heads = 4, key_dim = 8, value_dim = 8>
func.func @attention_negative_sinks(%q: tensor<?x8x8xf32>, %k: tensor<?x4x8xf32>, %v: tensor<?x4x8xf32>, %c: !cache, %p: index) {
  // expected-error @+1 {{sinks must be non-negative, got -1}}
  %o, %c1 = xfmr.attention %q, %k, %v, %c[%p] {scale = 0.35 : f64, sinks = -1 : i64, sliding_window = 17 : i64}
      : tensor<?x8x8xf32>, tensor<?x4x8xf32>, tensor<?x4x8xf32>, !cache -> tensor<?x8x8xf32>
  return
}

// -----

!cache = !xfmr.kv_cache<f32, capacity = 16, heads = 4, key_dim = 8, value_dim = 8>
func.func @attention_scale(%q: tensor<?x8x8xf32>, %k: tensor<?x4x8xf32>, %v: tensor<?x4x8xf32>, %c: !cache, %p: index) {
  // expected-error @+1 {{scale must be positive and finite, got -1.0}}
  %o, %c1 = xfmr.attention %q, %k, %v, %c[%p] {scale = -1.0 : f64}
      : tensor<?x8x8xf32>, tensor<?x4x8xf32>, tensor<?x4x8xf32>, !cache -> tensor<?x8x8xf32>
  return
}

// -----

// expected-error @+1 {{kv_cache sizes must be positive, got capacity = 0, heads = 4, key_dim = 8, value_dim = 8}}
func.func private @cache_size(!xfmr.kv_cache<f32, capacity = 0, heads = 4, key_dim = 8, value_dim = 8>)

// -----

// head_major caches verified but were lowered as token_major.
// expected-error @+1 {{kv_cache layout = head_major is not supported yet (caches are token_major)}}
func.func private @cache_head_major(!xfmr.kv_cache<f32, capacity = 8, heads = 4, key_dim = 8, value_dim = 8, layout = head_major>)

// -----

// expected-error @+1 {{kv_cache element type must be a float or i8, got 'i32'}}
func.func private @cache_element(!xfmr.kv_cache<i32, capacity = 8, heads = 4, key_dim = 8, value_dim = 8>)

// -----

// expected-error @+1 {{latent_cache sizes must be positive (rope_dim even), got capacity = 8, latent_dim = 32, rope_dim = 7}}
func.func private @latent_rope(!xfmr.latent_cache<bf16, capacity = 8, latent_dim = 32, rope_dim = 7>)

// -----

!cache = !xfmr.kv_cache<f32, capacity = 16, heads = 4, key_dim = 24, value_dim = 16>
func.func @mla_rope_heads(%q: tensor<?x4x24xf32>, %ckv: tensor<?x32xf32>, %kpe: tensor<?x4x8xf32>, %w: tensor<128x32xf32>, %c: !cache, %p: index) {
  // expected-error @+1 {{rope key is shared by all heads and must have 1 head, got 4}}
  %o, %c1 = xfmr.mla_attention %q, %ckv, %kpe, %w, %c[%p] {scale = 0.2 : f64}
      : tensor<?x4x24xf32>, tensor<?x32xf32>, tensor<?x4x8xf32>, tensor<128x32xf32>, !cache -> tensor<?x4x16xf32>
  return
}

// -----

!cache = !xfmr.kv_cache<f32, capacity = 16, heads = 4, key_dim = 24, value_dim = 16>
func.func @mla_kv_b_rows(%q: tensor<?x4x24xf32>, %ckv: tensor<?x32xf32>, %kpe: tensor<?x1x8xf32>, %w: tensor<96x32xf32>, %c: !cache, %p: index) {
  // expected-error @+1 {{kv_b weight has 96 rows, expected 4 heads x (16 nope + 16 v) = 128}}
  %o, %c1 = xfmr.mla_attention %q, %ckv, %kpe, %w, %c[%p] {scale = 0.2 : f64}
      : tensor<?x4x24xf32>, tensor<?x32xf32>, tensor<?x1x8xf32>, tensor<96x32xf32>, !cache -> tensor<?x4x16xf32>
  return
}

// -----

!cache = !xfmr.kv_cache<f32, capacity = 16, heads = 4, key_dim = 24, value_dim = 16>
func.func @mla_kv_b_cols(%q: tensor<?x4x24xf32>, %ckv: tensor<?x32xf32>, %kpe: tensor<?x1x8xf32>, %w: tensor<128x16xf32>, %c: !cache, %p: index) {
  // expected-error @+1 {{kv_b weight reads 16 channels but the latent has 32}}
  %o, %c1 = xfmr.mla_attention %q, %ckv, %kpe, %w, %c[%p] {scale = 0.2 : f64}
      : tensor<?x4x24xf32>, tensor<?x32xf32>, tensor<?x1x8xf32>, tensor<128x16xf32>, !cache -> tensor<?x4x16xf32>
  return
}

// -----

!cache = !xfmr.kv_cache<f32, capacity = 16, heads = 4, key_dim = 8, value_dim = 16>
func.func @mla_nope(%q: tensor<?x4x8xf32>, %ckv: tensor<?x32xf32>, %kpe: tensor<?x1x8xf32>, %w: tensor<128x32xf32>, %c: !cache, %p: index) {
  // expected-error @+1 {{query head dim 8 must exceed the rope dim 8}}
  %o, %c1 = xfmr.mla_attention %q, %ckv, %kpe, %w, %c[%p] {scale = 0.2 : f64}
      : tensor<?x4x8xf32>, tensor<?x32xf32>, tensor<?x1x8xf32>, tensor<128x32xf32>, !cache -> tensor<?x4x16xf32>
  return
}

// -----

!cache = !xfmr.kv_cache<f32, capacity = 16, heads = 4, key_dim = 24, value_dim = 8>
func.func @mla_expanded_cache(%q: tensor<?x4x24xf32>, %ckv: tensor<?x32xf32>, %kpe: tensor<?x1x8xf32>, %w: tensor<128x32xf32>, %c: !cache, %p: index) {
  // expected-error @+1 {{expanded cache must have heads = 4, key_dim = 24, value_dim = 16}}
  %o, %c1 = xfmr.mla_attention %q, %ckv, %kpe, %w, %c[%p] {scale = 0.2 : f64}
      : tensor<?x4x24xf32>, tensor<?x32xf32>, tensor<?x1x8xf32>, tensor<128x32xf32>, !cache -> tensor<?x4x16xf32>
  return
}

// -----

!cache = !xfmr.latent_cache<f32, capacity = 16, latent_dim = 64, rope_dim = 8>
func.func @mla_latent_cache(%q: tensor<?x4x24xf32>, %ckv: tensor<?x32xf32>, %kpe: tensor<?x1x8xf32>, %w: tensor<128x32xf32>, %c: !cache, %p: index) {
  // expected-error @+1 {{latent cache must have latent_dim = 32, rope_dim = 8}}
  %o, %c1 = xfmr.mla_attention %q, %ckv, %kpe, %w, %c[%p] {scale = 0.2 : f64}
      : tensor<?x4x24xf32>, tensor<?x32xf32>, tensor<?x1x8xf32>, tensor<128x32xf32>, !cache -> tensor<?x4x16xf32>
  return
}

// -----

!cache = !xfmr.latent_cache<f32, capacity = 16, latent_dim = 32, rope_dim = 8>
func.func @mla_heads(%q: tensor<?x4x24xf32>, %ckv: tensor<?x32xf32>, %kpe: tensor<?x1x8xf32>, %w: tensor<128x32xf32>, %c: !cache, %p: index) {
  // expected-error @+1 {{output has 2 heads, query has 4}}
  %o, %c1 = xfmr.mla_attention %q, %ckv, %kpe, %w, %c[%p] {scale = 0.2 : f64}
      : tensor<?x4x24xf32>, tensor<?x32xf32>, tensor<?x1x8xf32>, tensor<128x32xf32>, !cache -> tensor<?x2x16xf32>
  return
}

// -----

!cache = !xfmr.latent_cache<f32, capacity = 16, latent_dim = 32, rope_dim = 8>
func.func @mla_fp8_scale(%q: tensor<?x4x24xf32>, %ckv: tensor<?x32xf32>, %kpe: tensor<?x1x8xf32>, %w: tensor<128x32xf8E4M3FN>, %c: !cache, %p: index) {
  // expected-error @+1 {{kv_b weight 'tensor<128x32xf8E4M3FN>' is quantized and needs a scale tensor}}
  %o, %c1 = xfmr.mla_attention %q, %ckv, %kpe, %w, %c[%p] {scale = 0.2 : f64}
      : tensor<?x4x24xf32>, tensor<?x32xf32>, tensor<?x1x8xf32>, tensor<128x32xf8E4M3FN>, !cache -> tensor<?x4x16xf32>
  return
}

// -----

func.func @moe_topk(%x: tensor<?x8xf32>, %g: tensor<4x8xf32>) {
  // expected-error @+1 {{top_k (6) exceeds the number of experts (4)}}
  %w, %i = xfmr.moe_gate %x, %g {scoring = #xfmr<scoring softmax>, top_k = 6 : i64}
      : tensor<?x8xf32>, tensor<4x8xf32> -> tensor<?x6xf32>, tensor<?x6xi32>
  return
}

// -----

func.func @moe_topk_zero(%x: tensor<?x8xf32>, %g: tensor<4x8xf32>) {
  // expected-error @+1 {{attribute 'top_k' failed to satisfy constraint: 64-bit signless integer attribute whose value is positive}}
  %w, %i = xfmr.moe_gate %x, %g {scoring = #xfmr<scoring softmax>, top_k = 0 : i64}
      : tensor<?x8xf32>, tensor<4x8xf32> -> tensor<?x0xf32>, tensor<?x0xi32>
  return
}

// -----

func.func @moe_groups_divide(%x: tensor<?x8xf32>, %g: tensor<16x8xf32>) {
  // expected-error @+1 {{n_group (3) must divide the number of experts (16)}}
  %w, %i = xfmr.moe_gate %x, %g {scoring = #xfmr<scoring sigmoid>, top_k = 2 : i64, n_group = 3 : i64}
      : tensor<?x8xf32>, tensor<16x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @moe_topk_group(%x: tensor<?x8xf32>, %g: tensor<16x8xf32>) {
  // expected-error @+1 {{topk_group (5) must be in [1, n_group = 4]}}
  %w, %i = xfmr.moe_gate %x, %g {scoring = #xfmr<scoring sigmoid>, top_k = 2 : i64, n_group = 4 : i64, topk_group = 5 : i64}
      : tensor<?x8xf32>, tensor<16x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @moe_group_size(%x: tensor<?x8xf32>, %g: tensor<4x8xf32>) {
  // expected-error @+1 {{needs >= 2 experts per group, got 1}}
  %w, %i = xfmr.moe_gate %x, %g {scoring = #xfmr<scoring sigmoid>, top_k = 2 : i64, n_group = 4 : i64, topk_group = 2 : i64}
      : tensor<?x8xf32>, tensor<4x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @moe_kept_experts(%x: tensor<?x8xf32>, %g: tensor<16x8xf32>) {
  // expected-error @+1 {{top_k (6) exceeds the 4 experts of the kept groups}}
  %w, %i = xfmr.moe_gate %x, %g {scoring = #xfmr<scoring sigmoid>, top_k = 6 : i64, n_group = 4 : i64, topk_group = 1 : i64}
      : tensor<?x8xf32>, tensor<16x8xf32> -> tensor<?x6xf32>, tensor<?x6xi32>
  return
}

// -----

func.func @moe_bias(%x: tensor<?x8xf32>, %g: tensor<16x8xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{bias [8] must have shape [16]}}
  %w, %i = xfmr.moe_gate %x, %g bias(%b : tensor<8xf32>) {scoring = #xfmr<scoring sigmoid>, top_k = 2 : i64}
      : tensor<?x8xf32>, tensor<16x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @moe_results(%x: tensor<?x8xf32>, %g: tensor<16x8xf32>) {
  // expected-error @+1 {{results must be [tokens, top_k = 2], got [?, 3]}}
  %w, %i = xfmr.moe_gate %x, %g {scoring = #xfmr<scoring softmax>, top_k = 2 : i64}
      : tensor<?x8xf32>, tensor<16x8xf32> -> tensor<?x3xf32>, tensor<?x3xi32>
  return
}

// -----

func.func @moe_routed_scale(%x: tensor<?x8xf32>, %g: tensor<16x8xf32>) {
  // expected-error @+1 {{routed_scaling_factor must be positive, got 0.0}}
  %w, %i = xfmr.moe_gate %x, %g {scoring = #xfmr<scoring softmax>, top_k = 2 : i64, routed_scaling_factor = 0.0 : f64}
      : tensor<?x8xf32>, tensor<16x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @moe_gate_features(%x: tensor<?x8xf32>, %g: tensor<16x4xf32>) {
  // expected-error @+1 {{gate weight reads 4 features, input has 8}}
  %w, %i = xfmr.moe_gate %x, %g {scoring = #xfmr<scoring softmax>, top_k = 2 : i64}
      : tensor<?x8xf32>, tensor<16x4xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  return
}

// -----

func.func @experts_down(%x: tensor<?x8xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>,
                        %g: tensor<4x6x8xf32>, %u: tensor<4x6x8xf32>, %d: tensor<4x6x8xf32>) {
  // expected-error @+1 {{down weights [4, 6, 8] must be [4, 8, 6] to match gate [4, 6, 8]}}
  %y = xfmr.moe_experts %x, %w, %i, %g, %u, %d
      : tensor<?x8xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x6x8xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @experts_up(%x: tensor<?x8xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>,
                      %g: tensor<4x6x8xf32>, %u: tensor<4x5x8xf32>, %d: tensor<4x8x6xf32>) {
  // expected-error @+1 {{gate [4, 6, 8] and up [4, 5, 8] weights differ}}
  %y = xfmr.moe_experts %x, %w, %i, %g, %u, %d
      : tensor<?x8xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<4x6x8xf32>, tensor<4x5x8xf32>, tensor<4x8x6xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @experts_routing(%x: tensor<?x8xf32>, %w: tensor<?x2xf32>, %i: tensor<?x3xi32>,
                           %g: tensor<4x6x8xf32>, %u: tensor<4x6x8xf32>, %d: tensor<4x8x6xf32>) {
  // expected-error @+1 {{routing weights and indices must both be [tokens, top_k]}}
  %y = xfmr.moe_experts %x, %w, %i, %g, %u, %d
      : tensor<?x8xf32>, tensor<?x2xf32>, tensor<?x3xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @experts_features(%x: tensor<?x16xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>,
                            %g: tensor<4x6x8xf32>, %u: tensor<4x6x8xf32>, %d: tensor<4x8x6xf32>) {
  // expected-error @+1 {{experts read 8 features, input has 16}}
  %y = xfmr.moe_experts %x, %w, %i, %g, %u, %d
      : tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32> -> tensor<?x16xf32>
  return
}

// -----

func.func @experts_result(%x: tensor<?x8xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>,
                          %g: tensor<4x6x8xf32>, %u: tensor<4x6x8xf32>, %d: tensor<4x8x6xf32>) {
  // expected-error @+1 {{result type 'tensor<?x8xbf16>' must equal the input type 'tensor<?x8xf32>'}}
  %y = xfmr.moe_experts %x, %w, %i, %g, %u, %d
      : tensor<?x8xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32> -> tensor<?x8xbf16>
  return
}

// -----

func.func @experts_shared_shape(%x: tensor<?x8xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>,
                                %g: tensor<4x6x8xf32>, %u: tensor<4x6x8xf32>, %d: tensor<4x8x6xf32>,
                                %sg: tensor<12x8xf32>, %sd: tensor<8x10xf32>) {
  // expected-error @+1 {{shared expert weights [12, 8], [12, 8], [8, 10] must be [inter, 8] twice and [8, inter]}}
  %y = xfmr.moe_experts %x, %w, %i, %g, %u, %d shared(%sg, %sg, %sd : tensor<12x8xf32>, tensor<12x8xf32>, tensor<8x10xf32>)
      : tensor<?x8xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @experts_shared_rank(%x: tensor<?x8xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>,
                               %g: tensor<4x6x8xf32>, %u: tensor<4x6x8xf32>, %d: tensor<4x8x6xf32>,
                               %sd: tensor<8x12xf32>) {
  // expected-error @+1 {{expects shared gate weights [inter, hidden] of rank 2, got rank 3}}
  %y = xfmr.moe_experts %x, %w, %i, %g, %u, %d shared(%g, %g, %sd : tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<8x12xf32>)
      : tensor<?x8xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @experts_shared_fp8_unscaled(%x: tensor<?x8xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>,
                                       %g: tensor<4x6x8xf32>, %u: tensor<4x6x8xf32>, %d: tensor<4x8x6xf32>,
                                       %sg: tensor<12x8xf8E4M3FN>, %sd: tensor<8x12xf8E4M3FN>) {
  // expected-error @+1 {{shared gate weights 'tensor<12x8xf8E4M3FN>' is quantized and needs a scale tensor}}
  %y = xfmr.moe_experts %x, %w, %i, %g, %u, %d shared(%sg, %sg, %sd : tensor<12x8xf8E4M3FN>, tensor<12x8xf8E4M3FN>, tensor<8x12xf8E4M3FN>)
      : tensor<?x8xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @experts_fp8(%x: tensor<?x8xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>,
                       %g: tensor<4x6x8xf8E4M3FN>, %u: tensor<4x6x8xf8E4M3FN>, %d: tensor<4x8x6xf8E4M3FN>) {
  // expected-error @+1 {{gate weights 'tensor<4x6x8xf8E4M3FN>' is quantized and needs a scale tensor}}
  %y = xfmr.moe_experts %x, %w, %i, %g, %u, %d
      : tensor<?x8xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<4x6x8xf8E4M3FN>, tensor<4x6x8xf8E4M3FN>, tensor<4x8x6xf8E4M3FN> -> tensor<?x8xf32>
  return
}

// -----

func.func @experts_scale_shape(%x: tensor<?x8xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>,
                               %g: tensor<4x6x8xf8E4M3FN>, %u: tensor<4x6x8xf8E4M3FN>, %d: tensor<4x8x6xf8E4M3FN>,
                               %s: tensor<1x1xf32>, %t: tensor<4x1x1xf32>) {
  // expected-error @+1 {{scale of gate weights has shape [1, 1] but layout #xfmr.scale_layout<block [128, 128]> of a [4, 6, 8] weight needs [4, 1, 1]}}
  %y = xfmr.moe_experts %x, %w, %i, %g, %u, %d scales(%s, %t, %t : tensor<1x1xf32>, tensor<4x1x1xf32>, tensor<4x1x1xf32>)
      {scale_layout = #xfmr.scale_layout<block [128, 128]>}
      : tensor<?x8xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<4x6x8xf8E4M3FN>, tensor<4x6x8xf8E4M3FN>, tensor<4x8x6xf8E4M3FN> -> tensor<?x8xf32>
  return
}

// -----

func.func @quantize_scale(%x: tensor<?x200xf32>) {
  // expected-error @+1 {{scale has shape [?, 1] but layout #xfmr.scale_layout<block [1, 128]> of a [?, 200] tensor needs [?, 2]}}
  %q, %s = xfmr.quantize %x {layout = #xfmr.scale_layout<block [1, 128]>}
      : tensor<?x200xf32> -> tensor<?x200xf8E4M3FN>, tensor<?x1xf32>
  return
}

// -----

func.func @quantize_shape(%x: tensor<4x200xf32>) {
  // expected-error @+1 {{quantized shape [4, 100] differs from real shape [4, 200]}}
  %q, %s = xfmr.quantize %x {layout = #xfmr.scale_layout<per_tensor>}
      : tensor<4x200xf32> -> tensor<4x100xf8E4M3FN>, tensor<f32>
  return
}

// -----

func.func @quantize_block_rank(%x: tensor<200xf32>) {
  // expected-error @+1 {{block scales need a tensor of rank >= 2}}
  %q, %s = xfmr.quantize %x {layout = #xfmr.scale_layout<block [1, 128]>}
      : tensor<200xf32> -> tensor<200xf8E4M3FN>, tensor<2xf32>
  return
}

// -----

func.func @dequantize_scale(%q: tensor<256x256xf8E4M3FN>, %s: tensor<256xf32>) {
  // expected-error @+1 {{scale has shape [256] but layout #xfmr.scale_layout<per_tensor> of a [256, 256] tensor needs []}}
  %x = xfmr.dequantize %q, %s {layout = #xfmr.scale_layout<per_tensor>}
      : tensor<256x256xf8E4M3FN>, tensor<256xf32> -> tensor<256x256xf32>
  return
}

// -----

// expected-error @+1 {{block scale layout needs two block sizes [rows, cols], got 1}}
func.func private @layout_block_count() attributes {l = #xfmr.scale_layout<block [128]>}

// -----

// expected-error @+1 {{block sizes must be positive, got [0, 128]}}
func.func private @layout_block_zero() attributes {l = #xfmr.scale_layout<block [0, 128]>}

// -----

// expected-error @+1 {{scale layout 'per_channel' takes no block sizes}}
func.func private @layout_channel_block() attributes {l = #xfmr.scale_layout<per_channel [1, 2]>}

// -----

// expected-error @+1 {{'xfmr.entry' must be "prefill", "decode", "mtp" or "step", got "train"}}
func.func private @entry_kind() attributes {xfmr.entry = "train"}

// -----

// expected-error @+1 {{'xfmr.entry' may only mark a function}}
module attributes {xfmr.entry = "prefill"} {
}

// -----

// expected-error @+1 {{unknown xfmr attribute 'xfmr.entrypoint'}}
func.func private @entry_typo() attributes {xfmr.entrypoint = "prefill"}

// -----

func.func @fold_without_kv_b(%wq: tensor<96x24xf32>) {
  // expected-error @+1 {{query_latent needs kv_b weight}}
  %a = xfmr.fold_mla_weight %wq {kind = #xfmr<mla_fold query_latent>, heads = 4 : i64, nope = 16 : i64, rope = 8 : i64, value_dim = 16 : i64}
      : tensor<96x24xf32> -> tensor<128x24xf32>
  return
}

// -----

func.func @fold_rows(%wq: tensor<90x24xf32>) {
  // expected-error @+1 {{query weight has 90 rows, expected 96}}
  %a = xfmr.fold_mla_weight %wq {kind = #xfmr<mla_fold query_rope>, heads = 4 : i64, nope = 16 : i64, rope = 8 : i64, value_dim = 16 : i64}
      : tensor<90x24xf32> -> tensor<32x24xf32>
  return
}

// -----

func.func @fold_result(%wo: tensor<48x64xf32>, %wkv: tensor<128x32xf32>) {
  // expected-error @+1 {{result must be [48, 128], got [48, 64]}}
  %a = xfmr.fold_mla_weight %wo, %wkv {kind = #xfmr<mla_fold output>, heads = 4 : i64, nope = 16 : i64, rope = 8 : i64, value_dim = 16 : i64}
      : tensor<48x64xf32>, tensor<128x32xf32> -> tensor<48x64xf32>
  return
}

// -----

func.func @fold_fp8(%wq: tensor<96x24xf8E4M3FN>, %wkv: tensor<128x32xf32>) {
  // expected-error @+1 {{folds high-precision weights only, not FP8}}
  %a = xfmr.fold_mla_weight %wq, %wkv {kind = #xfmr<mla_fold query_latent>, heads = 4 : i64, nope = 16 : i64, rope = 8 : i64, value_dim = 16 : i64}
      : tensor<96x24xf8E4M3FN>, tensor<128x32xf32> -> tensor<128x24xf32>
  return
}

// -----

func.func @latent_attention_rank(%ql: tensor<?x4x16xf32>, %qr: tensor<?x4x8xf32>, %ckv: tensor<?x32xf32>,
                                 %kpe: tensor<?x1x8xf32>, %p: index,
                                 %c: !xfmr.latent_cache<f32, capacity = 20, latent_dim = 32, rope_dim = 8>) {
  // expected-error @+1 {{latent query, latent and output must have the cache's latent_dim 32}}
  %o, %c1 = xfmr.mla_latent_attention %ql, %qr, %ckv, %kpe, %c[%p] {scale = 0.2 : f64}
      : tensor<?x4x16xf32>, tensor<?x4x8xf32>, tensor<?x32xf32>, tensor<?x1x8xf32>,
        !xfmr.latent_cache<f32, capacity = 20, latent_dim = 32, rope_dim = 8> -> tensor<?x4x32xf32>
  return
}

// -----

func.func @latent_attention_rope(%ql: tensor<?x4x32xf32>, %qr: tensor<?x4x4xf32>, %ckv: tensor<?x32xf32>,
                                 %kpe: tensor<?x1x8xf32>, %p: index,
                                 %c: !xfmr.latent_cache<f32, capacity = 20, latent_dim = 32, rope_dim = 8>) {
  // expected-error @+1 {{rope query and rope key must have the cache's rope_dim 8}}
  %o, %c1 = xfmr.mla_latent_attention %ql, %qr, %ckv, %kpe, %c[%p] {scale = 0.2 : f64}
      : tensor<?x4x32xf32>, tensor<?x4x4xf32>, tensor<?x32xf32>, tensor<?x1x8xf32>,
        !xfmr.latent_cache<f32, capacity = 20, latent_dim = 32, rope_dim = 8> -> tensor<?x4x32xf32>
  return
}

// -----

func.func @latent_attention_heads(%ql: tensor<?x4x32xf32>, %qr: tensor<?x2x8xf32>, %ckv: tensor<?x32xf32>,
                                  %kpe: tensor<?x1x8xf32>, %p: index,
                                  %c: !xfmr.latent_cache<f32, capacity = 20, latent_dim = 32, rope_dim = 8>) {
  // expected-error @+1 {{latent query, rope query and output must have the same heads, got 4, 2, 4}}
  %o, %c1 = xfmr.mla_latent_attention %ql, %qr, %ckv, %kpe, %c[%p] {scale = 0.2 : f64}
      : tensor<?x4x32xf32>, tensor<?x2x8xf32>, tensor<?x32xf32>, tensor<?x1x8xf32>,
        !xfmr.latent_cache<f32, capacity = 20, latent_dim = 32, rope_dim = 8> -> tensor<?x4x32xf32>
  return
}

// -----

func.func @experts_activation_group(%x: tensor<?x8xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>,
                                    %g: tensor<4x6x8xf32>, %u: tensor<4x6x8xf32>, %d: tensor<4x8x6xf32>) {
  // expected-error @+1 {{activation_group quantizes activations for FP8 or int8 expert weights, but the experts are not quantized}}
  %y = xfmr.moe_experts %x, %w, %i, %g, %u, %d {activation_group = 128 : i64}
      : tensor<?x8xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32> -> tensor<?x8xf32>
  return
}

// -----

// expected-error @+1 {{'xfmr.target' must be a #xfmr.target on a module}}
func.func @target_on_function() attributes {xfmr.target = #xfmr.target<kind = "cpu", triple = "x86_64-pc-linux-gnu", chip = "znver4">} {
  return
}

// -----

// expected-error @+1 {{sve_bits must be 256 or 512 (or 0: none), got 384}}
module attributes {xfmr.target = #xfmr.target<kind = "cpu", triple = "aarch64-unknown-linux-gnu", chip = "generic", features = "+sve", sve_bits = 384>} {
}

// -----

// expected-error @+1 {{sve_bits needs the +sve feature, got features '+neon,+i8mm'}}
module attributes {xfmr.target = #xfmr.target<kind = "cpu", triple = "aarch64-unknown-linux-gnu", chip = "generic", features = "+neon,+i8mm", sve_bits = 256>} {
}

// -----

// expected-error @+1 {{sve_bits applies to AArch64 CPU code, not 'cpu' for 'x86_64-pc-linux-gnu'}}
module attributes {xfmr.target = #xfmr.target<kind = "cpu", triple = "x86_64-pc-linux-gnu", chip = "znver4", sve_bits = 256>} {
}

// -----

// expected-error @+1 {{'xfmr.target' must be a #xfmr.target on a module}}
module attributes {xfmr.target = "cpu"} {
}
