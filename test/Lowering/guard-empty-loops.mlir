// xfmr-guard-empty-loops: a loop with results runs under an scf.if on
// lb < ub whose else branch yields the initial values (SCF-to-SPIR-V
// returns undefined results for a loop that runs zero times). Loops without
// results are left alone; a second run changes nothing.
// RUN: xfmr-opt %s --xfmr-guard-empty-loops | FileCheck %s
// RUN: xfmr-opt %s --xfmr-guard-empty-loops --xfmr-guard-empty-loops | FileCheck %s

// CHECK-LABEL: func.func @sum
// CHECK-SAME: (%[[LB:.+]]: index, %[[UB:.+]]: index, %[[INIT:.+]]: f32)
// CHECK: %[[RUNS:.+]] = arith.cmpi slt, %[[LB]], %[[UB]] : index
// CHECK: %[[R:.+]] = scf.if %[[RUNS]] -> (f32) {
// CHECK:   %[[F:.+]] = scf.for %{{.+}} = %[[LB]] to %[[UB]] step %{{.+}} iter_args(%{{.+}} = %[[INIT]]) -> (f32) {
// CHECK:   } {xfmr_guarded}
// CHECK:   scf.yield %[[F]] : f32
// CHECK: } else {
// CHECK:   scf.yield %[[INIT]] : f32
// CHECK: }
// CHECK-NOT: scf.if
// CHECK: return %[[R]] : f32
func.func @sum(%lb: index, %ub: index, %init: f32) -> f32 {
  %c1 = arith.constant 1 : index
  %r = scf.for %i = %lb to %ub step %c1 iter_args(%acc = %init) -> (f32) {
    %one = arith.constant 1.0 : f32
    %next = arith.addf %acc, %one : f32
    scf.yield %next : f32
  }
  return %r : f32
}

// CHECK-LABEL: func.func @unsigned_bounds
// CHECK: arith.cmpi ult
func.func @unsigned_bounds(%lb: i32, %ub: i32, %init: f32) -> f32 {
  %c1 = arith.constant 1 : i32
  %r = scf.for unsigned %i = %lb to %ub step %c1 iter_args(%acc = %init) -> (f32) : i32 {
    scf.yield %acc : f32
  }
  return %r : f32
}

// CHECK-LABEL: func.func @no_results
// CHECK-NOT: scf.if
// CHECK: scf.for
func.func @no_results(%lb: index, %ub: index, %m: memref<4xf32>) {
  %c1 = arith.constant 1 : index
  %f = arith.constant 0.0 : f32
  scf.for %i = %lb to %ub step %c1 {
    memref.store %f, %m[%i] : memref<4xf32>
  }
  return
}
