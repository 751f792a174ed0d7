//===- Kernels.h - loop-level kernels for xfmr ops --------------*- C++ -*-===//
//
// Each function returns (creating on first use) a kernel: a private
// func.func over memrefs, called by the host schedule of an entry point.
// Activations are f32 and contiguous; token dimensions are dynamic. The
// argument order of each kernel is documented at its declaration.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_LOWERING_CPU_KERNELS_KERNELS_H
#define XFMR_LOWERING_CPU_KERNELS_KERNELS_H

#include "dialects/Xfmr/XfmrOps.h"
#include "lowering/CPU/Kernels/KernelBuilder.h"

#include <optional>

namespace xfmr::kernels {

/// A weight operand of a matrix kernel: its format and optional block scales.
struct WeightOperand {
  WeightFormat format = WeightFormat::F32;
  /// Block scale sizes [rows, cols] when the weight is block-scaled.
  std::optional<std::pair<int64_t, int64_t>> blockScale;
  std::string key() const;
};

/// (table [V, H], ids [S] i32, out [S, H]).
mlir::func::FuncOp embedding(KernelLibrary &lib, int64_t vocab,
                             int64_t hidden, WeightFormat table);

enum class Elementwise { Add, Mul, SwiGLU, Silu, Gelu, GeluTanh, Copy };
/// Binary: (a [n], b [n], out [n]); unary: (a [n], out [n]); flat f32.
mlir::func::FuncOp elementwise(KernelLibrary &lib, Elementwise kind);

/// (in [S, inDim], out [S, outDim]): out[t, j] = in[t, offset + j].
mlir::func::FuncOp sliceColumns(KernelLibrary &lib, int64_t inDim,
                                int64_t offset, int64_t outDim);

/// Dynamic activation quantization, fused with its dequantization:
/// (x [S, K], out [S, K]). For each token and group of `group` channels,
/// scale = max(max |x|, 1e-12) / max_fp8 and out = round_fp8(x / scale) *
/// scale: the values the FP8 matmul sees.
mlir::func::FuncOp fakeQuantize(KernelLibrary &lib, int64_t channels,
                                int64_t group, WeightFormat format);

/// (x [S, H], weight [H], out [S, H]).
mlir::func::FuncOp rmsNorm(KernelLibrary &lib, int64_t hidden,
                           WeightFormat weight, double eps);

/// (x [S, K], w [N, K], [bias [N]], [scale [ceil(N/bm), ceil(K/bn)]],
///  out [S, N]).
mlir::func::FuncOp linear(KernelLibrary &lib, int64_t in, int64_t out,
                          const WeightOperand &weight,
                          std::optional<WeightFormat> bias);

/// (x [S, H, D], start, out [S, H, D]).
mlir::func::FuncOp rope(KernelLibrary &lib, int64_t heads, int64_t headDim,
                        RopeAttr config);

/// The cache of one layer: `format` elements [C, H, Dk + Dv] and, for 8-bit
/// formats (F8E4M3FN, I8), f32 scales [C, H, 2] (key, value).
inline bool cacheHasScales(WeightFormat format) {
  return format == WeightFormat::F8E4M3FN || format == WeightFormat::I8;
}

/// (key [S, H, Dk], value [S, H, Dv], cache, [scales], start). With
/// `sinks` the cache is an evicting ring (see xfmr.attention): position p
/// goes to slot p < sinks ? p : sinks + (p - sinks) mod (capacity - sinks).
mlir::func::FuncOp cacheWrite(KernelLibrary &lib, int64_t capacity,
                              int64_t heads, int64_t keyDim, int64_t valueDim,
                              WeightFormat format,
                              std::optional<int64_t> sinks = std::nullopt);

/// MLA, expanded cache: (kv [S, H * (nope + v)], ropeKey [S, 1, rope],
/// cache [C, H, nope + rope + v], [scales], start).
mlir::func::FuncOp mlaCacheWrite(KernelLibrary &lib, int64_t capacity,
                                 int64_t heads, int64_t nope, int64_t rope,
                                 int64_t valueDim, WeightFormat format,
                                 std::optional<int64_t> sinks = std::nullopt);

/// (query [S, Hq, Dk], cache [C, Hkv, Dk + Dv], [scales], start,
/// out [S, Hq, Dv]): causal (and windowed) attention over cache entries
/// [0, start + t]; with `sinks` (window = capacity - sinks) over the sinks
/// and the window of an evicting ring, as cacheWrite places them.
mlir::func::FuncOp attend(KernelLibrary &lib, int64_t capacity,
                          int64_t queryHeads, int64_t kvHeads, int64_t keyDim,
                          int64_t valueDim, double scale,
                          std::optional<int64_t> window, WeightFormat format,
                          std::optional<int64_t> sinks = std::nullopt);

/// MLA with weight absorption (latent cache [C, rank + rope], f32):
/// (query [S, H, nope + rope], kv_b [H * (nope + v), rank], [kv_b scales],
///  out [S, H, rank]): the query's no-rope part times W_UK of its head.
mlir::func::FuncOp mlaAbsorbQuery(KernelLibrary &lib, int64_t heads,
                                  int64_t nope, int64_t rope, int64_t valueDim,
                                  int64_t rank, const WeightOperand &kvB);

/// A latent cache's storage: the latent [C, rank] in `format` (8-bit: with
/// f32 scales [C, ceil(rank / 128)]) and k_pe [C, rope] in `ropeFormat`.
struct LatentCacheFormat {
  WeightFormat format;
  WeightFormat ropeFormat;
  int64_t scaleBlocks; // 0 without scales
  std::string key() const;
};

/// (latent [S, rank], ropeKey [S, 1, rope], latentCache, [scales], ropeCache,
/// start).
mlir::func::FuncOp latentCacheWrite(KernelLibrary &lib, int64_t capacity,
                                    int64_t rank, int64_t rope,
                                    const LatentCacheFormat &storage,
                                    std::optional<int64_t> sinks = std::nullopt);

/// (queryLatent [S, H, rank], query [S, H, nope + rope], latentCache,
///  [scales], ropeCache, start, out [S, H, rank]): causal attention in latent
/// space, scores q_lat . c_kv + q_pe . k_pe.
mlir::func::FuncOp latentAttend(KernelLibrary &lib, int64_t capacity,
                                int64_t heads, int64_t nope, int64_t rope,
                                int64_t rank, double scale,
                                const LatentCacheFormat &storage,
                                std::optional<int64_t> window = std::nullopt,
                                std::optional<int64_t> sinks = std::nullopt);

/// (outLatent [S, H, rank], kv_b, [kv_b scales], out [S, H, v]): each head's
/// latent output times W_UV of its head.
mlir::func::FuncOp mlaAbsorbOutput(KernelLibrary &lib, int64_t heads,
                                   int64_t nope, int64_t valueDim, int64_t rank,
                                   const WeightOperand &kvB);

/// (logits [T, E], [bias [E]], weights [T, k], indices [T, k] i32).
mlir::func::FuncOp moeRoute(KernelLibrary &lib, MoEGateOp op);

/// A shared expert fused into the MoE kernel: SwiGLU of width `inter`.
struct SharedExpert {
  int64_t inter;
  WeightOperand weight;
};

/// (x [T, H], weights [T, k], indices [T, k], gate [E, I, H], up [E, I, H],
///  down [E, H, I], [gate/up/down scales], [shared gate [S, H], up [S, H],
///  down [H, S], [their scales]], counts [E] i64, out [T, H]):
/// out[t] = sum_j weights[t, j] * expert_{indices[t, j]}(x[t]) (+ the shared
/// expert of x[t]), evaluated as `dispatch` says; counts[e] grows by the
/// number of rows routed to e. With `activationGroup`, each (FP8) expert's
/// SwiGLU output is fake-quantized per row in groups of that many channels
/// before its down projection.
mlir::func::FuncOp moeExperts(KernelLibrary &lib, int64_t experts,
                              int64_t inter, int64_t hidden, int64_t topK,
                              const WeightOperand &weight, MoEDispatch dispatch,
                              std::optional<SharedExpert> shared,
                              std::optional<int64_t> activationGroup);

} // namespace xfmr::kernels

#endif // XFMR_LOWERING_CPU_KERNELS_KERNELS_H
