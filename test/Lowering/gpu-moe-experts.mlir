// On GPU targets moe_experts is several launches (GPUKernelTarget::sequence):
// decode (one token) two through a static scratch of the token's expert
// activations (top-k x inter f32); prefill the grouped products through
// scratches sized by the token count (routing table i32, activations and
// expert outputs f32): route, gate/up tiles, down tiles, combination. The
// host allocates the scratches around the launches and releases them after.
// RUN: xfmr-opt %s --xfmr-plan-memory --xfmr-lower-to-kernels | FileCheck %s

// CHECK-LABEL: func.func @prefill
// CHECK: %[[ONE:.+]] = arith.cmpi eq, %{{.+}}, %{{.+}} : index
// CHECK-NEXT: scf.if %[[ONE]] {
// CHECK: %[[ACT:.+]] = memref.alloc() : memref<12xf32>
// CHECK-COUNT-2: call @xfmr_gpu_launch
// CHECK: memref.dealloc %[[ACT]] : memref<12xf32>
// CHECK: } else {
// CHECK: %[[ROUTE:.+]] = memref.alloc(%{{.+}}) : memref<?xi32>
// CHECK: %[[ACTS:.+]] = memref.alloc(%{{.+}}) : memref<?xf32>
// CHECK: %[[YS:.+]] = memref.alloc(%{{.+}}) : memref<?xf32>
// CHECK-COUNT-4: call @xfmr_gpu_launch
// CHECK: memref.dealloc %[[ROUTE]] : memref<?xi32>
// CHECK: memref.dealloc %[[ACTS]] : memref<?xf32>
// CHECK: memref.dealloc %[[YS]] : memref<?xf32>
// CHECK: gpu.module @xfmr_kernels
// CHECK: gpu.func @xfmr_moe_experts_4x6x8_k2_f32_grouped_decode_up(
// CHECK: gpu.func @xfmr_moe_experts_4x6x8_k2_f32_grouped_decode_down(
// The routing sorts the entries: counts, prefix sums (thread 0), order.
// CHECK: gpu.func @xfmr_moe_experts_4x6x8_k2_f32_grouped_prefill_route(
// CHECK-SAME: known_block_size = array<i32: 256, 1, 1>
// CHECK: gpu.barrier
// CHECK: gpu.barrier
// The products stage 32 x 33 tiles: x, gate and up; then act and down.
// CHECK: gpu.func @xfmr_moe_experts_4x6x8_k2_f32_grouped_prefill_up(
// CHECK-SAME: known_block_size = array<i32: 64, 1, 1>
// CHECK-COUNT-3: memref.alloc() : memref<1056xf32, 3>
// CHECK: gpu.func @xfmr_moe_experts_4x6x8_k2_f32_grouped_prefill_down(
// CHECK-COUNT-2: memref.alloc() : memref<1056xf32, 3>
// CHECK: gpu.func @xfmr_moe_experts_4x6x8_k2_f32_grouped_prefill_combine(
module attributes {xfmr.target = #xfmr.target<kind = "vulkan", triple = "spirv64-unknown-vulkan1.1", chip = "">} {
func.func @prefill(%ids: tensor<?xi32>, %start: index) -> tensor<?x32xf32>
    attributes {xfmr.entry = "prefill"} {
  %emb = xfmr.weight "embed" : tensor<32x8xf32>
  %x = xfmr.embedding %emb[%ids] : tensor<32x8xf32>, tensor<?xi32> -> tensor<?x8xf32>
  %g = xfmr.weight "gate" : tensor<4x8xf32>
  %eg = xfmr.weight "experts.gate" : tensor<4x6x8xf32>
  %eu = xfmr.weight "experts.up" : tensor<4x6x8xf32>
  %ed = xfmr.weight "experts.down" : tensor<4x8x6xf32>
  %w, %i = xfmr.moe_gate %x, %g {scoring = #xfmr<scoring softmax>, top_k = 2 : i64, norm_topk_prob = true}
      : tensor<?x8xf32>, tensor<4x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %y = xfmr.moe_experts %x, %w, %i, %eg, %eu, %ed {dispatch = #xfmr<moe_dispatch grouped>}
      : tensor<?x8xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32> -> tensor<?x8xf32> 
  %logits = xfmr.linear %y, %emb : tensor<?x8xf32>, tensor<32x8xf32> -> tensor<?x32xf32>
  return %logits : tensor<?x32xf32>
}
}
