// The linear kernel: parallel over blocks of 4 output features; tiles of 4
// tokens x 4 rows share their loads (4 activation + 4 weight vectors feed 16
// FMAs per 16-lane step); bf16 weights widen in registers; a scalar tail covers
// the last 100 % 16 = 4 features; leftover tokens read one row at a time.
// RUN: xfmr-opt %s --xfmr-plan-memory --xfmr-lower-to-kernels --canonicalize | FileCheck %s

// CHECK-LABEL: func.func private @xfmr_linear_48x100_bf16_bias_f32
// CHECK-SAME: (%[[X:.+]]: memref<?x100xf32>, %[[W:.+]]: memref<48x100xbf16>, %[[B:.+]]: memref<48xf32>, %[[Y:.+]]: memref<?x48xf32>)
// CHECK: scf.parallel (%{{.+}}) = (%c0) to (%c12) step (%c1)
// CHECK: %[[ACC:.+]]:16 = scf.for %{{.+}} = %c0 to %c96 step %c16 iter_args({{.*}}) -> (vector<16xf32>, vector<16xf32>,
// CHECK-COUNT-4: vector.load %[[X]]
// CHECK: %[[WV:.+]] = vector.load %[[W]]{{.+}} : memref<48x100xbf16>, vector<16xbf16>
// CHECK-NEXT: arith.extf %[[WV]] : vector<16xbf16> to vector<16xf32>
// CHECK-COUNT-16: vector.fma
// CHECK: vector.reduction <add>, %[[ACC]]#0 fastmath<reassoc> : vector<16xf32> into f32
// CHECK: scf.for %{{.+}} = %c96 to %c100 step %c1
// CHECK: memref.load %[[B]]
// CHECK: memref.store %{{.+}}, %[[Y]]
// Leftover tokens: one row at a time, one accumulator.
// CHECK: scf.for %{{.+}} = %c0 to %c96 step %c16 iter_args(%{{.+}} = %{{.+}}) -> (vector<16xf32>)
func.func @prefill(%ids: tensor<?xi32>, %start: index) -> tensor<?x48xf32> attributes {xfmr.entry = "prefill"} {
  %e = xfmr.weight "embed" : tensor<64x100xf32>
  %h = xfmr.embedding %e[%ids] : tensor<64x100xf32>, tensor<?xi32> -> tensor<?x100xf32>
  %w = xfmr.weight "w" : tensor<48x100xbf16>
  %b = xfmr.weight "b" : tensor<48xf32>
  %y = xfmr.linear %h, %w bias(%b : tensor<48xf32>) : tensor<?x100xf32>, tensor<48x100xbf16> -> tensor<?x48xf32>
  return %y : tensor<?x48xf32>
}
