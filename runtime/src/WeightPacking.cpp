//===- WeightPacking.cpp - checkpoint tensors -> the weight blob ----------===//

#include "xfmr/runtime/WeightPacking.h"

#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Float16.h"
#include "xfmr/runtime/Float8.h"
#include "xfmr/runtime/Json.h"
#include "xfmr/runtime/MLAFold.h"
#include "xfmr/runtime/SafetensorsCheckpoint.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

using namespace xfmr;
using namespace xfmr::runtime;

TensorSource::~TensorSource() = default;

std::string runtime::safetensorsDtypeOf(const std::string &dtype) {
  static const std::map<std::string, std::string> names = {
      {"f32", "F32"},          {"bf16", "BF16"},      {"f16", "F16"},
      {"f8e4m3fn", "F8_E4M3"}, {"f8e5m2", "F8_E5M2"}, {"i8", "I8"},
      {"i32", "I32"},          {"i64", "I64"}};
  auto it = names.find(dtype);
  return it == names.end() ? "" : it->second;
}

//===----------------------------------------------------------------------===//
// The plan in the manifest
//===----------------------------------------------------------------------===//

namespace {

int64_t integerField(const JsonValue &object, const char *key,
                     const std::string &where, int64_t min = 0) {
  const JsonValue *v = object.find(key);
  if (!v || !v->isInteger() || v->asInt() < min)
    throw Error(where + "." + key +
                " must be an integer >= " + std::to_string(min));
  return v->asInt();
}

std::string stringField(const JsonValue &object, const char *key,
                        const std::string &where) {
  const JsonValue *v = object.find(key);
  if (!v || !v->isString())
    throw Error(where + "." + key + " must be a string");
  return v->asString();
}

std::vector<int64_t> shapeField(const JsonValue &object, const char *key,
                                const std::string &where) {
  const JsonValue *v = object.find(key);
  if (!v || !v->isArray())
    throw Error(where + "." + key + " must be an array of sizes");
  std::vector<int64_t> shape;
  for (const JsonValue &dim : v->asArray()) {
    if (!dim.isInteger() || dim.asInt() < 0)
      throw Error(where + "." + key + " must be an array of sizes");
    shape.push_back(dim.asInt());
  }
  return shape;
}

/// Bytes per element of a stored dtype.
int64_t elementBytesOf(const std::string &dtype) {
  if (dtype == "f32")
    return 4;
  if (dtype == "bf16" || dtype == "f16")
    return 2;
  return 1;
}

int64_t elementsOf(const std::vector<int64_t> &shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    n = d && n > INT64_MAX / d ? INT64_MAX : n * d;
  return n;
}

} // namespace

std::vector<PackedTensor> runtime::readPackingPlan(const JsonValue &manifest,
                                                   const std::string &path) {
  const JsonValue *weights = manifest.find("weights");
  const JsonValue *tensors = weights ? weights->find("tensors") : nullptr;
  if (!tensors || !tensors->isArray())
    throw Error(path + ": the manifest has no weights.tensors array (the "
                       "packing plan)");
  std::vector<PackedTensor> plan;
  for (size_t i = 0; i < tensors->asArray().size(); ++i) {
    const JsonValue &t = tensors->asArray()[i];
    std::string where =
        path + ": manifest field 'weights.tensors[" + std::to_string(i) + "]";
    if (!t.isObject())
      throw Error(where + "' must be an object");
    where += "'";
    PackedTensor p;
    p.name = stringField(t, "name", where);
    where = path + ": manifest tensor '" + p.name + "'";
    p.offset = integerField(t, "offset", where);
    p.bytes = integerField(t, "bytes", where);
    p.dtype = stringField(t, "dtype", where);
    p.shape = shapeField(t, "shape", where);
    if (t.find("panel")) {
      p.panel = integerField(t, "panel", where, 1);
      if (p.shape.size() != 2 || p.panel > (int64_t(1) << 20))
        throw Error(where + ": panels hold a matrix, in at most 2^20 rows");
    }
    if (t.find("transform")) {
      p.transform = stringField(t, "transform", where);
      p.sourceDtype = stringField(t, "source_dtype", where);
      p.sourceShape = shapeField(t, "source_shape", where);
      if (p.transform == "fp8_codes" || p.transform == "fp8_scales" ||
          p.transform == "int8_codes" || p.transform == "int8_scales" ||
          p.transform == "int4_codes" || p.transform == "int4_scales") {
        std::vector<int64_t> block = shapeField(t, "block", where);
        if (block.size() != 2 || !block[0] || !block[1] ||
            p.sourceShape.size() < 2)
          throw Error(where + ": a quantization block must be [rows, cols] "
                              "of a matrix or a stack of matrices");
        bool scales = p.transform == "fp8_scales" ||
                      p.transform == "int8_scales" ||
                      p.transform == "int4_scales";
        if ((!scales && (p.transform == "int8_codes") != (p.dtype == "i8")) ||
            (!scales && (p.transform == "int4_codes") != (p.dtype == "i4")) ||
            (p.transform == "int4_scales") != (scales && p.dtype == "f16"))
          throw Error(where + ": transform '" + p.transform +
                      "' does not make dtype '" + p.dtype + "'");
        p.blockRows = block[0];
        p.blockCols = block[1];
      } else if (p.transform == "mla_query_latent" ||
                 p.transform == "mla_query_rope" ||
                 p.transform == "mla_output") {
        p.heads = integerField(t, "heads", where, 1);
        p.nope = integerField(t, "nope", where);
        p.rope = integerField(t, "rope", where);
        p.valueDim = integerField(t, "value_dim", where);
        if (p.sourceShape.size() != 2)
          throw Error(where + ": an MLA fold reads a matrix");
        if (p.transform != "mla_query_rope") {
          p.kvB = stringField(t, "kv_b", where);
          p.kvBDtype = stringField(t, "kv_b_dtype", where);
          p.kvBShape = shapeField(t, "kv_b_shape", where);
          if (p.kvBShape.size() != 2)
            throw Error(where + ": kv_b_shape must be a matrix");
        }
      } else {
        throw Error(where + ": unknown transform '" + p.transform +
                    "' (this runtime knows fp8_codes, fp8_scales, "
                    "int8_codes, int8_scales, int4_codes, int4_scales, "
                    "mla_query_latent, "
                    "mla_query_rope and mla_output)");
      }
    }
    plan.push_back(std::move(p));
  }
  return plan;
}

//===----------------------------------------------------------------------===//
// Packing
//===----------------------------------------------------------------------===//

namespace {

/// The checkpoint tensors behind a plan name (several for a `*` name).
std::vector<TensorSource::Tensor> readPieces(const TensorSource &source,
                                             const std::string &name) {
  std::vector<TensorSource::Tensor> pieces;
  size_t star = name.find('*');
  if (star == std::string::npos) {
    TensorSource::Tensor t;
    if (!source.find(name, t))
      throw Error("weight '" + name + "' is not in " + source.describe());
    pieces.push_back(std::move(t));
    return pieces;
  }
  for (int64_t i = 0;; ++i) {
    TensorSource::Tensor t;
    std::string piece =
        name.substr(0, star) + std::to_string(i) + name.substr(star + 1);
    if (!source.find(piece, t))
      break;
    if (!pieces.empty() && t.dtype != pieces.front().dtype)
      throw Error("weight '" + piece + "' is " + t.dtype + " but '" +
                  name.substr(0, star) + "0" + name.substr(star + 1) + "' is " +
                  pieces.front().dtype + " in " + source.describe());
    pieces.push_back(std::move(t));
  }
  if (pieces.empty())
    throw Error("weight '" + name.substr(0, star) + "0" +
                name.substr(star + 1) + "' is not in " + source.describe());
  return pieces;
}

bool isHighPrecision(const std::string &dtype) {
  return dtype == "F32" || dtype == "BF16" || dtype == "F16";
}

/// Appends `tensor`'s values (f32, bf16 or f16) as doubles.
void appendDoubles(const std::string &name, const TensorSource::Tensor &tensor,
                   std::vector<double> &values) {
  const uint8_t *p = tensor.data;
  if (tensor.dtype == "F32") {
    for (uint64_t i = 0; i < tensor.size / 4; ++i) {
      float v;
      std::memcpy(&v, p + 4 * i, 4);
      values.push_back(v);
    }
    return;
  }
  if (!isHighPrecision(tensor.dtype))
    throw Error("weight '" + name + "' is " + tensor.dtype +
                ", but it is quantized or folded at packing time, which "
                "reads F32, BF16 or F16");
  bool bf16 = tensor.dtype == "BF16";
  for (uint64_t i = 0; i < tensor.size / 2; ++i) {
    uint16_t bits = static_cast<uint16_t>(p[2 * i] | p[2 * i + 1] << 8);
    values.push_back(bf16 ? float16::decodeBF16(bits)
                          : float16::decodeF16(bits));
  }
}

/// The values of `pieces` (the tensors behind `name`), checked to have
/// `shape`'s element count.
std::vector<double> toDoubles(const TensorSource &source,
                              const std::string &name,
                              const std::vector<TensorSource::Tensor> &pieces,
                              const std::vector<int64_t> &shape) {
  std::vector<double> values;
  for (const TensorSource::Tensor &piece : pieces)
    appendDoubles(name, piece, values);
  if (int64_t(values.size()) != elementsOf(shape))
    throw Error("weight '" + name + "' has " + std::to_string(values.size()) +
                " elements in " + source.describe() +
                ", the compiled code "
                "expects shape " +
                SafetensorsCheckpoint::shapeText(shape) + " (" +
                std::to_string(elementsOf(shape)) + ")");
  return values;
}

std::vector<double> readDoubles(const TensorSource &source,
                                const std::string &name,
                                const std::vector<int64_t> &shape) {
  return toDoubles(source, name, readPieces(source, name), shape);
}

/// Stores doubles as f32, bf16 or f16 (rounded once to nearest even).
std::string storeDoubles(const std::vector<double> &values,
                         const std::string &dtype) {
  std::string data;
  if (dtype == "f32") {
    data.resize(values.size() * 4);
    for (size_t i = 0; i < values.size(); ++i) {
      float v = static_cast<float>(values[i]);
      std::memcpy(&data[4 * i], &v, 4);
    }
    return data;
  }
  data.resize(values.size() * 2);
  for (size_t i = 0; i < values.size(); ++i) {
    uint16_t bits = dtype == "bf16" ? float16::encodeBF16(values[i])
                                    : float16::encodeF16(values[i]);
    data[2 * i] = static_cast<char>(bits & 0xff);
    data[2 * i + 1] = static_cast<char>(bits >> 8);
  }
  return data;
}

/// FP8 NaN codes would decode to garbage in the kernels' fast path (and are
/// meaningless in weights): rejected.
void checkNoNaNCodes(const std::string &name, const std::string &bytes,
                     const std::string &dtype) {
  bool fnuz = dtype == "f8e4m3fnuz", e5m2 = dtype == "f8e5m2";
  for (size_t i = 0; i < bytes.size(); ++i) {
    uint8_t code = bytes[i];
    bool nan = fnuz   ? code == 0x80
               : e5m2 ? (code & 0x7C) == 0x7C && (code & 0x03)
                      : (code & 0x7F) == 0x7F;
    if (nan)
      throw Error("FP8 weight '" + name + "' holds a NaN code at element " +
                  std::to_string(i));
  }
}

/// A tensor copied from the checkpoint, converted among f32/bf16/f16 when
/// the checkpoint's dtype differs.
std::string copyTensor(const TensorSource &source, const PackedTensor &t,
                       PackingSummary *summary) {
  std::vector<TensorSource::Tensor> pieces = readPieces(source, t.name);
  std::string want = safetensorsDtypeOf(t.dtype);
  std::string have = pieces.front().dtype;
  if (have == want) {
    std::string data;
    for (const TensorSource::Tensor &piece : pieces)
      data.append(reinterpret_cast<const char *>(piece.data), piece.size);
    if (t.dtype.rfind("f8", 0) == 0)
      checkNoNaNCodes(t.name, data, t.dtype);
    return data;
  }
  bool stored16 = t.dtype == "f32" || t.dtype == "bf16" || t.dtype == "f16";
  if (!stored16 || !isHighPrecision(have))
    throw Error("weight '" + t.name + "' is " + have + " in " +
                source.describe() + ", but the compiled code reads " +
                (want.empty() ? t.dtype : want) +
                " (only F32, BF16 and F16 convert into each other)");
  if (summary)
    summary->converted.push_back(t.name + " (" + have + " -> " + want + ")");
  return storeDoubles(toDoubles(source, t.name, pieces, t.shape), t.dtype);
}

/// Runs work(0 .. count-1) on the machine's cores; returns the first error.
std::string parallelFor(int64_t count,
                        const std::function<std::string(int64_t)> &work) {
  int64_t threads = std::min<int64_t>(
      count, std::max(1u, std::thread::hardware_concurrency()));
  std::atomic<int64_t> next{0};
  std::mutex mutex;
  std::string firstError;
  auto run = [&] {
    for (int64_t item; (item = next++) < count;) {
      std::string error = work(item);
      if (!error.empty()) {
        std::lock_guard<std::mutex> lock(mutex);
        if (firstError.empty())
          firstError = error;
      }
    }
  };
  std::vector<std::thread> pool;
  for (int64_t i = 1; i < threads; ++i)
    pool.emplace_back(run);
  run();
  for (std::thread &thread : pool)
    thread.join();
  return firstError;
}

std::string fp8Key(const PackedTensor &t) {
  return t.name + "|" + std::to_string(t.blockRows) + "x" +
         std::to_string(t.blockCols);
}

/// The largest |x| of rows [r0, r1) x columns [c0, c1) of a row-major
/// matrix `cols` wide; false with `error` set on NaN or infinite input.
bool blockMaxAbs(const double *values, int64_t cols, int64_t r0, int64_t r1,
                 int64_t c0, int64_t c1, double &amax, std::string &error) {
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t c = c0; c < c1; ++c) {
      double v = values[r * cols + c];
      if (!std::isfinite(v)) {
        error = std::string(std::isnan(v) ? "NaN" : "an infinity") + " at [" +
                std::to_string(r) + ", " + std::to_string(c) + "]";
        return false;
      }
      amax = std::max(amax, std::fabs(v));
    }
  return true;
}

/// Int8 block quantization of a row-major [rows, cols] matrix, as
/// fp8::quantize does FP8: scale = float(max(max |x|, epsilon) / 127) per
/// block, code = round_even(x / scale) clamped to [-127, 127]. Returns false
/// with `error` set on NaN or infinite input.
bool quantizeInt8(const double *values, int64_t rows, int64_t cols,
                  fp8::BlockLayout layout, uint8_t *codes, float *scales,
                  std::string &error) {
  int64_t colBlocks = (cols + layout.blockCols - 1) / layout.blockCols;
  for (int64_t r0 = 0; r0 < rows; r0 += layout.blockRows)
    for (int64_t c0 = 0; c0 < cols; c0 += layout.blockCols) {
      int64_t r1 = std::min(rows, r0 + layout.blockRows);
      int64_t c1 = std::min(cols, c0 + layout.blockCols);
      double amax = 0;
      if (!blockMaxAbs(values, cols, r0, r1, c0, c1, amax, error))
        return false;
      // Quantize against the scale as stored (f32).
      float scale = float(std::max(amax, fp8::kScaleEpsilon) / 127.0);
      scales[r0 / layout.blockRows * colBlocks + c0 / layout.blockCols] = scale;
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) {
          double q = std::nearbyint(values[r * cols + c] / scale);
          codes[r * cols + c] = uint8_t(int8_t(std::clamp(q, -127.0, 127.0)));
        }
    }
  return true;
}

/// Int4 group quantization of a row-major [rows, cols] matrix, as llama.cpp's
/// Q4_0: per block (a row's group of columns) m = the first value of the
/// largest magnitude, scale = f16(m / -8) (negative for a positive m), code =
/// round_even(x / scale) clamped to [-8, 7] (0 where the scale rounds to 0),
/// one signed byte each. m itself becomes code -8: all 16 levels are used,
/// a step 7/8 of max |x| / 7's. Returns false with `error` set on NaN or
/// infinite input, or a scale beyond f16's range.
bool quantizeInt4(const double *values, int64_t rows, int64_t cols,
                  fp8::BlockLayout layout, uint8_t *codes, uint16_t *scales,
                  std::string &error) {
  int64_t colBlocks = (cols + layout.blockCols - 1) / layout.blockCols;
  for (int64_t r0 = 0; r0 < rows; r0 += layout.blockRows)
    for (int64_t c0 = 0; c0 < cols; c0 += layout.blockCols) {
      int64_t r1 = std::min(rows, r0 + layout.blockRows);
      int64_t c1 = std::min(cols, c0 + layout.blockCols);
      double amax = 0;
      if (!blockMaxAbs(values, cols, r0, r1, c0, c1, amax, error))
        return false;
      double m = 0;
      for (int64_t r = r0; r < r1 && m == 0; ++r)
        for (int64_t c = c0; c < c1; ++c)
          if (std::fabs(values[r * cols + c]) == amax) {
            m = values[r * cols + c];
            break;
          }
      uint16_t bits = float16::encodeF16(m / -8.0);
      double scale = float16::decodeF16(bits);
      if (!std::isfinite(scale)) {
        error = "max |w| = " + std::to_string(amax) + " at rows [" +
                std::to_string(r0) + ", " + std::to_string(r1) +
                "), columns [" + std::to_string(c0) + ", " +
                std::to_string(c1) + ") needs a scale beyond f16's range";
        return false;
      }
      scales[r0 / layout.blockRows * colBlocks + c0 / layout.blockCols] = bits;
      // Quantize against the scale as stored (f16).
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) {
          double q =
              scale == 0 ? 0 : std::nearbyint(values[r * cols + c] / scale);
          codes[r * cols + c] = uint8_t(int8_t(std::clamp(q, -8.0, 7.0)));
        }
    }
  return true;
}

/// The FP8, int8 (dtype i8) or int4 (dtype i4) codes of a weight quantized
/// in blocks, with its scales.
void quantizeTensor(const TensorSource &source, const PackedTensor &t,
                    std::string &codes, std::string &scales) {
  std::vector<double> values = readDoubles(source, t.name, t.sourceShape);
  int64_t rows = t.sourceShape[t.sourceShape.size() - 2];
  int64_t cols = t.sourceShape.back();
  int64_t matrices =
      rows && cols ? elementsOf(t.sourceShape) / (rows * cols) : 0;
  fp8::Format format =
      t.dtype == "f8e4m3fnuz" ? fp8::Format::E4M3FNUZ : fp8::Format::E4M3FN;
  int64_t scaleCount = ((rows + t.blockRows - 1) / t.blockRows) *
                       ((cols + t.blockCols - 1) / t.blockCols);
  codes.resize(values.size());
  std::vector<float> scaleValues(matrices * scaleCount);
  bool int4 = t.dtype == "i4";
  std::vector<uint16_t> halfScales(int4 ? scaleValues.size() : 0);
  // Blocks are independent: each thread takes whole rows of blocks (of about
  // 1M elements), so the result does not depend on the thread count.
  int64_t scaleCols = (cols + t.blockCols - 1) / t.blockCols;
  int64_t rowsPerChunk =
      std::max<int64_t>(1, (int64_t(1) << 20) / std::max<int64_t>(cols, 1) /
                               t.blockRows) *
      t.blockRows;
  int64_t chunksPerMatrix = (rows + rowsPerChunk - 1) / rowsPerChunk;
  std::string error =
      parallelFor(matrices * chunksPerMatrix, [&](int64_t item) -> std::string {
        int64_t m = item / chunksPerMatrix;
        int64_t r0 = item % chunksPerMatrix * rowsPerChunk;
        int64_t r1 = std::min(rows, r0 + rowsPerChunk);
        int64_t first = (m * rows + r0) * cols;
        std::string why;
        auto *blockCodes = reinterpret_cast<uint8_t *>(&codes[0]) + first;
        float *blockScales =
            scaleValues.data() + m * scaleCount + r0 / t.blockRows * scaleCols;
        bool done = int4 ? quantizeInt4(values.data() + first, r1 - r0, cols,
                                        {t.blockRows, t.blockCols}, blockCodes,
                                        halfScales.data() +
                                            (blockScales - scaleValues.data()),
                                        why)
                    : t.dtype == "i8"
                        ? quantizeInt8(values.data() + first, r1 - r0, cols,
                                       {t.blockRows, t.blockCols}, blockCodes,
                                       blockScales, why)
                        : fp8::quantize(format, values.data() + first, r1 - r0,
                                        cols, {t.blockRows, t.blockCols},
                                        blockCodes, blockScales, why);
        if (!done)
          return why;
        return "";
      });
  if (!error.empty())
    throw Error("cannot quantize weight '" + t.name + "': " + error);
  if (int4)
    scales.assign(reinterpret_cast<const char *>(halfScales.data()),
                  halfScales.size() * sizeof(uint16_t));
  else
    scales.assign(reinterpret_cast<const char *>(scaleValues.data()),
                  scaleValues.size() * sizeof(float));
}

/// A folded MLA weight: W_UK/W_UV multiplied into the query projection or
/// o_proj in double precision, stored rounded once.
std::string foldTensor(const TensorSource &source, const PackedTensor &t) {
  std::vector<double> weight = readDoubles(source, t.name, t.sourceShape);
  MLAFoldShape shape{t.heads, t.nope, t.rope, t.valueDim, 0};
  std::vector<double> kvB;
  if (!t.kvB.empty()) {
    kvB = readDoubles(source, t.kvB, t.kvBShape);
    shape.rank = t.kvBShape[1];
  }
  int64_t queryRows = t.heads * (t.nope + t.rope);
  int64_t kvRows = t.heads * (t.nope + t.valueDim);
  bool fits = t.transform == "mla_output"
                  ? t.sourceShape[1] == t.heads * t.valueDim
                  : t.sourceShape[0] == queryRows;
  if (!fits || (!t.kvB.empty() && t.kvBShape[0] != kvRows))
    throw Error("weight '" + t.name + "': its shape " +
                SafetensorsCheckpoint::shapeText(t.sourceShape) +
                " does not fit the MLA fold");
  std::vector<double> folded =
      foldMLAWeight(t.transform.substr(4), weight, t.sourceShape[0],
                    t.sourceShape[1], kvB, shape);
  return storeDoubles(folded, t.dtype);
}

} // namespace

std::string runtime::toPanels(const std::string &data, int64_t rows,
                              int64_t cols, int64_t elementBytes, int64_t panel,
                              int64_t group) {
  int64_t groups = (cols + group - 1) / group;
  int64_t panels = (rows + panel - 1) / panel;
  std::string out(size_t(panels * groups * panel * group * elementBytes), '\0');
  // One group of columns at a time (the last one shorter when cols is not a
  // multiple).
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; c += group) {
      int64_t to =
          ((r / panel * groups + c / group) * panel + r % panel) * group;
      std::memcpy(&out[size_t(to * elementBytes)],
                  &data[size_t((r * cols + c) * elementBytes)],
                  size_t(std::min<int64_t>(group, cols - c) * elementBytes));
    }
  return out;
}

std::string runtime::toInt8Panels(const std::string &data, int64_t rows,
                                  int64_t cols, int64_t panel) {
  int64_t quads = (cols + 3) / 4;
  int64_t panels = (rows + panel - 1) / panel;
  std::string out(size_t(panels * quads * panel * 4), char(0x80));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      int64_t to =
          ((r / panel * quads + c / 4) * panel + r % panel) * 4 + c % 4;
      out[size_t(to)] = char(uint8_t(data[size_t(r * cols + c)]) ^ 0x80);
    }
  return out;
}

std::string runtime::toInt4Panels(const std::string &data, int64_t rows,
                                  int64_t cols, int64_t panel) {
  int64_t octets = (cols + 7) / 8;
  int64_t panels = (rows + panel - 1) / panel;
  std::string out(size_t(panels * octets * panel * 4), char(0x88));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      int64_t to =
          ((r / panel * octets + c / 8) * panel + r % panel) * 4 + c % 4;
      uint8_t nibble = uint8_t(int8_t(data[size_t(r * cols + c)]) + 8) & 0xF;
      uint8_t &byte = reinterpret_cast<uint8_t &>(out[size_t(to)]);
      byte = c % 8 < 4 ? uint8_t((byte & 0xF0) | nibble)
                       : uint8_t((byte & 0x0F) | nibble << 4);
    }
  return out;
}

std::string runtime::toInt4Rows(const std::string &data, int64_t rows,
                                int64_t cols) {
  int64_t rowBytes = (cols + 1) / 2;
  std::string out(size_t(rows * rowBytes), char(0x88));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      uint8_t nibble = uint8_t(int8_t(data[size_t(r * cols + c)]) + 8) & 0xF;
      uint8_t &byte =
          reinterpret_cast<uint8_t &>(out[size_t(r * rowBytes + c / 2)]);
      byte = c % 2 == 0 ? uint8_t((byte & 0xF0) | nibble)
                        : uint8_t((byte & 0x0F) | nibble << 4);
    }
  return out;
}

std::string runtime::packWeights(
    const std::vector<PackedTensor> &plan, uint64_t totalBytes,
    const TensorSource &source,
    const std::function<std::string(const void *, size_t)> &write,
    const std::function<void(const std::string &)> &progress,
    PackingSummary *summary) {
  static const char zeros[4096] = {};
  uint64_t position = 0;
  auto padTo = [&](uint64_t target) -> std::string {
    while (position < target) {
      uint64_t n = std::min<uint64_t>(sizeof(zeros), target - position);
      if (std::string error = write(zeros, n); !error.empty())
        return error;
      position += n;
    }
    return "";
  };
  // Codes and scales of one quantized weight are computed together; the plan
  // puts the codes first.
  std::map<std::string, std::string> pendingScales;
  uint64_t done = 0, reported = 0;
  try {
    for (const PackedTensor &t : plan) {
      if (t.offset < position || t.offset > totalBytes ||
          t.bytes > totalBytes - t.offset)
        return "weight '" + t.name +
               "' lies outside the weight blob or "
               "overlaps the one before it";
      if (std::string error = padTo(t.offset); !error.empty())
        return error;
      std::string data;
      if (t.transform.empty()) {
        data = copyTensor(source, t, summary);
      } else if (t.transform == "fp8_codes" || t.transform == "int8_codes" ||
                 t.transform == "int4_codes") {
        quantizeTensor(source, t, data, pendingScales[fp8Key(t)]);
      } else if (t.transform == "fp8_scales" || t.transform == "int8_scales" ||
                 t.transform == "int4_scales") {
        auto it = pendingScales.find(fp8Key(t));
        if (it == pendingScales.end())
          return "scales of '" + t.name + "' come before its codes";
        data = std::move(it->second);
        pendingScales.erase(it);
      } else {
        data = foldTensor(source, t);
      }
      if (t.panel) {
        int64_t elementBytes = elementBytesOf(t.dtype);
        uint64_t logical = uint64_t(elementsOf(t.shape)) * elementBytes;
        if (data.size() != logical)
          return "weight '" + t.name + "' has " +
                 std::to_string(data.size()) + " bytes in " +
                 source.describe() + " but the compiled code expects " +
                 std::to_string(logical);
        if (t.dtype == "i8")
          data = toInt8Panels(data, t.shape[0], t.shape[1], t.panel);
        else if (t.dtype == "i4")
          data = toInt4Panels(data, t.shape[0], t.shape[1], t.panel);
        else
          // int4 scales: single columns (16 rows of a group in one load).
          data = toPanels(data, t.shape[0], t.shape[1], elementBytes, t.panel,
                          t.transform == "int4_scales" ? 1 : 2);
      }
      // Int4 codes outside panels (expert stacks): two codes a byte.
      if (!t.panel && t.dtype == "i4" && !t.shape.empty()) {
        if (data.size() != uint64_t(elementsOf(t.shape)))
          return "weight '" + t.name + "' has " + std::to_string(data.size()) +
                 " codes in " + source.describe() +
                 " but the compiled code expects " +
                 std::to_string(elementsOf(t.shape));
        data = toInt4Rows(
            data, elementsOf(t.shape) / std::max<int64_t>(t.shape.back(), 1),
            t.shape.back());
      }
      if (data.size() != t.bytes)
        return "weight '" + t.name + "' has " + std::to_string(data.size()) +
               " bytes in " + source.describe() +
               " but the compiled code expects " + std::to_string(t.bytes);
      if (std::string error = write(data.data(), data.size()); !error.empty())
        return error;
      position += data.size();
      done += data.size();
      if (progress && done - reported > (uint64_t(256) << 20)) {
        reported = done;
        progress("packed " + std::to_string(done >> 20) + " of " +
                 std::to_string(totalBytes >> 20) + " MiB of weights");
      }
    }
  } catch (const Error &error) {
    return error.what();
  }
  return padTo(totalBytes);
}
