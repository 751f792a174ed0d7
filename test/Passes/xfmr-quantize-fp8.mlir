// RUN: xfmr-opt %s --xfmr-quantize-fp8 --split-input-file | FileCheck %s
// RUN: xfmr-opt %s --xfmr-quantize-fp8="activations=false granularity=channel" --split-input-file | FileCheck %s --check-prefix=CHANNEL
// RUN: xfmr-opt %s --xfmr-quantize-fp8="format=e4m3fnuz granularity=tensor keep=q_proj" --split-input-file | FileCheck %s --check-prefix=FNUZ
// RUN: xfmr-opt %s --xfmr-quantize-fp8="keep=shared_experts" --split-input-file | FileCheck %s --check-prefix=KEEP

// CHECK-LABEL: func.func @linear
// CHECK-SAME: (%[[X:.+]]: tensor<?x300xf32>)
// The weight is quantized in 128 x 128 blocks (edge blocks partial: 2 x 3).
// CHECK: %[[W:.+]] = xfmr.weight "model.layers.0.self_attn.q_proj.weight" : tensor<200x300xbf16>
// CHECK: %[[WQ:.+]], %[[WS:.+]] = xfmr.quantize %[[W]] {layout = #xfmr.scale_layout<block [128, 128]>} : tensor<200x300xbf16> -> tensor<200x300xf8E4M3FN>, tensor<2x3xf32>
// The input is quantized per token in groups of 128 channels.
// CHECK: %[[XQ:.+]], %[[XS:.+]] = xfmr.quantize %[[X]] {layout = #xfmr.scale_layout<block [1, 128]>} : tensor<?x300xf32> -> tensor<?x300xf8E4M3FN>, tensor<?x3xf32>
// CHECK: %[[XD:.+]] = xfmr.dequantize %[[XQ]], %[[XS]] {layout = #xfmr.scale_layout<block [1, 128]>}
// CHECK: xfmr.linear %[[XD]], %[[WQ]] scale(%[[WS]] : tensor<2x3xf32>) {scale_layout = #xfmr.scale_layout<block [128, 128]>} : tensor<?x300xf32>, tensor<200x300xf8E4M3FN> -> tensor<?x200xf32>
// The LM head stays bf16.
// CHECK: %[[HEAD:.+]] = xfmr.weight "lm_head.weight" : tensor<64x200xbf16>
// CHECK: xfmr.linear %{{.+}}, %[[HEAD]] : tensor<?x200xf32>, tensor<64x200xbf16> -> tensor<?x64xf32>

// CHANNEL-LABEL: func.func @linear
// CHANNEL-NOT: xfmr.dequantize
// CHANNEL: xfmr.quantize %{{.+}} {layout = #xfmr.scale_layout<block [1, 300]>} : tensor<200x300xbf16> -> tensor<200x300xf8E4M3FN>, tensor<200x1xf32>
// CHANNEL: xfmr.linear %{{.+}}, %{{.+}} scale(%{{.+}} : tensor<200x1xf32>)

// FNUZ-LABEL: func.func @linear
// FNUZ-NOT: xfmr.quantize %{{.+}} : tensor<200x300xbf16>
// FNUZ: xfmr.quantize %{{.+}} {layout = #xfmr.scale_layout<block [64, 200]>} : tensor<64x200xbf16> -> tensor<64x200xf8E4M3FNUZ>, tensor<1x1xf32>
func.func @linear(%x: tensor<?x300xf32>) -> tensor<?x64xf32> {
  %w = xfmr.weight "model.layers.0.self_attn.q_proj.weight" : tensor<200x300xbf16>
  %y = xfmr.linear %x, %w : tensor<?x300xf32>, tensor<200x300xbf16> -> tensor<?x200xf32>
  %h = xfmr.weight "lm_head.weight" : tensor<64x200xbf16>
  %z = xfmr.linear %y, %h : tensor<?x200xf32>, tensor<64x200xbf16> -> tensor<?x64xf32>
  return %z : tensor<?x64xf32>
}

// -----

// A native FP8 linear keeps its weights and gains activation quantization.
// CHECK-LABEL: func.func @native_fp8
// CHECK: %[[XQ:.+]], %[[XS:.+]] = xfmr.quantize
// CHECK: %[[XD:.+]] = xfmr.dequantize %[[XQ]], %[[XS]]
// CHECK: xfmr.linear %[[XD]], %{{.+}} scale(
// CHECK-NOT: xfmr.quantize
func.func @native_fp8(%x: tensor<?x64xf32>, %w: tensor<32x64xf8E4M3FN>, %s: tensor<1x1xf32>) -> tensor<?x32xf32> {
  %y = xfmr.linear %x, %w scale(%s : tensor<1x1xf32>) {scale_layout = #xfmr.scale_layout<block [128, 128]>}
      : tensor<?x64xf32>, tensor<32x64xf8E4M3FN> -> tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}

// -----

// Expert stacks are quantized per expert; the router stays high precision.
// CHECK-LABEL: func.func @experts
// CHECK: xfmr.moe_gate %{{.+}}, %{{.+}} {{.*}}: tensor<?x64xf32>, tensor<4x64xf32>
// CHECK: xfmr.quantize %{{.+}} {layout = #xfmr.scale_layout<block [128, 128]>} : tensor<4x96x64xf32> -> tensor<4x96x64xf8E4M3FN>, tensor<4x1x1xf32>
// CHECK: xfmr.quantize %{{.+}} {layout = #xfmr.scale_layout<block [128, 128]>} : tensor<4x96x64xf32> -> tensor<4x96x64xf8E4M3FN>, tensor<4x1x1xf32>
// CHECK: xfmr.quantize %{{.+}} {layout = #xfmr.scale_layout<block [128, 128]>} : tensor<4x64x96xf32> -> tensor<4x64x96xf8E4M3FN>, tensor<4x1x1xf32>
// As for every FP8 linear, the experts' input is quantized per token (1x128)
// and, in the kernel, each expert's SwiGLU output (activation_group).
// CHECK: %[[Q:.+]], %[[S:.+]] = xfmr.quantize %[[X:[^ ]+]] {layout = #xfmr.scale_layout<block [1, 128]>} : tensor<?x64xf32> -> tensor<?x64xf8E4M3FN>, tensor<?x1xf32>
// CHECK: %[[D:.+]] = xfmr.dequantize %[[Q]], %[[S]]
// CHECK: xfmr.moe_experts %[[D]], {{.*}} scales({{.*}}) {activation_group = 128 : i64, scale_layout = #xfmr.scale_layout<block [128, 128]>}
// Weights only: no activation group. Per-channel scales for all three stacks
// (gate/up [4, 96, 64], down [4, 64, 96]) share one layout: a block one row
// high and as wide as the widest row.
// CHANNEL-LABEL: func.func @experts
// CHANNEL: xfmr.quantize %{{.+}} {layout = #xfmr.scale_layout<block [1, 96]>} : tensor<4x96x64xf32> -> tensor<4x96x64xf8E4M3FN>, tensor<4x96x1xf32>
// CHANNEL: xfmr.quantize %{{.+}} {layout = #xfmr.scale_layout<block [1, 96]>} : tensor<4x64x96xf32> -> tensor<4x64x96xf8E4M3FN>, tensor<4x64x1xf32>
// CHANNEL-NOT: activation_group
// CHANNEL: xfmr.moe_experts {{.*}}scale_layout = #xfmr.scale_layout<block [1, 96]>
func.func @experts(%x: tensor<?x64xf32>) -> tensor<?x64xf32> {
  %g = xfmr.weight "gate" : tensor<4x64xf32>
  %w, %i = xfmr.moe_gate %x, %g {scoring = #xfmr<scoring softmax>, top_k = 2 : i64, norm_topk_prob = true}
      : tensor<?x64xf32>, tensor<4x64xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %eg = xfmr.weight "experts.*.w1.weight" : tensor<4x96x64xf32>
  %eu = xfmr.weight "experts.*.w3.weight" : tensor<4x96x64xf32>
  %ed = xfmr.weight "experts.*.w2.weight" : tensor<4x64x96xf32>
  %y = xfmr.moe_experts %x, %w, %i, %eg, %eu, %ed
      : tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<4x96x64xf32>, tensor<4x96x64xf32>, tensor<4x64x96xf32> -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// A fused shared expert (xfmr-fuse-shared-experts) is quantized with the
// routed stacks, in their layout. Kept in high precision (keep=...), or with
// already FP8, it stays as it is while the routed experts are quantized.
// CHECK-LABEL: func.func @shared_experts
// CHECK: xfmr.moe_experts {{.*}} scales({{.*}}) shared({{.*}} : tensor<32x64xf8E4M3FN>, tensor<32x64xf8E4M3FN>, tensor<64x32xf8E4M3FN>) shared_scales({{.*}} : tensor<1x1xf32>, tensor<1x1xf32>, tensor<1x1xf32>)
// KEEP-LABEL: func.func @shared_experts
// KEEP: xfmr.moe_experts {{.*}} scales({{.*}}) shared({{.*}} : tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x32xf32>) {
func.func @shared_experts(%x: tensor<?x64xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>) -> tensor<?x64xf32> {
  %eg = xfmr.weight "experts.*.gate_proj.weight" : tensor<4x96x64xf32>
  %eu = xfmr.weight "experts.*.up_proj.weight" : tensor<4x96x64xf32>
  %ed = xfmr.weight "experts.*.down_proj.weight" : tensor<4x64x96xf32>
  %sg = xfmr.weight "shared_experts.gate_proj.weight" : tensor<32x64xf32>
  %su = xfmr.weight "shared_experts.up_proj.weight" : tensor<32x64xf32>
  %sd = xfmr.weight "shared_experts.down_proj.weight" : tensor<64x32xf32>
  %y = xfmr.moe_experts %x, %w, %i, %eg, %eu, %ed shared(%sg, %su, %sd : tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x32xf32>)
      : tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<4x96x64xf32>, tensor<4x96x64xf32>, tensor<4x64x96xf32> -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
