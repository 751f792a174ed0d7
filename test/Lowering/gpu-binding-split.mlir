// Weights larger than a kernel can bind (Vulkan's maxStorageBufferRange;
// `max-binding-bytes`) are split by rows over launches: the embedding over
// windows of the table's rows, each launch writing the tokens whose ids fall
// in it; the linear over windows of the weight's rows, each writing its window
// of the output's columns (a kernel whose output rows are the whole width).
// RUN: xfmr-opt %s --xfmr-plan-memory --xfmr-lower-to-kernels="max-binding-bytes=4096" | FileCheck %s
// RUN: xfmr-opt %s --xfmr-plan-memory --xfmr-lower-to-kernels | FileCheck %s --check-prefix=WHOLE
// RUN: not xfmr-opt %s --xfmr-plan-memory --xfmr-lower-to-kernels="max-binding-bytes=100" 2>&1 | FileCheck %s --check-prefix=ROW

// 40 rows of 32 f32 (5120 bytes): windows of 32 rows (4096 bytes) and 8.
// CHECK-LABEL: func.func @prefill
// CHECK: memref.subview %{{.+}}[0, 0] [32, 32] [1, 1]
// CHECK: call @xfmr_gpu_launch
// CHECK: memref.subview %{{.+}}[32, 0] [8, 32] [1, 1]
// CHECK: call @xfmr_gpu_launch
// The LM head (the same table): rows [0, 32) into columns [0, 32) of the
// logits, rows [32, 40) into columns [32, 40).
// CHECK: memref.subview %{{.+}}[0, 0] [32, 32] [1, 1]
// CHECK: memref.subview %{{.+}}[0, 0] [%{{.+}}, 32] [1, 1]
// CHECK: memref.subview %{{.+}}[32, 0] [8, 32] [1, 1]
// CHECK: memref.subview %{{.+}}[0, 32] [%{{.+}}, 8] [1, 1]
// The kernels: the second embedding window keeps the ids it holds; the linear
// windows write rows of all 40 columns.
// CHECK-DAG: gpu.func @xfmr_embedding_32x32_f32(
// CHECK-DAG: gpu.func @xfmr_embedding_8x32_f32_from32(
// CHECK-DAG: gpu.func @xfmr_linear_32x32_f32_of40_tiles(
// CHECK-DAG: gpu.func @xfmr_linear_8x32_f32_of40_words(
// WHOLE-NOT: memref.subview
// WHOLE: gpu.func @xfmr_embedding_40x32_f32(
// ROW: error: 'xfmr.embedding' op has embedding rows of 128 bytes, more than the 100 bytes a kernel can bind
module attributes {xfmr.target = #xfmr.target<kind = "vulkan", triple = "spirv64-unknown-vulkan1.1", chip = "">} {
  func.func @prefill(%ids: tensor<?xi32>, %start: index) -> tensor<?x40xf32> attributes {xfmr.entry = "prefill"} {
    %emb = xfmr.weight "embed" : tensor<40x32xf32>
    %h = xfmr.embedding %emb[%ids] : tensor<40x32xf32>, tensor<?xi32> -> tensor<?x32xf32>
    %logits = xfmr.linear %h, %emb : tensor<?x32xf32>, tensor<40x32xf32> -> tensor<?x40xf32>
    return %logits : tensor<?x40xf32>
  }
}
