// RUN: xfmr-opt %s --xfmr-sparsify-moe --split-input-file | FileCheck %s
// RUN: xfmr-opt %s --xfmr-sparsify-moe=prefill=sparse --split-input-file | FileCheck %s --check-prefix=SPARSE
// RUN: not xfmr-opt %s --xfmr-sparsify-moe=prefill=dense 2>&1 | FileCheck %s --check-prefix=BAD

// BAD: xfmr-sparsify-moe: prefill must be grouped or sparse, got 'dense'

// Many tokens (prefill): experts become grouped GEMMs over their tokens, or
// token-by-token dispatch with prefill=sparse. The router is untouched.
// CHECK-LABEL: func.func @prefill
// CHECK: xfmr.moe_gate
// CHECK: %[[Y:.+]] = xfmr.moe_experts
// CHECK-SAME: dispatch = #xfmr<moe_dispatch grouped>
// CHECK: return %[[Y]]
// SPARSE-LABEL: func.func @prefill
// SPARSE: xfmr.moe_experts
// SPARSE-SAME: dispatch = #xfmr<moe_dispatch sparse>
func.func @prefill(%x: tensor<?x8xf32>, %g: tensor<4x8xf32>, %eg: tensor<4x6x8xf32>,
                   %eu: tensor<4x6x8xf32>, %ed: tensor<4x8x6xf32>) -> tensor<?x8xf32> {
  %w, %i = xfmr.moe_gate %x, %g {scoring = #xfmr<scoring softmax>, top_k = 2 : i64, norm_topk_prob = true}
      : tensor<?x8xf32>, tensor<4x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %y = xfmr.moe_experts %x, %w, %i, %eg, %eu, %ed
      : tensor<?x8xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32> -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

// -----

// One token (decode): only its top-k experts run, whatever prefill says.
// CHECK-LABEL: func.func @decode
// CHECK: xfmr.moe_experts
// CHECK-SAME: dispatch = #xfmr<moe_dispatch sparse>
// SPARSE-LABEL: func.func @decode
// SPARSE: dispatch = #xfmr<moe_dispatch sparse>
func.func @decode(%x: tensor<1x8xf32>, %w: tensor<1x2xf32>, %i: tensor<1x2xi32>, %eg: tensor<4x6x8xf32>,
                  %eu: tensor<4x6x8xf32>, %ed: tensor<4x8x6xf32>) -> tensor<1x8xf32> {
  %y = xfmr.moe_experts %x, %w, %i, %eg, %eu, %ed
      : tensor<1x8xf32>, tensor<1x2xf32>, tensor<1x2xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32> -> tensor<1x8xf32>
  return %y : tensor<1x8xf32>
}

// -----

// A form chosen earlier stays; FP8 scales travel along.
// CHECK-LABEL: func.func @chosen
// CHECK: xfmr.moe_experts %{{.+}} scales(
// CHECK-SAME: dispatch = #xfmr<moe_dispatch sparse>
// CHECK-SAME: scale_layout = #xfmr.scale_layout<block [128, 128]>
func.func @chosen(%x: tensor<?x8xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>, %eg: tensor<4x6x8xf8E4M3FN>,
                  %eu: tensor<4x6x8xf8E4M3FN>, %ed: tensor<4x8x6xf8E4M3FN>, %s: tensor<4x1x1xf32>) -> tensor<?x8xf32> {
  %y = xfmr.moe_experts %x, %w, %i, %eg, %eu, %ed scales(%s, %s, %s : tensor<4x1x1xf32>, tensor<4x1x1xf32>, tensor<4x1x1xf32>)
      {dispatch = #xfmr<moe_dispatch sparse>, scale_layout = #xfmr.scale_layout<block [128, 128]>}
      : tensor<?x8xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<4x6x8xf8E4M3FN>, tensor<4x6x8xf8E4M3FN>, tensor<4x8x6xf8E4M3FN> -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}
