// Compressed MLA latent caches (xfmr-absorb-mla, then xfmr-compress-kv-cache):
// an 8-bit latent is stored FlashMLA-style as codes, one f32 scale per 128
// channels and a bf16 k_pe, three views of the layer's slot.
// RUN: xfmr-opt %s --xfmr-absorb-mla --xfmr-compress-kv-cache=element=fp8 --xfmr-plan-memory --xfmr-lower-to-kernels | FileCheck %s
// RUN: xfmr-opt %s --xfmr-absorb-mla --xfmr-compress-kv-cache=element=bf16 --xfmr-plan-memory --xfmr-lower-to-kernels | FileCheck %s --check-prefix=BF16

// 16 tokens x 160 one-byte codes (2560 bytes), 16 x 2 scales at 2560
// (128 bytes), 16 x 4 bf16 rope keys at 2688 (128 bytes).
// CHECK: cache_bytes = 2816>
// CHECK-LABEL: func.func @prefill
// CHECK: %[[CODES:.+]] = memref.view %{{.+}}[%{{.+}}][] : memref<?xi8> to memref<16x160xi8>
// CHECK: %[[SCALES:.+]] = memref.view %{{.+}}[%c2560][] : memref<?xi8> to memref<16x2xf32>
// CHECK: %[[ROPE:.+]] = memref.view %{{.+}}[%c2688][] : memref<?xi8> to memref<16x4xbf16>
// CHECK: call @xfmr_latent_cache_write_16x160x4_f8e4m3fn_rope_bf16(%{{.+}}, %{{.+}}, %[[CODES]], %[[SCALES]], %[[ROPE]], %{{.+}})
// CHECK: call @xfmr_latent_attend_16x2x4x4x160_{{.+}}_f8e4m3fn_rope_bf16(%{{.+}}, %{{.+}}, %[[CODES]], %[[SCALES]], %[[ROPE]], %{{.+}}, %{{.+}})

// BF16: cache_bytes = 5248>
// BF16: memref.view %{{.+}}[%{{.+}}][] : memref<?xi8> to memref<16x160xbf16>
// BF16: memref.view %{{.+}}[%c5120][] : memref<?xi8> to memref<16x4xbf16>
// BF16: call @xfmr_latent_cache_write_16x160x4_bf16(
!cache = !xfmr.kv_cache<f32, capacity = 16, heads = 2, key_dim = 8, value_dim = 4>
func.func @prefill(%ids: tensor<?xi32>, %start: index, %c: !cache) -> (tensor<?x32xf32>, !cache)
    attributes {xfmr.entry = "prefill"} {
  %emb = xfmr.weight "embed" : tensor<32x160xf32>
  %h = xfmr.embedding %emb[%ids] : tensor<32x160xf32>, tensor<?xi32> -> tensor<?x160xf32>
  %wq = xfmr.weight "wq" : tensor<16x160xf32>
  %qf = xfmr.linear %h, %wq : tensor<?x160xf32>, tensor<16x160xf32> -> tensor<?x16xf32>
  %q = xfmr.split_heads %qf : tensor<?x16xf32> -> tensor<?x2x8xf32>
  %wr = xfmr.weight "wr" : tensor<4x160xf32>
  %rf = xfmr.linear %h, %wr : tensor<?x160xf32>, tensor<4x160xf32> -> tensor<?x4xf32>
  %kpe = xfmr.split_heads %rf : tensor<?x4xf32> -> tensor<?x1x4xf32>
  %wkvb = xfmr.weight "kv_b" : tensor<16x160xf32>
  %o, %c1 = xfmr.mla_attention %q, %h, %kpe, %wkvb, %c[%start] {scale = 0.35355339059327379 : f64}
      : tensor<?x2x8xf32>, tensor<?x160xf32>, tensor<?x1x4xf32>, tensor<16x160xf32>, !cache -> tensor<?x2x4xf32>
  %m = xfmr.merge_heads %o : tensor<?x2x4xf32> -> tensor<?x8xf32>
  %wo = xfmr.weight "lm_head" : tensor<32x8xf32>
  %logits = xfmr.linear %m, %wo : tensor<?x8xf32>, tensor<32x8xf32> -> tensor<?x32xf32>
  return %logits, %c1 : tensor<?x32xf32>, !cache
}
