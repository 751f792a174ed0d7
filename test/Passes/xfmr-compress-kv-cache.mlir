// RUN: xfmr-opt %s --xfmr-compress-kv-cache=element=fp8 | FileCheck %s
// RUN: xfmr-opt %s --xfmr-compress-kv-cache=element=int8 | FileCheck %s --check-prefix=INT8
// RUN: xfmr-opt %s --xfmr-compress-kv-cache=element=fp8 --xfmr-annotate-model-stats | FileCheck %s --check-prefix=STATS
// RUN: not xfmr-opt %s --xfmr-compress-kv-cache=element=int3 2>&1 | FileCheck %s --check-prefix=BAD

!cache = !xfmr.kv_cache<f32, capacity = 16, heads = 2, key_dim = 8, value_dim = 8>

// Signatures, attention and returns all switch to the compressed cache.
// CHECK-LABEL: func.func @prefill
// CHECK-SAME: %{{.+}}: !xfmr.kv_cache<f8E4M3FN, capacity = 16, heads = 2, key_dim = 8, value_dim = 8>
// CHECK-SAME: -> (tensor<?x8xf32>, !xfmr.kv_cache<f8E4M3FN, capacity = 16, heads = 2, key_dim = 8, value_dim = 8>)
// CHECK: %{{.+}}, %[[C:.+]] = xfmr.attention {{.*}} !xfmr.kv_cache<f8E4M3FN, capacity = 16, heads = 2, key_dim = 8, value_dim = 8> -> tensor<?x2x8xf32>
// CHECK: return %{{.+}}, %[[C]] : tensor<?x8xf32>, !xfmr.kv_cache<f8E4M3FN
// INT8: !xfmr.kv_cache<i8, capacity = 16
// 2 heads x (8 + 8) bytes + 2 heads x 2 f32 scales = 48 bytes per token.
// STATS: xfmr.kv_cache_bytes_per_token = 48 : i64
// BAD: xfmr-compress-kv-cache: unknown element type 'int3' (expected f32, bf16, f16, fp8 or int8)
func.func @prefill(%x: tensor<?x16xf32>, %start: index, %c: !cache) -> (tensor<?x8xf32>, !cache)
    attributes {xfmr.entry = "prefill"} {
  %q = xfmr.split_heads %x : tensor<?x16xf32> -> tensor<?x2x8xf32>
  %o, %c1 = xfmr.attention %q, %q, %q, %c[%start] {scale = 0.35355339059327379 : f64}
      : tensor<?x2x8xf32>, tensor<?x2x8xf32>, tensor<?x2x8xf32>, !cache -> tensor<?x2x8xf32>
  %m = xfmr.merge_heads %o : tensor<?x2x8xf32> -> tensor<?x16xf32>
  %a, %b = xfmr.split %m : tensor<?x16xf32> -> tensor<?x8xf32>, tensor<?x8xf32>
  return %a, %c1 : tensor<?x8xf32>, !cache
}
