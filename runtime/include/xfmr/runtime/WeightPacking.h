//===- WeightPacking.h - checkpoint tensors -> the weight blob --*- C++ -*-===//
//
// The packing plan says how each tensor of an artifact's weight blob is made
// from checkpoint tensors: copied, FP8- or int8-quantized in blocks (codes,
// then scales) or an MLA product folded in double precision. The compiler
// writes the plan into the manifest (weights.tensors) and packs with it;
// xfmr-pack reads it back and binds another checkpoint's weights to compiled
// code. Both run the code below, so the same checkpoint gives the same bytes.
//
// Manifest fields of one tensor (besides name, offset, bytes, dtype, shape):
//   "transform": "fp8_codes" | "fp8_scales" | "int8_codes" | "int8_scales"
//       | "int4_codes" | "int4_scales" with "source_dtype", "source_shape"
//       and "block": [rows, cols] (int8: scale = max |w| / 127, codes to
//       nearest even in [-127, 127]; int4: dtype i4 and f16 scales, as
//       llama.cpp's Q4_0: scale = f16(m / -8) for m the group's first value
//       of the largest magnitude, codes to nearest even of w / scale in
//       [-8, 7], 0 where the scale is 0; outside panels (the MoE kernels'
//       expert stacks) row-major, two codes + 8 a byte, see toInt4Rows)
//   "transform": "mla_query_latent" | "mla_query_rope" | "mla_output"  with
//       "source_dtype", "source_shape", "heads", "nope", "rope",
//       "value_dim" and, except for mla_query_rope, "kv_b", "kv_b_dtype",
//       "kv_b_shape"
//   "panel": P  (after any transform) the matrix [rows, cols] is stored in
//       panels of P rows for the CPU's dot-product kernels:
//       [ceil(rows / P)][ceil(cols / 2)][P][2], zero-padded; i8 codes in
//       quads, [ceil(rows / P)][ceil(cols / 4)][P][4], each code + 128 as an
//       unsigned byte (padding: code 0); i4 codes in octets,
//       [ceil(rows / P)][ceil(cols / 8)][P][4] bytes, each code + 8 as an
//       unsigned nibble, columns 0-3 of the octet in the low nibbles, 4-7 in
//       the high ones; their f16 scales [rows, groups] in panels of single
//       columns, [ceil(rows / P)][groups][P]; see toPanels, toInt8Panels and
//       toInt4Panels.
// A name with `*` stands for the stacked tensors `*` = 0, 1, ... in order.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_RUNTIME_WEIGHTPACKING_H
#define XFMR_RUNTIME_WEIGHTPACKING_H

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace xfmr::runtime {

class JsonValue;

/// One tensor of the weight blob and where its bytes come from.
struct PackedTensor {
  std::string name;
  uint64_t offset = 0, bytes = 0;
  /// The stored element type: f32, bf16, f16, f8e4m3fn, f8e4m3fnuz, f8e5m2,
  /// i8.
  std::string dtype;
  std::vector<int64_t> shape;
  /// "" (copied) or one of the transforms above.
  std::string transform;
  std::string sourceDtype;
  std::vector<int64_t> sourceShape;
  int64_t blockRows = 0, blockCols = 0;
  int64_t heads = 0, nope = 0, rope = 0, valueDim = 0;
  std::string kvB, kvBDtype;
  std::vector<int64_t> kvBShape;
  /// Rows per panel, or 0 (row-major).
  int64_t panel = 0;
};

/// The row-major matrix `data` ([rows, cols] of `elementBytes`-byte
/// elements) in panels of `panel` rows and groups of `group` columns:
/// element (r, c) goes to ((r / panel * ceil(cols / group) + c / group) *
/// panel + r % panel) * group + c % group, the rest is zeros.
std::string toPanels(const std::string &data, int64_t rows, int64_t cols,
                     int64_t elementBytes, int64_t panel, int64_t group = 2);

/// The row-major int8 codes `data` ([rows, cols]) in panels of `panel` rows
/// and quads of columns, as the CPU's `vpdpbusd` kernels read them: code
/// (r, c) + 128 goes to ((r / panel * ceil(cols / 4) + c / 4) * panel +
/// r % panel) * 4 + c % 4, the rest is 128 (code 0).
std::string toInt8Panels(const std::string &data, int64_t rows, int64_t cols,
                         int64_t panel);

/// The row-major int4 codes `data` ([rows, cols], one signed byte in
/// [-8, 7] each) in panels of `panel` rows and octets of columns, as the
/// CPU's int4 kernels read them: code (r, c) + 8 goes to the low (c % 8 <
/// 4) or high nibble of byte ((r / panel * ceil(cols / 8) + c / 8) * panel +
/// r % panel) * 4 + c % 4; the rest is 8 (code 0).
std::string toInt4Panels(const std::string &data, int64_t rows, int64_t cols,
                         int64_t panel);

/// The row-major int4 codes `data` ([rows, cols], one signed byte in
/// [-8, 7] each) two a byte, row-major, as the MoE kernels read expert
/// stacks: code (r, c) + 8 goes to the low (even c) or high (odd c) nibble
/// of byte r * ceil(cols / 2) + c / 2; the last high nibble of a row of odd
/// width is 8.
std::string toInt4Rows(const std::string &data, int64_t rows, int64_t cols);

/// Reads the plan from a manifest's weights.tensors; throws `Error` naming
/// `path` and the field.
std::vector<PackedTensor> readPackingPlan(const JsonValue &manifest,
                                          const std::string &path);

/// Where tensors come from: a checkpoint.
class TensorSource {
public:
  struct Tensor {
    /// The safetensors spelling ("F32", "BF16", "F8_E4M3", ...).
    std::string dtype;
    std::vector<int64_t> shape;
    const uint8_t *data = nullptr;
    uint64_t size = 0;
  };
  virtual ~TensorSource();
  /// The tensor called `name`; false when there is none.
  virtual bool find(const std::string &name, Tensor &tensor) const = 0;
  /// "the checkpoint DIR", for messages.
  virtual std::string describe() const = 0;
};

/// What packWeights did, for the user.
struct PackingSummary {
  /// Tensors whose checkpoint dtype differed and were converted (f32, bf16
  /// and f16 convert among themselves, rounding to nearest even).
  std::vector<std::string> converted;
};

/// Writes the weight blob, `totalBytes` long: every tensor of `plan` at its
/// offset, zeros between. `write` appends bytes and returns "" or an error;
/// `progress` gets a line every 256 MiB. Returns "" or the first error,
/// naming the tensor and the source.
std::string packWeights(
    const std::vector<PackedTensor> &plan, uint64_t totalBytes,
    const TensorSource &source,
    const std::function<std::string(const void *, size_t)> &write,
    const std::function<void(const std::string &)> &progress = {},
    PackingSummary *summary = nullptr);

/// The safetensors dtype a stored dtype is copied from ("" if none).
std::string safetensorsDtypeOf(const std::string &dtype);

} // namespace xfmr::runtime

#endif // XFMR_RUNTIME_WEIGHTPACKING_H
