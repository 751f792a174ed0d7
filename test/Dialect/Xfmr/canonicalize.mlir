// RUN: xfmr-opt %s --canonicalize | FileCheck %s

// CHECK-LABEL: func.func @split_merge
// CHECK-SAME: (%[[X:.+]]: tensor<?x64xf32>)
func.func @split_merge(%x: tensor<?x64xf32>) -> tensor<?x64xf32> {
  // CHECK-NEXT: return %[[X]]
  %h = xfmr.split_heads %x : tensor<?x64xf32> -> tensor<?x8x8xf32>
  %m = xfmr.merge_heads %h : tensor<?x8x8xf32> -> tensor<?x64xf32>
  return %m : tensor<?x64xf32>
}

// CHECK-LABEL: func.func @merge_split
// CHECK-SAME: (%[[X:.+]]: tensor<?x8x8xf32>)
func.func @merge_split(%x: tensor<?x8x8xf32>) -> tensor<?x8x8xf32> {
  // CHECK-NEXT: return %[[X]]
  %m = xfmr.merge_heads %x : tensor<?x8x8xf32> -> tensor<?x64xf32>
  %h = xfmr.split_heads %m : tensor<?x64xf32> -> tensor<?x8x8xf32>
  return %h : tensor<?x8x8xf32>
}

// A different head split of the same features is a real reshape and stays.
// CHECK-LABEL: func.func @regroup
func.func @regroup(%x: tensor<?x8x8xf32>) -> tensor<?x4x16xf32> {
  // CHECK: xfmr.merge_heads
  // CHECK: xfmr.split_heads
  %m = xfmr.merge_heads %x : tensor<?x8x8xf32> -> tensor<?x64xf32>
  %h = xfmr.split_heads %m : tensor<?x64xf32> -> tensor<?x4x16xf32>
  return %h : tensor<?x4x16xf32>
}

// Unused pure ops disappear, weights included.
// CHECK-LABEL: func.func @dead
func.func @dead(%x: tensor<?x8xf32>) -> tensor<?x8xf32> {
  // CHECK-NOT: xfmr.weight
  // CHECK-NOT: xfmr.silu
  %w = xfmr.weight "unused" : tensor<8xf32>
  %s = xfmr.silu %x : tensor<?x8xf32>
  return %x : tensor<?x8xf32>
}
