//===- PanelLinear.h - y = x W^T over weights stored in panels --*- C++ -*-===//
//
// The prefill-and-decode linear of CPU-only artifacts. xfmr-plan-memory
// stores its bf16 weight [out, in] in panels of `panel` rows, each pair of
// input columns of a panel's rows together: [ceil(out / panel)]
// [ceil(in / 2)][panel][2] (zero-padded). One 32-element load is then one
// input pair of 16 output rows, the operand `vdpbf16ps` multiplies with a
// broadcast activation pair, and the sums of 16 outputs stay in one vector:
// no horizontal reductions, no transposes, one sequential stream per panel.
//
// A register tile is R activation rows x one panel (4 vectors of 16 sums per
// row). With AVX512-BF16 the activations are rounded to bf16 pairs once and
// each step is R x 4 `vdpbf16ps`; otherwise (or with f32 activations for
// --precise) each weight pair widens to two f32 vectors (a shift and a mask)
// and feeds two FMAs.
//
// FP8 weights are exact, code x scale, in every variant. The FMA tiles widen
// the codes to f32 and scale them. The dot products multiply the codes
// themselves as bf16 (exact: at most 4 significant bits) and scale the sums
// of each block of inputs: widening is then two `vpermi2b` table lookups per
// 64 codes with AVX512-VBMI (an f32 round trip without). Decode widens as it
// reads; from two tokens on, a panel is converted once per call.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_LOWERING_CPU_KERNELS_PANELLINEAR_H
#define XFMR_LOWERING_CPU_KERNELS_PANELLINEAR_H

#include "lowering/CPU/Kernels/KernelBuilder.h"

namespace xfmr::kernels {

struct PanelLinear {
  /// f32 [tokens, in].
  mlir::Value x;
  /// [ceil(out / panel), ceil(in / 2), 2 * panel] in `format`: bf16, or FP8
  /// codes with block `scale`s (`blockScale` rows a multiple of `panel`,
  /// columns even), multiplied as code x scale in every variant.
  mlir::Value w;
  WeightFormat format = WeightFormat::BF16;
  /// FP8: f32 [ceil(out / bm), ceil(in / bn)] and the block [bm, bn]; the
  /// FNUZ decode table.
  mlir::Value scale;
  std::pair<int64_t, int64_t> blockScale{0, 0};
  mlir::Value table;
  /// [out] in `biasFormat`, or none.
  mlir::Value bias;
  WeightFormat biasFormat = WeightFormat::F32;
  /// f32 [tokens, out].
  mlir::Value y;
  int64_t in = 0, out = 0, panel = 0;
  /// Round the activations to bf16 (nearest even) before the products.
  bool bf16Activations = true;
  /// Multiply with `vdpbf16ps` (needs bf16Activations and AVX512-BF16).
  bool dotProducts = false;
  /// FP8 with dot products: widen the codes by byte-table lookups (needs
  /// AVX512-VBMI).
  bool byteTables = false;
  /// Activation rows per register tile.
  int64_t tileRows = 6;
};

/// Emits the whole product for every token of `op.x`.
void emitPanelLinear(mlir::OpBuilder &b, mlir::Location loc,
                     const PanelLinear &op);

} // namespace xfmr::kernels

#endif // XFMR_LOWERING_CPU_KERNELS_PANELLINEAR_H
