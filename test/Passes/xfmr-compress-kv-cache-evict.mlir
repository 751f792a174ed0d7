// RUN: xfmr-opt %s --xfmr-compress-kv-cache="element=int8 window=6 sinks=2" | FileCheck %s
// RUN: not xfmr-opt %s --xfmr-compress-kv-cache="element=f32 window=0 sinks=2" 2>&1 | FileCheck %s --check-prefix=BAD

// Eviction shrinks every cache to sinks + window entries, marks the attention
// as a ring (sinks, sliding_window) and tells the runtime through xfmr.model.
// CHECK: module attributes {xfmr.model = {context_length = 16 : i64, kv_sinks = 2 : i64, kv_window = 6 : i64, vocab_size = 8 : i64}}
// CHECK-LABEL: func.func @prefill
// CHECK-SAME: %{{.+}}: !xfmr.kv_cache<i8, capacity = 8, heads = 2, key_dim = 8, value_dim = 8>
// CHECK: xfmr.attention {{.*}} {scale = {{.*}} : f64, sinks = 2 : i64, sliding_window = 6 : i64} : {{.*}} !xfmr.kv_cache<i8, capacity = 8, heads = 2
// CHECK: return {{.*}} !xfmr.kv_cache<i8, capacity = 8,

// BAD: eviction needs window > 0 and sinks >= 0, got window=0 sinks=2
module attributes {xfmr.model = {context_length = 16 : i64, vocab_size = 8 : i64}} {
func.func @prefill(%x: tensor<?x16xf32>, %start: index, %c: !xfmr.kv_cache<f32, capacity = 16, heads = 2, key_dim = 8, value_dim = 8>)
    -> (tensor<?x8xf32>, !xfmr.kv_cache<f32, capacity = 16, heads = 2, key_dim = 8, value_dim = 8>)
    attributes {xfmr.entry = "prefill"} {
  %q = xfmr.split_heads %x : tensor<?x16xf32> -> tensor<?x2x8xf32>
  %o, %c1 = xfmr.attention %q, %q, %q, %c[%start] {scale = 0.35355339059327379 : f64}
      : tensor<?x2x8xf32>, tensor<?x2x8xf32>, tensor<?x2x8xf32>,
        !xfmr.kv_cache<f32, capacity = 16, heads = 2, key_dim = 8, value_dim = 8> -> tensor<?x2x8xf32>
  %m = xfmr.merge_heads %o : tensor<?x2x8xf32> -> tensor<?x16xf32>
  %a, %b = xfmr.split %m : tensor<?x16xf32> -> tensor<?x8xf32>, tensor<?x8xf32>
  return %a, %c1 : tensor<?x8xf32>, !xfmr.kv_cache<f32, capacity = 16, heads = 2, key_dim = 8, value_dim = 8>
}

// MLA evicts the same way, here from its latent cache.
// CHECK-LABEL: func.func @mla
// CHECK-SAME: !xfmr.latent_cache<i8, capacity = 8, latent_dim = 32, rope_dim = 8>
// CHECK: xfmr.mla_attention {{.*}} {scale = 2.000000e-01 : f64, sinks = 2 : i64, sliding_window = 6 : i64}
func.func @mla(%q: tensor<?x4x24xf32>, %ckv: tensor<?x32xf32>, %kpe: tensor<?x1x8xf32>,
               %w: tensor<128x32xf32>, %start: index,
               %c: !xfmr.latent_cache<f32, capacity = 16, latent_dim = 32, rope_dim = 8>)
    -> (tensor<?x4x16xf32>, !xfmr.latent_cache<f32, capacity = 16, latent_dim = 32, rope_dim = 8>) {
  %o, %c1 = xfmr.mla_attention %q, %ckv, %kpe, %w, %c[%start] {scale = 0.2 : f64}
      : tensor<?x4x24xf32>, tensor<?x32xf32>, tensor<?x1x8xf32>, tensor<128x32xf32>,
        !xfmr.latent_cache<f32, capacity = 16, latent_dim = 32, rope_dim = 8> -> tensor<?x4x16xf32>
  return %o, %c1 : tensor<?x4x16xf32>, !xfmr.latent_cache<f32, capacity = 16, latent_dim = 32, rope_dim = 8>
}
}
