// RUN: xfmr-opt %s --xfmr-quantize-int8 --split-input-file | FileCheck %s
// RUN: xfmr-opt %s --xfmr-quantize-int8="keep=q_proj,lm_head" --split-input-file | FileCheck %s --check-prefix=KEEP

// CHECK-LABEL: func.func @linear
// CHECK-SAME: (%[[X:.+]]: tensor<?x300xf32>)
// The weight gets one scale per output channel, the input one per token.
// CHECK: %[[W:.+]] = xfmr.weight "model.layers.0.self_attn.q_proj.weight" : tensor<200x300xbf16>
// CHECK: %[[WQ:.+]], %[[WS:.+]] = xfmr.quantize %[[W]] {layout = #xfmr.scale_layout<block [1, 300]>} : tensor<200x300xbf16> -> tensor<200x300xi8>, tensor<200x1xf32>
// CHECK: %[[XQ:.+]], %[[XS:.+]] = xfmr.quantize %[[X]] {layout = #xfmr.scale_layout<block [1, 300]>} : tensor<?x300xf32> -> tensor<?x300xi8>, tensor<?x1xf32>
// CHECK: %[[XD:.+]] = xfmr.dequantize %[[XQ]], %[[XS]] {layout = #xfmr.scale_layout<block [1, 300]>}
// CHECK: %[[Y:.+]] = xfmr.linear %[[XD]], %[[WQ]] bias(%{{.+}} : tensor<200xf32>) scale(%[[WS]] : tensor<200x1xf32>) {scale_layout = #xfmr.scale_layout<block [1, 300]>} : tensor<?x300xf32>, tensor<200x300xi8> -> tensor<?x200xf32>
// The LM head stays bf16.
// CHECK: %[[HEAD:.+]] = xfmr.weight "lm_head.weight" : tensor<64x200xbf16>
// CHECK: xfmr.linear %[[Y]], %[[HEAD]] : tensor<?x200xf32>, tensor<64x200xbf16> -> tensor<?x64xf32>

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

// -----

// Linears that already have quantized weights or inputs (FP8 from
// xfmr-quantize-fp8, or a native FP8 checkpoint) are left alone.
// CHECK-LABEL: func.func @already_quantized
// CHECK-NOT: xi8>
// CHECK: return
func.func @already_quantized(%x: tensor<?x256xf32>) -> tensor<?x128xf32> {
  %w = xfmr.weight "model.layers.0.mlp.down_proj.weight" : tensor<128x256xf8E4M3FN>
  %s = xfmr.weight "model.layers.0.mlp.down_proj.weight_scale_inv" : tensor<1x2xf32>
  %y = xfmr.linear %x, %w scale(%s : tensor<1x2xf32>) {scale_layout = #xfmr.scale_layout<block [128, 128]>} : tensor<?x256xf32>, tensor<128x256xf8E4M3FN> -> tensor<?x128xf32>
  return %y : tensor<?x128xf32>
}

// -----

// An input wider than 65536 could overflow the kernels' int32 sums: kept.
// CHECK-LABEL: func.func @too_wide
// CHECK-NOT: xfmr.quantize
// CHECK: return
func.func @too_wide(%x: tensor<?x65540xf32>) -> tensor<?x16xf32> {
  %w = xfmr.weight "model.layers.0.mlp.down_proj.weight" : tensor<16x65540xbf16>
  %y = xfmr.linear %x, %w : tensor<?x65540xf32>, tensor<16x65540xbf16> -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// -----

// Routed experts: each expert's rows get a scale (one block as wide as the
// widest row: 96), the input one per token, the SwiGLU output one per token
// (activation_group = the intermediate size).
// CHECK-LABEL: func.func @experts
// CHECK: %[[G:.+]], %[[GS:.+]] = xfmr.quantize %{{.+}} {layout = #xfmr.scale_layout<block [1, 96]>} : tensor<8x96x64xbf16> -> tensor<8x96x64xi8>, tensor<8x96x1xf32>
// CHECK: %[[D:.+]], %[[DS:.+]] = xfmr.quantize %{{.+}} {layout = #xfmr.scale_layout<block [1, 96]>} : tensor<8x64x96xbf16> -> tensor<8x64x96xi8>, tensor<8x64x1xf32>
// CHECK: %[[XQ:.+]], %[[XS:.+]] = xfmr.quantize %{{.+}} {layout = #xfmr.scale_layout<block [1, 64]>} : tensor<?x64xf32> -> tensor<?x64xi8>, tensor<?x1xf32>
// CHECK: %[[XD:.+]] = xfmr.dequantize %[[XQ]], %[[XS]]
// CHECK: xfmr.moe_experts %[[XD]], %{{.+}}, %{{.+}}, %[[G]], %{{.+}}, %[[D]] scales(%[[GS]], %{{.+}}, %[[DS]] : tensor<8x96x1xf32>, tensor<8x96x1xf32>, tensor<8x64x1xf32>) {activation_group = 96 : i64, dispatch = #xfmr<moe_dispatch grouped>, scale_layout = #xfmr.scale_layout<block [1, 96]>}
func.func @experts(%h: tensor<?x64xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>) -> tensor<?x64xf32> {
  %eg = xfmr.weight "model.layers.0.block_sparse_moe.experts.*.w1.weight" : tensor<8x96x64xbf16>
  %eu = xfmr.weight "model.layers.0.block_sparse_moe.experts.*.w3.weight" : tensor<8x96x64xbf16>
  %ed = xfmr.weight "model.layers.0.block_sparse_moe.experts.*.w2.weight" : tensor<8x64x96xbf16>
  %y = xfmr.moe_experts %h, %w, %i, %eg, %eu, %ed {dispatch = #xfmr<moe_dispatch grouped>}
      : tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>,
        tensor<8x96x64xbf16>, tensor<8x96x64xbf16>, tensor<8x64x96xbf16> -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
