// RUN: xfmr-opt %s --xfmr-plan-memory --xfmr-lower-to-kernels --split-input-file --verify-diagnostics | FileCheck %s

// Each dispatch form is its own kernel. Every MoE layer gets per-expert token
// counters (i64) in the cache blob, after the caches; the module records where
// (name from the op's location) for the runtime's statistics.
// CHECK: module attributes
// CHECK-SAME: counters = [#xfmr.counter_slot<name = "model.layers.0.mlp", offset = 0, experts = 4>], weight_bytes = {{[0-9]+}}, cache_bytes = 64>
// CHECK-LABEL: func.func @prefill
// CHECK-SAME: (%[[IDS:.+]]: memref<?xi32>, %[[START:.+]]: index, %[[W:.+]]: memref<?xi8>, %[[C:.+]]: memref<?xi8>, %{{.+}}: memref<?x32xf32>)
// CHECK: call @xfmr_moe_route_4_k2_g1x1_softmax_norm_0x1pp0
// CHECK: %[[COUNTS:.+]] = memref.view %[[C]][%{{.+}}][] : memref<?xi8> to memref<4xi64>
// CHECK: call @xfmr_moe_experts_4x6x8_k2_f32_grouped(%{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}, %[[COUNTS]], %{{.+}})
// CHECK-LABEL: func.func @decode
// CHECK: memref.view %{{.+}}[%{{.+}}][] : memref<?xi8> to memref<4xi64>
// CHECK: call @xfmr_moe_experts_4x6x8_k2_f32_sparse(
// Grouped: a counting sort of the rows by expert, a gather, then per expert
// with tokens the tiled products over its rows; unused experts are skipped.
// CHECK-LABEL: func.func private @xfmr_moe_experts_4x6x8_k2_f32_grouped
// CHECK: arith.addi %{{.+}}, %{{.+}} : i64
// CHECK: memref.alloc(%{{.+}}) {alignment = 64 : i64} : memref<?xindex>
// CHECK: scf.for
// CHECK: scf.if
// CHECK: scf.parallel
// CHECK: arith.mulf
// Sparse: token by token, each of its top-k experts.
// CHECK-LABEL: func.func private @xfmr_moe_experts_4x6x8_k2_f32_sparse
// CHECK: scf.for
// CHECK: scf.for
// CHECK: scf.parallel
func.func @prefill(%ids: tensor<?xi32>, %start: index) -> tensor<?x32xf32>
    attributes {xfmr.entry = "prefill"} {
  %emb = xfmr.weight "embed" : tensor<32x8xf32>
  %x = xfmr.embedding %emb[%ids] : tensor<32x8xf32>, tensor<?xi32> -> tensor<?x8xf32>
  %g = xfmr.weight "gate" : tensor<4x8xf32>
  %eg = xfmr.weight "experts.gate" : tensor<4x6x8xf32>
  %eu = xfmr.weight "experts.up" : tensor<4x6x8xf32>
  %ed = xfmr.weight "experts.down" : tensor<4x8x6xf32>
  %w, %i = xfmr.moe_gate %x, %g {scoring = #xfmr<scoring softmax>, top_k = 2 : i64, norm_topk_prob = true}
      : tensor<?x8xf32>, tensor<4x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %y = xfmr.moe_experts %x, %w, %i, %eg, %eu, %ed {dispatch = #xfmr<moe_dispatch grouped>}
      : tensor<?x8xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32> -> tensor<?x8xf32> loc("model.layers.0.mlp")
  %logits = xfmr.linear %y, %emb : tensor<?x8xf32>, tensor<32x8xf32> -> tensor<?x32xf32>
  return %logits : tensor<?x32xf32>
}
func.func @decode(%ids: tensor<?xi32>, %start: index) -> tensor<?x32xf32>
    attributes {xfmr.entry = "decode"} {
  %emb = xfmr.weight "embed" : tensor<32x8xf32>
  %x = xfmr.embedding %emb[%ids] : tensor<32x8xf32>, tensor<?xi32> -> tensor<?x8xf32>
  %g = xfmr.weight "gate" : tensor<4x8xf32>
  %eg = xfmr.weight "experts.gate" : tensor<4x6x8xf32>
  %eu = xfmr.weight "experts.up" : tensor<4x6x8xf32>
  %ed = xfmr.weight "experts.down" : tensor<4x8x6xf32>
  %w, %i = xfmr.moe_gate %x, %g {scoring = #xfmr<scoring softmax>, top_k = 2 : i64, norm_topk_prob = true}
      : tensor<?x8xf32>, tensor<4x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %y = xfmr.moe_experts %x, %w, %i, %eg, %eu, %ed {dispatch = #xfmr<moe_dispatch sparse>}
      : tensor<?x8xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32> -> tensor<?x8xf32> loc("model.layers.0.mlp")
  %logits = xfmr.linear %y, %emb : tensor<?x8xf32>, tensor<32x8xf32> -> tensor<?x32xf32>
  return %logits : tensor<?x32xf32>
}

// -----

// Dense (the importer's form): a [tokens, experts] weight matrix, zero where a
// token did not route, and every expert over all tokens.
// CHECK-LABEL: func.func private @xfmr_moe_experts_4x6x8_k2_f32_dense
// CHECK: memref.alloc(%{{.+}}) {alignment = 64 : i64} : memref<?x4xf32>
// CHECK: scf.for
// CHECK: scf.parallel
func.func @prefill(%ids: tensor<?xi32>, %start: index) -> tensor<?x32xf32>
    attributes {xfmr.entry = "prefill"} {
  %emb = xfmr.weight "embed" : tensor<32x8xf32>
  %x = xfmr.embedding %emb[%ids] : tensor<32x8xf32>, tensor<?xi32> -> tensor<?x8xf32>
  %g = xfmr.weight "gate" : tensor<4x8xf32>
  %eg = xfmr.weight "experts.gate" : tensor<4x6x8xf32>
  %eu = xfmr.weight "experts.up" : tensor<4x6x8xf32>
  %ed = xfmr.weight "experts.down" : tensor<4x8x6xf32>
  %w, %i = xfmr.moe_gate %x, %g {scoring = #xfmr<scoring softmax>, top_k = 2 : i64, norm_topk_prob = true}
      : tensor<?x8xf32>, tensor<4x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %y = xfmr.moe_experts %x, %w, %i, %eg, %eu, %ed
      : tensor<?x8xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32> -> tensor<?x8xf32>
  %logits = xfmr.linear %y, %emb : tensor<?x8xf32>, tensor<32x8xf32> -> tensor<?x32xf32>
  return %logits : tensor<?x32xf32>
}
