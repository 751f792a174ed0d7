// Int4 routed experts (xfmr-quantize-int4): the stacks are stored row-major,
// two codes + 8 a byte ([8, 95, 64] i4 -> [8, 95, 32] bytes, 24320; [8, 64,
// 95] -> [8, 64, 48]), not in panels, with f16 scales per row and group of
// 32; the MoE kernel widens 16 codes at a time (8 bytes: a mask, a shift, an
// interleave). Tiles of 8 x rows by 2 weight rows scale each widened vector
// as they load it; a single x row (decode) sums x . nibbles and x over each
// group and at the group's end adds (x . nibbles - 8 sum(x)) x scale. It
// quantizes the SwiGLU output to int8 per token (act95).
// RUN: xfmr-opt %s --xfmr-quantize-int4 --xfmr-plan-memory=weight-panels --xfmr-lower-to-kernels --canonicalize | FileCheck %s

// CHECK: #xfmr.weight_slot<source = "experts.*.w1.weight", offset = {{[0-9]+}}, bytes = 24320, type = tensor<8x95x64xi4>, transform = #xfmr.quantized_weight<part = codes, layout = <block [1, 32]>, source_type = tensor<8x95x64xbf16>>>
// CHECK-SAME: #xfmr.weight_slot<source = "experts.*.w1.weight", offset = {{[0-9]+}}, bytes = 3040, type = tensor<8x95x2xf16>, transform = #xfmr.quantized_weight<part = scales, layout = <block [1, 32]>, source_type = tensor<8x95x64xbf16>>>
// CHECK-SAME: #xfmr.weight_slot<source = "experts.*.w2.weight", offset = {{[0-9]+}}, bytes = 24576, type = tensor<8x64x95xi4>
// CHECK-LABEL: func.func @prefill
// CHECK: %[[GATE:.+]] = memref.view %arg2[%{{.+}}][] : memref<?xi8> to memref<8x95x32xi8>
// CHECK: %[[DOWN:.+]] = memref.view %arg2[%{{.+}}][] : memref<?xi8> to memref<8x64x48xi8>
// CHECK: call @xfmr_fake_quantize_64_g64_i8
// CHECK: call @xfmr_moe_experts_8x95x64_k2_i4_b1x32_grouped_act95({{.+}}) : (memref<?x64xf32>, memref<?x2xf32>, memref<?x2xi32>, memref<8x95x32xi8>, memref<8x95x32xi8>, memref<8x64x48xi8>, memref<8x95x2xf16>, memref<8x95x2xf16>, memref<8x64x3xf16>, memref<8xi64>, memref<?x64xf32>)
// CHECK-LABEL: func.func private @xfmr_moe_experts_8x95x64_k2_i4_b1x32_grouped_act95
// 8 x 2 tiles: 16 sums, each vector of codes scaled as it is loaded.
// CHECK: scf.for %{{.+}} = %c0 to %c64 step %c16 iter_args({{.+}}) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>)
// CHECK: vector.interleave
// CHECK: %[[TILESCALE:.+]] = memref.load %arg6[{{.+}}] : memref<8x95x2xf16>
// CHECK-NEXT: arith.extf %[[TILESCALE]] : f16 to f32
// One x row: a total over the groups, within a group x . nibbles and sum(x).
// CHECK: scf.for %[[G:.+]] = %c0 to %c2 step %c1 iter_args({{.+}}) -> (vector<16xf32>)
// CHECK: %[[SUMS:.+]]:2 = scf.for %{{.+}} step %c16
// CHECK: %[[BYTES:.+]] = vector.load %arg3[{{.+}}] : memref<8x95x32xi8>, vector<8xi8>
// CHECK-NEXT: %[[LOW:.+]] = arith.andi %[[BYTES]], %{{.+}} : vector<8xi8>
// CHECK-NEXT: %[[HIGH:.+]] = arith.shrui %[[BYTES]], %{{.+}} : vector<8xi8>
// CHECK-NEXT: %[[CODES:.+]] = vector.interleave %[[LOW]], %[[HIGH]] : vector<8xi8> -> vector<16xi8>
// CHECK-NEXT: %[[VALUES:.+]] = arith.uitofp %[[CODES]] : vector<16xi8> to vector<16xf32>
// CHECK: vector.fma %{{.+}}, %[[VALUES]], %{{.+}} : vector<16xf32>
// CHECK: %[[SCALE:.+]] = memref.load %arg6[%{{.+}}, %{{.+}}, %[[G]]] : memref<8x95x2xf16>
// CHECK-NEXT: arith.extf %[[SCALE]] : f16 to f32
// CHECK: %[[EXACT:.+]] = vector.fma %[[SUMS]]#1, %{{.+}}, %[[SUMS]]#0 : vector<16xf32>
// CHECK-NEXT: vector.fma %[[EXACT]], %{{.+}}, %{{.+}} : vector<16xf32>
// The down projection's 95 inputs end in 15 single codes (the last byte's
// high nibble unused): a byte each, shifted by 0 or 4.
// CHECK: memref.load %arg5[{{.+}}] : memref<8x64x48xi8>
// CHECK: arith.shrui %{{.+}}, %{{.+}} : i8
module attributes {xfmr.target = #xfmr.target<kind = "cpu", triple = "x86_64-pc-linux-gnu", chip = "znver4", features = "+avx512f,+avx512bf16,+avx512vnni">} {
func.func @prefill(%ids: tensor<?xi32>, %start: index) -> tensor<?x64xf32> attributes {xfmr.entry = "prefill"} {
  %e = xfmr.weight "embed" : tensor<64x64xf32>
  %x = xfmr.embedding %e[%ids] : tensor<64x64xf32>, tensor<?xi32> -> tensor<?x64xf32>
  %g = xfmr.weight "gate" : tensor<8x64xf32>
  %w, %i = xfmr.moe_gate %x, %g {scoring = #xfmr<scoring softmax>, top_k = 2 : i64, norm_topk_prob = true}
      : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %eg = xfmr.weight "experts.*.w1.weight" : tensor<8x95x64xbf16>
  %eu = xfmr.weight "experts.*.w3.weight" : tensor<8x95x64xbf16>
  %ed = xfmr.weight "experts.*.w2.weight" : tensor<8x64x95xbf16>
  %y = xfmr.moe_experts %x, %w, %i, %eg, %eu, %ed {dispatch = #xfmr<moe_dispatch grouped>}
      : tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>,
        tensor<8x95x64xbf16>, tensor<8x95x64xbf16>, tensor<8x64x95xbf16> -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
}
