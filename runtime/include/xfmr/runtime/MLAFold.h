//===- MLAFold.h - MLA weight products folded at compile time ---*- C++ -*-===//
//
// The products xfmr.fold_mla_weight describes, computed in double precision
// when the artifact is packed (row-major inputs and result).
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_MLAFOLD_H
#define XFMR_RUNTIME_MLAFOLD_H

#include <cstdint>
#include <string_view>
#include <vector>

namespace xfmr {

struct MLAFoldShape {
  int64_t heads, nope, rope, valueDim, rank;
};

/// `kind` is "query_latent" (weight = query projection [H * (nope + rope),
/// in], result [H * rank, in]), "query_rope" (its rope rows, [H * rope, in])
/// or "output" (weight = o_proj [hidden, H * v], result [hidden, H * rank]).
/// `kvB` is kv_b_proj [H * (nope + v), rank] (unused for query_rope).
std::vector<double> foldMLAWeight(std::string_view kind,
                                  const std::vector<double> &weight,
                                  int64_t weightRows, int64_t weightCols,
                                  const std::vector<double> &kvB,
                                  const MLAFoldShape &shape);

} // namespace xfmr

#endif // XFMR_RUNTIME_MLAFOLD_H
