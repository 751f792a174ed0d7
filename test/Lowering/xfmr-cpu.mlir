// The whole CPU pipeline ends in the LLVM dialect: entry points keep their C
// interface wrappers (the artifact ABI), parallel loops run on OpenMP.
// RUN: xfmr-opt %S/../../examples/llama-decoder-layer.mlir --xfmr-cpu | FileCheck %s

// CHECK-DAG: llvm.func @_mlir_ciface_prefill(%{{.+}}: !llvm.ptr, %{{.+}}: i64, %{{.+}}: !llvm.ptr, %{{.+}}: !llvm.ptr, %{{.+}}: !llvm.ptr)
// CHECK-DAG: llvm.func @xfmr_attend_512x8x4x8x8_0x1d6a09e667f3bcdpm2
// CHECK-DAG: omp.parallel
// CHECK-DAG: omp.wsloop
// CHECK-DAG: llvm.intr.fmuladd
// CHECK-DAG: llvm.intr.vector.reduce.fadd
// CHECK-NOT: scf.
// CHECK-NOT: memref.
// CHECK-NOT: xfmr.
