//===- KernelTest.cpp - each CPU kernel family against float64 loops --===//
//
// Every kernel family on small random inputs, compiled for the host CPU as
// models are, against a float64 loop written here from the family's
// contract (lowering/Common/KernelContracts.h). Lossy storage (bf16, f16,
// FP8 and int8 weights and caches) is emulated exactly: the reference reads
// the same stored codes, so the tolerances only cover f32 arithmetic.
// Shapes are not multiples of the vector width where a family has tails.
//
//===----------------------------------------------------------------------===//

#include "KernelHarness.h"

#include "dialects/Xfmr/XfmrOps.h"
#include "lowering/CPU/CPUKernelTarget.h"
#include "lowering/GPU/GPUKernelTarget.h"
#include "xfmr/runtime/Float16.h"
#include "xfmr/runtime/WeightPacking.h"

#include "mlir/AsmParser/AsmParser.h"

#include "gtest/gtest.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>

using namespace xfmr;
using namespace xfmr::kernels;
using namespace xfmr::testing;

// Readable test parameters in logs (gtest would print their bytes); found by
// argument-dependent lookup, so they live in the types' namespaces.
namespace xfmr {
void PrintTo(MoEDispatch dispatch, std::ostream *os) {
  *os << stringifyMoEDispatch(dispatch).str();
}
namespace kernels {
void PrintTo(const CacheFormat &format, std::ostream *os) {
  *os << formatName(format.format).str()
      << (format.scaled ? " with scales" : "");
}
} // namespace kernels
} // namespace xfmr

namespace {

/// |actual - expected| <= atol + rtol * |expected| for every element.
void expectClose(const std::vector<double> &actual,
                 const std::vector<double> &expected, double atol,
                 double rtol, const std::string &what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  size_t bad = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    double limit = atol + rtol * std::abs(expected[i]);
    if (!(std::abs(actual[i] - expected[i]) <= limit)) {
      if (++bad <= 5)
        ADD_FAILURE() << what << ": element " << i << " is " << actual[i]
                      << ", expected " << expected[i] << " (tolerance "
                      << limit << ")";
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << actual.size()
                     << " elements differ";
}

std::string name(WeightFormat format) { return formatName(format).str(); }

double silu(double x) { return x / (1 + std::exp(-x)); }

class KernelTest : public ::testing::Test {
protected:
  static KernelHarness &harness() {
    static KernelHarness instance;
    return instance;
  }
};

//===----------------------------------------------------------------------===//
// Elementwise, embedding, slices
//===----------------------------------------------------------------------===//

TEST_F(KernelTest, Elementwise) {
  const int64_t n = 37;
  std::vector<double> a = randomValues(n, -4, 4, 1), b = randomValues(n, -4, 4, 2);
  struct Case {
    Elementwise kind;
    std::function<double(double, double)> reference;
  };
  std::vector<Case> cases = {
      {Elementwise::Add, [](double x, double y) { return x + y; }},
      {Elementwise::Mul, [](double x, double y) { return x * y; }},
      {Elementwise::SwiGLU, [](double x, double y) { return silu(x) * y; }},
      {Elementwise::Silu, [](double x, double) { return silu(x); }},
      {Elementwise::Gelu,
       [](double x, double) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }},
      {Elementwise::GeluTanh,
       [](double x, double) {
         return 0.5 * x *
                (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
       }},
      {Elementwise::Copy, [](double x, double) { return x; }},
  };
  for (const Case &c : cases) {
    auto kernel = harness().compile(ElementwiseKernel{c.kind});
    ASSERT_TRUE(kernel);
    Buffer in0 = f32Buffer({n}, a), in1 = f32Buffer({n}, b), out = f32Buffer({n});
    ElementwiseOperands<Buffer *> operands{&in0, isBinary(c.kind) ? &in1 : nullptr,
                                           &out};
    (*kernel)(operands);
    std::vector<double> expected(n);
    for (int64_t i = 0; i < n; ++i)
      expected[i] = c.reference(float(a[i]), float(b[i]));
    expectClose(readF32(out), expected, 1e-6, 1e-5, kernel->name());
  }
}

TEST_F(KernelTest, Embedding) {
  const int64_t vocab = 10, hidden = 20;
  for (WeightFormat format : {WeightFormat::F32, WeightFormat::BF16,
                              WeightFormat::F8E4M3FN}) {
    auto kernel = harness().compile(EmbeddingKernel{vocab, hidden, format});
    ASSERT_TRUE(kernel);
    std::vector<double> values = randomValues(vocab * hidden, -2, 2, 3);
    Buffer table = codesBuffer(format, {vocab, hidden}, values);
    std::vector<int32_t> idList = {7, 0, 9, 7};
    Buffer ids({4}, sizeof(int32_t));
    std::copy(idList.begin(), idList.end(), ids.as<int32_t>());
    Buffer out = f32Buffer({4, hidden});
    (*kernel)(EmbeddingOperands<Buffer *>{&table, &ids, &out});
    std::vector<double> expected;
    for (int32_t id : idList)
      for (int64_t j = 0; j < hidden; ++j)
        expected.push_back(roundTo(format, values[id * hidden + j]));
    expectClose(readF32(out), expected, 0, 0, kernel->name());
  }
}

TEST_F(KernelTest, SliceColumns) {
  auto kernel = harness().compile(SliceColumnsKernel{10, 3, 4});
  ASSERT_TRUE(kernel);
  std::vector<double> values = randomValues(3 * 10, -1, 1, 4);
  Buffer in = f32Buffer({3, 10}, values), out = f32Buffer({3, 4});
  (*kernel)(SliceColumnsOperands<Buffer *>{&in, &out});
  std::vector<double> expected;
  for (int64_t t = 0; t < 3; ++t)
    for (int64_t j = 0; j < 4; ++j)
      expected.push_back(float(values[t * 10 + 3 + j]));
  expectClose(readF32(out), expected, 0, 0, kernel->name());
}

//===----------------------------------------------------------------------===//
// Normalization and activation quantization
//===----------------------------------------------------------------------===//

TEST_F(KernelTest, RMSNorm) {
  const int64_t tokens = 3, hidden = 40;
  const double eps = 1e-5;
  for (WeightFormat format : {WeightFormat::F32, WeightFormat::BF16}) {
    auto kernel = harness().compile(RMSNormKernel{hidden, format, eps});
    ASSERT_TRUE(kernel);
    std::vector<double> x = randomValues(tokens * hidden, -2, 2, 5);
    std::vector<double> w = randomValues(hidden, 0.5, 1.5, 6);
    Buffer in = f32Buffer({tokens, hidden}, x);
    Buffer weight = codesBuffer(format, {hidden}, w);
    Buffer out = f32Buffer({tokens, hidden});
    (*kernel)(RMSNormOperands<Buffer *>{&in, &weight, &out});
    std::vector<double> expected;
    for (int64_t t = 0; t < tokens; ++t) {
      double squares = 0;
      for (int64_t i = 0; i < hidden; ++i)
        squares += float(x[t * hidden + i]) * float(x[t * hidden + i]);
      double inverse = 1 / std::sqrt(squares / hidden + eps);
      for (int64_t i = 0; i < hidden; ++i)
        expected.push_back(float(x[t * hidden + i]) * inverse *
                           roundTo(format, w[i]));
    }
    expectClose(readF32(out), expected, 1e-6, 1e-5, kernel->name());
  }
}

TEST_F(KernelTest, FakeQuantize) {
  // 40 channels in groups of 16: the last group is partial; one token is
  // all zeros (its scale stays finite).
  const int64_t tokens = 3, channels = 40, group = 16;
  for (WeightFormat format : {WeightFormat::F8E4M3FN, WeightFormat::F8E5M2}) {
    auto kernel =
        harness().compile(FakeQuantizeKernel{channels, group, format});
    ASSERT_TRUE(kernel);
    std::vector<double> x = randomValues(tokens * channels, -3, 3, 7);
    std::fill(x.begin() + 2 * channels, x.end(), 0.0);
    Buffer in = f32Buffer({tokens, channels}, x);
    Buffer out = f32Buffer({tokens, channels});
    (*kernel)(FakeQuantizeOperands<Buffer *>{&in, &out, nullptr, nullptr});
    double largest = format == WeightFormat::F8E5M2 ? 57344.0 : 448.0;
    std::vector<double> expected(x.size());
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t first = 0; first < channels; first += group) {
        int64_t last = std::min(channels, first + group);
        float amax = 0;
        for (int64_t i = first; i < last; ++i)
          amax = std::max(amax, std::abs(float(x[t * channels + i])));
        float scale = std::max(amax, 1e-12f) / float(largest);
        for (int64_t i = first; i < last; ++i)
          expected[t * channels + i] =
              roundTo(format, float(x[t * channels + i]) / scale) * scale;
      }
    expectClose(readF32(out), expected, 0, 1e-6, kernel->name());
  }
}

//===----------------------------------------------------------------------===//
// Linear: every weight format, with and without block scales and bias
//===----------------------------------------------------------------------===//

struct LinearCase {
  WeightFormat format;
  bool blockScaled;
  bool bias;
};

// Readable parameters in test logs (gtest would print the bytes).
void PrintTo(const LinearCase &c, std::ostream *os) {
  *os << name(c.format) << (c.blockScaled ? " block-scaled" : "")
      << (c.bias ? " with bias" : "");
}

class LinearKernelTest : public KernelTest,
                         public ::testing::WithParamInterface<LinearCase> {};

TEST_P(LinearKernelTest, MatchesFloat64) {
  const LinearCase c = GetParam();
  const int64_t in = 40, out = 24, bm = 16, bn = 16;
  WeightOperand weight;
  weight.format = c.format;
  if (c.blockScaled)
    weight.blockScale = {bm, bn};
  LinearKernel config{in, out, weight, std::nullopt};
  if (c.bias)
    config.bias = WeightFormat::F32;
  auto kernel = harness().compile(config);
  ASSERT_TRUE(kernel);
  std::vector<double> w = randomValues(out * in, -1, 1, 8);
  std::vector<double> s = randomValues(3 * 3, 0.25, 2, 9);
  std::vector<double> bias = randomValues(out, -1, 1, 10);
  Buffer weightBuffer = codesBuffer(c.format, {out, in}, w);
  Buffer scaleBuffer = f32Buffer({2, 3}, s);
  Buffer biasBuffer = f32Buffer({out}, bias);
  // One row (decode) and five (a 4-row register tile and a remainder).
  for (int64_t tokens : {1, 5}) {
    std::vector<double> x = randomValues(tokens * in, -2, 2, 11 + tokens);
    Buffer input = f32Buffer({tokens, in}, x), output = f32Buffer({tokens, out});
    LinearOperands<Buffer *> operands{&input,
                                      &weightBuffer,
                                      c.bias ? &biasBuffer : nullptr,
                                      c.blockScaled ? &scaleBuffer : nullptr,
                                      &output,
                                      nullptr,
                                      nullptr};
    (*kernel)(operands);
    std::vector<double> expected, magnitude;
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t n = 0; n < out; ++n) {
        double sum = c.bias ? float(bias[n]) : 0.0, size = std::abs(sum);
        for (int64_t k = 0; k < in; ++k) {
          double term = float(x[t * in + k]) * roundTo(c.format, w[n * in + k]);
          if (c.blockScaled)
            term *= float(s[(n / bm) * 3 + k / bn]);
          sum += term;
          size += std::abs(term);
        }
        expected.push_back(sum);
        magnitude.push_back(size);
      }
    std::vector<double> actual = readF32(output);
    for (size_t i = 0; i < actual.size(); ++i)
      EXPECT_NEAR(actual[i], expected[i], 1e-6 + 1e-5 * magnitude[i])
          << kernel->name() << " tokens " << tokens << " element " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Formats, LinearKernelTest,
    ::testing::Values(LinearCase{WeightFormat::F32, false, true},
                      LinearCase{WeightFormat::BF16, false, false},
                      LinearCase{WeightFormat::F16, false, true},
                      LinearCase{WeightFormat::F8E4M3FN, true, false},
                      LinearCase{WeightFormat::F8E4M3FN, true, true},
                      LinearCase{WeightFormat::F8E4M3FNUZ, true, false},
                      LinearCase{WeightFormat::F8E5M2, true, false}),
    [](const ::testing::TestParamInfo<LinearCase> &info) {
      return name(info.param.format) +
             (info.param.blockScaled ? "_scaled" : "") +
             (info.param.bias ? "_bias" : "");
    });

//===----------------------------------------------------------------------===//
// Linear over weights stored in panels (CPU-only artifacts): bf16 dot products
// on AVX512-BF16, two FMAs per weight pair elsewhere (x86-64-v3), f32 inputs
// for --precise
//===----------------------------------------------------------------------===//

struct PanelLinearCase {
  std::string cpu;
  bool bf16Activations;
  std::optional<WeightFormat> bias;
};

void PrintTo(const PanelLinearCase &c, std::ostream *os) {
  *os << c.cpu << (c.bf16Activations ? " bf16 inputs" : " f32 inputs")
      << (c.bias ? " bias " + name(*c.bias) : "");
}

class PanelLinearKernelTest
    : public KernelTest,
      public ::testing::WithParamInterface<PanelLinearCase> {};

/// x rounded to bf16 (nearest even) through f32, as the kernels round it.
double roundedBF16(double x) {
  return xfmr::float16::decodeBF16(xfmr::float16::encodeBF16(float(x)));
}

TEST_P(PanelLinearKernelTest, MatchesFloat64) {
  const PanelLinearCase c = GetParam();
  // An odd input length (a padded pair) and a last panel with 24 of 64 rows.
  const int64_t in = 101, out = 88, panel = 64;
  WeightOperand weight;
  weight.format = WeightFormat::BF16;
  weight.panel = panel;
  LinearKernel config{in, out, weight, c.bias};
  config.bf16Activations = c.bf16Activations;
  auto kernel = harness().compile(config, c.cpu);
  ASSERT_TRUE(kernel);
  std::vector<double> w = randomValues(out * in, -1, 1, 21);
  std::vector<double> bias = randomValues(out, -1, 1, 22);
  Buffer rows = codesBuffer(WeightFormat::BF16, {out, in}, w);
  std::string panels = xfmr::runtime::toPanels(
      std::string(rows.as<char>(), out * in * 2), out, in, 2, panel);
  Buffer weightBuffer({2, (in + 1) / 2, 2 * panel}, 2);
  std::memcpy(weightBuffer.as<char>(), panels.data(), panels.size());
  Buffer biasBuffer = c.bias ? codesBuffer(*c.bias, {out}, bias) : Buffer();
  // Decode, tiles of the remainder (3 = 2 + 1, 4), one 6-row tile and the rest
  // (11 = 6 + 4 + 1), and two tiles and a remainder.
  for (int64_t tokens : {1, 3, 4, 11, 13}) {
    std::vector<double> x = randomValues(tokens * in, -2, 2, 23 + tokens);
    Buffer input = f32Buffer({tokens, in}, x), output = f32Buffer({tokens, out});
    LinearOperands<Buffer *> operands{
        &input,  &weightBuffer, c.bias ? &biasBuffer : nullptr,
        nullptr, &output,       nullptr,
        nullptr};
    (*kernel)(operands);
    std::vector<double> actual = readF32(output);
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t n = 0; n < out; ++n) {
        double sum = c.bias ? roundTo(*c.bias, bias[n]) : 0.0;
        double size = std::abs(sum);
        for (int64_t k = 0; k < in; ++k) {
          double a = float(x[t * in + k]);
          if (c.bf16Activations)
            a = roundedBF16(a);
          double term = a * roundTo(WeightFormat::BF16, w[n * in + k]);
          sum += term;
          size += std::abs(term);
        }
        EXPECT_NEAR(actual[t * out + n], sum, 1e-6 + 1e-5 * size)
            << kernel->name() << " tokens " << tokens << " row " << t
            << " output " << n;
      }
  }
}

// FP8 codes in panels, with 128 x 32 block scales (the last block 4 columns
// wide): every variant multiplies exact weights, code x scale; with bf16
// inputs, by the inputs rounded to bf16. Variants: byte tables (AVX512-VBMI),
// dot products on codes widened through f32 (Cooper Lake: AVX512-BF16 without
// VBMI), FMA tiles (x86-64-v3) and --precise.
TEST_F(KernelTest, PanelLinearFP8) {
  const int64_t in = 100, out = 200, panel = 64, bm = 128, bn = 32;
  const int64_t scaleCols = (in + bn - 1) / bn;
  for (auto [cpu, bf16] : {std::pair("native", true),
                           std::pair("cooperlake", true),
                           std::pair("x86-64-v3", true),
                           std::pair("native", false)}) {
    WeightOperand weight;
    weight.format = WeightFormat::F8E4M3FN;
    weight.blockScale = {bm, bn};
    weight.panel = panel;
    LinearKernel config{in, out, weight, std::nullopt};
    config.bf16Activations = bf16;
    auto kernel = harness().compile(config, cpu);
    ASSERT_TRUE(kernel);
    // Every magnitude, subnormal codes included.
    std::vector<double> w = randomValues(out * in, -448, 448, 31);
    for (int64_t i = 0; i < out * in; i += 7)
      w[i] = w[i] * 1e-4;
    std::vector<double> s = randomValues(2 * scaleCols, 0.001, 0.01, 32);
    Buffer rows = codesBuffer(WeightFormat::F8E4M3FN, {out, in}, w);
    std::string panels = xfmr::runtime::toPanels(
        std::string(rows.as<char>(), out * in), out, in, 1, panel);
    Buffer weightBuffer({4, in / 2, 2 * panel}, 1);
    std::memcpy(weightBuffer.as<char>(), panels.data(), panels.size());
    Buffer scaleBuffer = f32Buffer({2, scaleCols}, s);
    // Decode (codes widened as read), then a panel converted once: two rows,
    // a tile and a remainder, two tiles and a remainder.
    for (int64_t tokens : {1, 2, 3, 4, 7, 11, 13}) {
      std::vector<double> x = randomValues(tokens * in, -2, 2, 33 + tokens);
      Buffer input = f32Buffer({tokens, in}, x),
             output = f32Buffer({tokens, out});
      LinearOperands<Buffer *> operands{&input,       &weightBuffer, nullptr,
                                        &scaleBuffer, &output,       nullptr,
                                        nullptr};
      (*kernel)(operands);
      std::vector<double> actual = readF32(output);
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t n = 0; n < out; ++n) {
          double sum = 0, size = 0;
          for (int64_t k = 0; k < in; ++k) {
            double code = roundTo(WeightFormat::F8E4M3FN, w[n * in + k]);
            double wv = code * float(s[(n / bm) * scaleCols + k / bn]);
            double a = float(x[t * in + k]);
            if (bf16)
              a = roundedBF16(a);
            double term = a * wv;
            sum += term;
            size += std::abs(term);
          }
          EXPECT_NEAR(actual[t * out + n], sum, 1e-6 + 1e-5 * size)
              << kernel->name() << " " << cpu << " bf16 " << bf16
              << " tokens " << tokens << " row " << t << " output " << n;
        }
    }
  }
}

/// A token's int8 codes and scale, as xfmr.quantize computes them in f32
/// (scale = max(max |x|, 1e-12) / 127): what the W8A8 and W4A8 kernels
/// multiply.
std::vector<double> tokenCodes(const double *x, int64_t in, float &scale) {
  float amax = 0;
  for (int64_t k = 0; k < in; ++k)
    amax = std::max(amax, std::fabs(float(x[k])));
  scale = std::max(amax, 1e-12f) / 127.0f;
  std::vector<double> q(in);
  for (int64_t k = 0; k < in; ++k)
    q[k] = std::clamp<double>(std::nearbyint(float(x[k]) / scale), -127, 127);
  return q;
}

// W8A8: int8 codes in panels of quads (code + 128) with a scale per row, the
// input quantized per token by the kernel itself. Variants: VNNI (`vpdpbusd`)
// and int32 multiplies (x86-64-v3); with and without a bias. An input length
// that is neither a multiple of 4 nor of 16, a last panel of 24 of 64 rows,
// and a token with an all-zero input (scale 1e-12 / 127).
TEST_F(KernelTest, PanelLinearInt8) {
  const int64_t in = 101, out = 88, panel = 64;
  const int64_t quads = (in + 3) / 4;
  std::vector<double> codes = randomValues(out * in, -127.49, 127.49, 41);
  std::string bytes(size_t(out * in), '\0');
  for (int64_t i = 0; i < out * in; ++i) {
    codes[i] = std::nearbyint(codes[i]);
    bytes[size_t(i)] = char(int8_t(codes[i]));
  }
  std::vector<double> s = randomValues(out, 0.001, 0.01, 42);
  std::vector<double> bias = randomValues(out, -1, 1, 43);
  std::string panels = xfmr::runtime::toInt8Panels(bytes, out, in, panel);
  Buffer weightBuffer({2, quads, 4 * panel}, 1);
  ASSERT_EQ(panels.size(), size_t(2 * quads * 4 * panel));
  std::memcpy(weightBuffer.as<char>(), panels.data(), panels.size());
  Buffer scaleBuffer = f32Buffer({out, 1}, s);
  Buffer biasBuffer = f32Buffer({out}, bias);
  for (auto [cpu, withBias] :
       {std::pair("native", true), std::pair("native", false),
        std::pair("x86-64-v3", true)}) {
    WeightOperand weight;
    weight.format = WeightFormat::I8;
    weight.blockScale = {1, in};
    weight.panel = panel;
    LinearKernel config{in, out, weight, std::nullopt};
    if (withBias)
      config.bias = WeightFormat::F32;
    config.int8Activations = true;
    auto kernel = harness().compile(config, cpu);
    ASSERT_TRUE(kernel);
    for (int64_t tokens : {1, 2, 3, 4, 7, 11, 13}) {
      std::vector<double> x = randomValues(tokens * in, -2, 2, 44 + tokens);
      for (int64_t k = 0; k < in; ++k)
        x[k] = 0; // the first token
      Buffer input = f32Buffer({tokens, in}, x),
             output = f32Buffer({tokens, out});
      LinearOperands<Buffer *> operands{
          &input,       &weightBuffer, withBias ? &biasBuffer : nullptr,
          &scaleBuffer, &output,       nullptr,
          nullptr};
      (*kernel)(operands);
      std::vector<double> actual = readF32(output);
      for (int64_t t = 0; t < tokens; ++t) {
        float scale;
        std::vector<double> q = tokenCodes(&x[t * in], in, scale);
        for (int64_t n = 0; n < out; ++n) {
          double sum = 0;
          for (int64_t k = 0; k < in; ++k)
            sum += q[k] * codes[n * in + k];
          double expected = sum * scale * float(s[n]);
          if (withBias)
            expected += float(bias[n]);
          EXPECT_NEAR(actual[t * out + n], expected,
                      1e-6 + 1e-6 * std::abs(expected))
              << kernel->name() << " " << cpu << " tokens " << tokens << " row "
              << t << " output " << n;
        }
      }
    }
  }
}

// W4A8: int4 codes in panels of octets (two codes + 8 a byte) with f16
// scales per row and group, the input quantized per token by the kernel.
// Variants: VNNI and int32 multiplies (x86-64-v3); groups of 32 (whole), 24
// (a short last group: 100 inputs) and 128 (one group wider than the row);
// with and without a bias; a last panel of 24 of 64 rows and an all-zero
// token.
TEST_F(KernelTest, PanelLinearInt4) {
  const int64_t in = 100, out = 88, panel = 64;
  const int64_t octets = (in + 7) / 8;
  std::vector<double> codes = randomValues(out * in, -7.49, 7.49, 51);
  std::string bytes(size_t(out * in), '\0');
  for (int64_t i = 0; i < out * in; ++i) {
    codes[i] = std::nearbyint(codes[i]);
    bytes[size_t(i)] = char(int8_t(codes[i]));
  }
  std::string panels = xfmr::runtime::toInt4Panels(bytes, out, in, panel);
  ASSERT_EQ(panels.size(), size_t(2 * octets * 4 * panel));
  Buffer weightBuffer({2, octets, 4 * panel}, 1);
  std::memcpy(weightBuffer.as<char>(), panels.data(), panels.size());
  std::vector<double> bias = randomValues(out, -1, 1, 53);
  Buffer biasBuffer = f32Buffer({out}, bias);
  for (auto [cpu, group, withBias] :
       {std::tuple("native", 32, true), std::tuple("native", 24, false),
        std::tuple("native", 128, true), std::tuple("x86-64-v3", 32, true),
        std::tuple("x86-64-v3", 24, false)}) {
    const int64_t groups = (in + group - 1) / group;
    // f16 scales [out, groups], stored in panels of single columns.
    std::vector<double> s(size_t(out * groups));
    std::string scaleBytes(size_t(out * groups * 2), '\0');
    std::vector<double> drawn = randomValues(out * groups, 0.001, 0.01, 52);
    for (int64_t i = 0; i < out * groups; ++i) {
      uint16_t bits = xfmr::float16::encodeF16(drawn[i]);
      s[i] = xfmr::float16::decodeF16(bits);
      std::memcpy(&scaleBytes[size_t(2 * i)], &bits, 2);
    }
    std::string scalePanels =
        xfmr::runtime::toPanels(scaleBytes, out, groups, 2, panel, 1);
    Buffer scaleBuffer({2, groups, panel}, 2);
    ASSERT_EQ(scalePanels.size(), size_t(2 * groups * panel * 2));
    std::memcpy(scaleBuffer.as<char>(), scalePanels.data(), scalePanels.size());
    WeightOperand weight;
    weight.format = WeightFormat::I4;
    weight.blockScale = {1, group};
    weight.panel = panel;
    LinearKernel config{in, out, weight, std::nullopt};
    if (withBias)
      config.bias = WeightFormat::F32;
    config.int8Activations = true;
    auto kernel = harness().compile(config, cpu);
    ASSERT_TRUE(kernel);
    for (int64_t tokens : {1, 2, 3, 4, 7}) {
      std::vector<double> x = randomValues(tokens * in, -2, 2, 54 + tokens);
      for (int64_t k = 0; k < in; ++k)
        x[k] = 0; // the first token
      Buffer input = f32Buffer({tokens, in}, x),
             output = f32Buffer({tokens, out});
      LinearOperands<Buffer *> operands{
          &input,       &weightBuffer, withBias ? &biasBuffer : nullptr,
          &scaleBuffer, &output,       nullptr,
          nullptr};
      (*kernel)(operands);
      std::vector<double> actual = readF32(output);
      for (int64_t t = 0; t < tokens; ++t) {
        float scale;
        std::vector<double> q = tokenCodes(&x[t * in], in, scale);
        for (int64_t n = 0; n < out; ++n) {
          double sum = 0;
          for (int64_t g = 0; g < groups; ++g) {
            double part = 0;
            for (int64_t k = g * group; k < std::min(in, (g + 1) * group); ++k)
              part += q[k] * codes[n * in + k];
            sum += part * s[n * groups + g];
          }
          double expected = sum * scale;
          if (withBias)
            expected += float(bias[n]);
          EXPECT_NEAR(actual[t * out + n], expected,
                      1e-6 + 1e-5 * std::abs(expected))
              << kernel->name() << " " << cpu << " group " << group
              << " tokens " << tokens << " row " << t << " output " << n;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Variants, PanelLinearKernelTest,
    ::testing::Values(
        PanelLinearCase{"native", true, std::nullopt},
        PanelLinearCase{"native", true, WeightFormat::BF16},
        PanelLinearCase{"native", false, WeightFormat::F32},
        PanelLinearCase{"x86-64-v3", true, WeightFormat::F16},
        PanelLinearCase{"x86-64-v3", false, std::nullopt}),
    [](const ::testing::TestParamInfo<PanelLinearCase> &info) {
      std::string cpu = info.param.cpu;
      std::replace(cpu.begin(), cpu.end(), '-', '_');
      return cpu + (info.param.bf16Activations ? "_bf16" : "_f32") +
             (info.param.bias ? "_bias_" + name(*info.param.bias) : "");
    });

//===----------------------------------------------------------------------===//
// RoPE: both pair styles, partial rotation, every scaling kind
//===----------------------------------------------------------------------===//

/// Hugging Face's inverse frequencies and cos/sin magnitude, in float64.
struct RopeReference {
  double theta = 10000, factor = 1;
  std::string scaling = "none";
  int64_t original = 0;
  double lowFreq = 1, highFreq = 4, betaFast = 32, betaSlow = 1, mscale = 1,
         mscaleAllDim = 0;

  std::vector<double> inverseFrequencies(int64_t dim) const {
    std::vector<double> inv(dim / 2);
    for (int64_t i = 0; i < dim / 2; ++i)
      inv[i] = 1.0 / std::pow(theta, double(2 * i) / dim);
    if (scaling == "linear") {
      for (double &f : inv)
        f /= factor;
    } else if (scaling == "llama3") {
      double lowWave = original / lowFreq, highWave = original / highFreq;
      for (double &f : inv) {
        double wave = 2 * M_PI / f;
        if (wave > lowWave) {
          f /= factor;
        } else if (wave >= highWave) {
          double smooth = (original / wave - lowFreq) / (highFreq - lowFreq);
          f = (1 - smooth) * f / factor + smooth * f;
        }
      }
    } else if (scaling == "yarn") {
      auto correction = [&](double rotations) {
        return dim * std::log(original / (rotations * 2 * M_PI)) /
               (2 * std::log(theta));
      };
      double lo = std::max(std::floor(correction(betaFast)), 0.0);
      double hi = std::min(std::ceil(correction(betaSlow)), double(dim - 1));
      if (lo == hi)
        hi += 0.001;
      for (int64_t i = 0; i < dim / 2; ++i) {
        double ramp = std::clamp((i - lo) / (hi - lo), 0.0, 1.0);
        double extrapolation = 1 - ramp;
        inv[i] = inv[i] / factor * (1 - extrapolation) + inv[i] * extrapolation;
      }
    }
    return inv;
  }
  double magnitude() const {
    if (scaling != "yarn")
      return 1;
    auto m = [&](double scale) {
      return factor <= 1 ? 1.0 : 0.1 * scale * std::log(factor) + 1;
    };
    return m(mscale) / m(mscaleAllDim);
  }
};

struct RopeCase {
  std::string name, attribute;
  bool interleaved;
  int64_t rotaryDim, offset;
  RopeReference reference;
};

void PrintTo(const RopeCase &c, std::ostream *os) { *os << c.name; }

class RopeKernelTest : public KernelTest,
                       public ::testing::WithParamInterface<RopeCase> {};

TEST_P(RopeKernelTest, MatchesFloat64) {
  const RopeCase &c = GetParam();
  const int64_t heads = 2, headDim = 16, tokens = 3, start = 5;
  auto config = llvm::dyn_cast_or_null<RopeAttr>(
      mlir::parseAttribute(c.attribute, &harness().context()));
  ASSERT_TRUE(config) << c.attribute;
  auto kernel = harness().compile(RopeKernel{heads, headDim, config});
  ASSERT_TRUE(kernel);
  std::vector<double> x = randomValues(tokens * heads * headDim, -1, 1, 20);
  Buffer input = f32Buffer({tokens, heads, headDim}, x);
  Buffer output = f32Buffer({tokens, heads, headDim});
  Buffer position = Buffer::index(start);
  (*kernel)(RopeOperands<Buffer *>{&input, &position, &output});

  int64_t rotary = c.rotaryDim ? c.rotaryDim : headDim;
  std::vector<double> inv = c.reference.inverseFrequencies(rotary);
  double m = c.reference.magnitude();
  std::vector<double> expected(x.size());
  for (size_t i = 0; i < x.size(); ++i)
    expected[i] = float(x[i]);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < rotary / 2; ++i) {
        double angle = double(start + t) * inv[i];
        double cos = std::cos(angle) * m, sin = std::sin(angle) * m;
        int64_t base = (t * heads + h) * headDim + c.offset;
        int64_t a = base + (c.interleaved ? 2 * i : i);
        int64_t b = base + (c.interleaved ? 2 * i + 1 : i + rotary / 2);
        double x0 = float(x[a]), x1 = float(x[b]);
        expected[a] = x0 * cos - x1 * sin;
        expected[b] = x1 * cos + x0 * sin;
      }
  expectClose(readF32(output), expected, 1e-6, 1e-5, c.name);
}

RopeReference withScaling(std::string kind, double factor, int64_t original) {
  RopeReference r;
  r.scaling = std::move(kind);
  r.factor = factor;
  r.original = original;
  return r;
}

INSTANTIATE_TEST_SUITE_P(
    Variants, RopeKernelTest,
    ::testing::Values(
        RopeCase{"rotate_half", "#xfmr.rope<theta = 10000.0>", false, 0, 0,
                 RopeReference{}},
        RopeCase{"interleaved",
                 "#xfmr.rope<theta = 10000.0, style = interleaved>", true, 0,
                 0, RopeReference{}},
        RopeCase{"partial",
                 "#xfmr.rope<theta = 10000.0, rotary_dim = 8, rotary_offset = "
                 "4>",
                 false, 8, 4, RopeReference{}},
        RopeCase{"linear",
                 "#xfmr.rope<theta = 10000.0, scaling = linear, factor = 4.0>",
                 false, 0, 0, withScaling("linear", 4, 0)},
        RopeCase{"llama3",
                 "#xfmr.rope<theta = 10000.0, scaling = llama3, factor = 8.0, "
                 "original_max_positions = 64>",
                 false, 0, 0, withScaling("llama3", 8, 64)},
        RopeCase{"yarn",
                 "#xfmr.rope<theta = 10000.0, style = interleaved, scaling = "
                 "yarn, factor = 40.0, original_max_positions = 64, "
                 "mscale = 0.707, mscale_all_dim = 1.0>",
                 true, 0, 0,
                 [] {
                   RopeReference r = withScaling("yarn", 40, 64);
                   r.mscale = 0.707;
                   r.mscaleAllDim = 1.0;
                   return r;
                 }()}),
    [](const ::testing::TestParamInfo<RopeCase> &info) {
      return info.param.name;
    });

//===----------------------------------------------------------------------===//
// Attention: every cache format, GQA, windows and evicting rings
//===----------------------------------------------------------------------===//

/// What a cache slot holds after a write: the value each element reads back
/// as, emulating the kernel's f32 scale and rounding.
std::vector<double> stored(CacheFormat format, const std::vector<double> &row) {
  std::vector<double> out(row.size());
  if (!format.scaled) {
    for (size_t i = 0; i < row.size(); ++i)
      out[i] = roundTo(format.format, float(row[i]));
    return out;
  }
  double largest = format.format == WeightFormat::I8 ? 127.0 : 448.0;
  float amax = 0;
  for (double v : row)
    amax = std::max(amax, std::abs(float(v)));
  float scale = std::max(amax, 1e-12f) / float(largest);
  for (size_t i = 0; i < row.size(); ++i)
    out[i] = roundTo(format.format, float(row[i]) / scale) * double(scale);
  return out;
}

/// A float64 model of a KV cache: keys and values by position, as stored.
struct ReferenceCache {
  int64_t heads, keyDim, valueDim;
  CacheFormat format;
  // [position][head] -> row
  std::vector<std::vector<std::vector<double>>> keys, values;

  void write(const std::vector<double> &k, const std::vector<double> &v,
             int64_t tokens) {
    for (int64_t t = 0; t < tokens; ++t) {
      keys.emplace_back();
      values.emplace_back();
      for (int64_t h = 0; h < heads; ++h) {
        keys.back().push_back(stored(
            format, {k.begin() + (t * heads + h) * keyDim,
                     k.begin() + (t * heads + h + 1) * keyDim}));
        values.back().push_back(stored(
            format, {v.begin() + (t * heads + h) * valueDim,
                     v.begin() + (t * heads + h + 1) * valueDim}));
      }
    }
  }

  /// Softmax attention of query rows over the visible positions.
  std::vector<double> attend(const std::vector<double> &q, int64_t tokens,
                             int64_t queryHeads, int64_t start, double scale,
                             std::function<bool(int64_t, int64_t)> visible) {
    std::vector<double> out;
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t h = 0; h < queryHeads; ++h) {
        int64_t kvHead = h / (queryHeads / heads);
        int64_t p = start + t;
        std::vector<double> scores;
        std::vector<int64_t> positions;
        for (int64_t j = 0; j <= p; ++j) {
          if (!visible(p, j))
            continue;
          double dot = 0;
          for (int64_t d = 0; d < keyDim; ++d)
            dot += float(q[(t * queryHeads + h) * keyDim + d]) *
                   keys[j][kvHead][d];
          scores.push_back(dot * scale);
          positions.push_back(j);
        }
        double top = *std::max_element(scores.begin(), scores.end()), sum = 0;
        for (double &s : scores)
          sum += (s = std::exp(s - top));
        for (int64_t d = 0; d < valueDim; ++d) {
          double acc = 0;
          for (size_t i = 0; i < scores.size(); ++i)
            acc += scores[i] / sum * values[positions[i]][kvHead][d];
          out.push_back(acc);
        }
      }
    return out;
  }
};

class AttentionKernelTest
    : public KernelTest,
      public ::testing::WithParamInterface<CacheFormat> {};

TEST_P(AttentionKernelTest, PrefillThenDecodeMatchFloat64) {
  const CacheFormat format = GetParam();
  const int64_t capacity = 16, queryHeads = 4, kvHeads = 2;
  const double scale = 0.25;
  // The vectorized value loop (Dv a multiple of 16) and the scalar one.
  for (int64_t valueDim : {16, 8}) {
    const int64_t keyDim = 16;
    auto write = harness().compile(CacheWriteKernel{
        capacity, kvHeads, keyDim, valueDim, format, std::nullopt});
    auto attend = harness().compile(
        AttendKernel{capacity, queryHeads, kvHeads, keyDim, valueDim, scale,
                     std::nullopt, format, std::nullopt});
    ASSERT_TRUE(write && attend);
    size_t element = storageSize(format.format);
    Buffer cache({capacity, kvHeads, keyDim + valueDim}, element);
    Buffer scales = f32Buffer({capacity, kvHeads, 2});
    Buffer *scalesArg = format.scaled ? &scales : nullptr;
    ReferenceCache reference{kvHeads, keyDim, valueDim, format, {}, {}};
    int64_t start = 0, seed = 30;
    for (int64_t tokens : {3, 2, 1}) {
      std::vector<double> k = randomValues(tokens * kvHeads * keyDim, -2, 2, ++seed);
      std::vector<double> v = randomValues(tokens * kvHeads * valueDim, -2, 2, ++seed);
      std::vector<double> q = randomValues(tokens * queryHeads * keyDim, -2, 2, ++seed);
      Buffer key = f32Buffer({tokens, kvHeads, keyDim}, k);
      Buffer value = f32Buffer({tokens, kvHeads, valueDim}, v);
      Buffer query = f32Buffer({tokens, queryHeads, keyDim}, q);
      Buffer output = f32Buffer({tokens, queryHeads, valueDim});
      Buffer position = Buffer::index(start);
      (*write)(CacheWriteOperands<Buffer *>{&key, &value, &cache, scalesArg,
                                            &position});
      (*attend)(AttendOperands<Buffer *>{&query, &cache, scalesArg, &position,
                                         &output});
      reference.write(k, v, tokens);
      std::vector<double> expected = reference.attend(
          q, tokens, queryHeads, start, scale,
          [](int64_t, int64_t) { return true; });
      expectClose(readF32(output), expected, 2e-5, 1e-4,
                  attend->name() + " at " + std::to_string(start));
      start += tokens;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    CacheFormats, AttentionKernelTest,
    ::testing::Values(CacheFormat{WeightFormat::F32, false},
                      CacheFormat{WeightFormat::BF16, false},
                      CacheFormat{WeightFormat::F16, false},
                      CacheFormat{WeightFormat::F8E4M3FN, true},
                      CacheFormat{WeightFormat::I8, true}),
    [](const ::testing::TestParamInfo<CacheFormat> &info) {
      return name(info.param.format);
    });

TEST_F(KernelTest, AttentionSlidingWindow) {
  // Keys at positions > p - window only.
  const int64_t capacity = 16, heads = 1, dim = 16, window = 4, tokens = 7;
  CacheFormat format;
  auto write = harness().compile(
      CacheWriteKernel{capacity, heads, dim, dim, format, std::nullopt});
  auto attend = harness().compile(AttendKernel{
      capacity, heads, heads, dim, dim, 0.25, window, format, std::nullopt});
  ASSERT_TRUE(write && attend);
  std::vector<double> k = randomValues(tokens * dim, -2, 2, 40);
  std::vector<double> v = randomValues(tokens * dim, -2, 2, 41);
  std::vector<double> q = randomValues(tokens * dim, -2, 2, 42);
  Buffer cache = f32Buffer({capacity, heads, 2 * dim});
  Buffer key = f32Buffer({tokens, heads, dim}, k);
  Buffer value = f32Buffer({tokens, heads, dim}, v);
  Buffer query = f32Buffer({tokens, heads, dim}, q);
  Buffer output = f32Buffer({tokens, heads, dim});
  Buffer start = Buffer::index(0);
  (*write)(CacheWriteOperands<Buffer *>{&key, &value, &cache, nullptr, &start});
  (*attend)(AttendOperands<Buffer *>{&query, &cache, nullptr, &start, &output});
  ReferenceCache reference{heads, dim, dim, format, {}, {}};
  reference.write(k, v, tokens);
  expectClose(readF32(output),
              reference.attend(q, tokens, heads, 0, 0.25,
                               [&](int64_t p, int64_t j) {
                                 return j > p - window;
                               }),
              2e-5, 1e-4, attend->name());
}

/// Prefills the token counts of `prompts` one after the other (each from
/// where the previous ended, so later calls attend to earlier ones) and
/// compares every output with the float64 reference.
struct PrefillCase {
  const char *cpu;
  CacheFormat format;
  std::optional<int64_t> window;
  int64_t capacity, queryHeads, kvHeads, keyDim, valueDim;
  std::vector<int64_t> prompts;
  double scale;
};

static void checkPrefill(KernelHarness &harness, const PrefillCase &c,
                         int64_t seed) {
  auto write = harness.compile(CacheWriteKernel{
      c.capacity, c.kvHeads, c.keyDim, c.valueDim, c.format, std::nullopt});
  auto attend = harness.compile(
      AttendKernel{c.capacity, c.queryHeads, c.kvHeads, c.keyDim, c.valueDim,
                   c.scale, c.window, c.format, std::nullopt},
      c.cpu);
  ASSERT_TRUE(write && attend);
  Buffer cache({c.capacity, c.kvHeads, c.keyDim + c.valueDim},
               storageSize(c.format.format));
  Buffer scales = f32Buffer({c.capacity, c.kvHeads, 2});
  Buffer *scalesArg = c.format.scaled ? &scales : nullptr;
  ReferenceCache reference{c.kvHeads, c.keyDim, c.valueDim, c.format, {}, {}};
  int64_t start = 0;
  for (int64_t tokens : c.prompts) {
    std::vector<double> k =
        randomValues(tokens * c.kvHeads * c.keyDim, -2, 2, ++seed);
    std::vector<double> v =
        randomValues(tokens * c.kvHeads * c.valueDim, -2, 2, ++seed);
    std::vector<double> q =
        randomValues(tokens * c.queryHeads * c.keyDim, -2, 2, ++seed);
    Buffer key = f32Buffer({tokens, c.kvHeads, c.keyDim}, k);
    Buffer value = f32Buffer({tokens, c.kvHeads, c.valueDim}, v);
    Buffer query = f32Buffer({tokens, c.queryHeads, c.keyDim}, q);
    Buffer output = f32Buffer({tokens, c.queryHeads, c.valueDim});
    Buffer position = Buffer::index(start);
    (*write)(CacheWriteOperands<Buffer *>{&key, &value, &cache, scalesArg,
                                          &position});
    (*attend)(AttendOperands<Buffer *>{&query, &cache, scalesArg, &position,
                                       &output});
    reference.write(k, v, tokens);
    expectClose(readF32(output),
                reference.attend(q, tokens, c.queryHeads, start, c.scale,
                                 [&](int64_t p, int64_t j) {
                                   return !c.window || j > p - *c.window;
                                 }),
                2e-5, 1e-4,
                attend->name() + " " + c.cpu + " at " + std::to_string(start));
    start += tokens;
  }
}

TEST_F(KernelTest, AttentionPrefillTiles) {
  // Prefill walks keys in chunks for tiles of tokens of one KV head: several
  // tiles (16 tokens) and chunks (32 keys), a partial last tile, a second
  // prefill after the first, grouped query heads, bf16 and int8 caches, and
  // a sliding window whose start moves inside a tile.
  for (CacheFormat format : {CacheFormat{WeightFormat::BF16, false},
                             CacheFormat{WeightFormat::I8, true}})
    for (std::optional<int64_t> window :
         {std::optional<int64_t>(), std::optional<int64_t>(21)})
      checkPrefill(
          harness(),
          PrefillCase{
              "native", format, window, 128, 4, 2, 16, 16, {70, 37, 1}, 0.25},
          200);
}

TEST_F(KernelTest, AttentionPrefillTilesRealisticShapes) {
  // The matrix-product tiles at model-like sizes: 3 query heads per KV head
  // (48 rows in 3 vectors of lanes, 4-key blocks), 64-channel keys, 80-channel
  // values (a partial block of value vectors), chunks that end mid-block,
  // a window that starts mid-chunk, and f32, bf16 and scaled FP8 caches;
  // with 8-lane vectors (x86-64-v3: 6 vectors of rows, 2-key blocks) too.
  for (auto [cpu, format] :
       {std::pair("native", CacheFormat{WeightFormat::F32, false}),
        std::pair("native", CacheFormat{WeightFormat::BF16, false}),
        std::pair("native", CacheFormat{WeightFormat::F8E4M3FN, true}),
        std::pair("x86-64-v3", CacheFormat{WeightFormat::F32, false})})
    for (std::optional<int64_t> window :
         {std::optional<int64_t>(), std::optional<int64_t>(45)})
      checkPrefill(
          harness(),
          PrefillCase{
              cpu, format, window, 256, 6, 2, 64, 80, {150, 70, 1}, 0.125},
          300);
}

TEST_F(KernelTest, AttentionPrefillManyHeadsPerKVHead) {
  // 40 query heads on one KV head: 640 rows, too many vectors of lanes for
  // the matrix-product tiles, so the per-row tiles run; then a decode.
  checkPrefill(harness(),
               PrefillCase{"native",
                           CacheFormat{WeightFormat::BF16, false},
                           std::nullopt,
                           96,
                           40,
                           1,
                           16,
                           16,
                           {40, 1},
                           0.25},
               400);
}

TEST_F(KernelTest, AttentionEvictingRing) {
  // Capacity 8 with 2 sinks: positions 0 and 1 stay, the other 6 slots hold
  // the last 6 positions; decoding 12 tokens wraps the ring.
  const int64_t capacity = 8, sinks = 2, window = capacity - sinks, dim = 16;
  CacheFormat format{WeightFormat::I8, true};
  auto write = harness().compile(
      CacheWriteKernel{capacity, 1, dim, dim, format, sinks});
  auto attend = harness().compile(
      AttendKernel{capacity, 1, 1, dim, dim, 0.25, window, format, sinks});
  ASSERT_TRUE(write && attend);
  Buffer cache({capacity, 1, 2 * dim}, 1);
  Buffer scales = f32Buffer({capacity, 1, 2});
  ReferenceCache reference{1, dim, dim, format, {}, {}};
  for (int64_t p = 0; p < 12; ++p) {
    std::vector<double> k = randomValues(dim, -2, 2, 100 + 3 * p);
    std::vector<double> v = randomValues(dim, -2, 2, 101 + 3 * p);
    std::vector<double> q = randomValues(dim, -2, 2, 102 + 3 * p);
    Buffer key = f32Buffer({1, 1, dim}, k), value = f32Buffer({1, 1, dim}, v);
    Buffer query = f32Buffer({1, 1, dim}, q), output = f32Buffer({1, 1, dim});
    Buffer start = Buffer::index(p);
    (*write)(CacheWriteOperands<Buffer *>{&key, &value, &cache, &scales, &start});
    (*attend)(AttendOperands<Buffer *>{&query, &cache, &scales, &start, &output});
    reference.write(k, v, 1);
    expectClose(readF32(output),
                reference.attend(q, 1, 1, p, 0.25,
                                 [&](int64_t pos, int64_t j) {
                                   return j < sinks || j > pos - window;
                                 }),
                2e-5, 1e-4, attend->name() + " at " + std::to_string(p));
  }
}

//===----------------------------------------------------------------------===//
// MLA in latent space
//===----------------------------------------------------------------------===//

TEST_F(KernelTest, LatentAttention) {
  const int64_t capacity = 8, heads = 2, nope = 4, rope = 8, rank = 32;
  const double scale = 0.2;
  for (LatentCacheFormat storage :
       {LatentCacheFormat{WeightFormat::F32, WeightFormat::F32, 0},
        LatentCacheFormat{WeightFormat::F8E4M3FN, WeightFormat::BF16, 1}}) {
    auto write = harness().compile(
        LatentCacheWriteKernel{capacity, rank, rope, storage, std::nullopt});
    auto attend = harness().compile(LatentAttendKernel{
        capacity, heads, nope, rope, rank, scale, storage, std::nullopt,
        std::nullopt});
    ASSERT_TRUE(write && attend);
    Buffer latentCache({capacity, rank}, storageSize(storage.format));
    Buffer scales = f32Buffer({capacity, 1});
    Buffer ropeCache({capacity, rope}, storageSize(storage.ropeFormat));
    Buffer *scalesArg = storage.scaleBlocks ? &scales : nullptr;
    CacheFormat latentFormat{storage.format, storage.scaleBlocks > 0};
    std::vector<std::vector<double>> cachedLatent, cachedRope;
    int64_t start = 0, seed = 200;
    for (int64_t tokens : {3, 1}) {
      std::vector<double> c = randomValues(tokens * rank, -2, 2, ++seed);
      std::vector<double> kpe = randomValues(tokens * rope, -2, 2, ++seed);
      std::vector<double> ql = randomValues(tokens * heads * rank, -1, 1, ++seed);
      std::vector<double> q = randomValues(tokens * heads * (nope + rope), -1, 1, ++seed);
      Buffer latent = f32Buffer({tokens, rank}, c);
      Buffer ropeKey = f32Buffer({tokens, 1, rope}, kpe);
      Buffer queryLatent = f32Buffer({tokens, heads, rank}, ql);
      Buffer query = f32Buffer({tokens, heads, nope + rope}, q);
      Buffer output = f32Buffer({tokens, heads, rank});
      Buffer position = Buffer::index(start);
      (*write)(LatentCacheWriteOperands<Buffer *>{
          &latent, &ropeKey, &latentCache, scalesArg, &ropeCache, &position});
      (*attend)(LatentAttendOperands<Buffer *>{&queryLatent, &query,
                                               &latentCache, scalesArg,
                                               &ropeCache, &position, &output});
      for (int64_t t = 0; t < tokens; ++t) {
        cachedLatent.push_back(stored(
            latentFormat, {c.begin() + t * rank, c.begin() + (t + 1) * rank}));
        std::vector<double> r;
        for (int64_t i = 0; i < rope; ++i)
          r.push_back(roundTo(storage.ropeFormat, float(kpe[t * rope + i])));
        cachedRope.push_back(r);
      }
      std::vector<double> expected;
      for (int64_t t = 0; t < tokens; ++t)
        for (int64_t h = 0; h < heads; ++h) {
          std::vector<double> scores;
          for (int64_t j = 0; j <= start + t; ++j) {
            double s = 0;
            for (int64_t r = 0; r < rank; ++r)
              s += float(ql[(t * heads + h) * rank + r]) * cachedLatent[j][r];
            for (int64_t i = 0; i < rope; ++i)
              s += float(q[(t * heads + h) * (nope + rope) + nope + i]) *
                   cachedRope[j][i];
            scores.push_back(s * scale);
          }
          double top = *std::max_element(scores.begin(), scores.end()), sum = 0;
          for (double &s : scores)
            sum += (s = std::exp(s - top));
          for (int64_t r = 0; r < rank; ++r) {
            double acc = 0;
            for (size_t j = 0; j < scores.size(); ++j)
              acc += scores[j] / sum * cachedLatent[j][r];
            expected.push_back(acc);
          }
        }
      expectClose(readF32(output), expected, 2e-5, 1e-4, attend->name());
      start += tokens;
    }
  }
}

TEST_F(KernelTest, MLAAbsorption) {
  // W_UK (the first `nope` rows of each head's kv_b block) maps the query
  // into latent space; W_UV (the next `v` rows) maps the output back.
  const int64_t heads = 2, nope = 4, rope = 2, valueDim = 6, rank = 20;
  const int64_t rows = heads * (nope + valueDim), tokens = 3;
  for (bool fp8 : {false, true}) {
    WeightOperand kvB;
    kvB.format = fp8 ? WeightFormat::F8E4M3FN : WeightFormat::F32;
    if (fp8)
      kvB.blockScale = {8, 8};
    std::vector<double> w = randomValues(rows * rank, -1, 1, 300);
    std::vector<double> s = randomValues(3 * 3, 0.5, 2, 301);
    Buffer weight = codesBuffer(kvB.format, {rows, rank}, w);
    Buffer scale = f32Buffer({3, 3}, s);
    Buffer *scaleArg = fp8 ? &scale : nullptr;
    auto kvBAt = [&](int64_t row, int64_t r) {
      double value = roundTo(kvB.format, w[row * rank + r]);
      return fp8 ? value * float(s[(row / 8) * 3 + r / 8]) : value;
    };

    auto absorbQuery = harness().compile(
        MLAAbsorbQueryKernel{heads, nope, rope, valueDim, rank, kvB});
    auto absorbOutput = harness().compile(
        MLAAbsorbOutputKernel{heads, nope, valueDim, rank, kvB});
    ASSERT_TRUE(absorbQuery && absorbOutput);
    std::vector<double> q = randomValues(tokens * heads * (nope + rope), -1, 1, 302);
    Buffer query = f32Buffer({tokens, heads, nope + rope}, q);
    Buffer queryLatent = f32Buffer({tokens, heads, rank});
    (*absorbQuery)(MLAAbsorbQueryOperands<Buffer *>{&query, &weight, scaleArg,
                                                    &queryLatent});
    std::vector<double> expected;
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t r = 0; r < rank; ++r) {
          double sum = 0;
          for (int64_t i = 0; i < nope; ++i)
            sum += float(q[(t * heads + h) * (nope + rope) + i]) *
                   kvBAt(h * (nope + valueDim) + i, r);
          expected.push_back(sum);
        }
    expectClose(readF32(queryLatent), expected, 1e-5, 1e-5,
                absorbQuery->name());

    std::vector<double> latent = randomValues(tokens * heads * rank, -1, 1, 303);
    Buffer latentBuffer = f32Buffer({tokens, heads, rank}, latent);
    Buffer output = f32Buffer({tokens, heads, valueDim});
    (*absorbOutput)(MLAAbsorbOutputOperands<Buffer *>{&latentBuffer, &weight,
                                                      scaleArg, &output});
    expected.clear();
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t d = 0; d < valueDim; ++d) {
          double sum = 0;
          for (int64_t r = 0; r < rank; ++r)
            sum += float(latent[(t * heads + h) * rank + r]) *
                   kvBAt(h * (nope + valueDim) + nope + d, r);
          expected.push_back(sum);
        }
    expectClose(readF32(output), expected, 1e-5, 1e-5, absorbOutput->name());
  }
}

//===----------------------------------------------------------------------===//
// MoE: routing and experts
//===----------------------------------------------------------------------===//

struct RoutingCase {
  std::string name;
  MoERouteKernel config;
};

void PrintTo(const RoutingCase &c, std::ostream *os) { *os << c.name; }

class MoERouteKernelTest : public KernelTest,
                           public ::testing::WithParamInterface<RoutingCase> {};

TEST_P(MoERouteKernelTest, MatchesFloat64) {
  const MoERouteKernel config = GetParam().config;
  const int64_t tokens = 5, experts = config.experts, k = config.topK;
  auto kernel = harness().compile(config);
  ASSERT_TRUE(kernel);
  std::vector<double> logits = randomValues(tokens * experts, -3, 3, 400);
  std::vector<double> bias = randomValues(experts, -0.3, 0.3, 401);
  Buffer logitsBuffer = f32Buffer({tokens, experts}, logits);
  Buffer biasBuffer = f32Buffer({experts}, bias);
  Buffer weights = f32Buffer({tokens, k});
  Buffer indices({tokens, k}, sizeof(int32_t));
  (*kernel)(MoERouteOperands<Buffer *>{
      &logitsBuffer, config.bias ? &biasBuffer : nullptr, &weights, &indices});

  // DeepSeek / Mixtral routing (python/xfmr/reference/moe.py).
  int64_t perGroup = experts / config.groups;
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<double> scores(experts), choice(experts);
    double top = -INFINITY, sum = 0;
    for (int64_t e = 0; e < experts; ++e)
      top = std::max(top, double(float(logits[t * experts + e])));
    for (int64_t e = 0; e < experts; ++e) {
      double l = float(logits[t * experts + e]);
      scores[e] = config.sigmoid ? 1 / (1 + std::exp(-l)) : std::exp(l - top);
      sum += scores[e];
    }
    for (int64_t e = 0; e < experts; ++e) {
      if (!config.sigmoid)
        scores[e] /= sum;
      choice[e] = scores[e] + (config.bias ? float(bias[e]) : 0.0);
    }
    if (config.groups > 1) {
      // A group scores the sum of its two best choices; the best
      // keptGroups groups stay eligible.
      std::vector<std::pair<double, int64_t>> groupScores;
      for (int64_t g = 0; g < config.groups; ++g) {
        std::vector<double> members(choice.begin() + g * perGroup,
                                    choice.begin() + (g + 1) * perGroup);
        std::sort(members.rbegin(), members.rend());
        groupScores.push_back({members[0] + members[1], g});
      }
      std::sort(groupScores.begin(), groupScores.end(),
                [](auto a, auto b) { return a.first > b.first; });
      std::vector<bool> kept(config.groups, false);
      for (int64_t i = 0; i < config.keptGroups; ++i)
        kept[groupScores[i].second] = true;
      for (int64_t e = 0; e < experts; ++e)
        if (!kept[e / perGroup])
          choice[e] = -INFINITY;
    }
    std::vector<int64_t> order(experts);
    std::iota(order.begin(), order.end(), 0);
    // Ties go to the lower expert index, as in the kernels.
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return choice[a] != choice[b] ? choice[a] > choice[b] : a < b;
    });
    double chosenSum = 0;
    for (int64_t j = 0; j < k; ++j)
      chosenSum += scores[order[j]];
    // Compare as sets of (expert, weight): the order within a token's k
    // choices is not part of the contract.
    std::vector<std::pair<int64_t, double>> expected, actual;
    for (int64_t j = 0; j < k; ++j) {
      double w = scores[order[j]];
      if (config.normalize && k > 1)
        w /= chosenSum + 1e-20;
      expected.push_back({order[j], w * config.factor});
      actual.push_back({indices.as<int32_t>()[t * k + j],
                        weights.as<float>()[t * k + j]});
    }
    std::sort(expected.begin(), expected.end());
    std::sort(actual.begin(), actual.end());
    for (int64_t j = 0; j < k; ++j) {
      EXPECT_EQ(actual[j].first, expected[j].first) << "token " << t;
      EXPECT_NEAR(actual[j].second, expected[j].second, 1e-6) << "token " << t;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Routers, MoERouteKernelTest,
    ::testing::Values(
        // Mixtral: softmax, top 2, weights renormalized.
        RoutingCase{"softmax_top2_norm",
                    MoERouteKernel{8, 2, 1, 1, false, false, true, 1.0}},
        // Qwen-MoE without renormalization.
        RoutingCase{"softmax_top3", MoERouteKernel{8, 3, 1, 1, false, false,
                                                   false, 1.0}},
        // DeepSeek-V3: sigmoid, correction bias, 4 groups keep 2, scaled.
        RoutingCase{"sigmoid_noaux_tc",
                    MoERouteKernel{16, 4, 4, 2, true, true, true, 2.5}}),
    [](const ::testing::TestParamInfo<RoutingCase> &info) {
      return info.param.name;
    });

/// Token `t`'s output of expert `e` in float64: silu(x . gate) * (x . up)
/// through down, each stack [experts, rows, cols] of weights as `weight`
/// reads them (their stored value), the input as f32.
std::vector<double>
expertReference(const std::vector<double> &x, int64_t t, int64_t hidden,
                const std::vector<double> &gate, const std::vector<double> &up,
                const std::vector<double> &down, int64_t e, int64_t width,
                const std::function<double(double)> &weight) {
  std::vector<double> act(width), out(hidden, 0.0);
  for (int64_t i = 0; i < width; ++i) {
    double gs = 0, us = 0;
    for (int64_t j = 0; j < hidden; ++j) {
      double xv = float(x[t * hidden + j]);
      gs += xv * weight(gate[(e * width + i) * hidden + j]);
      us += xv * weight(up[(e * width + i) * hidden + j]);
    }
    act[i] = silu(gs) * us;
  }
  for (int64_t n = 0; n < hidden; ++n)
    for (int64_t i = 0; i < width; ++i)
      out[n] += act[i] * weight(down[(e * hidden + n) * width + i]);
  return out;
}

class MoEExpertsKernelTest
    : public KernelTest,
      public ::testing::WithParamInterface<MoEDispatch> {};

TEST_P(MoEExpertsKernelTest, MatchesFloat64) {
  const int64_t experts = 4, inter = 8, hidden = 16, topK = 2, tokens = 5;
  const int64_t sharedInter = 12;
  WeightOperand weight;
  weight.format = WeightFormat::BF16;
  WeightOperand sharedWeight;
  MoEExpertsKernel config{experts,
                          inter,
                          hidden,
                          topK,
                          weight,
                          GetParam(),
                          SharedExpert{sharedInter, sharedWeight},
                          std::nullopt,
                          /*precise=*/false};
  auto kernel = harness().compile(config);
  ASSERT_TRUE(kernel);
  std::vector<double> x = randomValues(tokens * hidden, -1, 1, 500);
  std::vector<double> gate = randomValues(experts * inter * hidden, -0.5, 0.5, 501);
  std::vector<double> up = randomValues(experts * inter * hidden, -0.5, 0.5, 502);
  std::vector<double> down = randomValues(experts * hidden * inter, -0.5, 0.5, 503);
  std::vector<double> sg = randomValues(sharedInter * hidden, -0.5, 0.5, 504);
  std::vector<double> su = randomValues(sharedInter * hidden, -0.5, 0.5, 505);
  std::vector<double> sd = randomValues(hidden * sharedInter, -0.5, 0.5, 506);
  std::vector<double> routeWeights = randomValues(tokens * topK, 0.1, 1, 507);
  // Distinct experts per token; expert 3 gets no token.
  std::vector<int32_t> routes = {0, 1, 1, 2, 0, 2, 1, 0, 2, 1};
  Buffer input = f32Buffer({tokens, hidden}, x);
  Buffer weightsBuffer = f32Buffer({tokens, topK}, routeWeights);
  Buffer indices({tokens, topK}, sizeof(int32_t));
  std::copy(routes.begin(), routes.end(), indices.as<int32_t>());
  Buffer gateBuffer = codesBuffer(weight.format, {experts, inter, hidden}, gate);
  Buffer upBuffer = codesBuffer(weight.format, {experts, inter, hidden}, up);
  Buffer downBuffer = codesBuffer(weight.format, {experts, hidden, inter}, down);
  Buffer sharedGate = f32Buffer({sharedInter, hidden}, sg);
  Buffer sharedUp = f32Buffer({sharedInter, hidden}, su);
  Buffer sharedDown = f32Buffer({hidden, sharedInter}, sd);
  Buffer counts({experts}, sizeof(int64_t));
  Buffer output = f32Buffer({tokens, hidden});
  MoEExpertsOperands<Buffer *> operands{};
  operands.input = &input;
  operands.weights = &weightsBuffer;
  operands.indices = &indices;
  operands.gate = &gateBuffer;
  operands.up = &upBuffer;
  operands.down = &downBuffer;
  operands.sharedGate = &sharedGate;
  operands.sharedUp = &sharedUp;
  operands.sharedDown = &sharedDown;
  operands.counts = &counts;
  operands.output = &output;
  (*kernel)(operands);

  auto expert = [&](const std::vector<double> &g, const std::vector<double> &u,
                    const std::vector<double> &d, int64_t e, int64_t width,
                    WeightFormat format, int64_t t) {
    return expertReference(x, t, hidden, g, u, d, e, width,
                           [&](double w) { return roundTo(format, w); });
  };
  std::vector<double> expected(tokens * hidden, 0.0);
  std::vector<int64_t> expectedCounts(experts, 0);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t j = 0; j < topK; ++j) {
      int32_t e = routes[t * topK + j];
      ++expectedCounts[e];
      std::vector<double> y = expert(gate, up, down, e, inter, weight.format, t);
      for (int64_t n = 0; n < hidden; ++n)
        expected[t * hidden + n] += float(routeWeights[t * topK + j]) * y[n];
    }
    std::vector<double> y = expert(sg, su, sd, 0, sharedInter, WeightFormat::F32, t);
    for (int64_t n = 0; n < hidden; ++n)
      expected[t * hidden + n] += y[n];
  }
  expectClose(readF32(output), expected, 1e-5, 1e-4, kernel->name());
  for (int64_t e = 0; e < experts; ++e)
    EXPECT_EQ(counts.as<int64_t>()[e], expectedCounts[e]) << "expert " << e;
}

INSTANTIATE_TEST_SUITE_P(
    Dispatch, MoEExpertsKernelTest,
    ::testing::Values(MoEDispatch::dense, MoEDispatch::sparse,
                      MoEDispatch::grouped),
    [](const ::testing::TestParamInfo<MoEDispatch> &info) {
      return stringifyMoEDispatch(info.param).str();
    });

/// Int4 expert stacks (xfmr-quantize-int4): row-major, two codes + 8 a byte
/// (toInt4Rows), f16 scales per row and group of 16. Widths 37 and 40 leave
/// partial vectors (the scalar tail, an odd last byte) and a short last
/// group; each weight is code x scale. Expert 0 takes all 12 tokens (a tile
/// of 8 rows and 4 single rows).
TEST_P(MoEExpertsKernelTest, Int4StacksMatchFloat64) {
  const int64_t experts = 3, inter = 40, hidden = 37, topK = 2, tokens = 12;
  const int64_t group = 16;
  WeightOperand weight;
  weight.format = WeightFormat::I4;
  weight.blockScale = {1, group};
  MoEExpertsKernel config{
      experts,          inter,      hidden,       topK,
      weight,           GetParam(), std::nullopt, std::nullopt,
      /*precise=*/false};
  auto kernel = harness().compile(config);
  ASSERT_TRUE(kernel);
  // One stack [experts, rows, cols]: its values code x scale, its bytes and
  // its f16 scales.
  struct Stack {
    std::vector<double> values;
    Buffer codes, scales;
  };
  auto stack = [&](int64_t rows, int64_t cols, unsigned seed) {
    int64_t groups = (cols + group - 1) / group;
    std::vector<double> drawn =
        randomValues(experts * rows * cols, -8.49, 7.49, seed);
    std::vector<double> scaleDraws =
        randomValues(experts * rows * groups, -0.05, 0.05, seed + 1);
    std::string bytes(size_t(experts * rows * cols), '\0');
    for (size_t i = 0; i < bytes.size(); ++i)
      bytes[i] = char(int8_t(std::nearbyint(drawn[i])));
    std::string packed = xfmr::runtime::toInt4Rows(bytes, experts * rows, cols);
    Stack s{std::vector<double>(drawn.size()),
            Buffer({experts, rows, (cols + 1) / 2}, 1),
            Buffer({experts, rows, groups}, 2)};
    std::memcpy(s.codes.as<char>(), packed.data(), packed.size());
    for (int64_t i = 0; i < experts * rows * groups; ++i) {
      uint16_t bits = xfmr::float16::encodeF16(scaleDraws[i]);
      std::memcpy(s.scales.as<char>() + 2 * i, &bits, 2);
      scaleDraws[i] = xfmr::float16::decodeF16(bits);
    }
    for (int64_t r = 0; r < experts * rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        s.values[r * cols + c] = double(int8_t(bytes[r * cols + c])) *
                                 scaleDraws[r * groups + c / group];
    return s;
  };
  Stack gate = stack(inter, hidden, 601), up = stack(inter, hidden, 603);
  Stack down = stack(hidden, inter, 605);
  std::vector<double> x = randomValues(tokens * hidden, -1, 1, 607);
  std::vector<double> routeWeights = randomValues(tokens * topK, 0.1, 1, 608);
  std::vector<int32_t> routes;
  for (int64_t t = 0; t < tokens; ++t)
    routes.insert(routes.end(), {t % 2 ? 0 : 1 + int32_t(t / 2 % 2), t % 2 ? 2 : 0});
  Buffer input = f32Buffer({tokens, hidden}, x);
  Buffer weightsBuffer = f32Buffer({tokens, topK}, routeWeights);
  Buffer indices({tokens, topK}, sizeof(int32_t));
  std::copy(routes.begin(), routes.end(), indices.as<int32_t>());
  Buffer counts({experts}, sizeof(int64_t));
  Buffer output = f32Buffer({tokens, hidden});
  MoEExpertsOperands<Buffer *> operands{};
  operands.input = &input;
  operands.weights = &weightsBuffer;
  operands.indices = &indices;
  operands.gate = &gate.codes;
  operands.up = &up.codes;
  operands.down = &down.codes;
  operands.gateScale = &gate.scales;
  operands.upScale = &up.scales;
  operands.downScale = &down.scales;
  operands.counts = &counts;
  operands.output = &output;
  (*kernel)(operands);

  std::vector<double> expected(tokens * hidden, 0.0);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t j = 0; j < topK; ++j) {
      int64_t e = routes[t * topK + j];
      std::vector<double> y =
          expertReference(x, t, hidden, gate.values, up.values, down.values, e,
                          inter, [](double w) { return w; });
      for (int64_t n = 0; n < hidden; ++n)
        expected[t * hidden + n] += float(routeWeights[t * topK + j]) * y[n];
    }
  expectClose(readF32(output), expected, 1e-5, 1e-4, kernel->name());
}

//===----------------------------------------------------------------------===//
// The registry
//===----------------------------------------------------------------------===//

TEST(KernelRegistryTest, EveryFamilyOnEveryTarget) {
  registerKernelTargets();
  for (llvm::StringRef kind : KernelRegistry::global().targetKinds())
    for (llvm::StringRef family : kernelNames())
      EXPECT_TRUE(KernelRegistry::global().lookup(family, kind))
          << "kernel '" << family.str() << "' on '" << kind.str() << "'";
}

TEST(KernelRegistryTest, AMissingKernelNamesTheTargetsThatHaveIt) {
  registerKernelTargets();
  // A target kind with no kernels of its own.
  KernelRegistry::global().addTarget(
      "test-no-kernels", [](mlir::ModuleOp module, TargetAttr target) {
        return std::make_unique<CPUKernelTarget>(module, target);
      });
  KernelHarness harness;
  mlir::MLIRContext &context = harness.context();
  mlir::Location loc = mlir::UnknownLoc::get(&context);
  mlir::OwningOpRef<mlir::ModuleOp> module = mlir::ModuleOp::create(loc);
  (*module)->setAttr(
      kTargetAttrName,
      TargetAttr::get(&context, "test-no-kernels", "none", "none", "", 0));
  std::unique_ptr<KernelTarget> target =
      KernelRegistry::global().createTarget(*module);
  ASSERT_TRUE(target);
  std::string message;
  mlir::ScopedDiagnosticHandler handler(&context, [&](mlir::Diagnostic &d) {
    message = d.str();
    return mlir::success();
  });
  EXPECT_TRUE(mlir::failed(target->materialize(
      EmbeddingKernel{8, 4, WeightFormat::F32}, loc)));
  EXPECT_EQ(message, "kernel 'embedding' is not implemented for target "
                     "'test-no-kernels' yet (targets that have it: cpu, "
                     "cuda, rocm, vulkan)");
}

} // namespace
