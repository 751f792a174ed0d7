// W4A8 (xfmr-quantize-int4) in CPU-only artifacts: int4 codes [88, 100] sit in
// panels of 64 rows and octets of inputs, two codes a byte ([2, 13, 256]
// bytes: 100 inputs -> 13 octets, 6656 bytes), and their f16 scales [88, 4]
// (groups of 32) in panels of single columns ([2, 4, 64]: a group's 16 rows in
// one load). The input's quantize/dequantize pair is no kernel of its own: the
// linear quantizes each token (codes padded to whole octets, [tokens, 104],
// and each group's code sum), then per group and octet splits each 64-byte
// load into its low and high nibbles and multiplies both with vpdpbusd.
// RUN: xfmr-opt %s --split-input-file --xfmr-plan-memory=weight-panels --xfmr-lower-to-kernels --canonicalize | FileCheck %s
// Without panels (an artifact with GPU targets) int4 has no storage.
// RUN: xfmr-opt %s --split-input-file --xfmr-plan-memory -verify-diagnostics

// CHECK: #xfmr.weight_slot<source = "w", offset = 35200, bytes = 6656, type = tensor<88x100xi4>, transform = #xfmr.quantized_weight<part = codes, layout = <block [1, 32]>, source_type = tensor<88x100xbf16>>, panel = 64>
// CHECK-SAME: #xfmr.weight_slot<source = "w", offset = 41856, bytes = 1024, type = tensor<88x4xf16>, transform = #xfmr.quantized_weight<part = scales, layout = <block [1, 32]>, source_type = tensor<88x100xbf16>>, panel = 64>
// CHECK-NOT: fake_quantize
// CHECK: call @xfmr_linear_88x100_i4_b1x32_p64_ai8(%{{.+}}, %{{.+}}, %{{.+}}, %arg4) : (memref<?x100xf32>, memref<2x13x256xi8>, memref<2x4x64xf16>, memref<?x88xf32>)
// CHECK-LABEL: func.func private @xfmr_linear_88x100_i4_b1x32_p64_ai8
// CHECK: %[[CODES:.+]] = memref.alloc(%{{.+}}) : memref<?x104xi8>
// CHECK: %[[SUMS:.+]] = memref.alloc(%{{.+}}) : memref<?x4xi32>
// Each group's code sum, an octet a step.
// CHECK: vector.load %[[CODES]]{{.+}} : memref<?x104xi8>, vector<8xi8>
// CHECK: vector.reduction <add>
// Tiles of 3 tokens x 4 vectors: f32 sums over the groups, int32 within one.
// CHECK: %{{.+}}:12 = scf.for %{{.+}} = %c0 to %c4 step %c1 iter_args({{.+}}) -> (vector<16xf32>
// CHECK: %{{.+}}:12 = scf.for {{.+}} -> (vector<16xi32>
// CHECK: %[[RAW:.+]] = vector.load %arg1{{.+}} : memref<2x13x256xi8>, vector<64xi8>
// CHECK-NEXT: arith.andi %[[RAW]], %{{.+}} : vector<64xi8>
// CHECK-NEXT: arith.shrui %[[RAW]], %{{.+}} : vector<64xi8>
// CHECK: vector.load %[[CODES]]{{.+}} : memref<?x104xi8>, vector<4xi8>
// CHECK-COUNT-8: llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"
// After a group: its 16 f16 scales, less 8 x its code sum, into the f32 sums.
// CHECK: vector.load %arg2{{.+}} : memref<2x4x64xf16>, vector<16xf16>
// CHECK-NEXT: arith.extf %{{.+}} : vector<16xf16> to vector<16xf32>
// CHECK: memref.load %[[SUMS]]
// CHECK: arith.muli %{{.+}}, %c8_i32 : i32
// CHECK: arith.subi
// CHECK: arith.sitofp %{{.+}} : vector<16xi32> to vector<16xf32>
// CHECK-NEXT: math.fma
// CHECK: vector.maskedstore %arg3
// CHECK: memref.dealloc %[[CODES]]
module attributes {xfmr.target = #xfmr.target<kind = "cpu", triple = "x86_64-pc-linux-gnu", chip = "znver4", features = "+avx512f,+avx512bf16,+avx512vnni">} {
func.func @prefill(%ids: tensor<?xi32>, %start: index) -> tensor<?x88xf32> attributes {xfmr.entry = "prefill"} {
  %e = xfmr.weight "embed" : tensor<88x100xf32>
  %h = xfmr.embedding %e[%ids] : tensor<88x100xf32>, tensor<?xi32> -> tensor<?x100xf32>
  %w = xfmr.weight "w" : tensor<88x100xbf16>
  // expected-error @+1 {{int4 weights are stored in the CPU's panels only}}
  %q, %s = xfmr.quantize %w {layout = #xfmr.scale_layout<block [1, 32]>}
      : tensor<88x100xbf16> -> tensor<88x100xi4>, tensor<88x4xf16>
  %hq, %hs = xfmr.quantize %h {layout = #xfmr.scale_layout<block [1, 100]>}
      : tensor<?x100xf32> -> tensor<?x100xi8>, tensor<?x1xf32>
  %hd = xfmr.dequantize %hq, %hs {layout = #xfmr.scale_layout<block [1, 100]>}
      : tensor<?x100xi8>, tensor<?x1xf32> -> tensor<?x100xf32>
  %y = xfmr.linear %hd, %q scale(%s : tensor<88x4xf16>) {scale_layout = #xfmr.scale_layout<block [1, 32]>}
      : tensor<?x100xf32>, tensor<88x100xi4> -> tensor<?x88xf32>
  return %y : tensor<?x88xf32>
}
}
