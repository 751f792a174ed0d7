// Linear layers of CPU-only artifacts (xfmr-plan-memory weight-panels): a bf16
// weight [88, 101] is stored in panels of 64 rows, each pair of input columns
// of a panel's rows together: [2, 51, 128] (88 -> 128 rows, 101 -> 51 pairs,
// zero-padded; 26112 bytes).
// RUN: xfmr-opt %s --split-input-file --xfmr-plan-memory=weight-panels --xfmr-lower-to-kernels --canonicalize | FileCheck %s
// --precise: f32 activations; the same weights.
// RUN: xfmr-opt %s --split-input-file --xfmr-plan-memory=weight-panels --xfmr-lower-to-kernels=precise --canonicalize | FileCheck %s --check-prefix=PRECISE
// Without the option (artifacts with GPU targets) the weight stays [88, 101].
// RUN: xfmr-opt %s --split-input-file --xfmr-plan-memory --xfmr-lower-to-kernels --canonicalize | FileCheck %s --check-prefix=ROWS

// CHECK: #xfmr.weight_slot<source = "w", offset = 35584, bytes = 26112, type = tensor<88x101xbf16>, panel = 64>
// CHECK: %[[PANELS:.+]] = memref.view %arg2[%c35584][] : memref<?xi8> to memref<2x51x128xbf16>
// CHECK: call @xfmr_linear_88x101_bf16_p64_bias_bf16_abf16(%{{.+}}, %[[PANELS]],
// AVX512-BF16: the activations become bf16 pairs (rounded to nearest even:
// + 0x7FFF + lsb, low half cleared), 32 inputs per step, the last 5 one by one
// (the 102nd input is the zero padding).
// CHECK-LABEL: func.func private @xfmr_linear_88x101_bf16_p64_bias_bf16_abf16
// CHECK: %[[PAIRS:.+]] = memref.alloc(%{{.+}}) : memref<?x51xi32>
// CHECK: scf.for %{{.+}} = %c0 to %c96 step %c32
// CHECK: arith.addi %{{.+}}, %cst{{.*}} : vector<32xi32>
// CHECK: arith.trunci %{{.+}} : vector<32xi32> to vector<32xi16>
// CHECK: vector.store %{{.+}}, %[[PAIRS]]{{.+}} : memref<?x51xi32>, vector<16xi32>
// CHECK: memref.store %{{.+}}, %[[PAIRS]][%{{.+}}, %c50]
// Tiles of 6 tokens x one panel: 24 sums, 4 weight loads and 6 broadcast
// pairs per input pair, 24 vdpbf16ps.
// CHECK: %{{.+}}:24 = scf.for %{{.+}} = %c0 to %c51 step %c1 iter_args
// CHECK-COUNT-4: vector.load %{{.+}} : memref<2x51x128xbf16>, vector<32xbf16>
// CHECK: memref.load %[[PAIRS]]
// CHECK-NEXT: vector.broadcast %{{.+}} : i32 to vector<16xi32>
// CHECK-NEXT: vector.bitcast %{{.+}} : vector<16xi32> to vector<32xbf16>
// CHECK-COUNT-4: x86vector.avx512.dot
// The last panel passes output 88: masked bias loads and stores.
// CHECK: vector.create_mask
// CHECK: vector.maskedload %arg2
// CHECK: vector.maskedstore %arg3
// Leftover tokens (all of decode): one row, 4 sums.
// CHECK: %{{.+}}:4 = scf.for %{{.+}} = %c0 to %c51 step %c1 iter_args
// CHECK: memref.dealloc %[[PAIRS]]

// PRECISE-LABEL: func.func private @xfmr_linear_88x101_bf16_p64_bias_bf16_af32
// An odd input length: an f32 copy padded with a zero, not rounded.
// PRECISE: memref.alloc(%{{.+}}) : memref<?x102xf32>
// PRECISE-NOT: 32767
// PRECISE: scf.for
// Each weight pair widens to two f32 vectors (a shift, a mask) for two FMAs.
// PRECISE: arith.shli %{{.+}}, %{{.+}} : vector<16xi32>
// PRECISE: arith.andi %{{.+}}, %{{.+}} : vector<16xi32>
// PRECISE-NOT: x86vector
// PRECISE: vector.fma
// PRECISE: vector.fma

// ROWS: #xfmr.weight_slot<source = "w", offset = 35584, bytes = 17776, type = tensor<88x101xbf16>>
// ROWS: func.func private @xfmr_linear_88x101_bf16_bias_bf16(

module attributes {xfmr.target = #xfmr.target<kind = "cpu", triple = "x86_64-pc-linux-gnu", chip = "znver4", features = "+avx512f,+avx512bf16">} {
func.func @prefill(%ids: tensor<?xi32>, %start: index) -> tensor<?x88xf32> attributes {xfmr.entry = "prefill"} {
  %e = xfmr.weight "embed" : tensor<88x101xf32>
  %h = xfmr.embedding %e[%ids] : tensor<88x101xf32>, tensor<?xi32> -> tensor<?x101xf32>
  %w = xfmr.weight "w" : tensor<88x101xbf16>
  %b = xfmr.weight "b" : tensor<88xbf16>
  %y = xfmr.linear %h, %w bias(%b : tensor<88xbf16>) : tensor<?x101xf32>, tensor<88x101xbf16> -> tensor<?x88xf32>
  return %y : tensor<?x88xf32>
}
}

// -----

// Without AVX512-BF16 (x86-64-v3): the same rounding, then two FMAs per
// weight pair on the rounded f32 values; one token per tile.
// CHECK-LABEL: func.func private @xfmr_linear_64x64_bf16_p64_abf16
// CHECK: memref.alloc(%{{.+}}) : memref<?x64xf32>
// CHECK: arith.andi %{{.+}}, %cst{{.*}} : vector<32xi32>
// CHECK-NOT: x86vector
// CHECK: %{{.+}}:4 = scf.for %{{.+}} = %c0 to %c32 step %c1 iter_args
// CHECK-COUNT-8: vector.fma
// CHECK-NOT: vector.maskedstore
// PRECISE-LABEL: func.func private @xfmr_linear_64x64_bf16_p64_af32
// An even length needs no copy: the input is read in place.
// PRECISE-NOT: memref.alloc
// PRECISE: return
module attributes {xfmr.target = #xfmr.target<kind = "cpu", triple = "x86_64-pc-linux-gnu", chip = "x86-64-v3", features = "+avx2,+fma">} {
func.func @prefill(%ids: tensor<?xi32>, %start: index) -> tensor<?x64xf32> attributes {xfmr.entry = "prefill"} {
  %e = xfmr.weight "embed" : tensor<64x64xf32>
  %h = xfmr.embedding %e[%ids] : tensor<64x64xf32>, tensor<?xi32> -> tensor<?x64xf32>
  %w = xfmr.weight "w" : tensor<64x64xbf16>
  %y = xfmr.linear %h, %w : tensor<?x64xf32>, tensor<64x64xbf16> -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
}

// -----

// FP8 codes quantized at compile time sit in panels too (the scales stay
// [rows / 128, cols / 64]). The weights stay exact: the dot products multiply
// the codes, widened to bf16 by two vpermi2b byte-table lookups per 64 codes
// (AVX512-VBMI; the codes' sign joins the high bytes, the bytes interleave),
// and each block of 32 input pairs adds its sums times its scale to y, which
// starts at zero (or the bias). From 2 tokens on, a panel is converted once into a bf16
// panel (back in row order) the 6-token tiles read; decode widens as it reads.
// CHECK: #xfmr.weight_slot<source = "w", offset = 32768, bytes = 8192, type = tensor<128x64xf8E4M3FN>, transform = #xfmr.quantized_weight<part = codes, layout = <block [128, 64]>, source_type = tensor<128x64xbf16>>, panel = 64>
// CHECK-SAME: #xfmr.weight_slot<source = "w", offset = 40960, bytes = 4, type = tensor<1x1xf32>, transform = #xfmr.quantized_weight<part = scales
// CHECK-LABEL: func.func private @xfmr_linear_128x64_f8e4m3fn_b128x64_p64_abf16
// CHECK-SAME: memref<2x32x128xi8>
// CHECK: scf.if
// CHECK: %[[PANEL:.+]] = memref.alloc() : memref<1x32x128xbf16>
// CHECK: vector.load %arg1{{.+}} : memref<2x32x128xi8>, vector<64xi8>
// CHECK: llvm.call_intrinsic "llvm.x86.avx512.vpermi2var.qi.512"
// CHECK: llvm.call_intrinsic "llvm.x86.avx512.vpermi2var.qi.512"
// CHECK: arith.ori
// CHECK: vector.shuffle {{.+}} [0, 64, 1, 65, 2, 66, 3, 67, 4, 68, 5, 69, 6, 70, 7, 71, 16, 80,
// CHECK: vector.shuffle {{.+}} : vector<16xi32>, vector<16xi32>
// CHECK: vector.store %{{.+}}, %[[PANEL]]
// (One block of 32 pairs here: its loop folds away.)
// CHECK: %{{.+}}:24 = scf.for %{{.+}} = %c0 to %c32 step %c1 iter_args
// CHECK: vector.load %[[PANEL]]
// CHECK: x86vector.avx512.dot
// CHECK: memref.load %arg2[%{{.+}}, %c0]
// CHECK: vector.fma
// CHECK: memref.dealloc %[[PANEL]]
// CHECK: } else {
// CHECK: %{{.+}}:4 = scf.for %{{.+}} iter_args
// CHECK: vector.load %arg1{{.+}} : memref<2x32x128xi8>, vector<64xi8>
// CHECK: llvm.call_intrinsic "llvm.x86.avx512.vpermi2var.qi.512"
// CHECK: x86vector.avx512.dot
// --precise: exact f32 weights, even and odd inputs split by shuffles.
// PRECISE-LABEL: func.func private @xfmr_linear_128x64_f8e4m3fn_b128x64_p64_af32
// PRECISE-NOT: scf.if
// PRECISE: vector.shuffle
// PRECISE: vector.fma
module attributes {xfmr.target = #xfmr.target<kind = "cpu", triple = "x86_64-pc-linux-gnu", chip = "znver4", features = "+avx512f,+avx512bf16,+avx512vbmi">} {
func.func @prefill(%ids: tensor<?xi32>, %start: index) -> tensor<?x128xf32> attributes {xfmr.entry = "prefill"} {
  %e = xfmr.weight "embed" : tensor<128x64xf32>
  %h = xfmr.embedding %e[%ids] : tensor<128x64xf32>, tensor<?xi32> -> tensor<?x64xf32>
  %w = xfmr.weight "w" : tensor<128x64xbf16>
  %q, %s = xfmr.quantize %w {layout = #xfmr.scale_layout<block [128, 64]>}
      : tensor<128x64xbf16> -> tensor<128x64xf8E4M3FN>, tensor<1x1xf32>
  %y = xfmr.linear %h, %q scale(%s : tensor<1x1xf32>) {scale_layout = #xfmr.scale_layout<block [128, 64]>}
      : tensor<?x64xf32>, tensor<128x64xf8E4M3FN> -> tensor<?x128xf32>
  return %y : tensor<?x128xf32>
}
}

// -----

// AVX512-BF16 without AVX512-VBMI (Cooper Lake): the codes widen through f32
// (exact) instead of byte tables; the same block-scaled sums.
// CHECK-LABEL: func.func private @xfmr_linear_64x128_f8e4m3fn_b64x64_p64_abf16
// CHECK-NOT: llvm.call_intrinsic
// CHECK: arith.truncf %{{.+}} : vector<32xf32> to vector<32xbf16>
// CHECK-NOT: llvm.call_intrinsic
// CHECK: x86vector.avx512.dot
// CHECK-NOT: llvm.call_intrinsic
// CHECK: return
module attributes {xfmr.target = #xfmr.target<kind = "cpu", triple = "x86_64-pc-linux-gnu", chip = "cooperlake", features = "+avx512f,+avx512bf16">} {
func.func @prefill(%ids: tensor<?xi32>, %start: index) -> tensor<?x64xf32> attributes {xfmr.entry = "prefill"} {
  %e = xfmr.weight "embed" : tensor<64x128xf32>
  %h = xfmr.embedding %e[%ids] : tensor<64x128xf32>, tensor<?xi32> -> tensor<?x128xf32>
  %w = xfmr.weight "w" : tensor<64x128xbf16>
  %q, %s = xfmr.quantize %w {layout = #xfmr.scale_layout<block [64, 64]>}
      : tensor<64x128xbf16> -> tensor<64x128xf8E4M3FN>, tensor<1x2xf32>
  %y = xfmr.linear %h, %q scale(%s : tensor<1x2xf32>) {scale_layout = #xfmr.scale_layout<block [64, 64]>}
      : tensor<?x128xf32>, tensor<64x128xf8E4M3FN> -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
}

// -----

// W8A8 (xfmr-quantize-int8): int8 codes with a scale per row sit in panels
// of quads ([2, 26, 256]: 101 inputs -> 26 quads), and the quantize/dequantize
// pair of the input is no kernel of its own: the linear quantizes each token
// itself (16 inputs a step: max |x|, then codes and their sum into a
// [tokens, 104] byte buffer) and multiplies the codes with vpdpbusd, 6 tokens
// x 4 vectors of int32 sums per tile; each sum loses 128 x the token's code
// sum (the weights are stored as code + 128) and is scaled by both scales.
// CHECK: #xfmr.weight_slot<source = "w", offset = 35584, bytes = 13312, type = tensor<88x101xi8>, transform = #xfmr.quantized_weight<part = codes, layout = <block [1, 101]>, source_type = tensor<88x101xbf16>>, panel = 64>
// CHECK-NOT: fake_quantize
// CHECK: call @xfmr_linear_88x101_i8_b1x101_p64_ai8(%{{.+}}, %{{.+}}, %{{.+}}, %arg4) : (memref<?x101xf32>, memref<2x26x256xi8>, memref<88x1xf32>, memref<?x88xf32>)
// CHECK-LABEL: func.func private @xfmr_linear_88x101_i8_b1x101_p64_ai8
// CHECK: %[[CODES:.+]] = memref.alloc(%{{.+}}) : memref<?x104xi8>
// CHECK: scf.for {{.+}} -> (vector<16xf32>)
// CHECK: vector.reduction <maximumf>
// CHECK: arith.divf %{{.+}}, %{{.+}} : vector<16xf32>
// CHECK-NEXT: math.roundeven %{{.+}} : vector<16xf32>
// CHECK: arith.trunci %{{.+}} : vector<16xi32> to vector<16xi8>
// CHECK: %{{.+}}:24 = scf.for %{{.+}} = %c0 to %c26 step %c1 iter_args
// CHECK-COUNT-4: vector.load %arg1{{.+}} : memref<2x26x256xi8>, vector<64xi8>
// CHECK: vector.load %[[CODES]]{{.+}} : memref<?x104xi8>, vector<4xi8>
// CHECK: vector.broadcast %{{.+}} : i32 to vector<16xi32>
// CHECK-COUNT-4: llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.512"
// CHECK: arith.muli %{{.+}}, %c128_i32 : i32
// CHECK: arith.subi
// CHECK: arith.sitofp %{{.+}} : vector<16xi32> to vector<16xf32>
// CHECK: vector.maskedstore %arg3
// Leftover tokens (all of decode): one row, 4 sums.
// CHECK: %{{.+}}:4 = scf.for %{{.+}} = %c0 to %c26 step %c1 iter_args
// CHECK: memref.dealloc %[[CODES]]
// --precise changes nothing for int8 (its activations are codes).
// PRECISE-LABEL: func.func private @xfmr_linear_88x101_i8_b1x101_p64_ai8
// Without panels (artifacts with GPU targets), a separate fake quantization
// and the generic linear on the row-major codes.
// ROWS: call @xfmr_fake_quantize_101_g101_i8
// ROWS: call @xfmr_linear_88x101_i8_b1x101(%{{.+}}, %{{.+}}, %{{.+}}, %arg4) : (memref<?x101xf32>, memref<88x101xi8>, memref<88x1xf32>, memref<?x88xf32>)
module attributes {xfmr.target = #xfmr.target<kind = "cpu", triple = "x86_64-pc-linux-gnu", chip = "znver4", features = "+avx512f,+avx512bf16,+avx512vnni">} {
func.func @prefill(%ids: tensor<?xi32>, %start: index) -> tensor<?x88xf32> attributes {xfmr.entry = "prefill"} {
  %e = xfmr.weight "embed" : tensor<88x101xf32>
  %h = xfmr.embedding %e[%ids] : tensor<88x101xf32>, tensor<?xi32> -> tensor<?x101xf32>
  %w = xfmr.weight "w" : tensor<88x101xbf16>
  %q, %s = xfmr.quantize %w {layout = #xfmr.scale_layout<block [1, 101]>}
      : tensor<88x101xbf16> -> tensor<88x101xi8>, tensor<88x1xf32>
  %hq, %hs = xfmr.quantize %h {layout = #xfmr.scale_layout<block [1, 101]>}
      : tensor<?x101xf32> -> tensor<?x101xi8>, tensor<?x1xf32>
  %hd = xfmr.dequantize %hq, %hs {layout = #xfmr.scale_layout<block [1, 101]>}
      : tensor<?x101xi8>, tensor<?x1xf32> -> tensor<?x101xf32>
  %y = xfmr.linear %hd, %q scale(%s : tensor<88x1xf32>) {scale_layout = #xfmr.scale_layout<block [1, 101]>}
      : tensor<?x101xf32>, tensor<88x101xi8> -> tensor<?x88xf32>
  return %y : tensor<?x88xf32>
}
}

// -----

// Without AVX512-VNNI (x86-64-v3): the same panels and sums, from the four
// bytes of each lane (unsigned) times each code of the quad, int32 multiplies.
// CHECK-LABEL: func.func private @xfmr_linear_64x64_i8_b1x64_p64_ai8
// CHECK-NOT: llvm.call_intrinsic
// CHECK: scf.for {{.+}} iter_args
// CHECK: arith.shrui %{{.+}}, %{{.+}} : vector<16xi32>
// CHECK: arith.andi %{{.+}}, %{{.+}} : vector<16xi32>
// CHECK: arith.muli %{{.+}}, %{{.+}} : vector<16xi32>
// CHECK-NOT: llvm.call_intrinsic
// CHECK: return
module attributes {xfmr.target = #xfmr.target<kind = "cpu", triple = "x86_64-pc-linux-gnu", chip = "x86-64-v3", features = "+avx2,+fma">} {
func.func @prefill(%ids: tensor<?xi32>, %start: index) -> tensor<?x64xf32> attributes {xfmr.entry = "prefill"} {
  %e = xfmr.weight "embed" : tensor<64x64xf32>
  %h = xfmr.embedding %e[%ids] : tensor<64x64xf32>, tensor<?xi32> -> tensor<?x64xf32>
  %w = xfmr.weight "w" : tensor<64x64xbf16>
  %q, %s = xfmr.quantize %w {layout = #xfmr.scale_layout<block [1, 64]>}
      : tensor<64x64xbf16> -> tensor<64x64xi8>, tensor<64x1xf32>
  %hq, %hs = xfmr.quantize %h {layout = #xfmr.scale_layout<block [1, 64]>}
      : tensor<?x64xf32> -> tensor<?x64xi8>, tensor<?x1xf32>
  %hd = xfmr.dequantize %hq, %hs {layout = #xfmr.scale_layout<block [1, 64]>}
      : tensor<?x64xi8>, tensor<?x1xf32> -> tensor<?x64xf32>
  %y = xfmr.linear %hd, %q scale(%s : tensor<64x1xf32>) {scale_layout = #xfmr.scale_layout<block [1, 64]>}
      : tensor<?x64xf32>, tensor<64x64xi8> -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}
}
