//===- SafetensorsTest.cpp - Tests for the safetensors reader -------------===//

#include "import/Safetensors.h"

#include "ImportTestUtil.h"

#include "llvm/Support/MemoryBuffer.h"

#include <random>

using namespace xfmr;
using namespace xfmr::testing;

namespace {

TEST(DTypeTest, NamesAndSizes) {
  EXPECT_EQ(dtypeName(DType::BF16), "BF16");
  EXPECT_EQ(dtypeName(DType::F8_E4M3), "F8_E4M3");
  EXPECT_EQ(dtypeSize(DType::F32), 4u);
  EXPECT_EQ(dtypeSize(DType::F16), 2u);
  EXPECT_EQ(dtypeSize(DType::F8_E5M2), 1u);
  EXPECT_EQ(dtypeSize(DType::I64), 8u);
  EXPECT_EQ(parseDType("I32"), DType::I32);
  EXPECT_EQ(parseDType("F64"), std::nullopt);
  EXPECT_EQ(parseDType("bf16"), std::nullopt);
  EXPECT_TRUE(isFloatDType(DType::F8_E4M3));
  EXPECT_FALSE(isFloatDType(DType::U8));
  EXPECT_EQ(formatShape({2, 3}), "[2, 3]");
  EXPECT_EQ(formatShape({}), "[]");
}

TEST(SafetensorsTest, ReadsTensorsMetadataAndBytes) {
  TempDir dir;
  std::string path = dir.write("model.safetensors",
                               buildSafetensors({{"b.weight", "BF16", {2, 3}},
                                                 {"a.bias", "F32", {3}},
                                                 {"scalar", "I64", {}},
                                                 {"empty", "F16", {0, 4}},
                                                 {"fp8", "F8_E4M3", {5}}},
                                                {{"format", "pt"}}));
  auto file = SafetensorsFile::open(path);
  ASSERT_TRUE(bool(file)) << llvm::toString(file.takeError());
  EXPECT_EQ((*file)->path(), path);
  ASSERT_EQ((*file)->tensors().size(), 5u);
  EXPECT_EQ((*file)->dataSize(), 12u + 12 + 8 + 0 + 5);
  EXPECT_EQ((*file)->metadata().at("format"), "pt");

  const TensorInfo *b = (*file)->find("b.weight");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->dtype, DType::BF16);
  EXPECT_EQ(llvm::ArrayRef<int64_t>(b->shape), llvm::ArrayRef<int64_t>({2, 3}));
  EXPECT_EQ(b->dataBegin, 0u);
  EXPECT_EQ(b->dataEnd, 12u);
  EXPECT_EQ(b->numElements(), 6);
  EXPECT_EQ(b->shard, 0u);
  llvm::ArrayRef<uint8_t> bytes = (*file)->bytes(*b);
  ASSERT_EQ(bytes.size(), 12u);
  for (size_t i = 0; i < bytes.size(); ++i)
    EXPECT_EQ(bytes[i], patternByte(0, i));

  const TensorInfo *a = (*file)->find("a.bias");
  ASSERT_NE(a, nullptr);
  llvm::ArrayRef<uint8_t> aBytes = (*file)->bytes(*a);
  ASSERT_EQ(aBytes.size(), 12u);
  EXPECT_EQ(aBytes[5], patternByte(1, 5));

  const TensorInfo *scalar = (*file)->find("scalar");
  ASSERT_NE(scalar, nullptr);
  EXPECT_TRUE(scalar->shape.empty());
  EXPECT_EQ(scalar->numElements(), 1);
  EXPECT_EQ((*file)->bytes(*scalar).size(), 8u);

  const TensorInfo *empty = (*file)->find("empty");
  ASSERT_NE(empty, nullptr);
  EXPECT_EQ(empty->numElements(), 0);
  EXPECT_TRUE((*file)->bytes(*empty).empty());

  EXPECT_EQ((*file)->find("missing"), nullptr);
  // Tensors come back in data order.
  EXPECT_EQ((*file)->tensors().front().name, "b.weight");
  EXPECT_EQ((*file)->tensors().back().name, "fp8");
}

TEST(SafetensorsTest, ShardIndexIsRecorded) {
  TempDir dir;
  std::string path =
      dir.write("x.safetensors", buildSafetensors({{"t", "U8", {4}}}));
  auto file = SafetensorsFile::open(path, /*shard=*/3);
  ASSERT_TRUE(bool(file)) << llvm::toString(file.takeError());
  EXPECT_EQ((*file)->find("t")->shard, 3u);
}

TEST(SafetensorsTest, AcceptsPaddedHeaderAndNoTensors) {
  TempDir dir;
  std::string header =
      R"({"t":{"dtype":"I8","shape":[2],"data_offsets":[0,2]}})";
  header.append(8 - header.size() % 8, ' ');
  auto file = SafetensorsFile::open(
      dir.write("pad.safetensors", rawSafetensors(header, "ab")));
  ASSERT_TRUE(bool(file)) << llvm::toString(file.takeError());
  EXPECT_EQ((*file)->bytes(*(*file)->find("t"))[1], 'b');

  auto none = SafetensorsFile::open(
      dir.write("none.safetensors", rawSafetensors(R"({"__metadata__":{}})")));
  ASSERT_TRUE(bool(none)) << llvm::toString(none.takeError());
  EXPECT_TRUE((*none)->tensors().empty());
}

TEST(SafetensorsTest, BytesOfForeignTensorIsEmpty) {
  TempDir dir;
  auto file = SafetensorsFile::open(
      dir.write("a.safetensors", buildSafetensors({{"t", "U8", {4}}})));
  ASSERT_TRUE(bool(file)) << llvm::toString(file.takeError());
  TensorInfo bogus;
  bogus.dataBegin = 2;
  bogus.dataEnd = 100;
  EXPECT_TRUE((*file)->bytes(bogus).empty());
}

TEST(SafetensorsTest, MissingFile) {
  TempDir dir;
  std::string message =
      errorOf(SafetensorsFile::open(dir.file("nope.safetensors")));
  EXPECT_NE(message.find("cannot open safetensors file"), std::string::npos)
      << message;
  EXPECT_NE(message.find("nope.safetensors"), std::string::npos) << message;
}

/// One malformed file and a fragment its error must contain.
struct MalformedCase {
  const char *label;
  std::string contents;
  const char *expected;
};

std::string entry(const std::string &name, const std::string &body) {
  return "\"" + name + "\":" + body;
}

std::vector<MalformedCase> malformedCorpus() {
  std::string okTensor = R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  std::string eightBytes(8, '\x01');
  std::string hugeLength = rawSafetensors("{}");
  hugeLength[0] = '\x00';
  hugeLength[1] = '\xc2';
  hugeLength[2] = '\xeb';
  hugeLength[3] = '\x0b'; // 200,000,000
  std::string longLength = rawSafetensors("{}");
  longLength[0] = 100;
  return {
      {"Empty", "", "too short for the 8-byte header length"},
      {"FiveBytes", "abcde", "file is 5 bytes long"},
      {"ZeroHeader", std::string(8, '\0') + "xyz", "header length is 0"},
      {"HeaderAboveLimit", hugeLength, "exceeds the limit of 100000000 bytes"},
      {"HeaderPastEnd", longLength, "header length 100 runs past the end"},
      {"NotJson", rawSafetensors("{nope"), "header is not valid JSON"},
      {"BadUtf8", rawSafetensors("{\"a\xff\":1}"), "Invalid UTF-8"},
      {"ArrayHeader", rawSafetensors("[1,2]"),
       "header is a JSON array, expected an object"},
      {"EntryNotObject", rawSafetensors("{\"x\":3}"),
       "entry for tensor 'x' is a JSON integer, expected an object"},
      {"MissingDtype",
       rawSafetensors(R"({"x":{"shape":[2],"data_offsets":[0,8]}})",
                      eightBytes),
       "tensor 'x' has no 'dtype'"},
      {"DtypeNotString",
       rawSafetensors(R"({"x":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})",
                      eightBytes),
       "'dtype' of tensor 'x' is a JSON integer, expected a string"},
      {"UnsupportedDtype",
       rawSafetensors(
           R"({"x":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})",
           eightBytes),
       "unsupported dtype 'F64' for tensor 'x' (supported: F32, F16, BF16"},
      {"MissingShape",
       rawSafetensors(R"({"x":{"dtype":"F32","data_offsets":[0,8]}})",
                      eightBytes),
       "tensor 'x' has no 'shape'"},
      {"ShapeNotArray",
       rawSafetensors(R"({"x":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})",
                      eightBytes),
       "'shape' of tensor 'x' is a JSON integer, expected an array"},
      {"ShapeHasString",
       rawSafetensors(
           R"({"x":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})",
           eightBytes),
       "'shape' of tensor 'x' contains a JSON string"},
      {"ShapeHasFraction",
       rawSafetensors(
           R"({"x":{"dtype":"F32","shape":[1.5],"data_offsets":[0,8]}})",
           eightBytes),
       "'shape' of tensor 'x' contains a JSON number"},
      {"NegativeDim",
       rawSafetensors(
           R"({"x":{"dtype":"F32","shape":[-1,2],"data_offsets":[0,8]}})",
           eightBytes),
       "tensor 'x' has negative dimension -1"},
      {"HugeDim",
       rawSafetensors(
           R"({"x":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,8]}})",
           eightBytes),
       "dimension 18446744073709551615 in 'shape' of tensor 'x' is too large"},
      {"ShapeOverflow",
       rawSafetensors(
           R"({"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
           eightBytes),
       "shape [4294967296, 4294967296] of tensor 'x' overflows"},
      {"ByteCountOverflow",
       rawSafetensors(
           R"({"x":{"dtype":"I64","shape":[2305843009213693952],"data_offsets":[0,8]}})",
           eightBytes),
       "overflows a 64-bit byte count"},
      {"MissingOffsets",
       rawSafetensors(R"({"x":{"dtype":"F32","shape":[2]}})", eightBytes),
       "tensor 'x' has no 'data_offsets'"},
      {"OffsetsWrongLength",
       rawSafetensors(
           R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}})",
           eightBytes),
       "'data_offsets' of tensor 'x' must be an array of two integers"},
      {"OffsetsNotArray",
       rawSafetensors(
           R"({"x":{"dtype":"F32","shape":[2],"data_offsets":"0-8"}})",
           eightBytes),
       "'data_offsets' of tensor 'x' must be an array of two integers"},
      {"NegativeOffset",
       rawSafetensors(
           R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})",
           eightBytes),
       "'data_offsets' of tensor 'x' has negative offset -8"},
      {"OffsetNotInteger",
       rawSafetensors(
           R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,"8"]}})",
           eightBytes),
       "'data_offsets' of tensor 'x' contains a JSON string"},
      {"BeginAfterEnd",
       rawSafetensors(
           R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})",
           eightBytes),
       "'data_offsets' [8, 0] of tensor 'x' begin after they end"},
      {"SizeMismatch",
       rawSafetensors(
           R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
           eightBytes),
       "of tensor 'x' span 8 bytes, but shape [3] of F32 needs 12"},
      {"PastEnd",
       rawSafetensors(
           R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
           eightBytes),
       "'data_offsets' [0, 16] of tensor 'x' run past the end of the data (8 "
       "bytes)"},
      {"Overlap",
       rawSafetensors(
           "{" + entry("a", okTensor) + "," +
               entry("b",
                     R"({"dtype":"F32","shape":[1],"data_offsets":[4,8]})") +
               "}",
           eightBytes),
       "tensor 'b' (bytes [4, 8)) overlaps tensor 'a' (bytes [0, 8))"},
      {"Gap",
       rawSafetensors(
           R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
           eightBytes),
       "gap of 4 unused bytes before tensor 'x'"},
      {"TrailingBytes",
       rawSafetensors("{" + entry("x", okTensor) + "}", eightBytes + "zz"),
       "2 trailing bytes after the last tensor"},
      {"TrailingBytesNoTensors", rawSafetensors("{}", "abc"),
       "3 trailing bytes after the last tensor"},
      {"DuplicateName",
       rawSafetensors("{" + entry("x", okTensor) + "," + entry("x", okTensor) +
                          "}",
                      eightBytes),
       "header has duplicate key 'x'"},
      {"DuplicateEscapedName",
       rawSafetensors("{" + entry("x", okTensor) + "," +
                          entry("\\u0078", okTensor) + "}",
                      eightBytes),
       "header has duplicate key 'x'"},
      {"MetadataNotObject", rawSafetensors(R"({"__metadata__":[1]})"),
       "'__metadata__' is a JSON array, expected an object of strings"},
      {"MetadataValueNotString",
       rawSafetensors(R"({"__metadata__":{"format":1}})"),
       "'__metadata__' entry 'format' is a JSON integer, expected a string"},
  };
}

class MalformedSafetensorsTest
    : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(MalformedSafetensorsTest, ReportsError) {
  TempDir dir;
  std::string path = dir.write("bad.safetensors", GetParam().contents);
  std::string message = errorOf(SafetensorsFile::open(path));
  EXPECT_NE(message.find(GetParam().expected), std::string::npos)
      << "message: " << message
      << "\nexpected fragment: " << GetParam().expected;
  // Every message names the file.
  EXPECT_NE(message.find(path), std::string::npos) << message;
}

INSTANTIATE_TEST_SUITE_P(Corpus, MalformedSafetensorsTest,
                         ::testing::ValuesIn(malformedCorpus()),
                         [](const auto &info) {
                           return std::string(info.param.label);
                         });

/// Random corruptions of a valid file must give a clean error or a file whose
/// views all lie inside the buffer; run under ASan/UBSan this catches reads
/// out of bounds and arithmetic overflow.
TEST(SafetensorsTest, SurvivesRandomCorruption) {
  std::string valid = buildSafetensors(
      {{"a", "F32", {2, 3}}, {"b", "BF16", {4}}, {"c", "U8", {}}},
      {{"format", "pt"}});
  std::mt19937 rng(1234);
  int accepted = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string bytes = valid;
    switch (iter % 3) {
    case 0: // Flip a few bytes.
      for (int k = 0; k < 1 + iter % 4; ++k)
        bytes[rng() % bytes.size()] = static_cast<char>(rng());
      break;
    case 1: // Truncate.
      bytes.resize(rng() % bytes.size());
      break;
    case 2: // Replace a header character with a structural one.
      bytes[8 + rng() % (bytes.size() - 8)] = "{}[],:\"0-9e."[rng() % 12];
      break;
    }
    auto file = SafetensorsFile::fromBuffer(
        llvm::MemoryBuffer::getMemBufferCopy(bytes, "fuzz.safetensors"));
    if (!file) {
      std::string message = llvm::toString(file.takeError());
      EXPECT_NE(message.find("fuzz.safetensors"), std::string::npos) << message;
      continue;
    }
    ++accepted;
    for (const TensorInfo &info : (*file)->tensors())
      EXPECT_EQ((*file)->bytes(info).size(), info.numBytes());
  }
  EXPECT_LT(accepted, 3000);
}

} // namespace
