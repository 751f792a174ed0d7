//===- Rope.cpp - rotary position embedding kernel ---------------*- C++ -*-===//
//
// The rotation frequencies (with linear, Llama-3 or YaRN scaling) are
// computed here in double precision and stored as a constant table; angles
// and their cos/sin are computed in f64 at run time, once per token and
// pair, so long positions lose no accuracy.
//
//===----------------------------------------------------------------------===//

#include "lowering/Kernels/Kernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

#include <cmath>

using namespace mlir;
using namespace xfmr;
using namespace xfmr::kernels;

/// Inverse frequencies of the `rotary / 2` pairs, as the Hugging Face
/// implementations compute them for each scaling kind.
static SmallVector<double> inverseFrequencies(RopeAttr config,
                                              int64_t rotary) {
  double theta = config.getTheta().convertToDouble();
  double factor = config.getFactor().convertToDouble();
  int64_t pairs = rotary / 2;
  SmallVector<double> base;
  for (int64_t i = 0; i < pairs; ++i)
    base.push_back(1.0 / std::pow(theta, double(2 * i) / double(rotary)));
  switch (config.getScaling()) {
  case RopeScalingKind::none:
    return base;
  case RopeScalingKind::linear: {
    for (double &f : base)
      f /= factor;
    return base;
  }
  case RopeScalingKind::llama3: {
    double original = double(config.getOriginalMaxPositions());
    double low = config.getLowFreqFactor().convertToDouble();
    double high = config.getHighFreqFactor().convertToDouble();
    double lowWavelength = original / low, highWavelength = original / high;
    for (double &f : base) {
      double wavelength = 2 * M_PI / f;
      if (wavelength < highWavelength)
        continue;
      if (wavelength > lowWavelength) {
        f /= factor;
        continue;
      }
      double smooth = (original / wavelength - low) / (high - low);
      f = (1 - smooth) * f / factor + smooth * f;
    }
    return base;
  }
  case RopeScalingKind::yarn: {
    double original = double(config.getOriginalMaxPositions());
    auto correctionDim = [&](double rotations) {
      return double(rotary) * std::log(original / (rotations * 2 * M_PI)) /
             (2 * std::log(theta));
    };
    double low = std::max(
        std::floor(correctionDim(config.getBetaFast().convertToDouble())),
        0.0);
    double high = std::min(
        std::ceil(correctionDim(config.getBetaSlow().convertToDouble())),
        double(rotary - 1));
    if (low == high)
      high += 0.001;
    for (int64_t i = 0; i < pairs; ++i) {
      double ramp = std::clamp((double(i) - low) / (high - low), 0.0, 1.0);
      double extrapolation = 1 - ramp;
      base[i] = base[i] / factor * (1 - extrapolation) +
                base[i] * extrapolation;
    }
    return base;
  }
  }
  return base;
}

/// YaRN scales cos and sin by mscale(factor, mscale) / mscale(factor,
/// mscale_all_dim); other kinds leave them alone.
static double magnitude(RopeAttr config) {
  if (config.getScaling() != RopeScalingKind::yarn)
    return 1.0;
  double factor = config.getFactor().convertToDouble();
  return RopeAttr::yarnMscale(factor, config.getMscale().convertToDouble()) /
         RopeAttr::yarnMscale(factor,
                              config.getMscaleAllDim().convertToDouble());
}

func::FuncOp xfmr::kernels::rope(KernelLibrary &lib, int64_t heads,
                                 int64_t headDim, RopeAttr config) {
  MLIRContext *context = lib.getModule().getContext();
  Type f32Type = Float32Type::get(context), f64Type = Float64Type::get(context);
  auto buffer = MemRefType::get({ShapedType::kDynamic, heads, headDim}, f32Type);
  int64_t offset = config.getRotaryOffset();
  int64_t rotary =
      config.getRotaryDim() == 0 ? headDim - offset : config.getRotaryDim();
  bool interleaved = config.getStyle() == RopeStyle::interleaved;
  SmallVector<double> frequencies = inverseFrequencies(config, rotary);
  double scale = magnitude(config);

  // The key hashes the attribute's printed form, which names every parameter.
  std::string attrText;
  llvm::raw_string_ostream os(attrText);
  os << config;
  std::string key = "rope_" + std::to_string(heads) + "x" +
                    std::to_string(headDim) + "_" +
                    std::to_string(llvm::hash_value(attrText));
  return lib.get(key, {buffer, IndexType::get(context), buffer},
                 [&](OpBuilder &b, Location loc, ValueRange args) {
    Value x = args[0], start = args[1], out = args[2];
    // The frequency table, a constant global next to the kernel.
    std::string tableName = "xfmr_" + key + "_freq";
    auto tableType = MemRefType::get({int64_t(frequencies.size())}, f64Type);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(lib.getModule().getBody());
      b.create<memref::GlobalOp>(
          loc, tableName, b.getStringAttr("private"), tableType,
          DenseElementsAttr::get(
              RankedTensorType::get(tableType.getShape(), f64Type),
              ArrayRef<double>(frequencies)),
          /*constant=*/true, IntegerAttr());
    }
    Value table = b.create<memref::GetGlobalOp>(loc, tableType, tableName);
    Value tokens = b.create<memref::DimOp>(loc, x, 0);
    Value zero = index(b, loc, 0);
    parallelFor(b, loc, zero, tokens, [&](OpBuilder &b, Location loc, Value t) {
      Value position = b.create<arith::AddIOp>(loc, start, t);
      Value positionF64 = b.create<arith::SIToFPOp>(
          loc, b.getF64Type(),
          b.create<arith::IndexCastOp>(loc, b.getI64Type(), position));
      // Channels that do not rotate are copied.
      serialFor(b, loc, zero, index(b, loc, heads),
                [&](OpBuilder &b, Location loc, Value h) {
        auto copy = [&](int64_t from, int64_t to) {
          if (from >= to)
            return;
          serialFor(b, loc, index(b, loc, from), index(b, loc, to),
                    [&](OpBuilder &b, Location loc, Value d) {
            Value v = b.create<memref::LoadOp>(loc, x, ValueRange{t, h, d});
            b.create<memref::StoreOp>(loc, v, out, ValueRange{t, h, d});
          });
        };
        copy(0, offset);
        copy(offset + rotary, headDim);
      });
      serialFor(b, loc, zero, index(b, loc, rotary / 2),
                [&](OpBuilder &b, Location loc, Value i) {
        Value frequency = b.create<memref::LoadOp>(loc, table, i);
        Value angle = b.create<arith::MulFOp>(loc, positionF64, frequency);
        auto scaled = [&](Value v) -> Value {
          Value f =
              b.create<arith::TruncFOp>(loc, b.getF32Type(), v).getResult();
          return scale == 1.0
                     ? f
                     : b.create<arith::MulFOp>(loc, f, f32(b, loc, scale))
                           .getResult();
        };
        Value c = scaled(b.create<math::CosOp>(loc, angle));
        Value s = scaled(b.create<math::SinOp>(loc, angle));
        // The pair (first, second) rotates by the angle.
        Value first, second;
        if (interleaved) {
          first = b.create<arith::AddIOp>(
              loc, index(b, loc, offset),
              b.create<arith::MulIOp>(loc, i, index(b, loc, 2)));
          second = b.create<arith::AddIOp>(loc, first, index(b, loc, 1));
        } else {
          first = b.create<arith::AddIOp>(loc, index(b, loc, offset), i);
          second =
              b.create<arith::AddIOp>(loc, first, index(b, loc, rotary / 2));
        }
        serialFor(b, loc, zero, index(b, loc, heads),
                  [&](OpBuilder &b, Location loc, Value h) {
          Value a = b.create<memref::LoadOp>(loc, x, ValueRange{t, h, first});
          Value bv = b.create<memref::LoadOp>(loc, x, ValueRange{t, h, second});
          Value newA = b.create<arith::SubFOp>(
              loc, b.create<arith::MulFOp>(loc, a, c),
              b.create<arith::MulFOp>(loc, bv, s));
          Value newB = b.create<arith::AddFOp>(
              loc, b.create<arith::MulFOp>(loc, bv, c),
              b.create<arith::MulFOp>(loc, a, s));
          b.create<memref::StoreOp>(loc, newA, out, ValueRange{t, h, first});
          b.create<memref::StoreOp>(loc, newB, out, ValueRange{t, h, second});
        });
      });
    });
  });
}
