//===- Rope.cpp - rotary position embedding kernel ---------------*- C++ -*-===//
//
// The rotation frequencies (with linear, Llama-3 or YaRN scaling) are
// computed here in double precision and stored as a constant table; angles
// and their cos/sin are computed in f64 at run time, once per token and
// pair, so long positions lose no accuracy.
//
//===----------------------------------------------------------------------===//

#include "lowering/CPU/Kernels/Kernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

#include <cmath>

using namespace mlir;
using namespace xfmr;
using namespace xfmr::kernels;

/// Inverse frequencies of the `rotary / 2` pairs, as the Hugging Face
/// implementations compute them for each scaling kind.
SmallVector<double> xfmr::kernels::ropeInverseFrequencies(RopeAttr config,
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
double xfmr::kernels::ropeMagnitude(RopeAttr config) {
  if (config.getScaling() != RopeScalingKind::yarn)
    return 1.0;
  double factor = config.getFactor().convertToDouble();
  return RopeAttr::yarnMscale(factor, config.getMscale().convertToDouble()) /
         RopeAttr::yarnMscale(factor,
                              config.getMscaleAllDim().convertToDouble());
}

func::FuncOp xfmr::kernels::rope(KernelLibrary &lib,
    const RopeKernel &kernel) {
  int64_t heads = kernel.heads;
  int64_t headDim = kernel.headDim;
  RopeAttr config = kernel.config;
  MLIRContext *context = lib.getModule().getContext();
  Type f32Type = Float32Type::get(context), f64Type = Float64Type::get(context);
  auto buffer = MemRefType::get({ShapedType::kDynamic, heads, headDim}, f32Type);
  int64_t offset = config.getRotaryOffset();
  int64_t rotary =
      config.getRotaryDim() == 0 ? headDim - offset : config.getRotaryDim();
  bool interleaved = config.getStyle() == RopeStyle::interleaved;
  SmallVector<double> frequencies = ropeInverseFrequencies(config, rotary);
  double scale = ropeMagnitude(config);

  // The key hashes the attribute's printed form, which names every parameter.
  std::string attrText;
  llvm::raw_string_ostream os(attrText);
  os << config;
  std::string key = "rope_" + std::to_string(heads) + "x" +
                    std::to_string(headDim) + "_" +
                    std::to_string(llvm::hash_value(attrText));
  return lib.get<RopeOperands>(
      key, {buffer, IndexType::get(context), buffer},
      [&](OpBuilder &b, Location loc, RopeOperands<Value> args) {
    Value x = args.input, start = args.start, out = args.output;
    // The frequency table, a constant global next to the kernel.
    std::string tableName = "xfmr_" + key + "_freq";
    auto tableType = MemRefType::get({int64_t(frequencies.size())}, f64Type);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(lib.getModule().getBody());
      memref::GlobalOp::create(b, 
          loc, tableName, b.getStringAttr("private"), tableType,
          DenseElementsAttr::get(
              RankedTensorType::get(tableType.getShape(), f64Type),
              ArrayRef<double>(frequencies)),
          /*constant=*/true, IntegerAttr());
    }
    Value table = memref::GetGlobalOp::create(b, loc, tableType, tableName);
    Value tokens = memref::DimOp::create(b, loc, x, 0);
    Value zero = index(b, loc, 0);
    parallelFor(b, loc, zero, tokens, [&](OpBuilder &b, Location loc, Value t) {
      Value position = arith::AddIOp::create(b, loc, start, t);
      Value positionF64 = arith::SIToFPOp::create(b, 
          loc, b.getF64Type(),
          arith::IndexCastOp::create(b, loc, b.getI64Type(), position));
      // Channels that do not rotate are copied.
      serialFor(b, loc, zero, index(b, loc, heads),
                [&](OpBuilder &b, Location loc, Value h) {
        auto copy = [&](int64_t from, int64_t to) {
          if (from >= to)
            return;
          Value copyBegin = index(b, loc, from);
          Value copyEnd = index(b, loc, to);
          serialFor(b, loc, copyBegin, copyEnd,
                    [&](OpBuilder &b, Location loc, Value d) {
            Value v = memref::LoadOp::create(b, loc, x, ValueRange{t, h, d});
            memref::StoreOp::create(b, loc, v, out, ValueRange{t, h, d});
          });
        };
        copy(0, offset);
        copy(offset + rotary, headDim);
      });
      serialFor(b, loc, zero, index(b, loc, rotary / 2),
                [&](OpBuilder &b, Location loc, Value i) {
        Value frequency = memref::LoadOp::create(b, loc, table, i);
        Value angle = arith::MulFOp::create(b, loc, positionF64, frequency);
        auto scaled = [&](Value v) -> Value {
          Value f =
              arith::TruncFOp::create(b, loc, b.getF32Type(), v).getResult();
          return scale == 1.0
                     ? f
                     : arith::MulFOp::create(b, loc, f, f32(b, loc, scale))
                           .getResult();
        };
        Value c = scaled(math::CosOp::create(b, loc, angle));
        Value s = scaled(math::SinOp::create(b, loc, angle));
        // The pair (first, second) rotates by the angle.
        Value first, second;
        if (interleaved) {
          Value base = index(b, loc, offset);
          Value pair = arith::MulIOp::create(b, loc, i, index(b, loc, 2));
          first = arith::AddIOp::create(b, loc, base, pair);
          second = arith::AddIOp::create(b, loc, first, index(b, loc, 1));
        } else {
          first = arith::AddIOp::create(b, loc, index(b, loc, offset), i);
          second =
              arith::AddIOp::create(b, loc, first, index(b, loc, rotary / 2));
        }
        serialFor(b, loc, zero, index(b, loc, heads),
                  [&](OpBuilder &b, Location loc, Value h) {
          Value a = memref::LoadOp::create(b, loc, x, ValueRange{t, h, first});
          Value bv = memref::LoadOp::create(b, loc, x, ValueRange{t, h, second});
          Value ac = arith::MulFOp::create(b, loc, a, c);
          Value bs = arith::MulFOp::create(b, loc, bv, s);
          Value newA = arith::SubFOp::create(b, loc, ac, bs);
          Value bc = arith::MulFOp::create(b, loc, bv, c);
          Value as = arith::MulFOp::create(b, loc, a, s);
          Value newB = arith::AddFOp::create(b, loc, bc, as);
          memref::StoreOp::create(b, loc, newA, out, ValueRange{t, h, first});
          memref::StoreOp::create(b, loc, newB, out, ValueRange{t, h, second});
        });
      });
    });
  });
}
