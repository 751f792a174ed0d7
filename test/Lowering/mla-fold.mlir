// RUN: xfmr-opt %s --xfmr-plan-memory --xfmr-lower-to-kernels | FileCheck %s

!cache = !xfmr.latent_cache<f32, capacity = 16, latent_dim = 32, rope_dim = 8>

// Folded MLA weights are blob slots the packer computes (the transform names
// the product, with both sources); the checkpoint weights they come from are
// not stored. Latent attention reads the rope query as a query without a
// no-rope part.
// CHECK: xfmr.memory_plan = #xfmr.memory_plan<weights = [
// CHECK-SAME: #xfmr.weight_slot<source = "q_b", offset = 6912, bytes = 12288, type = tensor<128x24xf32>, transform = #xfmr.folded_weight<kind = query_latent, heads = 4, nope = 16, rope = 8, value_dim = 16, source_type = tensor<96x24xbf16>, kv_b = "kv_b", kv_b_type = tensor<128x32xbf16>>>
// CHECK-SAME: #xfmr.weight_slot<source = "q_b", offset = 19200, bytes = 3072, type = tensor<32x24xf32>, transform = #xfmr.folded_weight<kind = query_rope, heads = 4, nope = 16, rope = 8, value_dim = 16, source_type = tensor<96x24xbf16>>>
// CHECK-SAME: #xfmr.weight_slot<source = "o_proj", offset = 22272, bytes = 16384, type = tensor<32x128xf32>, transform = #xfmr.folded_weight<kind = output, heads = 4, nope = 16, rope = 8, value_dim = 16, source_type = tensor<32x64xf32>, kv_b = "kv_b", kv_b_type = tensor<128x32xbf16>>>
// CHECK-NOT: source = "kv_b"
// CHECK-LABEL: func.func @decode
// CHECK: %[[QL:.+]] = memref.view %{{.+}}[%{{.+}}][] : memref<?xi8> to memref<128x24xf32>
// CHECK: call @xfmr_linear_128x24_f32(%{{.+}}, %[[QL]], %{{.+}})
// CHECK: call @xfmr_latent_cache_write_16x32x8
// CHECK: call @xfmr_latent_attend_16x4x0x8x32
func.func @decode(%ids: tensor<?xi32>, %start: index, %c: !cache) -> (tensor<?x32xf32>, !cache)
    attributes {xfmr.entry = "decode"} {
  %emb = xfmr.weight "embed" : tensor<32x24xf32>
  %x = xfmr.embedding %emb[%ids] : tensor<32x24xf32>, tensor<?xi32> -> tensor<?x24xf32>
  %wq = xfmr.weight "q_b" : tensor<96x24xbf16>
  %wkv = xfmr.weight "kv_b" : tensor<128x32xbf16>
  %wa = xfmr.weight "kv_a" : tensor<40x24xf32>
  %wo = xfmr.weight "o_proj" : tensor<32x64xf32>
  %ql = xfmr.fold_mla_weight %wq, %wkv {kind = #xfmr<mla_fold query_latent>, heads = 4 : i64, nope = 16 : i64, rope = 8 : i64, value_dim = 16 : i64}
      : tensor<96x24xbf16>, tensor<128x32xbf16> -> tensor<128x24xf32>
  %qr = xfmr.fold_mla_weight %wq {kind = #xfmr<mla_fold query_rope>, heads = 4 : i64, nope = 16 : i64, rope = 8 : i64, value_dim = 16 : i64}
      : tensor<96x24xbf16> -> tensor<32x24xf32>
  %a = xfmr.linear %x, %ql : tensor<?x24xf32>, tensor<128x24xf32> -> tensor<?x128xf32>
  %a3 = xfmr.split_heads %a : tensor<?x128xf32> -> tensor<?x4x32xf32>
  %r = xfmr.linear %x, %qr : tensor<?x24xf32>, tensor<32x24xf32> -> tensor<?x32xf32>
  %r3 = xfmr.split_heads %r : tensor<?x32xf32> -> tensor<?x4x8xf32>
  %kva = xfmr.linear %x, %wa : tensor<?x24xf32>, tensor<40x24xf32> -> tensor<?x40xf32>
  %ckv, %kpe = xfmr.split %kva : tensor<?x40xf32> -> tensor<?x32xf32>, tensor<?x8xf32>
  %kpe3 = xfmr.split_heads %kpe : tensor<?x8xf32> -> tensor<?x1x8xf32>
  %o, %c1 = xfmr.mla_latent_attention %a3, %r3, %ckv, %kpe3, %c[%start] {scale = 0.2 : f64}
      : tensor<?x4x32xf32>, tensor<?x4x8xf32>, tensor<?x32xf32>, tensor<?x1x8xf32>, !cache -> tensor<?x4x32xf32>
  %m = xfmr.merge_heads %o : tensor<?x4x32xf32> -> tensor<?x128xf32>
  %wf = xfmr.fold_mla_weight %wo, %wkv {kind = #xfmr<mla_fold output>, heads = 4 : i64, nope = 16 : i64, rope = 8 : i64, value_dim = 16 : i64}
      : tensor<32x64xf32>, tensor<128x32xbf16> -> tensor<32x128xf32>
  %logits = xfmr.linear %m, %wf : tensor<?x128xf32>, tensor<32x128xf32> -> tensor<?x32xf32>
  return %logits, %c1 : tensor<?x32xf32>, !cache
}
