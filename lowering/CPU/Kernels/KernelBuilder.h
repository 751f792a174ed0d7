//===- KernelBuilder.h - helpers to emit loop-level kernels -----*- C++ -*-===//
//
// Kernels are private func.func's over memrefs, built from scf loops (outer
// loops scf.parallel, so they run on the thread pool), vector loads/FMAs for
// the inner reductions, and scalar arith/math. The library dedupes kernels by
// a key that encodes everything their body depends on (shapes, dtypes,
// attributes).
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_LOWERING_CPU_KERNELS_KERNELBUILDER_H
#define XFMR_LOWERING_CPU_KERNELS_KERNELBUILDER_H

#include "lowering/Common/KernelContracts.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"

#include <functional>
#include <optional>
#include <tuple>
#include <utility>

namespace xfmr::kernels {

/// What the CPU kernels are built for: the module's #xfmr.target.
struct CPUKernelOptions {
  /// The LLVM CPU name ("x86-64-v2", "znver4", ...).
  std::string chip;
  /// The ISA extensions the code may use ("avx512f", "amx-bf16", ...).
  llvm::StringSet<> features;
  /// f32 lanes of the kernels' inner vector loops. 16 on every x86 target
  /// today: LLVM splits 512-bit vectors into the registers the CPU has, and
  /// the wide unroll measured faster than register-sized vectors on AVX2.
  int64_t vectorWidth = 16;
  /// AArch64: the SVE vector length in bits the code is specialized for (0:
  /// none).
  int64_t sveBits = 0;

  bool has(llvm::StringRef feature) const { return features.contains(feature); }

  /// From a module's #xfmr.target.
  static CPUKernelOptions of(xfmr::TargetAttr target);
};

/// Creates kernels once per key and returns them.
class KernelLibrary {
public:
  KernelLibrary(mlir::ModuleOp module, CPUKernelOptions options)
      : module(module), options(std::move(options)) {}

  using BodyBuilder =
      std::function<void(mlir::OpBuilder &, mlir::Location, mlir::ValueRange)>;

  /// Returns the kernel named `xfmr_<key>`, creating it with `body` (which
  /// gets the arguments and must not emit the return) on first use.
  mlir::func::FuncOp get(llvm::StringRef key, mlir::TypeRange arguments,
                         const BodyBuilder &body);

  /// The same for a kernel family's operands: the signature is the present
  /// roles of `types`, the body gets the arguments by role.
  template <template <typename> class Operands>
  mlir::func::FuncOp
  get(llvm::StringRef key, Operands<mlir::Type> types,
      llvm::function_ref<void(mlir::OpBuilder &, mlir::Location,
                              Operands<mlir::Value>)>
          body) {
    llvm::SmallVector<mlir::Type> arguments = presentOperands(types);
    return get(key, arguments,
               [&](mlir::OpBuilder &b, mlir::Location loc,
                   mlir::ValueRange args) {
                 body(b, loc, bindOperands(types, args));
               });
  }

  const CPUKernelOptions &getOptions() const { return options; }
  int64_t vectorWidth() const { return options.vectorWidth; }

  /// The f32 decode table of an FP8 format, as a constant global.
  mlir::Value lookupTable(mlir::OpBuilder &b, mlir::Location loc,
                          WeightFormat format);

  mlir::ModuleOp getModule() const { return module; }

private:
  mlir::ModuleOp module;
  CPUKernelOptions options;
  llvm::StringMap<mlir::func::FuncOp> kernels;
};

/// Emission helpers; all take the builder and location explicitly.
mlir::Value index(mlir::OpBuilder &b, mlir::Location loc, int64_t value);
mlir::Value f32(mlir::OpBuilder &b, mlir::Location loc, double value);
/// An integer constant of `type`: a scalar, or a vector of it.
mlir::Value splat(mlir::OpBuilder &b, mlir::Location loc, mlir::Type type,
                  int64_t value);

using LoopBody =
    llvm::function_ref<void(mlir::OpBuilder &, mlir::Location, mlir::Value)>;
/// scf.parallel over [lb, ub): iterations run on the thread pool.
void parallelFor(mlir::OpBuilder &b, mlir::Location loc, mlir::Value lb,
                 mlir::Value ub, LoopBody body);
/// scf.for over [lb, ub) step 1.
void serialFor(mlir::OpBuilder &b, mlir::Location loc, mlir::Value lb,
               mlir::Value ub, LoopBody body);

/// The exact value of FP8 `code` in `format` (NaN codes decode to NaN), as
/// the packer encodes them (runtime/Float8.h).
double fp8CodeValue(WeightFormat format, unsigned code);

/// Loads `memref[indices]` as f32, converting bf16/f16 and decoding FP8 with
/// `table` (from KernelLibrary::lookupTable; null for other formats).
mlir::Value loadAsF32(mlir::OpBuilder &b, mlir::Location loc,
                      mlir::Value memref, mlir::ValueRange indices,
                      WeightFormat format, mlir::Value table);

/// sum_{i < length} a[aPrefix..., aBegin + i] * w[wPrefix..., wBegin + i], in
/// f32 with vector FMAs. `a` is f32; `w` has `format`. `length` is static.
/// `width` is the vector width (KernelLibrary::vectorWidth()).
mlir::Value dot(mlir::OpBuilder &b, mlir::Location loc, mlir::Value a,
                mlir::ValueRange aPrefix, mlir::Value aBegin, mlir::Value w,
                mlir::ValueRange wPrefix, mlir::Value wBegin, int64_t length,
                WeightFormat format, mlir::Value table, int64_t width);

/// A vector of `width` elements of `memref` starting at `indices`,
/// converted to f32 (FP8 through `table`).
mlir::Value loadVectorAsF32(mlir::OpBuilder &b, mlir::Location loc,
                            mlir::Value memref, mlir::ValueRange indices,
                            WeightFormat format, mlir::Value table,
                            int64_t width);

/// Like dot() over a whole weight row of length `length`, with FP8 block
/// scales: when `blockScale` is set, each [bm, bn] block's partial sum is
/// multiplied by `scale[scalePrefix..., row / bm, k / bn]`.
mlir::Value scaledDot(mlir::OpBuilder &b, mlir::Location loc, mlir::Value a,
                      mlir::ValueRange aPrefix, mlir::Value w,
                      mlir::ValueRange wPrefix, int64_t length,
                      WeightFormat format, mlir::Value table,
                      std::optional<std::pair<int64_t, int64_t>> blockScale,
                      mlir::Value scale, mlir::ValueRange scalePrefix,
                      mlir::Value row, int64_t width);

/// The inverse rotation frequencies of RoPE's `rotary / 2` pairs with the
/// scaling of `config` (linear, Llama-3, YaRN), as Hugging Face computes
/// them, in double precision; and YaRN's cos/sin magnitude (1 otherwise).
llvm::SmallVector<double> ropeInverseFrequencies(xfmr::RopeAttr config,
                                                 int64_t rotary);
double ropeMagnitude(xfmr::RopeAttr config);

/// Rounds f32 `value` to the nearest value of 8-bit `format` (ties to even),
/// saturating to its largest finite value (i8: an integer in [-127, 127]);
/// the result stays f32. Exact: only divisions by powers of two and an
/// integer rounding.
mlir::Value roundToCode(mlir::OpBuilder &b, mlir::Location loc,
                        mlir::Value value, WeightFormat format);

/// The largest finite value of an 8-bit `format` (i8: 127).
double largestCode(WeightFormat format);

/// max |load(i)| over i in [lb, ub), starting from `init` (f32).
mlir::Value maxAbs(mlir::OpBuilder &b, mlir::Location loc, mlir::Value lb,
                   mlir::Value ub, mlir::Value init,
                   llvm::function_ref<mlir::Value(mlir::OpBuilder &,
                                                  mlir::Location, mlir::Value)>
                       load);

/// The scale that maps max-abs `amax` onto `format`'s largest code:
/// max(amax, 1e-12) / largestCode(format), so all-zero groups stay finite.
mlir::Value scaleForMaxAbs(mlir::OpBuilder &b, mlir::Location loc,
                           mlir::Value amax, WeightFormat format);

/// The stored code of f32 `value` in a cache of `format` (already divided by
/// its scale for 8-bit formats): RNE to the format, saturating for FP8 and
/// clamped to +-127 for i8; bf16/f16 round to nearest even.
mlir::Value encodeCacheValue(mlir::OpBuilder &b, mlir::Location loc,
                             mlir::Value value, WeightFormat format);

/// The cache slot of `position`: itself, or in an evicting ring of `sinks`
/// fixed slots and `capacity - sinks` rotating ones (xfmr.attention's
/// `sinks`), sinks + (position - sinks) mod (capacity - sinks).
mlir::Value cacheSlot(mlir::OpBuilder &b, mlir::Location loc,
                      mlir::Value position, int64_t capacity,
                      std::optional<int64_t> sinks);

/// The cached keys a query at `position` attends: loop over key indices
/// [begin, end) and read each from cache slot `slot(i)`. Causal, within
/// `window` when set, plus the sinks of an evicting ring.
struct VisibleKeys {
  mlir::Value begin, end;
  std::function<mlir::Value(mlir::OpBuilder &, mlir::Location, mlir::Value)>
      slot;
};
VisibleKeys visibleKeys(mlir::OpBuilder &b, mlir::Location loc,
                        mlir::Value position, int64_t capacity,
                        std::optional<int64_t> window,
                        std::optional<int64_t> sinks);

/// Dynamic FP8 activation quantization of row `row` of `in` [*, channels],
/// fused with its dequantization into `out` (may be `in`): per group of
/// `group` channels, scale = max(max |x|, 1e-12) / max_fp8 and out =
/// round_fp8(x / scale) * scale.
void fakeQuantizeRow(mlir::OpBuilder &b, mlir::Location loc, mlir::Value in,
                     mlir::Value out, mlir::Value row, int64_t channels,
                     int64_t group, WeightFormat format);

/// One step of the online softmax (FlashAttention): scores arrive one at a
/// time, with a running maximum and sum. A new `score` gives the new maximum
/// and sum, the factor `correction` = exp(max - newMax) that rescales what
/// was accumulated, and the new score's `weight` = exp(score - newMax).
struct SoftmaxStep {
  mlir::Value max, sum, correction, weight;
};
SoftmaxStep onlineSoftmaxStep(mlir::OpBuilder &b, mlir::Location loc,
                              mlir::Value max, mlir::Value sum,
                              mlir::Value score);

/// exp(x) of an f32 vector in arithmetic (Cephes' expf: x = n ln2 + r, a
/// degree-6 polynomial of r, times 2^n built in the exponent bits), a few
/// ulp from libm, for softmax loops that math.exp would turn into one libm
/// call per lane. Below ln(FLT_MIN) (-inf included) the result is 0; x is
/// clamped at 88.
mlir::Value vectorExp(mlir::OpBuilder &b, mlir::Location loc, mlir::Value x);

/// x * sigmoid(x), computed as x / (1 + exp(-x)).
mlir::Value silu(mlir::OpBuilder &b, mlir::Location loc, mlir::Value x);

/// GELU: 0.5 x (1 + erf(x / sqrt(2))), or with `tanhForm` its tanh
/// approximation; `erf` builds erf (math.erf on the CPU; GPUs build it from
/// arithmetic, SPIR-V has none).
using ErfBuilder = llvm::function_ref<mlir::Value(mlir::OpBuilder &,
                                                  mlir::Location, mlir::Value)>;
mlir::Value gelu(mlir::OpBuilder &b, mlir::Location loc, mlir::Value x,
                 bool tanhForm, ErfBuilder erf);

} // namespace xfmr::kernels

#endif // XFMR_LOWERING_CPU_KERNELS_KERNELBUILDER_H
