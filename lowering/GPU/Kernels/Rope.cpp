//===- Rope.cpp - rotary position embedding on GPUs -------------------===//
//
// Angles without f64 (which most GPUs lack or run slowly): each pair's
// frequency in turns, g = freq / 2pi, is a 64-bit binary fraction (two i32
// constants); position * g mod 1 is then exact in 32-bit integer arithmetic
// (a multiply and a high multiply), and sin/cos come from polynomials on a
// quarter turn, so every GPU computes them to ~1e-7 whatever its sin/cos
// precision.
//
//===----------------------------------------------------------------------===//

#include "lowering/CPU/Kernels/KernelBuilder.h"
#include "lowering/GPU/Kernels/GPUKernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

#include <cmath>

using namespace mlir;
using namespace xfmr;
using namespace xfmr::kernels;
using simt::i32;

namespace {
/// A frequency in turns as a 64-bit fraction: high and low 32 bits.
struct Turns {
  uint32_t high, low;
};

Turns turnsOf(double frequency) {
  double g = frequency / (2 * M_PI);
  g -= std::floor(g);
  double scaled = g * 4294967296.0;
  double high = std::floor(scaled);
  double low = std::floor((scaled - high) * 4294967296.0);
  return {static_cast<uint32_t>(high), static_cast<uint32_t>(low)};
}

/// The constant of `values[i]` for a dynamic i32 `i` (a chain of selects:
/// the pairs are few).
Value select(OpBuilder &b, Location loc, Value i, ArrayRef<uint32_t> values) {
  Value result = i32(b, loc, static_cast<int32_t>(values[0]));
  for (size_t k = 1; k < values.size(); ++k) {
    Value hit = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, i,
                                      i32(b, loc, int64_t(k)));
    result = arith::SelectOp::create(
        b, loc, hit, i32(b, loc, static_cast<int32_t>(values[k])), result);
  }
  return result;
}

Value polynomial(OpBuilder &b, Location loc, Value x2,
                 ArrayRef<double> coefficients) {
  // Horner in x^2 from the highest coefficient.
  Value acc = f32(b, loc, coefficients.back());
  for (int k = int(coefficients.size()) - 2; k >= 0; --k) {
    Value coefficient = f32(b, loc, coefficients[k]);
    Value product = arith::MulFOp::create(b, loc, x2, acc);
    acc = arith::AddFOp::create(b, loc, coefficient, product);
  }
  return acc;
}
} // namespace

SymbolRefAttr xfmr::kernels::gpuRope(GPUKernelTarget &target,
                                     const RopeKernel &kernel) {
  MLIRContext *context = target.getModule().getContext();
  int64_t heads = kernel.heads, headDim = kernel.headDim;
  RopeAttr config = kernel.config;
  int64_t offset = config.getRotaryOffset();
  int64_t rotary =
      config.getRotaryDim() == 0 ? headDim - offset : config.getRotaryDim();
  int64_t pairs = rotary / 2;
  bool interleaved = config.getStyle() == RopeStyle::interleaved;
  SmallVector<uint32_t> high, low;
  for (double frequency : ropeInverseFrequencies(config, rotary)) {
    Turns turns = turnsOf(frequency);
    high.push_back(turns.high);
    low.push_back(turns.low);
  }
  double magnitude = ropeMagnitude(config);
  std::string attrText;
  llvm::raw_string_ostream os(attrText);
  os << config;
  std::string key = "rope_" + std::to_string(heads) + "x" +
                    std::to_string(headDim) + "_" +
                    std::to_string(llvm::hash_value(attrText));
  auto buffer = MemRefType::get({ShapedType::kDynamic, heads, headDim},
                                Float32Type::get(context));
  RopeOperands<Type> types{buffer, IndexType::get(context), buffer};
  return target.get<RopeOperands>(
      key, types, 128,
      [](OpBuilder &b, Location loc, RopeOperands<Value> args) -> Value {
        return memref::DimOp::create(b, loc, args.input, 0);
      },
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          RopeOperands<Value> args) {
        Value t = thread.workgroup;
        Value position = arith::IndexCastOp::create(
            b, loc, b.getI32Type(),
            arith::AddIOp::create(b, loc, args.start, t));
        simt::strided(
            b, loc, thread, index(b, loc, heads * headDim),
            [&](OpBuilder &b, Location loc, Value j) {
          Value h = arith::DivUIOp::create(b, loc, j, index(b, loc, headDim));
          Value d = arith::RemUIOp::create(b, loc, j, index(b, loc, headDim));
          Value x = memref::LoadOp::create(b, loc, args.input,
                                           ValueRange{t, h, d});
          // Channel d's place in the rotated part (clamped outside it).
          // Operands are built in statements, in order (argument evaluation
          // order is the compiler's: scripts/check-ir-build-order.py).
          auto c32 = [&](int64_t v) { return i32(b, loc, v); };
          auto cmp = [&](arith::CmpIPredicate p, Value x, Value y) {
            return arith::CmpIOp::create(b, loc, p, x, y).getResult();
          };
          Value di = arith::IndexCastOp::create(b, loc, b.getI32Type(), d);
          Value offsetC = c32(offset);
          Value local = arith::SubIOp::create(b, loc, di, offsetC);
          Value zero = c32(0), one = c32(1);
          Value notBefore = cmp(arith::CmpIPredicate::sge, local, zero);
          Value rotaryC = c32(rotary);
          Value notAfter = cmp(arith::CmpIPredicate::slt, local, rotaryC);
          Value inside = arith::AndIOp::create(b, loc, notBefore, notAfter);
          local = arith::SelectOp::create(b, loc, inside, local, zero);
          Value pair, first, partner;
          if (interleaved) {
            pair = arith::ShRUIOp::create(b, loc, local, one);
            Value parity = arith::AndIOp::create(b, loc, local, one);
            first = cmp(arith::CmpIPredicate::eq, parity, zero);
            Value next = arith::AddIOp::create(b, loc, local, one);
            Value previous = arith::SubIOp::create(b, loc, local, one);
            partner = arith::SelectOp::create(b, loc, first, next, previous);
          } else {
            Value half = c32(pairs);
            first = cmp(arith::CmpIPredicate::slt, local, half);
            Value upper = arith::AddIOp::create(b, loc, local, half);
            Value lower = arith::SubIOp::create(b, loc, local, half);
            pair = arith::SelectOp::create(b, loc, first, local, lower);
            partner = arith::SelectOp::create(b, loc, first, upper, lower);
          }
          Value partnerChannel32 =
              arith::AddIOp::create(b, loc, partner, offsetC);
          Value partnerChannel = arith::IndexCastOp::create(
              b, loc, b.getIndexType(), partnerChannel32);
          Value other = memref::LoadOp::create(
              b, loc, args.input, ValueRange{t, h, partnerChannel});

          // position * turns mod 1, as a 32-bit fraction.
          Value gHigh = select(b, loc, pair, high);
          Value gLow = select(b, loc, pair, low);
          Value lowProduct =
              arith::MulUIExtendedOp::create(b, loc, position, gLow).getHigh();
          Value highProduct = arith::MulIOp::create(b, loc, position, gHigh);
          Value fraction =
              arith::AddIOp::create(b, loc, highProduct, lowProduct);
          // The nearest quarter turn q and the rest x in [-pi/4, pi/4].
          Value eighth = c32(1 << 29);
          Value shifted = arith::AddIOp::create(b, loc, fraction, eighth);
          Value thirty = c32(30);
          Value quarter = arith::ShRUIOp::create(b, loc, shifted, thirty);
          Value quarterBits = arith::ShLIOp::create(b, loc, quarter, thirty);
          Value rest = arith::SubIOp::create(b, loc, fraction, quarterBits);
          Value restF32 =
              arith::SIToFPOp::create(b, loc, b.getF32Type(), rest);
          Value radiansPerUnit = f32(b, loc, 2 * M_PI / 4294967296.0);
          Value angle = arith::MulFOp::create(b, loc, restF32, radiansPerUnit);
          Value x2 = arith::MulFOp::create(b, loc, angle, angle);
          Value sinPoly = polynomial(
              b, loc, x2, {1.0, -1.0 / 6, 1.0 / 120, -1.0 / 5040, 1.0 / 362880});
          Value sinRest = arith::MulFOp::create(b, loc, angle, sinPoly);
          Value cosRest = polynomial(
              b, loc, x2,
              {1.0, -1.0 / 2, 1.0 / 24, -1.0 / 720, 1.0 / 40320,
               -1.0 / 3628800});
          // Rotate by q quarter turns: (cos, sin) of q = 0..3 are (c, s),
          // (-s, c), (-c, -s), (s, -c).
          Value three = c32(3);
          Value q = arith::AndIOp::create(b, loc, quarter, three);
          Value is0 = cmp(arith::CmpIPredicate::eq, q, zero);
          Value is1 = cmp(arith::CmpIPredicate::eq, q, one);
          Value two = c32(2);
          Value is2 = cmp(arith::CmpIPredicate::eq, q, two);
          Value negSin = arith::NegFOp::create(b, loc, sinRest);
          Value negCos = arith::NegFOp::create(b, loc, cosRest);
          Value c23 = arith::SelectOp::create(b, loc, is2, negCos, sinRest);
          Value c123 = arith::SelectOp::create(b, loc, is1, negSin, c23);
          Value c = arith::SelectOp::create(b, loc, is0, cosRest, c123);
          Value s23 = arith::SelectOp::create(b, loc, is2, negSin, negCos);
          Value s123 = arith::SelectOp::create(b, loc, is1, cosRest, s23);
          Value s = arith::SelectOp::create(b, loc, is0, sinRest, s123);
          if (magnitude != 1.0) {
            Value m = f32(b, loc, magnitude);
            c = arith::MulFOp::create(b, loc, c, m);
            s = arith::MulFOp::create(b, loc, s, m);
          }
          // first: x c - other s; second: x c + other s.
          Value xc = arith::MulFOp::create(b, loc, x, c);
          Value os = arith::MulFOp::create(b, loc, other, s);
          Value minus = arith::SubFOp::create(b, loc, xc, os);
          Value plus = arith::AddFOp::create(b, loc, xc, os);
          Value rotated = arith::SelectOp::create(b, loc, first, minus, plus);
          Value result = arith::SelectOp::create(b, loc, inside, rotated, x);
          memref::StoreOp::create(b, loc, result, args.output,
                                  ValueRange{t, h, d});
        });
      });
}
