// RUN: xfmr-opt %s --xfmr-quantize-int4 --split-input-file | FileCheck %s
// RUN: xfmr-opt %s --xfmr-quantize-int4="group=64 head=int4" --split-input-file | FileCheck %s --check-prefix=G64
// RUN: xfmr-opt %s --xfmr-quantize-int4="head=keep keep=q_proj" --split-input-file | FileCheck %s --check-prefix=KEEP
// RUN: xfmr-opt %s --xfmr-quantize-int4="group=40" --split-input-file | FileCheck %s --check-prefix=G40
// RUN: xfmr-opt %s --xfmr-quantize-int4="experts=int8" --split-input-file | FileCheck %s --check-prefix=G40
// RUN: not xfmr-opt %s --xfmr-quantize-int4="group=12" --split-input-file 2>&1 | FileCheck %s --check-prefix=BAD
// RUN: not xfmr-opt %s --xfmr-quantize-int4="experts=int2" --split-input-file 2>&1 | FileCheck %s --check-prefix=BAD-EXPERTS

// CHECK-LABEL: func.func @linear
// CHECK-SAME: (%[[X:.+]]: tensor<?x300xf32>)
// The weight gets one f16 scale per output channel and group of 32 inputs
// (300 -> 10 groups, the last of 12), the input one int8 scale per token.
// CHECK: %[[W:.+]] = xfmr.weight "model.layers.0.self_attn.q_proj.weight" : tensor<200x300xbf16>
// CHECK: %[[WQ:.+]], %[[WS:.+]] = xfmr.quantize %[[W]] {layout = #xfmr.scale_layout<block [1, 32]>} : tensor<200x300xbf16> -> tensor<200x300xi4>, tensor<200x10xf16>
// CHECK: %[[XQ:.+]], %[[XS:.+]] = xfmr.quantize %[[X]] {layout = #xfmr.scale_layout<block [1, 300]>} : tensor<?x300xf32> -> tensor<?x300xi8>, tensor<?x1xf32>
// CHECK: %[[XD:.+]] = xfmr.dequantize %[[XQ]], %[[XS]] {layout = #xfmr.scale_layout<block [1, 300]>}
// CHECK: %[[Y:.+]] = xfmr.linear %[[XD]], %[[WQ]] bias(%{{.+}} : tensor<200xf32>) scale(%[[WS]] : tensor<200x10xf16>) {scale_layout = #xfmr.scale_layout<block [1, 32]>} : tensor<?x300xf32>, tensor<200x300xi4> -> tensor<?x200xf32>
// The LM head is W8A8 (a scale per row and per token).
// CHECK: %[[HEAD:.+]] = xfmr.weight "lm_head.weight" : tensor<64x200xbf16>
// CHECK: xfmr.quantize %[[HEAD]] {layout = #xfmr.scale_layout<block [1, 200]>} : tensor<64x200xbf16> -> tensor<64x200xi8>, tensor<64x1xf32>
// CHECK: xfmr.linear {{.+}} : tensor<?x200xf32>, tensor<64x200xi8> -> tensor<?x64xf32>

// head=int4: the head like the others; groups of 64 (300 -> 5).
// G64-LABEL: func.func @linear
// G64: tensor<200x300xbf16> -> tensor<200x300xi4>, tensor<200x5xf16>
// G64: tensor<64x200xbf16> -> tensor<64x200xi4>, tensor<64x4xf16>
// G64-NOT: xi8>, tensor<64x1xf32>

// KEEP-LABEL: func.func @linear
// KEEP-NOT: xfmr.quantize
// KEEP: return
func.func @linear(%x: tensor<?x300xf32>) -> tensor<?x64xf32> {
  %w = xfmr.weight "model.layers.0.self_attn.q_proj.weight" : tensor<200x300xbf16>
  %b = xfmr.weight "model.layers.0.self_attn.q_proj.bias" : tensor<200xf32>
  %y = xfmr.linear %x, %w bias(%b : tensor<200xf32>) : tensor<?x300xf32>, tensor<200x300xbf16> -> tensor<?x200xf32>
  %h = xfmr.weight "lm_head.weight" : tensor<64x200xbf16>
  %z = xfmr.linear %y, %h : tensor<?x200xf32>, tensor<64x200xbf16> -> tensor<?x64xf32>
  return %z : tensor<?x64xf32>
}

// BAD: error: xfmr-quantize-int4: the group must be a multiple of 8 in [8, 65536], got 12
// BAD-EXPERTS: error: xfmr-quantize-int4: experts must be int4 or int8, got 'int2'

// -----

// A tied LM head reads the embedding table, which the embedding keeps; the
// head's linear is quantized as `head` says (default int8), from the table.
// CHECK-LABEL: func.func @tied_head
// CHECK: %[[E:.+]] = xfmr.weight "model.embed_tokens.weight" : tensor<100x64xf32>
// CHECK: xfmr.embedding %[[E]][%{{.+}}] : tensor<100x64xf32>
// CHECK: xfmr.quantize %[[E]] {layout = #xfmr.scale_layout<block [1, 64]>} : tensor<100x64xf32> -> tensor<100x64xi8>, tensor<100x1xf32>
// CHECK: xfmr.linear {{.+}} : tensor<?x64xf32>, tensor<100x64xi8> -> tensor<?x100xf32>
// G64-LABEL: func.func @tied_head
// G64: xfmr.quantize %{{.+}} {layout = #xfmr.scale_layout<block [1, 64]>} : tensor<100x64xf32> -> tensor<100x64xi4>, tensor<100x1xf16>
// KEEP-LABEL: func.func @tied_head
// KEEP-NOT: xfmr.quantize
// KEEP: return
func.func @tied_head(%ids: tensor<?xi32>) -> tensor<?x100xf32> {
  %e = xfmr.weight "model.embed_tokens.weight" : tensor<100x64xf32>
  %x = xfmr.embedding %e[%ids] : tensor<100x64xf32>, tensor<?xi32> -> tensor<?x64xf32>
  %z = xfmr.linear %x, %e : tensor<?x64xf32>, tensor<100x64xf32> -> tensor<?x100xf32>
  return %z : tensor<?x100xf32>
}

// -----

// Routed experts: int4 stacks with an f16 scale per row and group, the input
// int8 per token, the SwiGLU output too (activation_group = inter).
// CHECK-LABEL: func.func @experts
// CHECK-SAME: (%[[H:[^:]+]]: tensor<?x64xf32>
// CHECK: %[[G:.+]], %[[GS:.+]] = xfmr.quantize %{{.+}} {layout = #xfmr.scale_layout<block [1, 32]>} : tensor<8x96x64xbf16> -> tensor<8x96x64xi4>, tensor<8x96x2xf16>
// CHECK: %[[U:.+]], %[[US:.+]] = xfmr.quantize %{{.+}} : tensor<8x96x64xbf16> -> tensor<8x96x64xi4>, tensor<8x96x2xf16>
// CHECK: %[[D:.+]], %[[DS:.+]] = xfmr.quantize %{{.+}} : tensor<8x64x96xbf16> -> tensor<8x64x96xi4>, tensor<8x64x3xf16>
// CHECK: %[[HQ:.+]], %[[HS:.+]] = xfmr.quantize %[[H]] {layout = #xfmr.scale_layout<block [1, 64]>} : tensor<?x64xf32> -> tensor<?x64xi8>, tensor<?x1xf32>
// CHECK: %[[HD:.+]] = xfmr.dequantize %[[HQ]], %[[HS]]
// CHECK: xfmr.moe_experts %[[HD]], %{{.+}}, %{{.+}}, %[[G]], %[[U]], %[[D]] scales(%[[GS]], %[[US]], %[[DS]] : tensor<8x96x2xf16>, tensor<8x96x2xf16>, tensor<8x64x3xf16>)
// CHECK-SAME: activation_group = 96
// CHECK-SAME: scale_layout = #xfmr.scale_layout<block [1, 32]>
// The expert kernels scale whole 16-weight vectors: groups of 40 leave the
// experts W8A8, as xfmr-quantize-int8 makes them, and so does experts=int8.
// G40-LABEL: func.func @experts
// G40: xfmr.quantize %{{.+}} {layout = #xfmr.scale_layout<block [1, 96]>} : tensor<8x96x64xbf16> -> tensor<8x96x64xi8>, tensor<8x96x1xf32>
// G40: xfmr.moe_experts
// G40-SAME: activation_group = 96
func.func @experts(%h: tensor<?x64xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>) -> tensor<?x64xf32> {
  %eg = xfmr.weight "model.layers.0.block_sparse_moe.experts.*.w1.weight" : tensor<8x96x64xbf16>
  %eu = xfmr.weight "model.layers.0.block_sparse_moe.experts.*.w3.weight" : tensor<8x96x64xbf16>
  %ed = xfmr.weight "model.layers.0.block_sparse_moe.experts.*.w2.weight" : tensor<8x64x96xbf16>
  %y = xfmr.moe_experts %h, %w, %i, %eg, %eu, %ed {dispatch = #xfmr<moe_dispatch grouped>}
      : tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>,
        tensor<8x96x64xbf16>, tensor<8x96x64xbf16>, tensor<8x64x96xbf16> -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
