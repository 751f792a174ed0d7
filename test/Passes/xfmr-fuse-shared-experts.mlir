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

// -----

!x = tensor<?x256xf32>
!w = tensor<?x2xf32>
!i = tensor<?x2xi32>
!eg = tensor<4x128x256xf8E4M3FN>
!ed = tensor<4x256x128xf8E4M3FN>
#act = #xfmr.scale_layout<block [1, 128]>
#blk = #xfmr.scale_layout<block [128, 128]>

// FP8 with dynamic activations (xfmr-quantize-fp8's default): every linear
// quantizes its own input. The shared gate/up read the experts' input
// quantized the same way and the down projection the SwiGLU quantized in the
// experts' activation_group, so the shared expert still folds in; the kernel
// applies those quantizations.
// CHECK-LABEL: func.func @fp8_activations
// CHECK: %[[Q:.+]], %[[S:.+]] = xfmr.quantize %{{.+}} {layout = #xfmr.scale_layout<block [1, 128]>}
// CHECK: %[[D:.+]] = xfmr.dequantize %[[Q]], %[[S]]
// CHECK: %[[Y:.+]] = xfmr.moe_experts %[[D]], {{.+}} shared({{.+}}) shared_scales({{.+}}) {activation_group = 128 : i64, scale_layout = #xfmr.scale_layout<block [128, 128]>}
// CHECK-NOT: xfmr.swiglu
// CHECK: return %[[Y]]
func.func @fp8_activations(%x: !x, %w: !w, %i: !i, %eg: !eg, %eu: !eg, %ed: !ed, %es: tensor<4x1x2xf32>, %eds: tensor<4x2x1xf32>,
                           %sg: tensor<128x256xf8E4M3FN>, %su: tensor<128x256xf8E4M3FN>, %sd: tensor<256x128xf8E4M3FN>,
                           %s1: tensor<1x2xf32>, %s2: tensor<2x1xf32>) -> !x {
  %q0, %s0 = xfmr.quantize %x {layout = #act} : !x -> tensor<?x256xf8E4M3FN>, tensor<?x2xf32>
  %d0 = xfmr.dequantize %q0, %s0 {layout = #act} : tensor<?x256xf8E4M3FN>, tensor<?x2xf32> -> !x
  %r = xfmr.moe_experts %d0, %w, %i, %eg, %eu, %ed scales(%es, %es, %eds : tensor<4x1x2xf32>, tensor<4x1x2xf32>, tensor<4x2x1xf32>)
      {activation_group = 128 : i64, scale_layout = #blk} : !x, !w, !i, !eg, !eg, !ed -> !x
  %q1, %t1 = xfmr.quantize %x {layout = #act} : !x -> tensor<?x256xf8E4M3FN>, tensor<?x2xf32>
  %d1 = xfmr.dequantize %q1, %t1 {layout = #act} : tensor<?x256xf8E4M3FN>, tensor<?x2xf32> -> !x
  %g = xfmr.linear %d1, %sg scale(%s1 : tensor<1x2xf32>) {scale_layout = #blk} : !x, tensor<128x256xf8E4M3FN> -> tensor<?x128xf32>
  %q2, %t2 = xfmr.quantize %x {layout = #act} : !x -> tensor<?x256xf8E4M3FN>, tensor<?x2xf32>
  %d2 = xfmr.dequantize %q2, %t2 {layout = #act} : tensor<?x256xf8E4M3FN>, tensor<?x2xf32> -> !x
  %u = xfmr.linear %d2, %su scale(%s1 : tensor<1x2xf32>) {scale_layout = #blk} : !x, tensor<128x256xf8E4M3FN> -> tensor<?x128xf32>
  %a = xfmr.swiglu %g, %u : tensor<?x128xf32>
  %q3, %t3 = xfmr.quantize %a {layout = #act} : tensor<?x128xf32> -> tensor<?x128xf8E4M3FN>, tensor<?x1xf32>
  %d3 = xfmr.dequantize %q3, %t3 {layout = #act} : tensor<?x128xf8E4M3FN>, tensor<?x1xf32> -> tensor<?x128xf32>
  %s = xfmr.linear %d3, %sd scale(%s2 : tensor<2x1xf32>) {scale_layout = #blk} : tensor<?x128xf32>, tensor<256x128xf8E4M3FN> -> !x
  %y = xfmr.add %r, %s : !x
  return %y : !x
}
