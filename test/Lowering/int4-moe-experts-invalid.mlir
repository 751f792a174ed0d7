// The expert kernels widen int4 stacks 16 codes at a time and scale whole
// vectors: groups of 8 (hand-written here; xfmr-quantize-int4 makes such
// experts int8) are refused by name, not miscompiled.
// RUN: xfmr-opt %s --xfmr-plan-memory=weight-panels --xfmr-lower-to-kernels -verify-diagnostics

module attributes {xfmr.target = #xfmr.target<kind = "cpu", triple = "x86_64-pc-linux-gnu", chip = "znver4", features = "+avx512f,+avx512bf16,+avx512vnni">} {
func.func @prefill(%ids: tensor<?xi32>, %start: index) -> tensor<?x64xf32> attributes {xfmr.entry = "prefill"} {
  %e = xfmr.weight "embed" : tensor<64x64xf32>
  %x = xfmr.embedding %e[%ids] : tensor<64x64xf32>, tensor<?xi32> -> tensor<?x64xf32>
  %g = xfmr.weight "gate" : tensor<8x64xf32>
  %w, %i = xfmr.moe_gate %x, %g {scoring = #xfmr<scoring softmax>, top_k = 2 : i64, norm_topk_prob = true}
      : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %eg = xfmr.weight "experts.*.w1.weight" : tensor<8x96x64xbf16>
  %eu = xfmr.weight "experts.*.w3.weight" : tensor<8x96x64xbf16>
  %ed = xfmr.weight "experts.*.w2.weight" : tensor<8x64x96xbf16>
  %gq, %gs = xfmr.quantize %eg {layout = #xfmr.scale_layout<block [1, 8]>} : tensor<8x96x64xbf16> -> tensor<8x96x64xi4>, tensor<8x96x8xf16>
  %uq, %us = xfmr.quantize %eu {layout = #xfmr.scale_layout<block [1, 8]>} : tensor<8x96x64xbf16> -> tensor<8x96x64xi4>, tensor<8x96x8xf16>
  %dq, %ds = xfmr.quantize %ed {layout = #xfmr.scale_layout<block [1, 8]>} : tensor<8x64x96xbf16> -> tensor<8x64x96xi4>, tensor<8x64x12xf16>
  // expected-error @+1 {{multiplies int4 expert stacks, which need f16 scales in groups [1, 16k]}}
  %y = xfmr.moe_experts %x, %w, %i, %gq, %uq, %dq scales(%gs, %us, %ds : tensor<8x96x8xf16>, tensor<8x96x8xf16>, tensor<8x64x12xf16>)
      {dispatch = #xfmr<moe_dispatch grouped>, scale_layout = #xfmr.scale_layout<block [1, 8]>}
      : tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<8x96x64xi4>, tensor<8x96x64xi4>, tensor<8x64x96xi4> -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
}
