//===- GPUKernels.h - the generic GPU kernels -------------------*- C++ -*-===//
//
// One builder per kernel family (KernelContracts.h), shared by every GPU
// target, and the helpers they use. Kernels are SIMT: a workgroup of
// threads per output row (or per query head), threads striding over
// channels so neighbouring threads read neighbouring elements, workgroup
// memory for reductions. Values are computed in f32; storage formats are
// decoded with integer arithmetic (no lookup tables, no bf16/f16/FP8 types,
// which not every GPU language has).
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_LOWERING_GPU_KERNELS_GPUKERNELS_H
#define XFMR_LOWERING_GPU_KERNELS_GPUKERNELS_H

#include "lowering/CPU/Kernels/KernelBuilder.h"
#include "lowering/GPU/GPUKernelTarget.h"

namespace xfmr::kernels {

mlir::SymbolRefAttr gpuEmbedding(GPUKernelTarget &target,
                                 const EmbeddingKernel &kernel);
mlir::SymbolRefAttr gpuElementwise(GPUKernelTarget &target,
                                   const ElementwiseKernel &kernel);
mlir::SymbolRefAttr gpuSliceColumns(GPUKernelTarget &target,
                                    const SliceColumnsKernel &kernel);
mlir::SymbolRefAttr gpuFakeQuantize(GPUKernelTarget &target,
                                    const FakeQuantizeKernel &kernel);
mlir::SymbolRefAttr gpuRMSNorm(GPUKernelTarget &target,
                               const RMSNormKernel &kernel);
mlir::SymbolRefAttr gpuLinear(GPUKernelTarget &target,
                              const LinearKernel &kernel);
mlir::SymbolRefAttr gpuRope(GPUKernelTarget &target, const RopeKernel &kernel);
mlir::SymbolRefAttr gpuCacheWrite(GPUKernelTarget &target,
                                  const CacheWriteKernel &kernel);
mlir::SymbolRefAttr gpuAttend(GPUKernelTarget &target,
                              const AttendKernel &kernel);

/// Registers `build` for `Kernel` on every GPU kind.
template <typename Kernel>
void addGPUKernel(KernelRegistry &registry,
                  mlir::SymbolRefAttr (*build)(GPUKernelTarget &,
                                               const Kernel &)) {
  for (llvm::StringLiteral kind : gpuTargetKinds())
    registry.addKernel<Kernel, GPUKernelTarget>(
        kind,
        [build](GPUKernelTarget &target,
                const Kernel &kernel) -> mlir::FailureOr<mlir::SymbolRefAttr> {
          return build(target, kernel);
        });
}

/// The MoE kernel families (MoE.cpp) and the MLA ones (LatentAttention.cpp),
/// registered by registerGPUKernelTarget.
void registerGPUMoEKernels(KernelRegistry &registry);
void registerGPULatentKernels(KernelRegistry &registry);
/// Whether prefill's grouped expert products of `experts` run on `target`'s
/// FP8 units (mma::codeTileProducts), multiplying the input's codes
/// (MoEExpertsKernel::fp8InputCodes) and the SwiGLU outputs' codes: E4M3FN
/// weights with block scales of whole 32-row tiles and 128 columns, input
/// and activations quantized per token in groups of 128, widths that are
/// whole groups.
bool expertsOnFP8Units(const GPUKernelTarget &target,
                       const MoEExpertsKernel &experts);

/// Flash decoding (FlashDecoding.cpp): decode attention over slices of the
/// cache, then their combination.
namespace flash {
/// Slices per head at most.
inline constexpr int64_t kSlices = 32;
/// The scratch of the slices: [slices, heads, width + 2] f32, each slice's
/// unnormalized outputs, then its maximum score and its sum.
mlir::MemRefType scratchType(mlir::MLIRContext *context, int64_t heads,
                             int64_t width, int64_t slices = kSlices);
/// Keys [first, last) of slice `slice` (of `slices`) of the visible `keys`,
/// in whole chunks of `chunk` keys; `used` is false for slices past the
/// keys.
struct Slice {
  mlir::Value first, last, used;
};
Slice sliceOf(mlir::OpBuilder &b, mlir::Location loc, const VisibleKeys &keys,
              mlir::Value slice, int64_t chunk, int64_t slices = kSlices);
/// The kernel `xfmr_<key>` over `operands` (an attention family's, with its
/// `start` operand at position `startOperand`) and the scratch
/// (scratchType(heads, width, slices)): a workgroup of `threads` threads
/// (0: `chunk`, one per key of a chunk) per (slice, group of
/// `headsPerWorkgroup` heads) of the keys a query at `start` sees; `body`
/// runs for the slices that hold keys (uniform per workgroup), with the
/// operands (the scratch last), the group's first head and the slice's keys,
/// and leaves its outputs and totals in the scratch.
using SliceBody = llvm::function_ref<void(
    mlir::OpBuilder &, mlir::Location, const GPUThread &,
    mlir::ValueRange operands, mlir::Value slice, mlir::Value head,
    const VisibleKeys &keys, const Slice &range)>;
mlir::SymbolRefAttr slicesKernel(GPUKernelTarget &target, llvm::StringRef key,
                                 llvm::ArrayRef<mlir::Type> operands,
                                 unsigned startOperand, int64_t heads,
                                 int64_t width, int64_t capacity, int64_t chunk,
                                 std::optional<int64_t> window,
                                 std::optional<int64_t> sinks, SliceBody body,
                                 int64_t headsPerWorkgroup = 1,
                                 int64_t threads = 0, int64_t slices = kSlices);
/// Thread 0 stores a slice's maximum and sum after its outputs.
void storeTotals(mlir::OpBuilder &b, mlir::Location loc,
                 const GPUThread &thread, mlir::Value scratch,
                 mlir::Value slice, mlir::Value head, int64_t width,
                 mlir::Value max, mlir::Value sum);
/// The kernel `xfmr_<key>` over (scratch, start, output [1, heads, width])
/// that combines the slices of each head (a workgroup per head and 64
/// channels), for the keys a query at `start` sees in a cache of `capacity`
/// (window, sinks), sliced as slicesKernel's `chunk` and `slices` did.
mlir::SymbolRefAttr combineKernel(GPUKernelTarget &target, llvm::StringRef key,
                                  int64_t heads, int64_t width,
                                  int64_t capacity, int64_t chunk,
                                  std::optional<int64_t> window,
                                  std::optional<int64_t> sinks,
                                  int64_t slices = kSlices);
} // namespace flash

/// A prefill tile of `tile` query tokens of one query head: workgroup
/// (tile index, query head), heads varying fastest (Attention.cpp). The
/// tile's tokens are [firstToken, lastToken], at positions from tileStart;
/// the keys any of them sees (the cache without an evicting ring: key
/// index = position) are [firstKey, lastKey).
struct QueryTile {
  mlir::Value tokens, head, kvHead, firstToken, lastToken, tileStart;
  mlir::Value firstKey, lastKey;
};
QueryTile queryTile(mlir::OpBuilder &b, mlir::Location loc,
                    const GPUThread &thread, AttendOperands<mlir::Value> args,
                    const AttendKernel &kernel, int64_t tile);

namespace simt {
/// Rows of a tile operand (TileProducts.cpp): whether row r (0..31) of the
/// tile exists, and its f32 value at column k (called only where it does
/// and k < depth).
struct TileRows {
  std::function<mlir::Value(mlir::OpBuilder &, mlir::Location, mlir::Value r)>
      exists;
  std::function<mlir::Value(mlir::OpBuilder &, mlir::Location, mlir::Value r,
                            mlir::Value k)>
      at;
};
using TileFinish =
    llvm::function_ref<void(mlir::OpBuilder &, mlir::Location, mlir::Value r,
                            mlir::Value n, mlir::ValueRange sums)>;
} // namespace simt

/// Matrix-unit (tensor core) forms.
namespace mma {
/// The prefill form of a linear (`key`, operand `types`) on `target`'s
/// matrix units, or null where they do not suit it: cuda targets, bf16
/// weights (whole 64-column stages) and, on sm_89 and later, E4M3FN weights
/// with [64k, 128] block scales times an input quantized per token in
/// groups of 128 whose codes and scales it reads (LinearKernel::
/// fp8InputCodes).
mlir::SymbolRefAttr linearTiles(GPUKernelTarget &target,
                                const LinearKernel &kernel,
                                LinearOperands<mlir::Type> types,
                                llvm::StringRef key);

/// The prefill form of causal attention on the matrix units (NVIDIA's
/// mma.sync, AMD's MFMA: AttentionTiles.cpp), or null where it does not
/// suit the kernel (an evicting ring, --precise, widths that are not whole
/// steps and tiles, or tiles past 48 KiB of workgroup memory, 64 KiB on
/// AMD).
mlir::SymbolRefAttr attentionTiles(GPUKernelTarget &target,
                                   const AttendKernel &kernel,
                                   AttendOperands<mlir::Type> types,
                                   llvm::StringRef key);

/// MLA's latent attention on NVIDIA's matrix units (LatentTiles.cpp: a
/// workgroup's 16 heads as the rows of mma.sync products): decode (one
/// token) in flash decoding's slices, prefill a workgroup per (token, group
/// of heads); one kernel `key`_mma_by_tokens over `types`, or null where it
/// does not suit the kernel (AMD, --precise, an evicting ring, widths that
/// are not whole steps, heads in groups other than 16 or fewer, workgroup
/// memory).
mlir::SymbolRefAttr latentTiles(GPUKernelTarget &target,
                                const LatentAttendKernel &kernel,
                                LatentAttendOperands<mlir::Type> types,
                                llvm::StringRef key);

/// The K columns of one stage of mma::tileProducts (a block scale must
/// hold whole stages).
int64_t tileProductsStage();
/// The scale of W operand `operand`'s stage [k0, k0 + tileProductsStage()),
/// or codeTileProductsStage(), over the tile's rows (uniform there).
using StageScale = std::function<mlir::Value(mlir::OpBuilder &, mlir::Location,
                                             mlir::Value k0, int64_t operand)>;
/// Rows read 16 bytes at a time: whether row r exists, and its 16 bytes `q`
/// as a vector<4xi32> (one load), the lowest column in the lowest bits:
/// E4M3FN codes of columns 16q to 16q + 15 (codeTileProducts), bf16 values
/// of columns 8q to 8q + 7 or f32 values of columns 4q to 4q + 3
/// (tileProducts' PackedOperands).
struct PackedRows {
  std::function<mlir::Value(mlir::OpBuilder &, mlir::Location, mlir::Value r)>
      exists;
  std::function<mlir::Value(mlir::OpBuilder &, mlir::Location, mlir::Value r,
                            mlir::Value q)>
      load;
};
/// The operands of tileProducts read 16 bytes a load: A's f32 rows 4
/// columns a load (vector<4xf32>; depth a multiple of 4), W's bf16 rows 8
/// a load (vector<4xi32>, one per W operand; depth a multiple of 8). Unset:
/// a value a load through the TileRows' `at` (their `exists` always says
/// which rows exist).
struct PackedOperands {
  std::optional<PackedRows> a;
  llvm::SmallVector<PackedRows> w;
};
/// simt::tileProducts on the matrix units (MatrixTileProducts.cpp): a
/// 32 x 32 tile of sums over k < depth of a(r, k) * w_j(n, k), 64 threads,
/// A rounded to bf16 (with `split`, plus a product of its remainder); the W
/// values must be exact in bf16 (bf16 weights, or 8-bit and 4-bit codes
/// with `stageScale` giving their block scales; null: none), read through
/// `packed` where it has them. Allocates its workgroup memory; every
/// thread must call it (barriers).
void tileProducts(mlir::OpBuilder &b, mlir::Location loc,
                  const GPUKernelTarget &target, const GPUThread &thread,
                  int64_t depth, const simt::TileRows &a,
                  llvm::ArrayRef<simt::TileRows> w,
                  const PackedOperands &packed, bool split,
                  const StageScale &stageScale, simt::TileFinish finish);

/// A's scale of row r over the stage's columns [k0, k0 +
/// codeTileProductsStage()).
using RowScale = std::function<mlir::Value(mlir::OpBuilder &, mlir::Location,
                                           mlir::Value r, mlir::Value k0)>;
/// The K columns of one stage of mma::codeTileProducts: 128, one block
/// scale's and one quantization group's.
int64_t codeTileProductsStage();
/// tileProducts' tile on the FP8 units (hasFP8Units): A and every W hold
/// E4M3FN codes (depth a multiple of codeTileProductsStage()), multiplied
/// by mma.sync m16n8k32 e4m3 (MFMA 16x16x32 fp8 on AMD, as FNUZ) in stages
/// of 128 columns; each stage's sums are added to the f32 totals times A's
/// row scale and W's `stageScale`: DeepSeek-V3's promotion every 128 K.
void codeTileProducts(mlir::OpBuilder &b, mlir::Location loc,
                      const GPUKernelTarget &target, const GPUThread &thread,
                      int64_t depth, const PackedRows &a,
                      const RowScale &aScale, llvm::ArrayRef<PackedRows> w,
                      const StageScale &stageScale, simt::TileFinish finish);

/// How a kernel multiplies its waves' tiles: NVIDIA's mma.sync (a warp's
/// 16 x 8 tile; cuda targets) or AMD's MFMA (a wave's 16 x 16; rocm), or on
/// `vulkan:mma-emulation` / `vulkan:mfma-emulation` the same fragments put
/// in workgroup memory and multiplied in f32 by each lane. The emulation
/// runs the matrix-unit kernels' schedule, fragment layouts, staging and
/// masks on any Vulkan device (lavapipe included), so tests check them
/// without the vendor's GPU; only the instruction itself differs.
struct WarpProducts {
  /// MFMA's lanes and layouts (else mma.sync's).
  bool amd = false;
  /// The emulation's workgroup memory (null: real instructions) and the
  /// thread's index in the workgroup.
  mlir::Value scratch, thread;
  /// Where the row reductions' words start in `scratch`.
  int64_t reductions = 0;
  /// The most A and B fragments one multiplyGrid takes (the emulation's
  /// workgroup memory holds them all).
  int64_t maxA = 1, maxB = 1;
  bool emulated() const { return static_cast<bool>(scratch); }
};
/// A thread's place in its wave: the wave, and the lane's parts g and t
/// (NVIDIA, warps of 32: lane 4g + t; AMD, waves of 64: lane 16t + g).
struct LaneParts {
  mlir::Value wave, g, t;
};
LaneParts laneParts(mlir::OpBuilder &b, mlir::Location loc, mlir::Value thread,
                    bool amd);

/// Whether `target` is vulkan:mma-emulation (NVIDIA's layouts) or
/// vulkan:mfma-emulation (AMD's, with gfx942's FP8).
bool emulatesMMA(const GPUKernelTarget &target);
bool emulatesMFMA(const GPUKernelTarget &target);
/// Whether `target` multiplies bf16 on matrix units (cuda and rocm: sm_80
/// and gfx90a on; the emulations), and whether in AMD's layouts (rocm and
/// its emulation) rather than NVIDIA's.
bool hasMatrixUnits(const GPUKernelTarget &target);
bool usesMFMA(const GPUKernelTarget &target);
/// Whether `target`'s matrix units also multiply E4M3 codes: sm_89, sm_90
/// and sm_90a (mma.sync m16n8k32 e4m3), gfx942 (MFMA fp8, FNUZ), and the
/// emulations.
bool hasFP8Units(const GPUKernelTarget &target);
/// Four E4M3FN codes as the FNUZ codes of half their values, for gfx942's
/// FP8 products: the same bits, but -0 (0x80, FNUZ's NaN) becomes 0. A
/// byte keeps its sign bit only where its magnitude bits are not all zero
/// (m + 0x7f carries into bit 7 exactly when m != 0, and never into the
/// next byte). The products' sums are then a quarter of the codes'.
mlir::Value fnuzWord(mlir::OpBuilder &b, mlir::Location loc, mlir::Value word);
/// The products of a kernel body on `target`, whose multiplyGrid calls take
/// at most `maxA` A and `maxB` B fragments (allocates the emulation's
/// workgroup memory; every thread must reach each product, which holds
/// barriers there).
WarpProducts warpProducts(const GPUKernelTarget &target,
                          const GPUThread &thread, int64_t maxA = 1,
                          int64_t maxB = 1);
/// The f32 words of workgroup memory warpProducts takes on `target` for a
/// workgroup of `block` threads (0 without emulation).
int64_t emulationWords(const GPUKernelTarget &target, int64_t block,
                       int64_t maxA, int64_t maxB);

/// The bf16 bits (low 16 bits of an i32) nearest to f32 `x`, ties to even:
/// the target's conversion (NVIDIA: one cvt.rn.bf16.f32), or integer
/// arithmetic when `portable` (SPIR-V has no bf16).
mlir::Value bf16Bits(mlir::OpBuilder &b, mlir::Location loc, mlir::Value x,
                     bool portable = false);
/// Two f32 values as one word of bf16 bits (the first in the low half).
mlir::Value bf16Pair(mlir::OpBuilder &b, mlir::Location loc, mlir::Value low,
                     mlir::Value high, bool portable = false);
/// The bf16 bits of f32 `x` and of its remainder x - bf16(x) (0 where
/// bf16(x) is infinite): the two bf16 values whose sum keeps about 16 of
/// f32's 24 bits (--precise's second product).
std::pair<mlir::Value, mlir::Value> splitBF16(mlir::OpBuilder &b,
                                              mlir::Location loc, mlir::Value x,
                                              bool portable = false);
/// The (row, word) of each word of a lane's fragment, in a tile of 16 rows
/// (A; B: 8 rows on NVIDIA, 16 on AMD) x 8 words (one k-step): A NVIDIA
/// (g, t), (g + 8, t), (g, t + 4), (g + 8, t + 4), AMD (r, 2q), (r, 2q + 1);
/// B NVIDIA (g, t), (g, t + 4), AMD as A.
llvm::SmallVector<std::pair<mlir::Value, mlir::Value>>
fragmentWords(mlir::OpBuilder &b, mlir::Location loc, bool amd,
              const LaneParts &lane, bool isA);
/// The (row, column) of a lane's C element e (of 4) in one product's tile:
/// NVIDIA (g + 8 (e / 2), 2t + e % 2), AMD (4q + e, r).
std::pair<mlir::Value, mlir::Value> elementOf(mlir::OpBuilder &b,
                                              mlir::Location loc, bool amd,
                                              const LaneParts &lane, int64_t e);
/// A fragment (vector<Nxi32>) of words staged in workgroup memory `tile`
/// (f32 bits, `pitch` words a row): `words` (fragmentWords) from row
/// `firstRow` and word `firstWord` on.
mlir::Value
loadFragment(mlir::OpBuilder &b, mlir::Location loc, mlir::Value tile,
             int64_t pitch,
             llvm::ArrayRef<std::pair<mlir::Value, mlir::Value>> words,
             mlir::Value firstRow, mlir::Value firstWord);
/// The online softmax's step for a lane's rows: each row's chunk maximum
/// (`chunkMaxima`, this lane's part) combined over the lanes that hold the
/// row (rowReduce) into its running maximum in `maxima` (updated); returns
/// each row's correction e^(old maximum - new maximum).
llvm::SmallVector<mlir::Value>
runningMaxima(mlir::OpBuilder &b, mlir::Location loc,
              const WarpProducts &products,
              llvm::ArrayRef<mlir::Value> chunkMaxima,
              llvm::MutableArrayRef<mlir::Value> maxima);
/// NVIDIA: the A fragment (bf16, m16n8k16) of k-step `k` of a product whose
/// A operand is the f32 `sums` of an earlier one (4 a lane and 16 x 8 tile,
/// tiles along K): C tiles 2k and 2k + 1 hold the same rows and columns as
/// its A tile (FlashAttention's P from S in registers).
mlir::Value fragmentOfSums(mlir::OpBuilder &b, mlir::Location loc,
                           llvm::ArrayRef<mlir::Value> sums, int64_t k,
                           bool portable = false);
/// NVIDIA: the A fragment (vector<4xi32>) of 16 staged rows from `firstRow`
/// and 8 words from `firstWord` (`pitch` words a row, rows 16-byte aligned)
/// in one ldmatrix.x4: the words loadFragment(fragmentWords(isA)) reads.
mlir::Value loadFragmentA(mlir::OpBuilder &b, mlir::Location loc,
                          const WarpProducts &products, mlir::Value tile,
                          int64_t pitch, mlir::Value firstRow,
                          mlir::Value firstWord);
/// NVIDIA: the B fragments (vector<2xi32>) of two tiles in one ldmatrix.x4:
/// stored n-major, rows firstRow and firstRow + 8 on, 8 words from
/// `firstWord`; `transposed`, stored k-major (16 rows of K from `firstRow`,
/// n in 16-bit halves: 8 words from `firstWord` are the two tiles' columns)
/// through ldmatrix.x4.trans.
llvm::SmallVector<mlir::Value>
loadFragmentsB(mlir::OpBuilder &b, mlir::Location loc,
               const WarpProducts &products, mlir::Value tile, int64_t pitch,
               mlir::Value firstRow, mlir::Value firstWord,
               bool transposed = false);
/// low | high << 16 (i32).
mlir::Value pack16(mlir::OpBuilder &b, mlir::Location loc, mlir::Value low,
                   mlir::Value high);
/// d = a[m] x w[n] + c for every pair of a warp's 16 x 8 tiles:
/// mma.sync.m16n8k16 with bf16 elements (`elements` BF16) or m16n8k32 with
/// E4M3 (F8E4M3FN); each a[m] a lane's vector<4xi32> A fragment, each w[n]
/// its vector<2xi32> B fragment. With `products.amd` a wave's 16 x 16
/// tiles: v_mfma_f32_16x16x16_bf16 (BF16) or 16x16x32 fp8 (F8E4M3FNUZ),
/// both fragments vector<2xi32>. MatrixTiles.cpp's header has the layouts.
/// c and d hold 4 f32 a lane and pair, m-major. The emulation exchanges all
/// the fragments at once (one pair of barriers for the grid, not one a
/// product).
llvm::SmallVector<mlir::Value>
multiplyGrid(mlir::OpBuilder &b, mlir::Location loc,
             const WarpProducts &products, WeightFormat elements,
             llvm::ArrayRef<mlir::Value> a, llvm::ArrayRef<mlir::Value> w,
             llvm::ArrayRef<mlir::Value> c);
/// `value` combined over the lanes that hold the same rows of a C tile,
/// maximum or sum: NVIDIA the 4 lanes of a quad (4g to 4g + 3), AMD the 16
/// lanes 16q to 16q + 15.
mlir::Value rowReduce(mlir::OpBuilder &b, mlir::Location loc,
                      const WarpProducts &products, mlir::Value value,
                      bool max);

} // namespace mma

namespace simt {

/// An i32 constant (index() and f32() come from KernelBuilder.h).
mlir::Value i32(mlir::OpBuilder &b, mlir::Location loc, int64_t value);
/// (base + offset, whether it is below `limit`): a key of a chunk and
/// whether it exists, say.
std::pair<mlir::Value, mlir::Value>
offsetBelow(mlir::OpBuilder &b, mlir::Location loc, mlir::Value base,
            mlir::Value offset, mlir::Value limit);

/// The memref type a kernel operand of `format` has ([shape] of its
/// storage type, as KernelContracts.h describes it).
mlir::MemRefType buffer(mlir::MLIRContext *context,
                        llvm::ArrayRef<int64_t> shape, WeightFormat format);

/// a * b + c as a multiply and an add (SPIR-V's Fma may not be fused, and
/// the conversion has none).
mlir::Value fma(mlir::OpBuilder &b, mlir::Location loc, mlir::Value a,
                mlir::Value x, mlir::Value c);

/// The value of a `format` code held in the low bits of the i32 `bits` (the
/// bits above it are ignored), as f32.
mlir::Value decodeF32(mlir::OpBuilder &b, mlir::Location loc, mlir::Value bits,
                      WeightFormat format);
/// The elements of `format` in the i32 `word`, lowest bits first, as f32
/// values divided by wordScale(format) (FP8 widens through f16 in a few
/// integer operations a pair; the scale folds into the block scale).
llvm::SmallVector<mlir::Value> decodeWord(mlir::OpBuilder &b,
                                          mlir::Location loc, mlir::Value word,
                                          WeightFormat format);
double wordScale(WeightFormat format);
/// Loads memref[indices] (storage of `format`) as f32.
mlir::Value loadF32(mlir::OpBuilder &b, mlir::Location loc, mlir::Value memref,
                    mlir::ValueRange indices, WeightFormat format);
/// Weight matrix element (row, column) of `weight` (stored as
/// `weight.format`) as f32, times its block's scale in `scales` where the
/// weight is block-scaled.
mlir::Value loadWeightF32(mlir::OpBuilder &b, mlir::Location loc,
                          mlir::Value memref, mlir::Value scales,
                          mlir::Value row, mlir::Value column,
                          const WeightOperand &weight);
/// Stores values[i] at thread + i * block of workgroup memory `scores`: each
/// thread's score against each of several queries or heads, for a fold
/// after a barrier.
void storeScores(mlir::OpBuilder &b, mlir::Location loc,
                 const GPUThread &thread, mlir::Value scores,
                 mlir::ValueRange values);
/// Stores f32 `value` as `format` (bf16/f16 round to nearest even; 8-bit
/// formats expect a value already divided by its scale and round to nearest
/// even, saturating).
void storeEncoded(mlir::OpBuilder &b, mlir::Location loc, mlir::Value value,
                  mlir::Value memref, mlir::ValueRange indices,
                  WeightFormat format);
/// The code (an i32 of 0 to 255) of `rounded`, a finite value already on
/// the 8-bit float `format`'s grid (roundToCode's result).
mlir::Value fp8Bits(mlir::OpBuilder &b, mlir::Location loc, mlir::Value rounded,
                    WeightFormat format);

/// scf.for over [lb, ub) with `step`; `body` gets the induction variable.
using LoopBody =
    llvm::function_ref<void(mlir::OpBuilder &, mlir::Location, mlir::Value)>;
void forLoop(mlir::OpBuilder &b, mlir::Location loc, mlir::Value lb,
             mlir::Value ub, mlir::Value step, LoopBody body);
/// The threads of a workgroup striding over [0, count): thread t takes
/// t, t + block, ... (neighbouring threads, neighbouring elements).
void strided(mlir::OpBuilder &b, mlir::Location loc, const GPUThread &thread,
             mlir::Value count, LoopBody body);
/// A loop carrying one f32 value.
mlir::Value accumulate(
    mlir::OpBuilder &b, mlir::Location loc, mlir::Value lb, mlir::Value ub,
    mlir::Value step, mlir::Value init,
    llvm::function_ref<mlir::Value(mlir::OpBuilder &, mlir::Location,
                                   mlir::Value iv, mlir::Value acc)>
        body);

enum class Reduction { Sum, Max };
/// Combines each thread's `value` over the workgroup through `scratch`
/// (block f32 of workgroup memory); every thread gets the result.
mlir::Value reduce(mlir::OpBuilder &b, mlir::Location loc,
                   const GPUThread &thread, mlir::Value scratch,
                   mlir::Value value, Reduction kind);

/// if (thread == 0) { body }.
void firstThread(mlir::OpBuilder &b, mlir::Location loc,
                 const GPUThread &thread,
                 llvm::function_ref<void(mlir::OpBuilder &, mlir::Location)>
                     body);

/// The (dynamic) first dimension of a kernel operand, inside the kernel:
/// the size its view was built with (a memref.dim of the view would not
/// fold before the SPIR-V conversion).
mlir::Value leadingSize(mlir::OpBuilder &b, mlir::Location loc,
                        mlir::Value view);

/// The workgroups of a matrix product's output [tokens, out] in tiles of
/// `tile` x `tile` (host side: `tokens` a size of the launch's operands),
/// and inside a kernel the first token and first row of workgroup
/// `workgroup`'s tile (row tiles vary fastest).
mlir::Value outputTiles(mlir::OpBuilder &b, mlir::Location loc,
                        mlir::Value tokens, int64_t out, int64_t tile);
std::pair<mlir::Value, mlir::Value> tileCorner(mlir::OpBuilder &b,
                                               mlir::Location loc,
                                               mlir::Value workgroup,
                                               int64_t out, int64_t tile);

/// `value()` where `inside`, else a zero of `type` (a load past an edge is
/// not made).
mlir::Value valueOrZero(
    mlir::OpBuilder &b, mlir::Location loc, mlir::Value inside, mlir::Type type,
    llvm::function_ref<mlir::Value(mlir::OpBuilder &, mlir::Location)> value);
/// f32 of workgroup memory each staged operand of tileProducts needs.
int64_t tileScratch(int64_t operands);
/// A 32 x 32 tile of sums over k < depth of a(r, k) * w_j(n, k) for every W
/// operand j, by 64 threads, staged through `tiles` (tileScratch(1) f32
/// each: A's, then each W's); `finish(r, n, sums)` runs once for each
/// existing (r, n), on the thread that owns it. Every thread must call it
/// (barriers). The W operands share their rows' existence (w[0]'s).
void tileProducts(mlir::OpBuilder &b, mlir::Location loc,
                  const GPUThread &thread, int64_t depth, const TileRows &a,
                  llvm::ArrayRef<TileRows> w, llvm::ArrayRef<mlir::Value> tiles,
                  TileFinish finish);

/// erf(x) from the Chebyshev fit of erfc in Numerical Recipes (relative
/// error of erfc below 1.2e-7), with plain arithmetic and exp: SPIR-V has no
/// erf.
mlir::Value erf(mlir::OpBuilder &b, mlir::Location loc, mlir::Value x);

} // namespace simt
} // namespace xfmr::kernels

#endif // XFMR_LOWERING_GPU_KERNELS_GPUKERNELS_H
