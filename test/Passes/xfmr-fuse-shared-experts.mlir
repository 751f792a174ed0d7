// RUN: xfmr-opt %s --xfmr-fuse-shared-experts --split-input-file | FileCheck %s

!x = tensor<?x8xf32>
!w = tensor<?x2xf32>
!i = tensor<?x2xi32>
!eg = tensor<4x6x8xf32>
!ed = tensor<4x8x6xf32>

// DeepSeek's routed + shared experts become one op; the shared linears, their
// swiglu and the add are gone.
// CHECK-LABEL: func.func @routed_plus_shared
// CHECK-SAME: (%[[X:[^:]+]]: tensor<?x8xf32>, %{{[^:]+}}: tensor<?x2xf32>, %{{[^:]+}}: tensor<?x2xi32>, %{{[^:]+}}: tensor<4x6x8xf32>, %{{[^:]+}}: tensor<4x6x8xf32>, %{{[^:]+}}: tensor<4x8x6xf32>, %[[SG:[^:]+]]: tensor<12x8xf32>, %[[SU:[^:]+]]: tensor<12x8xf32>, %[[SD:[^:]+]]: tensor<8x12xf32>)
// CHECK-NOT: xfmr.linear
// CHECK-NOT: xfmr.swiglu
// CHECK-NOT: xfmr.add
// CHECK: %[[Y:.+]] = xfmr.moe_experts %[[X]], {{.+}} shared(%[[SG]], %[[SU]], %[[SD]] : tensor<12x8xf32>, tensor<12x8xf32>, tensor<8x12xf32>)
// CHECK-SAME: dispatch = #xfmr<moe_dispatch grouped>
// CHECK: return %[[Y]]
func.func @routed_plus_shared(%x: !x, %w: !w, %i: !i, %eg: !eg, %eu: !eg, %ed: !ed,
                              %sg: tensor<12x8xf32>, %su: tensor<12x8xf32>, %sd: tensor<8x12xf32>) -> !x {
  %r = xfmr.moe_experts %x, %w, %i, %eg, %eu, %ed {dispatch = #xfmr<moe_dispatch grouped>}
      : !x, !w, !i, !eg, !eg, !ed -> !x
  %g = xfmr.linear %x, %sg : !x, tensor<12x8xf32> -> tensor<?x12xf32>
  %u = xfmr.linear %x, %su : !x, tensor<12x8xf32> -> tensor<?x12xf32>
  %a = xfmr.swiglu %g, %u : tensor<?x12xf32>
  %s = xfmr.linear %a, %sd : tensor<?x12xf32>, tensor<8x12xf32> -> !x
  %y = xfmr.add %s, %r : !x
  return %y : !x
}

// -----

!x = tensor<?x8xf32>
!w = tensor<?x2xf32>
!i = tensor<?x2xi32>
!eg = tensor<4x6x8xf32>
!ed = tensor<4x8x6xf32>

// A shared expert reading another value (e.g. its own quantized activations)
// is a different function: nothing changes.
// CHECK-LABEL: func.func @other_input
// CHECK: xfmr.moe_experts
// CHECK-NOT: shared(
// CHECK: xfmr.add
func.func @other_input(%x: !x, %z: !x, %w: !w, %i: !i, %eg: !eg, %eu: !eg, %ed: !ed,
                       %sg: tensor<12x8xf32>, %su: tensor<12x8xf32>, %sd: tensor<8x12xf32>) -> !x {
  %r = xfmr.moe_experts %x, %w, %i, %eg, %eu, %ed : !x, !w, !i, !eg, !eg, !ed -> !x
  %g = xfmr.linear %z, %sg : !x, tensor<12x8xf32> -> tensor<?x12xf32>
  %u = xfmr.linear %z, %su : !x, tensor<12x8xf32> -> tensor<?x12xf32>
  %a = xfmr.swiglu %g, %u : tensor<?x12xf32>
  %s = xfmr.linear %a, %sd : tensor<?x12xf32>, tensor<8x12xf32> -> !x
  %y = xfmr.add %r, %s : !x
  return %y : !x
}

// -----

!x = tensor<?x8xf32>
!w = tensor<?x2xf32>
!i = tensor<?x2xi32>
!eg = tensor<4x6x8xf32>
!ed = tensor<4x8x6xf32>

// A down projection with a bias is not a shared expert of this form.
// CHECK-LABEL: func.func @biased
// CHECK: xfmr.add
func.func @biased(%x: !x, %w: !w, %i: !i, %eg: !eg, %eu: !eg, %ed: !ed, %b: tensor<8xf32>,
                  %sg: tensor<12x8xf32>, %su: tensor<12x8xf32>, %sd: tensor<8x12xf32>) -> !x {
  %r = xfmr.moe_experts %x, %w, %i, %eg, %eu, %ed : !x, !w, !i, !eg, !eg, !ed -> !x
  %g = xfmr.linear %x, %sg : !x, tensor<12x8xf32> -> tensor<?x12xf32>
  %u = xfmr.linear %x, %su : !x, tensor<12x8xf32> -> tensor<?x12xf32>
  %a = xfmr.swiglu %g, %u : tensor<?x12xf32>
  %s = xfmr.linear %a, %sd bias(%b : tensor<8xf32>) : tensor<?x12xf32>, tensor<8x12xf32> -> !x
  %y = xfmr.add %r, %s : !x
  return %y : !x
}

// -----

!x = tensor<?x256xf32>
!w = tensor<?x2xf32>
!i = tensor<?x2xi32>
!eg = tensor<4x128x256xf8E4M3FN>
!ed = tensor<4x256x128xf8E4M3FN>

// FP8: shared weights in the routed experts' block layout move with their scales.
// CHECK-LABEL: func.func @fp8
// CHECK: xfmr.moe_experts {{.+}} shared({{.+}}) shared_scales(%{{.+}}, %{{.+}}, %{{.+}} : tensor<1x2xf32>, tensor<1x2xf32>, tensor<2x1xf32>)
// CHECK-SAME: scale_layout = #xfmr.scale_layout<block [128, 128]>
// CHECK-NOT: xfmr.add
func.func @fp8(%x: !x, %w: !w, %i: !i, %eg: !eg, %eu: !eg, %ed: !ed, %es: tensor<4x1x2xf32>, %eds: tensor<4x2x1xf32>,
               %sg: tensor<128x256xf8E4M3FN>, %su: tensor<128x256xf8E4M3FN>, %sd: tensor<256x128xf8E4M3FN>,
               %s1: tensor<1x2xf32>, %s2: tensor<2x1xf32>) -> !x {
  %r = xfmr.moe_experts %x, %w, %i, %eg, %eu, %ed scales(%es, %es, %eds : tensor<4x1x2xf32>, tensor<4x1x2xf32>, tensor<4x2x1xf32>)
      {scale_layout = #xfmr.scale_layout<block [128, 128]>} : !x, !w, !i, !eg, !eg, !ed -> !x
  %g = xfmr.linear %x, %sg scale(%s1 : tensor<1x2xf32>) {scale_layout = #xfmr.scale_layout<block [128, 128]>}
      : !x, tensor<128x256xf8E4M3FN> -> tensor<?x128xf32>
  %u = xfmr.linear %x, %su scale(%s1 : tensor<1x2xf32>) {scale_layout = #xfmr.scale_layout<block [128, 128]>}
      : !x, tensor<128x256xf8E4M3FN> -> tensor<?x128xf32>
  %a = xfmr.swiglu %g, %u : tensor<?x128xf32>
  %s = xfmr.linear %a, %sd scale(%s2 : tensor<2x1xf32>) {scale_layout = #xfmr.scale_layout<block [128, 128]>}
      : tensor<?x128xf32>, tensor<256x128xf8E4M3FN> -> !x
  %y = xfmr.add %r, %s : !x
  return %y : !x
}
