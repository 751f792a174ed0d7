// RUN: xfmr-opt %s --xfmr-absorb-mla | FileCheck %s
// RUN: xfmr-opt %s --xfmr-absorb-mla --xfmr-compress-kv-cache=element=fp8 --xfmr-annotate-model-stats | FileCheck %s --check-prefix=FP8

!cache = !xfmr.kv_cache<f32, capacity = 64, heads = 4, key_dim = 24, value_dim = 16>

// The expanded cache (4 heads x (24 + 16) values per token) becomes the latent
// one (32 + 8 values per token), in the signature, the op and the return.
// CHECK-LABEL: func.func @decode
// CHECK-SAME: %{{.+}}: !xfmr.latent_cache<f32, capacity = 64, latent_dim = 32, rope_dim = 8>
// CHECK-SAME: -> (tensor<?x4x16xf32>, !xfmr.latent_cache<f32, capacity = 64, latent_dim = 32, rope_dim = 8>)
// CHECK: %{{.+}}, %[[C:.+]] = xfmr.mla_attention {{.*}} !xfmr.latent_cache<f32, capacity = 64, latent_dim = 32, rope_dim = 8> -> tensor<?x4x16xf32>
// CHECK: return %{{.+}}, %[[C]]
// xfmr-compress-kv-cache then stores the latent FlashMLA-style: 32 fp8 codes,
// one f32 scale (per 128 channels) and 8 bf16 rope channels = 52 bytes.
// FP8-LABEL: func.func @decode
// FP8-SAME: !xfmr.latent_cache<f8E4M3FN, capacity = 64, latent_dim = 32, rope_dim = 8>
// FP8-SAME: xfmr.kv_cache_bytes_per_token = 52 : i64
func.func @decode(%q: tensor<?x4x24xf32>, %ckv: tensor<?x32xf32>, %kpe: tensor<?x1x8xf32>,
                  %w: tensor<128x32xf32>, %start: index, %c: !cache)
    -> (tensor<?x4x16xf32>, !cache) attributes {xfmr.entry = "decode"} {
  %o, %c1 = xfmr.mla_attention %q, %ckv, %kpe, %w, %c[%start] {scale = 0.2 : f64}
      : tensor<?x4x24xf32>, tensor<?x32xf32>, tensor<?x1x8xf32>, tensor<128x32xf32>, !cache -> tensor<?x4x16xf32>
  return %o, %c1 : tensor<?x4x16xf32>, !cache
}

// A cache that no MLA op uses stays as it is.
// CHECK-LABEL: func.func @gqa
// CHECK-SAME: !xfmr.kv_cache<f32, capacity = 8, heads = 1, key_dim = 8, value_dim = 8>
func.func @gqa(%c: !xfmr.kv_cache<f32, capacity = 8, heads = 1, key_dim = 8, value_dim = 8>)
    -> !xfmr.kv_cache<f32, capacity = 8, heads = 1, key_dim = 8, value_dim = 8> {
  return %c : !xfmr.kv_cache<f32, capacity = 8, heads = 1, key_dim = 8, value_dim = 8>
}
