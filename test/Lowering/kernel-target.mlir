// Kernels are materialized by the module's target (#xfmr.target): on the
// CPU each kernel family becomes a private func.func built for the target's
// chip and features, called directly by the schedule, with its operands in
// the order of the family's contract (lowering/Common/KernelContracts.h):
// linear (input, weight, bias, scale, output), an absent role (here the
// scales of an f32 cache) is no argument. A target kind without kernels is
// an error that names it.
// RUN: xfmr-opt %s --split-input-file --xfmr-plan-memory --xfmr-lower-to-kernels --verify-diagnostics | FileCheck %s

!cache = !xfmr.kv_cache<f32, capacity = 16, heads = 1, key_dim = 16, value_dim = 16>
// CHECK: module attributes {{{.*}}xfmr.target = #xfmr.target<kind = "cpu", triple = "x86_64-pc-linux-gnu", chip = "znver4", features = "+avx512f,+avx512bf16">}
module attributes {xfmr.target = #xfmr.target<kind = "cpu", triple = "x86_64-pc-linux-gnu", chip = "znver4", features = "+avx512f,+avx512bf16">} {
  // CHECK-LABEL: func.func @prefill
  // CHECK: call @xfmr_embedding_32x16_f32(%{{.+}}, %{{.+}}, %[[H:[a-z_0-9]+]]) : (memref<32x16xf32>, memref<?xi32>, memref<?x16xf32>) -> ()
  // CHECK: call @xfmr_linear_16x16_f8e4m3fn_b128x128_bias_f32(%[[H]], %[[W:[a-z_0-9]+]], %[[B:[a-z_0-9]+]], %[[S:[a-z_0-9]+]], %{{.+}}) : (memref<?x16xf32>, memref<16x16xi8>, memref<16xf32>, memref<1x1xf32>, memref<?x16xf32>) -> ()
  // CHECK: call @xfmr_cache_write_16x1x16x16(%{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}) : (memref<?x1x16xf32>, memref<?x1x16xf32>, memref<16x1x32xf32>, index) -> ()
  // CHECK: call @xfmr_attend_16x1x1x16x16_{{.+}}(%{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}) : (memref<?x1x16xf32>, memref<16x1x32xf32>, index, memref<?x1x16xf32>) -> ()
  // One kernel per configuration, however often it is launched: loops over
  // memrefs, parallel over rows, 16-lane vector FMAs.
  // CHECK: func.func private @xfmr_embedding_32x16_f32(
  // CHECK: func.func private @xfmr_linear_16x16_f8e4m3fn_b128x128_bias_f32(
  // CHECK: scf.parallel
  // CHECK: vector.fma {{.*}} : vector<16xf32>
  // CHECK-NOT: func.func private @xfmr_linear_16x16_f8e4m3fn_b128x128_bias_f32(
  // CHECK: func.func private @xfmr_linear_32x16_f32(
  func.func @prefill(%ids: tensor<?xi32>, %start: index, %c: !cache) -> (tensor<?x32xf32>, !cache)
      attributes {xfmr.entry = "prefill"} {
    %emb = xfmr.weight "embed" : tensor<32x16xf32>
    %h = xfmr.embedding %emb[%ids] : tensor<32x16xf32>, tensor<?xi32> -> tensor<?x16xf32>
    %w = xfmr.weight "wk" : tensor<16x16xf8E4M3FN>
    %s = xfmr.weight "wk_scale" : tensor<1x1xf32>
    %b = xfmr.weight "bias" : tensor<16xf32>
    %k = xfmr.linear %h, %w bias(%b : tensor<16xf32>) scale(%s : tensor<1x1xf32>) {scale_layout = #xfmr.scale_layout<block [128, 128]>}
        : tensor<?x16xf32>, tensor<16x16xf8E4M3FN> -> tensor<?x16xf32>
    %k2 = xfmr.linear %k, %w bias(%b : tensor<16xf32>) scale(%s : tensor<1x1xf32>) {scale_layout = #xfmr.scale_layout<block [128, 128]>}
        : tensor<?x16xf32>, tensor<16x16xf8E4M3FN> -> tensor<?x16xf32>
    %k3 = xfmr.split_heads %k2 : tensor<?x16xf32> -> tensor<?x1x16xf32>
    %o, %c1 = xfmr.attention %k3, %k3, %k3, %c[%start] {scale = 0.25 : f64}
        : tensor<?x1x16xf32>, tensor<?x1x16xf32>, tensor<?x1x16xf32>, !cache -> tensor<?x1x16xf32>
    %om = xfmr.merge_heads %o : tensor<?x1x16xf32> -> tensor<?x16xf32>
    %logits = xfmr.linear %om, %emb : tensor<?x16xf32>, tensor<32x16xf32> -> tensor<?x32xf32>
    return %logits, %c1 : tensor<?x32xf32>, !cache
  }
}

// -----

// expected-error @+1 {{no kernels are registered for target 'tpu' (registered: cpu, cuda, rocm, vulkan)}}
module attributes {xfmr.target = #xfmr.target<kind = "tpu", triple = "tpu-unknown-unknown", chip = "v5">} {
  func.func @prefill(%ids: tensor<?xi32>, %start: index) -> tensor<?x32xf32> attributes {xfmr.entry = "prefill"} {
    %emb = xfmr.weight "embed" : tensor<32x8xf32>
    %h = xfmr.embedding %emb[%ids] : tensor<32x8xf32>, tensor<?xi32> -> tensor<?x8xf32>
    %logits = xfmr.linear %h, %emb : tensor<?x8xf32>, tensor<32x8xf32> -> tensor<?x32xf32>
    return %logits : tensor<?x32xf32>
  }
}
