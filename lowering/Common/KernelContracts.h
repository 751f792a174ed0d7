//===- KernelContracts.h - what each kernel family computes -----*- C++ -*-===//
//
// The contract between the host schedule (lowering/Common) and the targets
// that implement kernels (lowering/CPU, later lowering/GPU). For each kernel
// family:
//
//   - `FooOperands<T>`: its buffers by role. fields() is the one place their
//     argument order is written: kernels are built from FooOperands<Type>,
//     read their arguments as FooOperands<Value>, and the schedule (and the
//     kernel tests) pass FooOperands<Value> (or host buffers). Null members
//     (an absent bias, the scales of an unscaled cache) are not arguments.
//   - `FooKernel`: the static configuration its code depends on (shapes,
//     element formats, attributes); `kName` keys the kernel registry.
//
// Activations are f32 and contiguous; token dimensions are dynamic. Nothing
// here says how or where a kernel runs.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_LOWERING_COMMON_KERNELCONTRACTS_H
#define XFMR_LOWERING_COMMON_KERNELCONTRACTS_H

#include "dialects/Xfmr/XfmrOps.h"

#include "mlir/IR/Types.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"

#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <variant>

namespace xfmr::kernels {

/// Storage format of a weight or cache element, as kernels read it. FP8 is
/// stored as bytes and decoded in registers; I8 is a signed integer code
/// (int8 KV caches), always with a scale; I4 a signed 4-bit weight code with
/// group scales, two to a byte, in the CPU's panels (linears) or row-major
/// (expert stacks).
enum class WeightFormat {
  F32,
  BF16,
  F16,
  F8E4M3FN,
  F8E4M3FNUZ,
  F8E5M2,
  I8,
  I4
};

/// True for the FP8 formats.
inline bool isFP8(WeightFormat format) {
  return format == WeightFormat::F8E4M3FN ||
         format == WeightFormat::F8E4M3FNUZ || format == WeightFormat::F8E5M2;
}

/// The format of a tensor element type.
WeightFormat weightFormatOf(mlir::Type elementType);
/// How kernels see memory of that format (FP8, i8 and i4 become i8).
mlir::Type storageTypeOf(WeightFormat format, mlir::MLIRContext *context);
llvm::StringRef formatName(WeightFormat format);

/// A weight operand of a matrix kernel: its format and optional block scales.
struct WeightOperand {
  WeightFormat format = WeightFormat::F32;
  /// Block scale sizes [rows, cols] when the weight is block-scaled.
  std::optional<std::pair<int64_t, int64_t>> blockScale;
  /// Rows per panel when the matrix is stored in panels (see
  /// WeightSlotAttr): [ceil(out / panel), ceil(in / 2), 2 * panel]; 0 for
  /// row-major [out, in].
  int64_t panel = 0;
  std::string key() const;
};

/// How one layer's KV cache is stored: `format` elements [C, H, Dk + Dv]
/// and, when `scaled` (8-bit formats), f32 scales [C, H, 2] (key, value).
struct CacheFormat {
  WeightFormat format = WeightFormat::F32;
  bool scaled = false;
};
/// The storage of `cache` (its hasScales() decides `scaled`).
CacheFormat cacheFormatOf(KVCacheType cache);

/// A latent cache's storage: the latent [C, rank] in `format` (8-bit: with
/// f32 scales [C, ceil(rank / 128)]) and k_pe [C, rope] in `ropeFormat`.
struct LatentCacheFormat {
  WeightFormat format = WeightFormat::F32;
  WeightFormat ropeFormat = WeightFormat::F32;
  int64_t scaleBlocks = 0; // 0 without scales
  std::string key() const;
};
/// The storage of `cache`.
LatentCacheFormat latentCacheFormatOf(LatentCacheType cache);

/// The present members of `operands`, in the order of its fields().
template <typename Operands> auto presentOperands(Operands operands) {
  using Field =
      std::decay_t<decltype(std::get<0>(std::declval<Operands &>().fields()))>;
  llvm::SmallVector<Field> present;
  std::apply(
      [&](auto &...field) {
        ((field ? present.push_back(field) : void()), ...);
      },
      operands.fields());
  return present;
}

/// The arguments `args` of a kernel built from `types`, by role.
template <template <typename> class Operands>
Operands<mlir::Value> bindOperands(Operands<mlir::Type> types,
                                   mlir::ValueRange args) {
  Operands<mlir::Value> values;
  size_t next = 0;
  auto typeFields = types.fields();
  auto valueFields = values.fields();
  std::apply(
      [&](auto &...type) {
        std::apply(
            [&](auto &...value) {
              ((value = type ? args[next++] : mlir::Value()), ...);
            },
            valueFields);
      },
      typeFields);
  return values;
}

//===----------------------------------------------------------------------===//
// The kernel families
//===----------------------------------------------------------------------===//

/// out[t] = table[ids[t]].
template <typename T> struct EmbeddingOperands {
  T table;  ///< [V, H] in the table's format
  T ids;    ///< [S] i32
  T output; ///< [S, H] f32
  auto fields() { return std::tie(table, ids, output); }
};
struct EmbeddingKernel {
  static constexpr llvm::StringLiteral kName = "embedding";
  template <typename T> using Operands = EmbeddingOperands<T>;
  int64_t vocab, hidden;
  WeightFormat table;
  /// The table holds rows [firstRow, firstRow + vocab) of the whole one (a
  /// table split over launches, each within a binding's range): tokens
  /// whose id is outside are left to the other launches. GPU kernels only.
  int64_t firstRow = 0;
};

enum class Elementwise { Add, Mul, SwiGLU, Silu, Gelu, GeluTanh, Copy };
/// Whether `kind` reads `b`.
bool isBinary(Elementwise kind);
/// Its name in kernel keys ("add", "swiglu", "gelu_tanh", ...).
llvm::StringRef elementwiseName(Elementwise kind);
/// Flat f32 buffers of one size; `b` only for the binary kinds.
template <typename T> struct ElementwiseOperands {
  T a, b, output;
  auto fields() { return std::tie(a, b, output); }
};
struct ElementwiseKernel {
  static constexpr llvm::StringLiteral kName = "elementwise";
  template <typename T> using Operands = ElementwiseOperands<T>;
  Elementwise kind;
};

/// out[t, j] = input[t, offset + j].
template <typename T> struct SliceColumnsOperands {
  T input;  ///< [S, inDim] f32
  T output; ///< [S, outDim] f32
  auto fields() { return std::tie(input, output); }
};
struct SliceColumnsKernel {
  static constexpr llvm::StringLiteral kName = "slice_columns";
  template <typename T> using Operands = SliceColumnsOperands<T>;
  int64_t inDim, offset, outDim;
};

/// Dynamic activation quantization, fused with its dequantization: for each
/// token of input [S, K] and group of `group` channels,
/// scale = max(max |x|, 1e-12) / max_fp8 and out = round_fp8(x / scale) *
/// scale: the values the FP8 matmul sees, in output [S, K]. With
/// `withCodes`, also the codes (round_fp8(x / scale) in `format`, [S, K])
/// and the scales ([S, ceil(K / group)] f32): what FP8 matrix units multiply
/// (KernelTarget::takesFP8InputCodes).
template <typename T> struct FakeQuantizeOperands {
  T input, output;
  T codes, scales; ///< withCodes only
  auto fields() { return std::tie(input, output, codes, scales); }
};
struct FakeQuantizeKernel {
  static constexpr llvm::StringLiteral kName = "fake_quantize";
  template <typename T> using Operands = FakeQuantizeOperands<T>;
  int64_t channels, group;
  WeightFormat format;
  bool withCodes = false;
};

/// output[t] = input[t] / rms(input[t]) * weight.
template <typename T> struct RMSNormOperands {
  T input;  ///< [S, H] f32
  T weight; ///< [H] in its format
  T output; ///< [S, H] f32
  auto fields() { return std::tie(input, weight, output); }
};
struct RMSNormKernel {
  static constexpr llvm::StringLiteral kName = "rms_norm";
  template <typename T> using Operands = RMSNormOperands<T>;
  int64_t hidden;
  WeightFormat weight;
  double eps;
};

/// output = input . weight^T (+ bias), weight blocks scaled.
template <typename T> struct LinearOperands {
  T input;  ///< [S, K] f32
  T weight; ///< [N, K] in its format
  T bias;   ///< [N], optional
  T scale;  ///< [ceil(N/bm), ceil(K/bn)] f32, with block scales
  T output; ///< [S, N] f32
  /// With fp8InputCodes: the input's E4M3FN codes [S, K] and their scales
  /// [S, ceil(K / fp8InputGroup)] f32 (FakeQuantizeKernel::withCodes).
  T inputCodes, inputScale;
  auto fields() {
    return std::tie(input, weight, bias, scale, output, inputCodes, inputScale);
  }
};
struct LinearKernel {
  static constexpr llvm::StringLiteral kName = "linear";
  template <typename T> using Operands = LinearOperands<T>;
  int64_t in, out;
  WeightOperand weight;
  std::optional<WeightFormat> bias;
  /// The input is rounded to bf16 before the products (the CPU's bf16 dot
  /// products; --precise keeps f32). Only with a panel weight.
  bool bf16Activations = false;
  /// W8A8 (an i8 panel weight with a scale per row): the input is the f32
  /// input of the xfmr.quantize + xfmr.dequantize pair before the linear
  /// (one scale per token), which the kernel applies itself, multiplying
  /// the integer codes.
  bool int8Activations = false;
  /// The input is what a per-token E4M3FN quantization in groups of this
  /// many channels dequantized (xfmr-quantize-fp8's activations): its values
  /// are codes times their group's scale, so a kernel may quantize it again
  /// exactly and multiply codes (FP8 tensor cores). 0: any input.
  int64_t fp8InputGroup = 0;
  /// The quantization also left the input's codes and scales
  /// (LinearOperands::inputCodes): where the target asked for them
  /// (KernelTarget::takesFP8InputCodes).
  bool fp8InputCodes = false;
  /// The output is a window of `out` columns of a wider one with this many
  /// (a weight split by rows over launches); 0: the output is [S, out].
  /// GPU kernels only.
  int64_t outputStride = 0;
  /// --precise: where a kernel would round the input to a narrower type
  /// for its matrix units, it keeps (about) f32's precision instead.
  bool precise = false;
};

/// output = input rotated for positions start + t.
template <typename T> struct RopeOperands {
  T input;  ///< [S, H, D] f32
  T start;  ///< index
  T output; ///< [S, H, D] f32
  auto fields() { return std::tie(input, start, output); }
};
struct RopeKernel {
  static constexpr llvm::StringLiteral kName = "rope";
  template <typename T> using Operands = RopeOperands<T>;
  int64_t heads, headDim;
  RopeAttr config;
};

/// Writes positions start + t. With `sinks` the cache is an evicting ring
/// (see xfmr.attention): position p goes to slot p < sinks ? p : sinks +
/// (p - sinks) mod (capacity - sinks).
template <typename T> struct CacheWriteOperands {
  T key;    ///< [S, H, Dk] f32
  T value;  ///< [S, H, Dv] f32
  T cache;  ///< [C, H, Dk + Dv] in the cache's format
  T scales; ///< [C, H, 2] f32, 8-bit caches
  T start;  ///< index
  auto fields() { return std::tie(key, value, cache, scales, start); }
};
struct CacheWriteKernel {
  static constexpr llvm::StringLiteral kName = "cache_write";
  template <typename T> using Operands = CacheWriteOperands<T>;
  int64_t capacity, heads, keyDim, valueDim;
  CacheFormat format;
  std::optional<int64_t> sinks;
};

/// MLA, expanded cache: keys [k_nope | k_pe] and values from kv_b's output.
template <typename T> struct MLACacheWriteOperands {
  T kv;      ///< [S, H * (nope + v)] f32, per head [k_nope | v]
  T ropeKey; ///< [S, 1, rope] f32, shared by the heads
  T cache;   ///< [C, H, nope + rope + v]
  T scales;  ///< [C, H, 2] f32, 8-bit caches
  T start;   ///< index
  auto fields() { return std::tie(kv, ropeKey, cache, scales, start); }
};
struct MLACacheWriteKernel {
  static constexpr llvm::StringLiteral kName = "mla_cache_write";
  template <typename T> using Operands = MLACacheWriteOperands<T>;
  int64_t capacity, heads, nope, rope, valueDim;
  CacheFormat format;
  std::optional<int64_t> sinks;
};

/// Causal (and windowed) attention over cache entries [0, start + t]; with
/// `sinks` (window = capacity - sinks) over the sinks and the window of an
/// evicting ring, as the cache writes place them.
template <typename T> struct AttendOperands {
  T query;  ///< [S, Hq, Dk] f32
  T cache;  ///< [C, Hkv, Dk + Dv]
  T scales; ///< [C, Hkv, 2] f32, 8-bit caches
  T start;  ///< index
  T output; ///< [S, Hq, Dv] f32
  auto fields() { return std::tie(query, cache, scales, start, output); }
};
struct AttendKernel {
  static constexpr llvm::StringLiteral kName = "attend";
  template <typename T> using Operands = AttendOperands<T>;
  int64_t capacity, queryHeads, kvHeads, keyDim, valueDim;
  double scale;
  std::optional<int64_t> window;
  CacheFormat format;
  std::optional<int64_t> sinks;
  /// --precise: f32 products throughout (GPU matrix units multiply bf16).
  bool precise = false;
};

/// MLA with weight absorption: the query's no-rope part times W_UK of its
/// head (output[t, h] = q_nope[t, h] . kv_b[h's key rows]).
template <typename T> struct MLAAbsorbQueryOperands {
  T query;    ///< [S, H, nope + rope] f32
  T kvB;      ///< [H * (nope + v), rank]
  T kvBScale; ///< its block scales, when scaled
  T output;   ///< [S, H, rank] f32
  auto fields() { return std::tie(query, kvB, kvBScale, output); }
};
struct MLAAbsorbQueryKernel {
  static constexpr llvm::StringLiteral kName = "mla_absorb_query";
  template <typename T> using Operands = MLAAbsorbQueryOperands<T>;
  int64_t heads, nope, rope, valueDim, rank;
  WeightOperand kvB;
};

/// Writes positions start + t of a latent cache.
template <typename T> struct LatentCacheWriteOperands {
  T latent;      ///< [S, rank] f32
  T ropeKey;     ///< [S, 1, rope] f32
  T latentCache; ///< [C, rank] in the latent's format
  T scales;      ///< [C, scale blocks] f32, 8-bit latents
  T ropeCache;   ///< [C, rope] in the rope format
  T start;       ///< index
  auto fields() {
    return std::tie(latent, ropeKey, latentCache, scales, ropeCache, start);
  }
};
struct LatentCacheWriteKernel {
  static constexpr llvm::StringLiteral kName = "latent_cache_write";
  template <typename T> using Operands = LatentCacheWriteOperands<T>;
  int64_t capacity, rank, rope;
  LatentCacheFormat storage;
  std::optional<int64_t> sinks;
};

/// Causal attention in latent space, scores q_lat . c_kv + q_pe . k_pe.
template <typename T> struct LatentAttendOperands {
  T queryLatent; ///< [S, H, rank] f32
  T query;       ///< [S, H, nope + rope] f32 (its rope part is read)
  T latentCache, scales, ropeCache; ///< as in LatentCacheWriteOperands
  T start;                          ///< index
  T output;                         ///< [S, H, rank] f32
  auto fields() {
    return std::tie(queryLatent, query, latentCache, scales, ropeCache, start,
                    output);
  }
};
struct LatentAttendKernel {
  static constexpr llvm::StringLiteral kName = "latent_attend";
  template <typename T> using Operands = LatentAttendOperands<T>;
  int64_t capacity, heads, nope, rope, rank;
  double scale;
  LatentCacheFormat storage;
  std::optional<int64_t> window, sinks;
  /// --precise: f32 products throughout (GPU matrix units multiply bf16).
  bool precise = false;
};

/// Each head's latent output times W_UV of its head.
template <typename T> struct MLAAbsorbOutputOperands {
  T latent;   ///< [S, H, rank] f32
  T kvB;      ///< [H * (nope + v), rank]
  T kvBScale; ///< its block scales, when scaled
  T output;   ///< [S, H, v] f32
  auto fields() { return std::tie(latent, kvB, kvBScale, output); }
};
struct MLAAbsorbOutputKernel {
  static constexpr llvm::StringLiteral kName = "mla_absorb_output";
  template <typename T> using Operands = MLAAbsorbOutputOperands<T>;
  int64_t heads, nope, valueDim, rank;
  WeightOperand kvB;
};

/// Routing (xfmr.moe_gate): the top-k experts of each token and their
/// weights, from the router logits.
template <typename T> struct MoERouteOperands {
  T logits;  ///< [T, E] f32
  T bias;    ///< [E] f32, with a correction bias (noaux_tc)
  T weights; ///< [T, k] f32
  T indices; ///< [T, k] i32
  auto fields() { return std::tie(logits, bias, weights, indices); }
};
struct MoERouteKernel {
  static constexpr llvm::StringLiteral kName = "moe_route";
  template <typename T> using Operands = MoERouteOperands<T>;
  int64_t experts, topK;
  /// Group-limited routing: the experts of the best `keptGroups` of
  /// `groups` groups compete.
  int64_t groups, keptGroups;
  bool sigmoid;   ///< sigmoid scores, else softmax
  bool bias;      ///< a correction bias selects (not weights) experts
  bool normalize; ///< weights renormalized over the top k
  double factor;  ///< routed scaling factor
  /// The configuration of `op`.
  static MoERouteKernel of(MoEGateOp op);
};

/// A shared expert fused into the MoE kernel: SwiGLU of width `inter`.
struct SharedExpert {
  int64_t inter;
  WeightOperand weight;
};

/// out[t] = sum_j weights[t, j] * expert_{indices[t, j]}(x[t]) (+ the shared
/// expert of x[t]), evaluated as `dispatch` says; counts[e] grows by the
/// number of rows routed to e. With `activationGroup`, each (FP8) expert's
/// SwiGLU output is fake-quantized per row in groups of that many channels
/// before its down projection.
template <typename T> struct MoEExpertsOperands {
  T input;   ///< [T, H] f32
  T weights; ///< [T, k] f32
  T indices; ///< [T, k] i32
  T gate, up, down; ///< [E, I, H], [E, I, H], [E, H, I]
  T gateScale, upScale, downScale;       ///< their block scales, if any
  T sharedGate, sharedUp, sharedDown;    ///< [S, H], [S, H], [H, S], if any
  T sharedGateScale, sharedUpScale, sharedDownScale; ///< their scales
  T counts; ///< [E] i64
  T output; ///< [T, H] f32
  /// With fp8InputCodes: the input's E4M3FN codes [T, H] and their scales
  /// [T, ceil(H / fp8InputGroup)] f32 (FakeQuantizeKernel::withCodes).
  T inputCodes, inputScale;
  auto fields() {
    return std::tie(input, weights, indices, gate, up, down, gateScale, upScale,
                    downScale, sharedGate, sharedUp, sharedDown,
                    sharedGateScale, sharedUpScale, sharedDownScale, counts,
                    output, inputCodes, inputScale);
  }
};
struct MoEExpertsKernel {
  static constexpr llvm::StringLiteral kName = "moe_experts";
  template <typename T> using Operands = MoEExpertsOperands<T>;
  int64_t experts, inter, hidden, topK;
  WeightOperand weight;
  MoEDispatch dispatch;
  std::optional<SharedExpert> shared;
  std::optional<int64_t> activationGroup;
  /// --precise: GPU matrix units keep about f32's precision of the
  /// activations (bf16 experts' grouped products round them to bf16).
  bool precise = false;
  /// As LinearKernel's: the input is what a per-token E4M3FN quantization
  /// in groups of this many channels dequantized (0: any input), and the
  /// quantization also left its codes and scales
  /// (MoEExpertsOperands::inputCodes) where the target asked for them
  /// (KernelTarget::expertsTakeFP8InputCodes).
  int64_t fp8InputGroup = 0;
  bool fp8InputCodes = false;
};

/// Any kernel's configuration: what the registry dispatches on.
using KernelConfig =
    std::variant<EmbeddingKernel, ElementwiseKernel, SliceColumnsKernel,
                 FakeQuantizeKernel, RMSNormKernel, LinearKernel, RopeKernel,
                 CacheWriteKernel, MLACacheWriteKernel, AttendKernel,
                 MLAAbsorbQueryKernel, LatentCacheWriteKernel,
                 LatentAttendKernel, MLAAbsorbOutputKernel, MoERouteKernel,
                 MoEExpertsKernel>;

/// The family name (kName) of `config`.
llvm::StringRef kernelName(const KernelConfig &config);

/// Every family name, in KernelConfig's order.
llvm::SmallVector<llvm::StringRef> kernelNames();

} // namespace xfmr::kernels

#endif // XFMR_LOWERING_COMMON_KERNELCONTRACTS_H
