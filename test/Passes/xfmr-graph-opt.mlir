// The named pipeline: canonicalization folds head reshapes, silu * up fuses,
// CSE merges repeated weight references, and entry points get statistics.
// RUN: xfmr-opt %s --xfmr-graph-opt | FileCheck %s
// RUN: xfmr-opt %s --pass-pipeline='builtin.module(xfmr-graph-opt)' | FileCheck %s

// CHECK-LABEL: func.func @mlp
// CHECK-SAME: xfmr.parameter_count = 4096 : i64
func.func @mlp(%x: tensor<?x32xf32>) -> tensor<?x32xf32> attributes {xfmr.entry = "prefill"} {
  // CHECK-COUNT-1: xfmr.weight "gate"
  // CHECK-NOT: xfmr.weight "gate"
  %wg = xfmr.weight "gate" : tensor<64x32xf32>
  %wg2 = xfmr.weight "gate" : tensor<64x32xf32>
  %wd = xfmr.weight "down" : tensor<32x64xf32>
  %g = xfmr.linear %x, %wg : tensor<?x32xf32>, tensor<64x32xf32> -> tensor<?x64xf32>
  %u = xfmr.linear %x, %wg2 : tensor<?x32xf32>, tensor<64x32xf32> -> tensor<?x64xf32>
  // CHECK-NOT: xfmr.split_heads
  // CHECK-NOT: xfmr.merge_heads
  %h = xfmr.split_heads %g : tensor<?x64xf32> -> tensor<?x8x8xf32>
  %gm = xfmr.merge_heads %h : tensor<?x8x8xf32> -> tensor<?x64xf32>
  // CHECK: %[[G:.+]] = xfmr.linear %{{.+}}, %{{.+}} : tensor<?x32xf32>, tensor<64x32xf32>
  // CHECK-NEXT: %[[A:.+]] = xfmr.swiglu %[[G]], %[[G]]
  %s = xfmr.silu %gm : tensor<?x64xf32>
  %a = xfmr.mul %s, %u : tensor<?x64xf32>
  // CHECK: xfmr.linear %[[A]]
  %y = xfmr.linear %a, %wd : tensor<?x64xf32>, tensor<32x64xf32> -> tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}
