// RUN: xfmr-opt %s --xfmr-absorb-mla=fold=true --split-input-file --verify-diagnostics | FileCheck %s
// RUN: xfmr-opt %s --xfmr-absorb-mla=fold=true --xfmr-compress-kv-cache="element=fp8 window=16 sinks=4" --split-input-file --verify-diagnostics | FileCheck %s --check-prefix=FP8

!cache = !xfmr.kv_cache<f32, capacity = 64, heads = 4, key_dim = 24, value_dim = 16>
#rope = #xfmr.rope<theta = 10000.0, style = interleaved, rotary_dim = 8, rotary_offset = 16>

// W_UK folds into the query projection (one weight straight into latent
// space, one for the rope rows), W_UV into o_proj; attention runs on the
// latent cache and returns latents. The expanded path is gone.
// CHECK-LABEL: func.func @decode
// CHECK-SAME: (%[[X:[^:]+]]: tensor<?x24xf32>, %[[CKV:[^:]+]]: tensor<?x32xf32>, %[[KPE:[^:]+]]: tensor<?x1x8xf32>, %[[START:[^:]+]]: index
// CHECK-SAME: !xfmr.latent_cache<f32, capacity = 64, latent_dim = 32, rope_dim = 8>
// CHECK-DAG: %[[WQ:.+]] = xfmr.weight "q_b_proj" : tensor<96x24xf32>
// CHECK-DAG: %[[WKV:.+]] = xfmr.weight "kv_b_proj" : tensor<128x32xf32>
// CHECK-DAG: %[[WO:.+]] = xfmr.weight "o_proj" : tensor<48x64xf32>
// CHECK: %[[QLW:.+]] = xfmr.fold_mla_weight %[[WQ]], %[[WKV]] {heads = 4 : i64, kind = #xfmr<mla_fold query_latent>, nope = 16 : i64, rope = 8 : i64, value_dim = 16 : i64} : tensor<96x24xf32>, tensor<128x32xf32> -> tensor<128x24xf32>
// CHECK: %[[QRW:.+]] = xfmr.fold_mla_weight %[[WQ]] {heads = 4 : i64, kind = #xfmr<mla_fold query_rope>{{.*}}} : tensor<96x24xf32> -> tensor<32x24xf32>
// CHECK: %[[QL:.+]] = xfmr.linear %[[X]], %[[QLW]] : tensor<?x24xf32>, tensor<128x24xf32> -> tensor<?x128xf32>
// CHECK: %[[QL3:.+]] = xfmr.split_heads %[[QL]] : tensor<?x128xf32> -> tensor<?x4x32xf32>
// CHECK: %[[QR:.+]] = xfmr.linear %[[X]], %[[QRW]]
// CHECK: %[[QR3:.+]] = xfmr.split_heads %[[QR]] : tensor<?x32xf32> -> tensor<?x4x8xf32>
// CHECK: %[[QROT:.+]] = xfmr.rope %[[QR3]] at %[[START]] {config = #xfmr.rope<theta = 10000.0, style = interleaved>}
// CHECK: %[[O:.+]], %[[C:.+]] = xfmr.mla_latent_attention %[[QL3]], %[[QROT]], %[[CKV]], %[[KPE]], %{{.+}}[%[[START]]] {scale = 2.000000e-01 : f64}
// CHECK-SAME: -> tensor<?x4x32xf32>
// CHECK: %[[OW:.+]] = xfmr.fold_mla_weight %[[WO]], %[[WKV]] {heads = 4 : i64, kind = #xfmr<mla_fold output>{{.*}}} : tensor<48x64xf32>, tensor<128x32xf32> -> tensor<48x128xf32>
// CHECK: %[[M:.+]] = xfmr.merge_heads %[[O]] : tensor<?x4x32xf32> -> tensor<?x128xf32>
// CHECK: %[[Y:.+]] = xfmr.linear %[[M]], %[[OW]] : tensor<?x128xf32>, tensor<48x128xf32> -> tensor<?x48xf32>
// CHECK-NOT: xfmr.mla_attention
// CHECK: return %[[Y]], %[[C]]
// With a compressed, evicting cache after folding, the latent op follows.
// FP8-LABEL: func.func @decode
// FP8: xfmr.mla_latent_attention {{.+}} {scale = 2.000000e-01 : f64, sinks = 4 : i64, sliding_window = 16 : i64}
// FP8-SAME: !xfmr.latent_cache<f8E4M3FN, capacity = 20, latent_dim = 32, rope_dim = 8>
func.func @decode(%x: tensor<?x24xf32>, %ckv: tensor<?x32xf32>, %kpe: tensor<?x1x8xf32>,
                  %start: index, %c: !cache)
    -> (tensor<?x48xf32>, !cache) attributes {xfmr.entry = "decode"} {
  %wq = xfmr.weight "q_b_proj" : tensor<96x24xf32>
  %wkv = xfmr.weight "kv_b_proj" : tensor<128x32xf32>
  %wo = xfmr.weight "o_proj" : tensor<48x64xf32>
  %q = xfmr.linear %x, %wq : tensor<?x24xf32>, tensor<96x24xf32> -> tensor<?x96xf32>
  %q3 = xfmr.split_heads %q : tensor<?x96xf32> -> tensor<?x4x24xf32>
  %qr = xfmr.rope %q3 at %start {config = #rope} : tensor<?x4x24xf32>
  %o, %c1 = xfmr.mla_attention %qr, %ckv, %kpe, %wkv, %c[%start] {scale = 0.2 : f64}
      : tensor<?x4x24xf32>, tensor<?x32xf32>, tensor<?x1x8xf32>, tensor<128x32xf32>, !cache -> tensor<?x4x16xf32>
  %m = xfmr.merge_heads %o : tensor<?x4x16xf32> -> tensor<?x64xf32>
  %y = xfmr.linear %m, %wo : tensor<?x64xf32>, tensor<48x64xf32> -> tensor<?x48xf32>
  return %y, %c1 : tensor<?x48xf32>, !cache
}

// -----

!cache = !xfmr.kv_cache<f32, capacity = 64, heads = 4, key_dim = 24, value_dim = 16>

// FP8 weights cannot be folded: asked for, it is an error naming the op.
func.func @fp8(%q: tensor<?x4x24xf32>, %ckv: tensor<?x32xf32>, %kpe: tensor<?x1x8xf32>,
               %start: index, %c: !cache) -> (tensor<?x4x16xf32>, !cache) {
  %w = xfmr.weight "kv_b_proj" : tensor<128x32xf8E4M3FN>
  %s = xfmr.weight "kv_b_proj_scale" : tensor<1x1xf32>
  // expected-error @+1 {{cannot fold W_UK/W_UV at compile time}}
  %o, %c1 = xfmr.mla_attention %q, %ckv, %kpe, %w scale(%s : tensor<1x1xf32>), %c[%start]
      {scale = 0.2 : f64, scale_layout = #xfmr.scale_layout<block [128, 128]>}
      : tensor<?x4x24xf32>, tensor<?x32xf32>, tensor<?x1x8xf32>, tensor<128x32xf8E4M3FN>, !cache -> tensor<?x4x16xf32>
  return %o, %c1 : tensor<?x4x16xf32>, !cache
}
