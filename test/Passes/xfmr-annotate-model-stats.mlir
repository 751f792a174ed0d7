// RUN: xfmr-opt %s --xfmr-annotate-model-stats | FileCheck %s

!kv = !xfmr.kv_cache<bf16, capacity = 64, heads = 2, key_dim = 8, value_dim = 8>
!latent = !xfmr.latent_cache<f8E4M3FN, capacity = 64, latent_dim = 32, rope_dim = 8>

// Embedding (32 x 16 f32) read twice counts once; the FP8 weight is 1 byte per
// element and its scale is stored data too: 512 + 256 + 1 elements,
// 2048 + 256 + 4 bytes. Caches: 2 * (8 + 8) * 2 + the FP8 latent's 32 codes,
// 1 f32 scale and 8 bf16 rope channels = 64 + 52 = 116 bytes per token.
// CHECK-LABEL: func.func @decode
// CHECK-SAME: xfmr.entry = "decode"
// CHECK-SAME: xfmr.kv_cache_bytes_per_token = 116 : i64
// CHECK-SAME: xfmr.parameter_count = 769 : i64
// CHECK-SAME: xfmr.weight_bytes = 2308 : i64
func.func @decode(%ids: tensor<?xi32>, %a: !kv, %b: !latent) -> tensor<?x16xf32> attributes {xfmr.entry = "decode"} {
  %e = xfmr.weight "embed" : tensor<32x16xf32>
  %w = xfmr.weight "w8" : tensor<16x16xf8E4M3FN>
  %s = xfmr.weight "w8_scale" : tensor<1x1xf32>
  %e2 = xfmr.weight "embed" : tensor<32x16xf32>
  %h = xfmr.embedding %e[%ids] : tensor<32x16xf32>, tensor<?xi32> -> tensor<?x16xf32>
  %y = xfmr.linear %h, %w scale(%s : tensor<1x1xf32>) {scale_layout = #xfmr.scale_layout<block [128, 128]>}
      : tensor<?x16xf32>, tensor<16x16xf8E4M3FN> -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// Functions that are not entry points are left alone.
// CHECK-LABEL: func.func @helper
// CHECK-NOT: xfmr.weight_bytes
func.func @helper() -> tensor<4xf32> {
  %w = xfmr.weight "x" : tensor<4xf32>
  return %w : tensor<4xf32>
}
