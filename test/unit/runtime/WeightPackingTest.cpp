//===- WeightPackingTest.cpp - xfmr-pack's checkpoint reader and packer ---===//
//
// The runtime's safetensors checkpoint reader (xfmr-pack runs without LLVM)
// rejects malformed files and indexes with messages naming the file and
// tensor; the packer places, converts and rejects tensors as the plan says.
// Byte identity with the compiler is tested end to end (test_pack.py).
//
//===----------------------------------------------------------------------===//

#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/Float16.h"
#include "xfmr/runtime/Json.h"
#include "xfmr/runtime/SafetensorsCheckpoint.h"
#include "xfmr/runtime/WeightPacking.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

using namespace xfmr::runtime;
namespace fs = std::filesystem;

namespace {

class WeightPackingTest : public ::testing::Test {
protected:
  void SetUp() override {
    dir = fs::temp_directory_path() /
          ("xfmr-pack-test-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }

  /// Writes `name` with header `json` and `data` bytes.
  void writeSafetensors(const std::string &name, const std::string &json,
                        const std::string &data) {
    std::ofstream out(dir / name, std::ios::binary);
    uint64_t n = json.size();
    out.write(reinterpret_cast<const char *>(&n), 8);
    out << json << data;
  }
  void writeText(const std::string &name, const std::string &text) {
    std::ofstream(dir / name, std::ios::binary) << text;
  }
  std::string openError() {
    try {
      SafetensorsCheckpoint::open(dir.string());
    } catch (const Error &e) {
      return e.what();
    }
    return "(no error)";
  }

  fs::path dir;
};

#define EXPECT_CONTAINS(text, part)                                            \
  EXPECT_NE(std::string(text).find(part), std::string::npos)                   \
      << "'" << (text) << "' does not contain '" << (part) << "'"

const std::string kTwoFloats =
    R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})";

TEST_F(WeightPackingTest, ReadsOneFile) {
  float values[2] = {1.5f, -2.0f};
  writeSafetensors("model.safetensors", kTwoFloats,
                   std::string(reinterpret_cast<char *>(values), 8));
  auto checkpoint = SafetensorsCheckpoint::open(dir.string());
  const CheckpointTensor *w = checkpoint->find("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->dtype, "F32");
  EXPECT_EQ(w->shape, std::vector<int64_t>{2});
  EXPECT_EQ(w->size, 8u);
  EXPECT_EQ(std::memcmp(w->data, values, 8), 0);
  EXPECT_EQ(checkpoint->find("x"), nullptr);
}

TEST_F(WeightPackingTest, RejectsMalformedFiles) {
  EXPECT_CONTAINS(openError(), "has no weights: expected model.safetensors");
  writeText("model.safetensors", "abc");
  EXPECT_CONTAINS(openError(), "too short for the 8-byte header length");
  writeSafetensors("model.safetensors", "[1]", "");
  EXPECT_CONTAINS(openError(), "header is an array, expected an object");
  writeSafetensors("model.safetensors",
                   R"({"w": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}})",
                   std::string(8, '\0'));
  EXPECT_CONTAINS(openError(), "unsupported dtype 'F64' for tensor 'w'");
  writeSafetensors("model.safetensors", kTwoFloats, std::string(4, '\0'));
  EXPECT_CONTAINS(openError(), "run past the end of the data");
  writeSafetensors("model.safetensors", kTwoFloats, std::string(12, '\0'));
  EXPECT_CONTAINS(openError(), "4 trailing bytes after the last tensor");
  writeSafetensors("model.safetensors",
                   R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})",
                   std::string(8, '\0'));
  EXPECT_CONTAINS(openError(), "span 8 bytes, but shape [3] of F32 needs 12");
  writeSafetensors("model.safetensors",
                   R"({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
                       "b": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3]}})",
                   std::string(3, '\0'));
  EXPECT_CONTAINS(openError(), "tensor 'b' overlaps the tensor before it");
}

TEST_F(WeightPackingTest, ChecksTheIndex) {
  writeSafetensors("a.safetensors", kTwoFloats, std::string(8, '\0'));
  writeText("model.safetensors.index.json",
            R"({"weight_map": {"w": "../a.safetensors"}})");
  EXPECT_CONTAINS(openError(), "must be a file name inside the checkpoint");
  writeText("model.safetensors.index.json",
            R"({"weight_map": {"w": "a.safetensors", "v": "a.safetensors"}})");
  EXPECT_CONTAINS(openError(), "tensor 'v' is missing from shard 'a.safetensors'");
  writeText("model.safetensors.index.json", R"({"weight_map": {}})");
  EXPECT_CONTAINS(openError(), "has no non-empty 'weight_map'");
  writeText("model.safetensors.index.json",
            R"({"weight_map": {"w": "a.safetensors"}})");
  EXPECT_NE(SafetensorsCheckpoint::open(dir.string())->find("w"), nullptr);
}

/// A tensor source of in-memory tensors.
class MemorySource : public TensorSource {
public:
  void add(const std::string &name, const std::string &dtype,
           std::vector<int64_t> shape, std::string bytes) {
    stored.push_back({name, dtype, std::move(shape), std::move(bytes)});
  }
  bool find(const std::string &name, Tensor &tensor) const override {
    for (const Stored &s : stored)
      if (s.name == name) {
        tensor = {s.dtype, s.shape,
                  reinterpret_cast<const uint8_t *>(s.bytes.data()),
                  s.bytes.size()};
        return true;
      }
    return false;
  }
  std::string describe() const override { return "memory"; }

private:
  struct Stored {
    std::string name, dtype;
    std::vector<int64_t> shape;
    std::string bytes;
  };
  std::vector<Stored> stored;
};

PackedTensor tensor(const std::string &name, uint64_t offset, uint64_t bytes,
                    const std::string &dtype, std::vector<int64_t> shape) {
  PackedTensor t;
  t.name = name;
  t.offset = offset;
  t.bytes = bytes;
  t.dtype = dtype;
  t.shape = std::move(shape);
  return t;
}

/// The codes or scales (`transform` int4_codes/int4_scales) of an f32 weight
/// "w" of `sourceShape` quantized in groups [1, group] (panels of `panel`
/// rows, or row-major with 0).
PackedTensor int4Part(uint64_t offset, uint64_t bytes, const std::string &dtype,
                      std::vector<int64_t> shape, const std::string &transform,
                      std::vector<int64_t> sourceShape, int64_t group,
                      int64_t panel) {
  PackedTensor t = tensor("w", offset, bytes, dtype, std::move(shape));
  t.transform = transform;
  t.sourceDtype = "f32";
  t.sourceShape = std::move(sourceShape);
  t.blockRows = 1;
  t.blockCols = group;
  t.panel = panel;
  return t;
}

std::string pack(const std::vector<PackedTensor> &plan, uint64_t total,
                 const MemorySource &source, std::string &blob,
                 PackingSummary *summary = nullptr) {
  blob.clear();
  return packWeights(
      plan, total, source,
      [&](const void *data, size_t size) {
        blob.append(static_cast<const char *>(data), size);
        return std::string();
      },
      {}, summary);
}

TEST_F(WeightPackingTest, PlacesConvertsAndStacks) {
  MemorySource source;
  float values[2] = {1.0f, 3.0f};
  source.add("w", "F32", {2}, std::string(reinterpret_cast<char *>(values), 8));
  source.add("e.0", "U8", {2}, "ab");
  source.add("e.1", "U8", {2}, "cd");
  PackedTensor w = tensor("w", 64, 4, "bf16", {2});
  PackedTensor e = tensor("e.*", 128, 4, "u8", {2, 2});
  std::string blob;
  PackingSummary summary;
  // u8 has no safetensors spelling in the plan's vocabulary: refused.
  EXPECT_CONTAINS(pack({w, e}, 192, source, blob, &summary),
                  "weight 'e.*' is U8 in memory, but the compiled code reads u8");
  e.dtype = "i8";
  source.add("x.0", "I8", {2}, "ab");
  source.add("x.1", "I8", {2}, "cd");
  e.name = "x.*";
  summary = {};
  ASSERT_EQ(pack({w, e}, 192, source, blob, &summary), "");
  ASSERT_EQ(blob.size(), 192u);
  EXPECT_EQ(blob.substr(0, 64), std::string(64, '\0'));
  uint16_t bits[2];
  std::memcpy(bits, blob.data() + 64, 4);
  EXPECT_EQ(xfmr::float16::decodeBF16(bits[0]), 1.0);
  EXPECT_EQ(xfmr::float16::decodeBF16(bits[1]), 3.0);
  EXPECT_EQ(blob.substr(128, 4), "abcd");
  ASSERT_EQ(summary.converted.size(), 1u);
  EXPECT_EQ(summary.converted[0], "w (F32 -> BF16)");
  // Overlapping or out-of-range placements are refused.
  PackedTensor late = tensor("w", 190, 4, "bf16", {2});
  EXPECT_CONTAINS(pack({late}, 192, source, blob), "lies outside the weight blob");
  // Scales before codes.
  PackedTensor scales = tensor("w", 0, 4, "f32", {1});
  scales.transform = "fp8_scales";
  EXPECT_CONTAINS(pack({scales}, 64, source, blob), "come before its codes");
}

TEST_F(WeightPackingTest, RejectsNaNCodesAndWrongSizes) {
  MemorySource source;
  source.add("f", "F8_E4M3", {2}, std::string("\x01\x7f", 2));
  PackedTensor f = tensor("f", 0, 2, "f8e4m3fn", {2});
  std::string blob;
  EXPECT_CONTAINS(pack({f}, 64, source, blob),
                  "FP8 weight 'f' holds a NaN code at element 1");
  PackedTensor big = tensor("f", 0, 4, "f8e4m3fn", {4});
  source.add("g", "F8_E4M3", {2}, std::string("\x01\x02", 2));
  big.name = "g";
  EXPECT_CONTAINS(pack({big}, 64, source, blob),
                  "weight 'g' has 2 bytes in memory but the compiled code "
                  "expects 4");
  PackedTensor missing = tensor("nope", 0, 4, "f32", {1});
  EXPECT_CONTAINS(pack({missing}, 64, source, blob),
                  "weight 'nope' is not in memory");
}

TEST_F(WeightPackingTest, StoresInt4CodesInOctetPanels) {
  // A 3 x 10 matrix of codes in panels of 2 rows: 2 octets, 4 bytes a row,
  // columns 0-3 of an octet in the low nibbles, 4-7 in the high ones, each
  // code + 8; padding (row 3, columns 10-15) is code 0 (nibble 8).
  std::string data;
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 10; ++c)
      data += char(int8_t(c % 15 - 7 + r));
  std::string panels = toInt4Panels(data, 3, 10, 2);
  ASSERT_EQ(panels.size(), 2u * 2 * 2 * 4);
  auto byteAt = [&](int p, int octet, int row, int k) {
    return uint8_t(panels[size_t(((p * 2 + octet) * 2 + row) * 4 + k)]);
  };
  auto code = [&](int r, int c) { return (c % 15 - 7 + r) + 8; };
  EXPECT_EQ(byteAt(0, 0, 0, 0), code(0, 0) | code(0, 4) << 4);
  EXPECT_EQ(byteAt(0, 0, 1, 3), code(1, 3) | code(1, 7) << 4);
  EXPECT_EQ(byteAt(0, 1, 0, 1), code(0, 9) | 8 << 4);
  EXPECT_EQ(byteAt(1, 0, 0, 2), code(2, 2) | code(2, 6) << 4);
  EXPECT_EQ(byteAt(1, 1, 1, 0), 0x88);
  // Single columns (int4 scales): [ceil(rows / P)][cols][P].
  std::string scales;
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 2; ++c)
      scales += {char('a' + r), char('0' + c)};
  std::string columns = toPanels(scales, 3, 2, 2, 2, 1);
  ASSERT_EQ(columns.size(), 2u * 2 * 2 * 2);
  EXPECT_EQ(columns.substr(0, 8), "a0b0a1b1");
  EXPECT_EQ(columns.substr(8, 8), std::string("c0\0\0c1\0\0", 8));
}

TEST_F(WeightPackingTest, QuantizesInt4Groups) {
  // Groups of 4 along a row of 6, as Q4_0: scales f16(m / -8) for m the
  // first value of the largest magnitude, codes to nearest even in [-8, 7];
  // a group too small for an f16 scale gives code 0.
  MemorySource source;
  std::vector<float> w = {-8, 0.5, 1.5, -2.5, 1e-9f, -1e-9f,
                          16, -6,  2,   -16,  0.0f,  0.0f};
  source.add("w", "F32", {2, 6},
             std::string(reinterpret_cast<const char *>(w.data()), 48));
  // Codes and scales of `w` in groups [1, 4], in panels of 2 rows.
  PackedTensor codes =
      int4Part(0, 1 * 2 * 4, "i4", {2, 6}, "int4_codes", {2, 6}, 4, 2);
  PackedTensor scales =
      int4Part(64, 1 * 2 * 2 * 2, "f16", {2, 2}, "int4_scales", {2, 6}, 4, 2);
  std::string blob;
  ASSERT_EQ(pack({codes, scales}, 128, source, blob), "");
  auto nibble = [&](int r, int c) {
    uint8_t byte = uint8_t(blob[size_t(((c / 8) * 2 + r) * 4 + c % 4)]);
    return int((c % 8 < 4 ? byte & 0xF : byte >> 4)) - 8;
  };
  EXPECT_EQ(nibble(0, 0), -8);
  EXPECT_EQ(nibble(0, 1), 0);  // 0.5 ties to even
  EXPECT_EQ(nibble(0, 2), 2);  // 1.5 ties to even
  EXPECT_EQ(nibble(0, 3), -2); // -2.5 ties to even
  EXPECT_EQ(nibble(0, 4), 0);
  EXPECT_EQ(nibble(1, 0), -8); // 16 comes first: the scale is -2
  EXPECT_EQ(nibble(1, 1), 3);
  EXPECT_EQ(nibble(1, 2), -1);
  EXPECT_EQ(nibble(1, 3), 7); // -16 / -2 = 8 clips at 7
  auto scaleAt = [&](int r, int g) {
    uint16_t bits;
    std::memcpy(&bits, &blob[size_t(64 + (g * 2 + r) * 2)], 2);
    return xfmr::float16::decodeF16(bits);
  };
  EXPECT_EQ(scaleAt(0, 0), 1.0);
  EXPECT_EQ(scaleAt(1, 0), -2.0);
  EXPECT_EQ(scaleAt(0, 1), 0.0); // 1e-9 / -8 is below f16's subnormals
}

TEST_F(WeightPackingTest, StoresInt4StacksTwoCodesAByte) {
  // Expert stacks outside panels: [experts, rows, cols] row-major, code + 8
  // in the low nibble for even columns and the high one for odd columns;
  // an odd row's last high nibble is 8 (code 0). Scales f16 [2, 1, 1].
  MemorySource source;
  std::vector<float> w = {-8, 1, 2, 3, -4, 16, -2, 0, 0, 0};
  source.add("w", "F32", {2, 1, 5},
             std::string(reinterpret_cast<const char *>(w.data()), 40));
  PackedTensor codes =
      int4Part(0, 6, "i4", {2, 1, 5}, "int4_codes", {2, 1, 5}, 16, 0);
  PackedTensor scales =
      int4Part(64, 4, "f16", {2, 1, 1}, "int4_scales", {2, 1, 5}, 16, 0);
  std::string blob;
  ASSERT_EQ(pack({codes, scales}, 128, source, blob), "");
  const uint8_t expected[6] = {0x90, 0xBA, 0x84, 0x90, 0x88, 0x88};
  for (int i = 0; i < 6; ++i)
    EXPECT_EQ(uint8_t(blob[size_t(i)]), expected[i]) << "byte " << i;
  uint16_t bits[2];
  std::memcpy(bits, &blob[64], 4);
  EXPECT_EQ(xfmr::float16::decodeF16(bits[0]), 1.0);
  EXPECT_EQ(xfmr::float16::decodeF16(bits[1]), -2.0);
}

TEST_F(WeightPackingTest, StoresMatricesInPanels) {
  // A 3 x 5 matrix of 2-byte elements in panels of 2 rows: element (r, c) at
  // ((r / 2 * 3 + c / 2) * 2 + r % 2) * 2 + c % 2 of [2][3][2][2], zeros in
  // the padding (row 3, column 5).
  std::string data;
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 5; ++c)
      data += {char('a' + r), char('0' + c)};
  std::string panels = toPanels(data, 3, 5, 2, 2);
  ASSERT_EQ(panels.size(), 2u * 3 * 2 * 2 * 2);
  auto at = [&](int p, int pair, int row, int k) {
    return panels.substr(((((p * 3) + pair) * 2 + row) * 2 + k) * 2, 2);
  };
  EXPECT_EQ(at(0, 0, 0, 0), "a0");
  EXPECT_EQ(at(0, 0, 0, 1), "a1");
  EXPECT_EQ(at(0, 0, 1, 0), "b0");
  EXPECT_EQ(at(0, 1, 1, 1), "b3");
  EXPECT_EQ(at(0, 2, 0, 0), "a4");
  EXPECT_EQ(at(0, 2, 0, 1), std::string(2, '\0'));
  EXPECT_EQ(at(1, 1, 0, 0), "c2");
  EXPECT_EQ(at(1, 1, 1, 0), std::string(2, '\0'));

  // Packing applies the plan's panel after the copy and checks the logical
  // size first.
  MemorySource source;
  source.add("w", "BF16", {3, 5}, data);
  PackedTensor w = tensor("w", 0, panels.size(), "bf16", {3, 5});
  w.panel = 2;
  std::string blob;
  ASSERT_EQ(pack({w}, 64, source, blob), "");
  EXPECT_EQ(blob.substr(0, panels.size()), panels);
  source.add("v", "BF16", {2, 5}, data.substr(0, 20));
  w.name = "v";
  EXPECT_CONTAINS(pack({w}, 64, source, blob),
                  "weight 'v' has 20 bytes in memory but the compiled code "
                  "expects 30");
}

TEST_F(WeightPackingTest, ReadsThePlanWithClearErrors) {
  auto plan = [](const std::string &text) {
    try {
      readPackingPlan(parseJson(text), "m.xfmr");
    } catch (const Error &e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_CONTAINS(plan("{}"), "m.xfmr: the manifest has no weights.tensors");
  EXPECT_CONTAINS(plan(R"({"weights": {"tensors": [{"name": "w"}]}})"),
                  "manifest tensor 'w'.offset must be an integer");
  EXPECT_CONTAINS(
      plan(R"({"weights": {"tensors": [{"name": "w", "offset": 0, "bytes": 4,
          "dtype": "f32", "shape": [1], "transform": "zip",
          "source_dtype": "f32", "source_shape": [1]}]}})"),
      "unknown transform 'zip'");
  EXPECT_EQ(plan(R"({"weights": {"tensors": [{"name": "w", "offset": 0,
      "bytes": 4, "dtype": "f32", "shape": [1]}]}})"),
            "(no error)");
  EXPECT_CONTAINS(plan(R"({"weights": {"tensors": [{"name": "w", "offset": 0,
      "bytes": 4, "dtype": "bf16", "shape": [2], "panel": 64}]}})"),
                  "panels hold a matrix");
  EXPECT_CONTAINS(plan(R"({"weights": {"tensors": [{"name": "w", "offset": 0,
      "bytes": 4, "dtype": "bf16", "shape": [1, 2], "panel": 0}]}})"),
                  "manifest tensor 'w'.panel");
  // Int4 codes have dtype i4, in panels or (expert stacks) row-major;
  // their scales are f16.
  EXPECT_EQ(plan(R"({"weights": {"tensors": [{"name": "w", "offset": 0,
      "bytes": 4, "dtype": "i4", "shape": [1, 8], "transform": "int4_codes",
      "source_dtype": "f32", "source_shape": [1, 8], "block": [1, 8]}]}})"),
            "(no error)");
  EXPECT_CONTAINS(plan(R"({"weights": {"tensors": [{"name": "w", "offset": 0,
      "bytes": 4, "dtype": "i8", "shape": [1, 8], "transform": "int4_codes",
      "source_dtype": "f32", "source_shape": [1, 8], "block": [1, 8],
      "panel": 64}]}})"),
                  "transform 'int4_codes' does not make dtype 'i8'");
  EXPECT_CONTAINS(plan(R"({"weights": {"tensors": [{"name": "w", "offset": 0,
      "bytes": 4, "dtype": "f32", "shape": [1, 1], "transform": "int4_scales",
      "source_dtype": "f32", "source_shape": [1, 8], "block": [1, 8],
      "panel": 64}]}})"),
                  "transform 'int4_scales' does not make dtype 'f32'");
}

} // namespace
