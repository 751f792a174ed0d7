//===- MLAFold.h - MLA weight products folded at compile time ---*- C++ -*-===//
//
// The products xfmr.fold_mla_weight describes, computed in double precision
// when the artifact is packed (row-major inputs and result).
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_LOWERING_ARTIFACT_MLAFOLD_H
#define XFMR_LOWERING_ARTIFACT_MLAFOLD_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"

#include <cstdint>
#include <vector>

namespace xfmr {

struct MLAFoldShape {
  int64_t heads, nope, rope, valueDim, rank;
};

/// `kind` is "query_latent" (weight = query projection [H * (nope + rope),
/// in], result [H * rank, in]), "query_rope" (its rope rows, [H * rope, in])
/// or "output" (weight = o_proj [hidden, H * v], result [hidden, H * rank]).
/// `kvB` is kv_b_proj [H * (nope + v), rank] (unused for query_rope).
std::vector<double> foldMLAWeight(llvm::StringRef kind,
                                  llvm::ArrayRef<double> weight,
                                  int64_t weightRows, int64_t weightCols,
                                  llvm::ArrayRef<double> kvB,
                                  const MLAFoldShape &shape);

} // namespace xfmr

#endif // XFMR_LOWERING_ARTIFACT_MLAFOLD_H
