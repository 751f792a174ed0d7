// RUN: xfmr-opt %s --xfmr-fuse-swiglu | FileCheck %s

// CHECK-LABEL: func.func @silu_times_up
// CHECK-SAME: (%[[G:.+]]: tensor<?x172xf32>, %[[U:.+]]: tensor<?x172xf32>)
func.func @silu_times_up(%g: tensor<?x172xf32>, %u: tensor<?x172xf32>) -> tensor<?x172xf32> {
  // CHECK-NOT: xfmr.silu
  // CHECK-NOT: xfmr.mul
  // CHECK: %[[R:.+]] = xfmr.swiglu %[[G]], %[[U]] : tensor<?x172xf32>
  // CHECK: return %[[R]]
  %s = xfmr.silu %g : tensor<?x172xf32>
  %m = xfmr.mul %s, %u : tensor<?x172xf32>
  return %m : tensor<?x172xf32>
}

// The silu may be the right operand: mul is commutative.
// CHECK-LABEL: func.func @up_times_silu
// CHECK-SAME: (%[[G:.+]]: tensor<?x8xbf16>, %[[U:.+]]: tensor<?x8xbf16>)
func.func @up_times_silu(%g: tensor<?x8xbf16>, %u: tensor<?x8xbf16>) -> tensor<?x8xbf16> {
  // CHECK: xfmr.swiglu %[[G]], %[[U]] : tensor<?x8xbf16>
  %s = xfmr.silu %g : tensor<?x8xbf16>
  %m = xfmr.mul %u, %s : tensor<?x8xbf16>
  return %m : tensor<?x8xbf16>
}

// A silu with other users stays; the product still fuses.
// CHECK-LABEL: func.func @shared_silu
func.func @shared_silu(%g: tensor<4xf32>, %u: tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>) {
  // CHECK: %[[S:.+]] = xfmr.silu
  // CHECK: %[[F:.+]] = xfmr.swiglu
  // CHECK: return %[[F]], %[[S]]
  %s = xfmr.silu %g : tensor<4xf32>
  %m = xfmr.mul %s, %u : tensor<4xf32>
  return %m, %s : tensor<4xf32>, tensor<4xf32>
}

// Without a silu nothing changes.
// CHECK-LABEL: func.func @plain_mul
func.func @plain_mul(%a: tensor<4xf32>, %b: tensor<4xf32>) -> tensor<4xf32> {
  // CHECK: xfmr.mul
  // CHECK-NOT: xfmr.swiglu
  %m = xfmr.mul %a, %b : tensor<4xf32>
  return %m : tensor<4xf32>
}
