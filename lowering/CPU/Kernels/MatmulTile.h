//===- MatmulTile.h - register-tiled x . W^T over a row range ---*- C++ -*-===//
//
// The matrix product inside `linear` and the MoE expert kernels:
// sum[r, n] = x[r] . w[prefix..., n] for rows r of `x` in [begin, end) and
// every weight row n, handed to a store callback (which adds a bias, stores,
// or scatters into a token's output). Parallel over blocks of weight rows;
// inside, a register tile of up to 4 x rows by 4 weight rows shares its loads,
// so many rows are bound by arithmetic and one row streams each weight byte
// once.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_LOWERING_CPU_KERNELS_MATMULTILE_H
#define XFMR_LOWERING_CPU_KERNELS_MATMULTILE_H

#include "lowering/CPU/Kernels/KernelBuilder.h"

namespace xfmr::kernels {

struct MatmulTile {
  /// f32 [rows, in].
  mlir::Value x;
  /// [weightPrefix..., out, in] in `format`; FP8 decodes through `table`.
  /// I4: [weightPrefix..., out, ceil(in / 2)] bytes, two codes + 8 each
  /// (even inputs in the low nibble), with f16 `scale`s [weightPrefix...,
  /// out, ceil(in / group)] for `blockScale` [1, group], group a multiple
  /// of `width`: each loaded weight vector is scaled by its group's scale.
  mlir::Value w;
  llvm::SmallVector<mlir::Value> weightPrefix;
  int64_t in = 0, out = 0;
  /// The vector width (KernelLibrary::vectorWidth()).
  int64_t width = 16;
  WeightFormat format = WeightFormat::F32;
  mlir::Value table;
  /// Block scales [weightPrefix..., ceil(out / bm), ceil(in / bn)], or none.
  std::optional<std::pair<int64_t, int64_t>> blockScale;
  mlir::Value scale;
  /// Receives each finished sum: (x row, weight row, value).
  std::function<void(mlir::OpBuilder &, mlir::Location, mlir::Value,
                     mlir::Value, mlir::Value)>
      store;
};

/// Emits the product for x rows [begin, end) as one parallel loop over
/// blocks of weight rows.
void emitMatmul(mlir::OpBuilder &b, mlir::Location loc, const MatmulTile &op,
                mlir::Value begin, mlir::Value end);

} // namespace xfmr::kernels

#endif // XFMR_LOWERING_CPU_KERNELS_MATMULTILE_H
