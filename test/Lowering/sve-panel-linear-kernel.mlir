// AArch64 panel linears with SVE for one vector length (#xfmr.target's
// sve_bits, from xfmr-compile --sve-bits or the CPU): the dot and matrix
// products are SVE's, each on a whole register of 128-bit segments, the
// fixed vectors going into and out of the scalable operands (LLVM folds
// these away once vscale_range fixes the length). Without sve_bits they are
// NEON's, one segment each.
// RUN: xfmr-opt %s --split-input-file --xfmr-plan-memory=weight-panels --xfmr-lower-to-kernels --canonicalize | FileCheck %s

// W8A8 at 256 bits: a register holds 2 row pairs' 2 x 2 sums (vector<8xi32>),
// the zip of two rows' quads 2o and 2o + 1 for each, and a token pair's 16
// codes twice; a lone token's quads through SVE's usdot.
// CHECK: sve_bits = 256
// CHECK-LABEL: func.func private @xfmr_linear_88x96_i8_b1x96_p64_ai8
// CHECK: scf.for {{.+}} -> (vector<8xi32>, vector<8xi32>, vector<8xi32>, vector<8xi32>, vector<8xi32>, vector<8xi32>, vector<8xi32>, vector<8xi32>)
// CHECK: vector.shuffle %{{.+}}, %{{.+}} [0, 16, 1, 17, 2, 18, 3, 19] : vector<16xi32>, vector<16xi32>
// CHECK: %[[SUMS:.+]] = llvm.intr.vector.insert %{{.+}}, %{{.+}}[0] : vector<8xi32> into vector<[4]xi32>
// CHECK: %[[W:.+]] = llvm.intr.vector.insert %{{.+}}, %{{.+}}[0] : vector<32xi8> into vector<[16]xi8>
// CHECK: %[[X:.+]] = llvm.intr.vector.insert %{{.+}}, %{{.+}}[0] : vector<32xi8> into vector<[16]xi8>
// CHECK: %[[R:.+]] = llvm.call_intrinsic "llvm.aarch64.sve.usmmla.nxv4i32"(%[[SUMS]], %[[W]], %[[X]]) : (vector<[4]xi32>, vector<[16]xi8>, vector<[16]xi8>) -> vector<[4]xi32>
// CHECK: llvm.intr.vector.extract %[[R]][0] : vector<8xi32> from vector<[4]xi32>
// CHECK: llvm.call_intrinsic "llvm.aarch64.sve.usdot.nxv4i32"
// CHECK-NOT: llvm.aarch64.neon
module attributes {xfmr.target = #xfmr.target<kind = "cpu", triple = "aarch64-unknown-linux-gnu", chip = "neoverse-v1", features = "+bf16,+dotprod,+i8mm,+neon,+sve", sve_bits = 256>} {
func.func @prefill(%ids: tensor<?xi32>, %start: index) -> tensor<?x88xf32> attributes {xfmr.entry = "prefill"} {
  %e = xfmr.weight "embed" : tensor<88x96xf32>
  %h = xfmr.embedding %e[%ids] : tensor<88x96xf32>, tensor<?xi32> -> tensor<?x96xf32>
  %w = xfmr.weight "w" : tensor<88x96xbf16>
  %q, %s = xfmr.quantize %w {layout = #xfmr.scale_layout<block [1, 96]>}
      : tensor<88x96xbf16> -> tensor<88x96xi8>, tensor<88x1xf32>
  %hq, %hs = xfmr.quantize %h {layout = #xfmr.scale_layout<block [1, 96]>}
      : tensor<?x96xf32> -> tensor<?x96xi8>, tensor<?x1xf32>
  %hd = xfmr.dequantize %hq, %hs {layout = #xfmr.scale_layout<block [1, 96]>}
      : tensor<?x96xi8>, tensor<?x1xf32> -> tensor<?x96xf32>
  %y = xfmr.linear %hd, %q scale(%s : tensor<88x1xf32>) {scale_layout = #xfmr.scale_layout<block [1, 96]>}
      : tensor<?x96xf32>, tensor<88x96xi8> -> tensor<?x88xf32>
  return %y : tensor<?x88xf32>
}
}

// -----

// bf16 at 512 bits: a register holds 4 row pairs (vector<16xf32>); bfmmla for
// token pairs, bfdot for a lone token.
// CHECK: sve_bits = 512
// CHECK-LABEL: func.func private @xfmr_linear_88x96_bf16_p64_abf16
// CHECK: llvm.intr.vector.insert %{{.+}}, %{{.+}}[0] : vector<16xf32> into vector<[4]xf32>
// CHECK: llvm.call_intrinsic "llvm.aarch64.sve.bfmmla"(%{{.+}}, %{{.+}}, %{{.+}}) : (vector<[4]xf32>, vector<[8]xbf16>, vector<[8]xbf16>) -> vector<[4]xf32>
// CHECK: llvm.call_intrinsic "llvm.aarch64.sve.bfdot"(%{{.+}}, %{{.+}}, %{{.+}}) : (vector<[4]xf32>, vector<[8]xbf16>, vector<[8]xbf16>) -> vector<[4]xf32>
// CHECK-NOT: llvm.aarch64.neon
module attributes {xfmr.target = #xfmr.target<kind = "cpu", triple = "aarch64-unknown-linux-gnu", chip = "generic", features = "+bf16,+i8mm,+neon,+sve", sve_bits = 512>} {
func.func @prefill(%ids: tensor<?xi32>, %start: index) -> tensor<?x88xf32> attributes {xfmr.entry = "prefill"} {
  %e = xfmr.weight "embed" : tensor<88x96xf32>
  %h = xfmr.embedding %e[%ids] : tensor<88x96xf32>, tensor<?xi32> -> tensor<?x96xf32>
  %w = xfmr.weight "w" : tensor<88x96xbf16>
  %y = xfmr.linear %h, %w : tensor<?x96xf32>, tensor<88x96xbf16> -> tensor<?x88xf32>
  return %y : tensor<?x88xf32>
}
}

// -----

// The same W8A8 linear without sve_bits: NEON's usmmla, one row pair a call.
// CHECK-NOT: sve_bits
// CHECK-LABEL: func.func private @xfmr_linear_88x96_i8_b1x96_p64_ai8
// CHECK: vector.shuffle %{{.+}}, %{{.+}} [0, 16, 1, 17] : vector<16xi32>, vector<16xi32>
// CHECK: llvm.call_intrinsic "llvm.aarch64.neon.usmmla.v4i32.v16i8"(%{{.+}}, %{{.+}}, %{{.+}}) : (vector<4xi32>, vector<16xi8>, vector<16xi8>) -> vector<4xi32>
// CHECK: llvm.call_intrinsic "llvm.aarch64.neon.usdot.v4i32.v16i8"
// CHECK-NOT: llvm.aarch64.sve
module attributes {xfmr.target = #xfmr.target<kind = "cpu", triple = "aarch64-unknown-linux-gnu", chip = "neoverse-v1", features = "+bf16,+dotprod,+i8mm,+neon,+sve">} {
func.func @prefill(%ids: tensor<?xi32>, %start: index) -> tensor<?x88xf32> attributes {xfmr.entry = "prefill"} {
  %e = xfmr.weight "embed" : tensor<88x96xf32>
  %h = xfmr.embedding %e[%ids] : tensor<88x96xf32>, tensor<?xi32> -> tensor<?x96xf32>
  %w = xfmr.weight "w" : tensor<88x96xbf16>
  %q, %s = xfmr.quantize %w {layout = #xfmr.scale_layout<block [1, 96]>}
      : tensor<88x96xbf16> -> tensor<88x96xi8>, tensor<88x1xf32>
  %hq, %hs = xfmr.quantize %h {layout = #xfmr.scale_layout<block [1, 96]>}
      : tensor<?x96xf32> -> tensor<?x96xi8>, tensor<?x1xf32>
  %hd = xfmr.dequantize %hq, %hs {layout = #xfmr.scale_layout<block [1, 96]>}
      : tensor<?x96xi8>, tensor<?x1xf32> -> tensor<?x96xf32>
  %y = xfmr.linear %hd, %q scale(%s : tensor<88x1xf32>) {scale_layout = #xfmr.scale_layout<block [1, 96]>}
      : tensor<?x96xf32>, tensor<88x96xi8> -> tensor<?x88xf32>
  return %y : tensor<?x88xf32>
}
}
