//===- MLAFold.cpp - MLA weight products folded at compile time -----------===//

#include "xfmr/runtime/MLAFold.h"

using namespace xfmr;

std::vector<double> xfmr::foldMLAWeight(std::string_view kind,
                                        const std::vector<double> &weight,
                                        int64_t weightRows, int64_t weightCols,
                                        const std::vector<double> &kvB,
                                        const MLAFoldShape &s) {
  int64_t queryStride = s.nope + s.rope, kvStride = s.nope + s.valueDim;
  std::vector<double> out;
  int64_t cols = weightCols;
  if (kind == "query_rope") {
    // The rope rows of each head, in order.
    out.reserve(s.heads * s.rope * cols);
    for (int64_t h = 0; h < s.heads; ++h)
      for (int64_t r = 0; r < s.rope; ++r) {
        const double *row = &weight[(h * queryStride + s.nope + r) * cols];
        out.insert(out.end(), row, row + cols);
      }
  } else if (kind == "query_latent") {
    // out[h * rank + c] = sum_d W_UK[h][d][c] * W_q[h * (nope + rope) + d].
    out.assign(s.heads * s.rank * cols, 0.0);
    for (int64_t h = 0; h < s.heads; ++h)
      for (int64_t d = 0; d < s.nope; ++d) {
        const double *queryRow = &weight[(h * queryStride + d) * cols];
        const double *uk = &kvB[(h * kvStride + d) * s.rank];
        for (int64_t c = 0; c < s.rank; ++c) {
          double a = uk[c];
          double *target = &out[(h * s.rank + c) * cols];
          for (int64_t j = 0; j < cols; ++j)
            target[j] += a * queryRow[j];
        }
      }
  } else {
    // out[n][h * rank + c] = sum_v W_o[n][h * v_dim + v] * W_UV[h][v][c].
    cols = s.heads * s.rank;
    out.assign(weightRows * cols, 0.0);
    for (int64_t n = 0; n < weightRows; ++n)
      for (int64_t h = 0; h < s.heads; ++h)
        for (int64_t v = 0; v < s.valueDim; ++v) {
          double a = weight[n * weightCols + h * s.valueDim + v];
          const double *uv = &kvB[(h * kvStride + s.nope + v) * s.rank];
          double *target = &out[n * cols + h * s.rank];
          for (int64_t c = 0; c < s.rank; ++c)
            target[c] += a * uv[c];
        }
  }
  return out;
}
