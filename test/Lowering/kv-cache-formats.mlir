// 8-bit caches: codes and per-entry scales are two views of the layer's slot
// (scales after the 64-byte aligned codes); writes quantize, attention reads
// codes and applies the scales.
// RUN: xfmr-opt %s --xfmr-compress-kv-cache=element=int8 --xfmr-plan-memory --xfmr-lower-to-kernels | FileCheck %s
// RUN: xfmr-opt %s --xfmr-compress-kv-cache=element=bf16 --xfmr-plan-memory --xfmr-lower-to-kernels | FileCheck %s --check-prefix=BF16

// 16 x 2 x 16 one-byte codes, then 16 x 2 x 2 f32 scales.
// CHECK: caches = [#xfmr.cache_slot<offset = 0, bytes = 768, type = !xfmr.kv_cache<i8, {{.+}}>>]
// CHECK-LABEL: func.func @prefill
// CHECK: %[[CODES:.+]] = memref.view %{{.+}}[%{{.+}}][] : memref<?xi8> to memref<16x2x16xi8>
// CHECK: %[[SCALES:.+]] = memref.view %{{.+}}[%c512][] : memref<?xi8> to memref<16x2x2xf32>
// CHECK: call @xfmr_cache_write_16x2x8x8_i8(%{{.+}}, %{{.+}}, %[[CODES]], %[[SCALES]], %{{.+}})
// CHECK: call @xfmr_attend_16x2x2x8x8_{{.+}}_i8(%{{.+}}, %[[CODES]], %[[SCALES]], %{{.+}}, %{{.+}})
// CHECK-LABEL: func.func private @xfmr_cache_write_16x2x8x8_i8
// CHECK: math.roundeven
// CHECK: arith.fptosi %{{.+}} : f32 to i8
// CHECK-LABEL: func.func private @xfmr_attend_16x2x2x8x8_{{.+}}_i8
// CHECK: arith.sitofp

// BF16: caches = [#xfmr.cache_slot<offset = 0, bytes = 1024, type = !xfmr.kv_cache<bf16, {{.+}}>>]
// BF16: memref.view %{{.+}}[%{{.+}}][] : memref<?xi8> to memref<16x2x16xbf16>
// BF16: call @xfmr_cache_write_16x2x8x8_bf16(
!cache = !xfmr.kv_cache<f32, capacity = 16, heads = 2, key_dim = 8, value_dim = 8>
func.func @prefill(%ids: tensor<?xi32>, %start: index, %c: !cache) -> (tensor<?x32xf32>, !cache)
    attributes {xfmr.entry = "prefill"} {
  %emb = xfmr.weight "embed" : tensor<32x16xf32>
  %h = xfmr.embedding %emb[%ids] : tensor<32x16xf32>, tensor<?xi32> -> tensor<?x16xf32>
  %q = xfmr.split_heads %h : tensor<?x16xf32> -> tensor<?x2x8xf32>
  %o, %c1 = xfmr.attention %q, %q, %q, %c[%start] {scale = 0.35355339059327379 : f64}
      : tensor<?x2x8xf32>, tensor<?x2x8xf32>, tensor<?x2x8xf32>, !cache -> tensor<?x2x8xf32>
  %m = xfmr.merge_heads %o : tensor<?x2x8xf32> -> tensor<?x16xf32>
  %logits = xfmr.linear %m, %emb : tensor<?x16xf32>, tensor<32x16xf32> -> tensor<?x32xf32>
  return %logits, %c1 : tensor<?x32xf32>, !cache
}
