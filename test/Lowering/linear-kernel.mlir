// The linear kernel: parallel over output features, a 16-lane FMA loop over
// the input features with one horizontal reduction, a scalar tail for the
// last 100 % 16 = 4 features, and bf16 weights widened in registers.
// RUN: xfmr-opt %s --xfmr-lower-to-kernels --canonicalize | FileCheck %s

// CHECK-LABEL: func.func private @xfmr_linear_48x100_bf16_bias_f32
// CHECK-SAME: (%[[X:.+]]: memref<?x100xf32>, %[[W:.+]]: memref<48x100xbf16>, %[[B:.+]]: memref<48xf32>, %[[Y:.+]]: memref<?x48xf32>)
// CHECK: scf.parallel (%[[N:.+]]) =
// CHECK: scf.for %[[T:.+]] =
// CHECK: %[[ACC:.+]] = scf.for %[[K:.+]] = %{{.+}} to %c96 step %c16 iter_args(%{{.+}} = %{{.+}}) -> (vector<16xf32>)
// CHECK: vector.load %[[X]][%[[T]], %{{.+}}] : memref<?x100xf32>, vector<16xf32>
// CHECK: %[[WV:.+]] = vector.load %[[W]][%[[N]], %{{.+}}] : memref<48x100xbf16>, vector<16xbf16>
// CHECK: arith.extf %[[WV]] : vector<16xbf16> to vector<16xf32>
// CHECK: vector.fma
// CHECK: vector.reduction <add>, %[[ACC]] fastmath<reassoc> : vector<16xf32> into f32
// CHECK: scf.for %{{.+}} = %c96 to %c100 step %c1
// CHECK: memref.store %{{.+}}, %[[Y]][%[[T]], %[[N]]]
func.func @prefill(%ids: tensor<?xi32>, %start: index) -> tensor<?x48xf32> attributes {xfmr.entry = "prefill"} {
  %e = xfmr.weight "embed" : tensor<64x100xf32>
  %h = xfmr.embedding %e[%ids] : tensor<64x100xf32>, tensor<?xi32> -> tensor<?x100xf32>
  %w = xfmr.weight "w" : tensor<48x100xbf16>
  %b = xfmr.weight "b" : tensor<48xf32>
  %y = xfmr.linear %h, %w bias(%b : tensor<48xf32>) : tensor<?x100xf32>, tensor<48x100xbf16> -> tensor<?x48xf32>
  return %y : tensor<?x48xf32>
}
