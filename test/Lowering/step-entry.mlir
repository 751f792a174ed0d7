// RUN: xfmr-opt %s --split-input-file --xfmr-plan-memory --xfmr-lower-to-kernels | FileCheck %s
// RUN: xfmr-opt %s --split-input-file --xfmr-plan-memory --xfmr-lower-to-kernels=step=false | FileCheck %s --check-prefix=NOSTEP

!cache = !xfmr.kv_cache<bf16, capacity = 16, heads = 1, key_dim = 8, value_dim = 8>

// The decode entry is lowered twice: as @decode (one sequence) and as @batch_step,
// which takes a [N, 4] table of segments (first row, rows, start, cache
// offset). Row-wise ops (embedding, linears) run once over all ids; RoPE, the
// cache write and attention run in a loop over the segments, on views of the
// segment's rows and of its cache blob at its offset.
// CHECK-LABEL: func.func @decode
// CHECK-SAME: %{{.+}}: index
// CHECK-NOT: scf.for
// CHECK: return
// CHECK-LABEL: func.func @batch_step
// CHECK-SAME: (%[[IDS:.+]]: memref<?xi32>, %[[SEG:.+]]: memref<?x4xi64>, %[[W:.+]]: memref<?xi8>, %[[C:.+]]: memref<?xi8>, %[[LOGITS:.+]]: memref<?x32xf32>)
// CHECK-SAME: attributes {llvm.emit_c_interface, xfmr.entry = "step"}
// CHECK: %[[T:.+]] = memref.dim %[[IDS]]
// CHECK: call @xfmr_embedding_32x8_f32({{.*}}%[[IDS]]
// CHECK: %[[QRAW:.+]] = memref.alloc
// CHECK: %[[Q:.+]] = memref.view %[[QRAW]]
// CHECK: call @xfmr_linear_8x8_f32({{.*}}%[[Q]])
// CHECK: %[[RRAW:.+]] = memref.alloc
// CHECK: %[[N:.+]] = memref.dim %[[SEG]], %c0
// CHECK: scf.for %[[S:.+]] = %{{.+}} to %[[N]] step
// CHECK: %[[FIRST64:.+]] = memref.load %[[SEG]][%[[S]], %c0
// CHECK: %[[FIRST:.+]] = arith.index_cast %[[FIRST64]]
// CHECK: %[[ROWS64:.+]] = memref.load %[[SEG]][%[[S]], %c1
// CHECK: %[[ROWS:.+]] = arith.index_cast %[[ROWS64]]
// CHECK: %[[START64:.+]] = memref.load %[[SEG]][%[[S]], %c2
// CHECK: %[[START:.+]] = arith.index_cast %[[START64]]
// CHECK: %[[SHIFT:.+]] = arith.muli %[[FIRST]], %c32
// CHECK: %[[QROWS:.+]] = memref.view %[[QRAW]][%[[SHIFT]]][%[[ROWS]]] : memref<?xi8> to memref<?x1x8xf32>
// CHECK: %[[RROWS:.+]] = memref.view %[[RRAW]][%{{.+}}][%[[ROWS]]] : memref<?xi8> to memref<?x1x8xf32>
// CHECK: call @xfmr_rope_1x8_{{[0-9]+}}(%[[QROWS]], %[[START]], %[[RROWS]])
// CHECK: }
// CHECK: scf.for %[[S2:.+]] =
// CHECK: %[[OFF64:.+]] = memref.load %[[SEG]][%[[S2]], %c3
// CHECK: %[[OFF:.+]] = arith.index_cast %[[OFF64]]
// CHECK: %[[AT:.+]] = arith.addi %[[OFF]], %c0
// CHECK: %[[CACHE:.+]] = memref.view %[[C]][%[[AT]]][] : memref<?xi8> to memref<16x1x16xbf16>
// CHECK: call @xfmr_cache_write_16x1x8x8_bf16({{.*}}%[[CACHE]]
// CHECK: call @xfmr_attend_16x1x1x8x8_{{.+}}({{.*}}%[[CACHE]]
// CHECK: }
// The LM head runs on each segment's last row only: gathered by a copy per
// segment, then one logits row per sequence.
// CHECK: %[[NSEG:.+]] = memref.dim %[[SEG]], %c0
// CHECK: %[[LASTRAW:.+]] = memref.alloc
// CHECK: %[[LAST:.+]] = memref.view %[[LASTRAW]]{{.*}}[%[[NSEG]]] : memref<?xi8> to memref<?x8xf32>
// CHECK: scf.for
// CHECK: call @xfmr_elementwise_copy
// CHECK: }
// CHECK: call @xfmr_linear_32x8_f32(%[[LAST]], %{{.+}}, %[[LOGITS]])
// CHECK: memref.dealloc %[[LASTRAW]]
// CHECK: return
// NOSTEP-NOT: func.func @batch_step
func.func @decode(%ids: tensor<?xi32>, %start: index, %c: !cache) -> (tensor<?x32xf32>, !cache)
    attributes {xfmr.entry = "decode"} {
  %emb = xfmr.weight "embed" : tensor<32x8xf32>
  %h = xfmr.embedding %emb[%ids] : tensor<32x8xf32>, tensor<?xi32> -> tensor<?x8xf32>
  %wq = xfmr.weight "wq" : tensor<8x8xf32>
  %q = xfmr.linear %h, %wq : tensor<?x8xf32>, tensor<8x8xf32> -> tensor<?x8xf32>
  %q3 = xfmr.split_heads %q : tensor<?x8xf32> -> tensor<?x1x8xf32>
  %r = xfmr.rope %q3 at %start {config = #xfmr.rope<theta = 10000.0>} : tensor<?x1x8xf32>
  %o, %c1 = xfmr.attention %r, %r, %q3, %c[%start] {scale = 0.35355339059327379 : f64}
      : tensor<?x1x8xf32>, tensor<?x1x8xf32>, tensor<?x1x8xf32>, !cache -> tensor<?x1x8xf32>
  %om = xfmr.merge_heads %o : tensor<?x1x8xf32> -> tensor<?x8xf32>
  %logits = xfmr.linear %om, %emb : tensor<?x8xf32>, tensor<32x8xf32> -> tensor<?x32xf32>
  return %logits, %c1 : tensor<?x32xf32>, !cache
}

// -----

// Logits that are not a linear's output are computed for every row, then the
// last row of each segment is copied out.
// CHECK-LABEL: func.func @batch_step
// CHECK-SAME: %[[LOGITS:[a-z0-9_]+]]: memref<?x32xf32>)
// CHECK: call @xfmr_linear_32x8_f32
// CHECK: %[[SUMRAW:.+]] = memref.alloc
// CHECK: call @xfmr_elementwise_add
// CHECK-NOT: memref.dealloc %[[SUMRAW]]
// CHECK: scf.for
// CHECK: call @xfmr_elementwise_copy
// CHECK: }
// CHECK: call @xfmr_elementwise_copy(%{{.+}}, %{{.+}})
// CHECK: memref.dealloc %[[SUMRAW]]
// CHECK-NEXT: return
!cache2 = !xfmr.kv_cache<f32, capacity = 16, heads = 1, key_dim = 8, value_dim = 8>
func.func @decode(%ids: tensor<?xi32>, %start: index, %c: !cache2) -> (tensor<?x32xf32>, !cache2)
    attributes {xfmr.entry = "decode"} {
  %emb = xfmr.weight "embed" : tensor<32x8xf32>
  %h = xfmr.embedding %emb[%ids] : tensor<32x8xf32>, tensor<?xi32> -> tensor<?x8xf32>
  %logits = xfmr.linear %h, %emb : tensor<?x8xf32>, tensor<32x8xf32> -> tensor<?x32xf32>
  %twice = xfmr.add %logits, %logits : tensor<?x32xf32>
  return %twice, %c : tensor<?x32xf32>, !cache2
}
