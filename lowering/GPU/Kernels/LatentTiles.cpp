//===- LatentTiles.cpp - MLA latent attention on NVIDIA's matrix units ----===//
//
// latent_attend (LatentAttention.cpp) on cuda targets and
// vulkan:mma-emulation: FlashMLA's point, the latent is every head's key
// and value, so a workgroup's 16 heads are the 16 rows of mma.sync.m16n8k16
// products (bf16 operands, f32 sums) and each cache entry is read once for
// all of them. Flash decoding's slices (FlashDecoding.cpp), kLatentSlices of
// them, spread a long cache over the GPU; a workgroup of 4 warps per (slice,
// group of up to 16 heads) walks its slice in chunks of 32 (or 16) keys:
// - it stages the chunk's entries, [latent | rope key] as bf16 pairs, key
//   by key, in workgroup memory (8-bit codes are exact in bf16; their scales
//   apart, one per key and 128 channels). The cache's rows come 16 bytes a
//   load, and the next chunk's loads go out before this chunk's products
//   (held in registers, stored after the next barrier): a thread's loads
//   are in flight together, behind the products;
// - scores S = Q_lat C^T + Q_pe K_pe^T: warp w multiplies its share of the
//   k-steps (16 channels) for all 16 heads x all keys of the chunk, its
//   queries' bf16 A fragments in registers; each scale block's sums are
//   multiplied by the keys' scales of that block; the warps' partial scores
//   go through workgroup memory and every warp adds up all of them, so all
//   four hold the same scores, maxima and sums (no other exchange);
// - P = exp(S - max), times the keys' scale of the values' block, rounded
//   to bf16, is in the A layout of O += P C (NVIDIA's C tiles hold the rows
//   and columns of half an A tile), where warp w owns a quarter of the
//   latent channels. The keys' B fragments come from the key-major staging
//   through ldmatrix.x4 (two tiles a load), the values' through
//   ldmatrix.x4.trans (keys in pairs: the staging transposed); the
//   emulation hands each lane the same words (mma::loadFragmentsB).
// Each slice leaves its unnormalized outputs, maxima and sums in the
// scratch, and flash::combineKernel combines them. Prefill walks the same
// way, a workgroup per (token, group of heads) over all the keys the token
// sees, and normalizes its outputs itself.
//
// Precision: the latent and rope queries, f32/f16 caches and the
// probabilities round to bf16 (bf16 caches and 8-bit codes are exact), sums
// in f32, as FlashMLA; --precise keeps LatentAttention.cpp's f32 SIMT form.
// xfmr.reference.attention.use_latent_tiles emulates it in float64.
//
//===----------------------------------------------------------------------===//

#include "lowering/GPU/Kernels/GPUKernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <limits>

using namespace mlir;
using namespace xfmr;
using namespace xfmr::kernels;

namespace {
constexpr int64_t kWarps = 4, kWarp = 32, kBlock = kWarps * kWarp;
/// Heads a workgroup: the rows of an m16n8k16 tile.
constexpr int64_t kHeads = 16;
/// Slices of each group's keys: a 16-head model's 32k-token cache spreads
/// over 128 workgroups (kSlices, 32, would leave most of a GPU idle).
constexpr int64_t kLatentSlices = 128;
constexpr int64_t kScaleBlock = LatentCacheType::kScaleBlock;
/// The most 16-byte loads a thread holds in registers for the next chunk
/// (sm_90 at V2-Lite's shapes: 10 of FP8 latents and bf16 rope keys, 18 of
/// bf16 ones, no spills; f32 latents, 36, spilled).
constexpr int64_t kPrefetchVectors = 18;
/// Static workgroup memory every CUDA device has.
constexpr int64_t kWorkgroupBytes = 48 * 1024;

/// Bytes of a cache element of `format`.
int64_t storageBytes(WeightFormat format, MLIRContext *context) {
  return storageTypeOf(format, context).getIntOrFloatBitWidth() / 8;
}

/// How a kernel splits its work: sizes in keys, k-steps of 16 channels,
/// n-tiles of 8 channels and f32 words of workgroup memory.
struct Plan {
  int64_t rank, rope, group;
  bool scaled;
  /// Keys a chunk and words a staged key (bf16 pairs, padded so that a
  /// warp's fragment loads hit 32 banks).
  int64_t chunk = 0, pitch = 0;
  int64_t latentSteps = 0, ropeSteps = 0;
  /// The k-steps a warp scores: latent (a power of two up to 8, or whole
  /// scale blocks of 8, so that no run of steps straddles a block) and rope.
  int64_t stepsPerWarp = 0, ropePerWarp = 0;
  /// Consecutive latent steps of one scale block.
  int64_t stepRun = 0;
  /// Latent channels of a warp's outputs, in groups of one scale block.
  int64_t channelsPerWarp = 0, tilesPerGroup = 0;
  /// 16-byte vectors of a cache entry's latent and rope key.
  int64_t latentVectors = 0, ropeVectors = 0;
  /// Whether a thread holds the next chunk's loads through the products:
  /// where they are few enough registers (not for f32 latents).
  bool prefetch = false;
  int64_t scorePitch() const { return chunk + 4; }
  int64_t scaleBlocks() const { return llvm::divideCeil(rank, kScaleBlock); }
  int64_t tiles() const { return chunk / 8; }
  int64_t words(const GPUKernelTarget &target) const {
    return chunk * pitch + (scaled ? chunk * scaleBlocks() : 0) +
           kWarps * kHeads * scorePitch() +
           mma::emulationWords(target, kBlock, 1, tiles());
  }
};

/// The plan for `kernel` on `target`, or nothing where the form does not
/// suit it.
std::optional<Plan> planFor(const GPUKernelTarget &target,
                            const LatentAttendKernel &kernel) {
  if (!mma::hasMatrixUnits(target) || mma::usesMFMA(target) || kernel.precise ||
      kernel.sinks || kernel.rank % (16 * kWarps) != 0 || kernel.rope <= 0 ||
      kernel.rope % 16 != 0 ||
      (kernel.heads > kHeads && kernel.heads % kHeads != 0) ||
      kernel.storage.format == WeightFormat::I4 ||
      kernel.storage.ropeFormat == WeightFormat::I4)
    return std::nullopt;
  Plan plan{kernel.rank, kernel.rope, std::min(kernel.heads, kHeads),
            kernel.storage.scaleBlocks > 0};
  plan.latentSteps = plan.rank / 16;
  plan.ropeSteps = plan.rope / 16;
  int64_t share = llvm::divideCeil(plan.latentSteps, kWarps);
  plan.stepsPerWarp =
      share <= 8 ? int64_t(llvm::PowerOf2Ceil(share)) : llvm::alignTo(share, 8);
  plan.stepRun =
      plan.scaled ? std::min<int64_t>(plan.stepsPerWarp, 8) : plan.stepsPerWarp;
  plan.ropePerWarp = llvm::divideCeil(plan.ropeSteps, kWarps);
  plan.channelsPerWarp = plan.rank / kWarps;
  if (plan.scaled && plan.channelsPerWarp % kScaleBlock != 0 &&
      kScaleBlock % plan.channelsPerWarp != 0)
    return std::nullopt;
  plan.tilesPerGroup =
      (plan.scaled ? std::min(plan.channelsPerWarp, kScaleBlock)
                   : plan.channelsPerWarp) /
      8;
  MLIRContext *context = target.getModule().getContext();
  plan.latentVectors =
      plan.rank * storageBytes(kernel.storage.format, context) / 16;
  plan.ropeVectors =
      plan.rope * storageBytes(kernel.storage.ropeFormat, context) / 16;
  plan.pitch = llvm::alignTo((plan.rank + plan.rope) / 2, 32) + 4;
  for (int64_t chunk : {32, 16}) {
    plan.chunk = chunk;
    if (4 * plan.words(target) > kWorkgroupBytes)
      continue;
    int64_t vectors = chunk * (plan.latentVectors + plan.ropeVectors);
    plan.prefetch = vectors <= kPrefetchVectors * kBlock;
    return plan;
  }
  return std::nullopt;
}

/// Where this thread works: its warp, the lane's parts and C rows.
struct Lane {
  mma::LaneParts parts;
  /// The lane's rows of a C tile: g and g + 8.
  Value rows[2];
};

/// What a workgroup attends and where its results go: token `token`'s
/// heads [h0, h0 + 16) over keys [first, last) of `keys`; decode leaves the
/// slice's unnormalized outputs, maxima and sums in `scratch` (slice
/// `slice`), prefill (no scratch) the outputs in args.output.
struct Walk {
  Value token, h0;
  VisibleKeys keys;
  Value first, last;
  Value scratch, slice;
};

void latentTilesBody(OpBuilder &b, Location loc, const GPUThread &thread,
                     LatentAttendOperands<Value> args, const Walk &walk,
                     const LatentAttendKernel &kernel, const Plan &plan,
                     const mma::WarpProducts &products) {
  const VisibleKeys &keys = walk.keys;
  Value h0 = walk.h0;
  int64_t rank = plan.rank, chunk = plan.chunk, pitch = plan.pitch;
  int64_t tiles = plan.tiles(), blocks = plan.scaleBlocks();
  int64_t valueSteps = chunk / 16;
  int64_t outputTiles = plan.channelsPerWarp / 8;
  bool portable = products.emulated();
  Value staged = thread.scratch(chunk * pitch);
  Value scales = plan.scaled ? thread.scratch(chunk * blocks) : Value();
  Value partials = thread.scratch(kWarps * kHeads * plan.scorePitch());
  Type i32 = b.getI32Type(), f32Type = b.getF32Type();
  Value zeroF32 = f32(b, loc, 0.0);
  Value first = walk.first, last = walk.last;

  Lane lane;
  lane.parts = mma::laneParts(b, loc, thread.thread, /*amd=*/false);
  Value warp = lane.parts.wave;
  for (int64_t r = 0; r < 2; ++r)
    lane.rows[r] = mma::elementOf(b, loc, false, lane.parts, 2 * r).first;
  SmallVector<std::pair<Value, Value>> aWords =
      mma::fragmentWords(b, loc, false, lane.parts, /*isA=*/true);
  auto aType = VectorType::get({int64_t(aWords.size())}, i32);

  // Warp w's k-step `i` of `perWarp`, clamped to the last of `steps` (the
  // steps past it have zero queries).
  auto stepOf = [&](OpBuilder &b, Location loc, int64_t perWarp, int64_t i,
                    int64_t steps) -> std::pair<Value, Value> {
    Value start = arith::MulIOp::create(b, loc, warp, index(b, loc, perWarp));
    Value step = arith::AddIOp::create(b, loc, start, index(b, loc, i));
    Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                         step, index(b, loc, steps));
    Value clamped =
        arith::MinUIOp::create(b, loc, step, index(b, loc, steps - 1));
    return {clamped, inside};
  };
  // The A fragment of the queries' channels [16 step, 16 step + 16) of
  // `query` from channel `offset` on; zeros for heads past the group and
  // steps past the end.
  auto queryFragment = [&](OpBuilder &b, Location loc, Value query,
                           int64_t offset, Value step, Value used) -> Value {
    SmallVector<Value> words;
    for (auto [row, word] : aWords) {
      Value head = arith::AddIOp::create(b, loc, h0, row);
      Value inGroup = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                            row, index(b, loc, plan.group));
      Value inside = arith::AndIOp::create(b, loc, inGroup, used);
      Value pair = arith::MulIOp::create(b, loc, word, index(b, loc, 2));
      Value base = arith::MulIOp::create(b, loc, step, index(b, loc, 16));
      Value channel = arith::AddIOp::create(b, loc, base, pair);
      channel = arith::AddIOp::create(b, loc, channel, index(b, loc, offset));
      words.push_back(simt::valueOrZero(
          b, loc, inside, i32, [&](OpBuilder &b, Location loc) {
            Value token = walk.token;
            Value next =
                arith::AddIOp::create(b, loc, channel, index(b, loc, 1));
            Value low = memref::LoadOp::create(
                b, loc, query, ValueRange{token, head, channel});
            Value high = memref::LoadOp::create(b, loc, query,
                                                ValueRange{token, head, next});
            return mma::bf16Pair(b, loc, low, high, portable);
          }));
    }
    return vector::FromElementsOp::create(b, loc, aType, words);
  };
  // The queries' fragments, once: the warp's latent steps, then its rope
  // steps (the rope query follows the no-rope part in `query`).
  SmallVector<Value> latentQueries, ropeQueries;
  for (int64_t i = 0; i < plan.stepsPerWarp; ++i) {
    auto [step, used] = stepOf(b, loc, plan.stepsPerWarp, i, plan.latentSteps);
    latentQueries.push_back(
        queryFragment(b, loc, args.queryLatent, 0, step, used));
  }
  for (int64_t i = 0; i < plan.ropePerWarp; ++i) {
    auto [step, used] = stepOf(b, loc, plan.ropePerWarp, i, plan.ropeSteps);
    ropeQueries.push_back(
        queryFragment(b, loc, args.query, kernel.nope, step, used));
  }

  // Key i of the chunk from `chunk0` exists when chunk0 + i < last.
  auto existing = [&](OpBuilder &b, Location loc, Value chunk0,
                      Value i) -> std::pair<Value, Value> {
    return simt::offsetBelow(b, loc, chunk0, i, last);
  };
  // Staging a chunk is two halves, so that the next chunk's loads are in
  // flight while this one's products run: load() reads its 16-byte rows of
  // the latent and rope caches and its scales into registers (thread j
  // vectors j, j + kBlock, ...: neighbouring threads, neighbouring bytes;
  // zeros past `last`), store() converts them into the staged bf16 pairs.
  // Thread j's item `first` + j of `total`, as (item, whether it exists).
  auto itemOf = [&](OpBuilder &b, Location loc, int64_t first,
                    int64_t total) -> std::pair<Value, Value> {
    Value e =
        arith::AddIOp::create(b, loc, thread.thread, index(b, loc, first));
    Value mine = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, e,
                                       index(b, loc, total));
    return {e, mine};
  };
  // Loads the chunk's `vectors` values of `type` a key from `cache` (16-byte
  // rows, or the f32 scales), one a thread per kBlock items.
  auto loadRows = [&](OpBuilder &b, Location loc, Value chunk0, Value cache,
                      int64_t vectors, Type type) -> SmallVector<Value> {
    int64_t total = chunk * vectors;
    SmallVector<Value> loaded;
    for (int64_t first = 0; first < total; first += kBlock) {
      Value e, inside;
      std::tie(e, inside) = itemOf(b, loc, first, total);
      Value i = arith::DivUIOp::create(b, loc, e, index(b, loc, vectors));
      Value v = arith::RemUIOp::create(b, loc, e, index(b, loc, vectors));
      Value key, exists;
      std::tie(key, exists) = existing(b, loc, chunk0, i);
      inside = arith::AndIOp::create(b, loc, inside, exists);
      loaded.push_back(simt::valueOrZero(
          b, loc, inside, type, [&](OpBuilder &b, Location loc) {
            Value slot = keys.slot(b, loc, key);
            return memref::LoadOp::create(b, loc, cache, ValueRange{slot, v})
                .getResult();
          }));
    }
    return loaded;
  };
  // Stores loadRows' vectors of `format` as bf16 pairs from word
  // `firstWord` of each staged key. 8-bit codes are staged as decodeWord
  // leaves them (divided by wordScale, exact).
  auto storeRows = [&](OpBuilder &b, Location loc, ArrayRef<Value> loaded,
                       WeightFormat format, int64_t vectors,
                       int64_t firstWord) {
    int64_t total = chunk * vectors;
    // bf16 pairs of a vector's 16 bytes.
    int64_t wordsPerVector = 8 / storageBytes(format, b.getContext());
    for (auto [n, row] : llvm::enumerate(loaded)) {
      SmallVector<Value> words, values;
      for (int64_t j = 0; j < 4; ++j) {
        Value word = vector::ExtractOp::create(b, loc, row, j);
        if (format == WeightFormat::BF16)
          words.push_back(word);
        else
          values.append(simt::decodeWord(b, loc, word, format));
      }
      for (size_t j = 0; j + 1 < values.size(); j += 2)
        words.push_back(
            mma::bf16Pair(b, loc, values[j], values[j + 1], portable));
      assert(int64_t(words.size()) == wordsPerVector && "a vector's words");
      Value e, inside;
      std::tie(e, inside) = itemOf(b, loc, n * kBlock, total);
      Value i = arith::DivUIOp::create(b, loc, e, index(b, loc, vectors));
      Value v = arith::RemUIOp::create(b, loc, e, index(b, loc, vectors));
      Value start = arith::MulIOp::create(b, loc, i, index(b, loc, pitch));
      Value offset =
          arith::MulIOp::create(b, loc, v, index(b, loc, wordsPerVector));
      Value at = arith::AddIOp::create(b, loc, start, offset);
      at = arith::AddIOp::create(b, loc, at, index(b, loc, firstWord));
      scf::IfOp::create(b, loc, inside, [&](OpBuilder &b, Location loc) {
        for (auto [j, word] : llvm::enumerate(words)) {
          Value bits = arith::BitcastOp::create(b, loc, f32Type, word);
          Value to = arith::AddIOp::create(b, loc, at, index(b, loc, j));
          memref::StoreOp::create(b, loc, bits, staged, to);
        }
        scf::YieldOp::create(b, loc);
      });
    }
  };
  auto vectorType = VectorType::get({4}, i32);
  auto load = [&](OpBuilder &b, Location loc,
                  Value chunk0) -> SmallVector<Value> {
    SmallVector<Value> loaded = loadRows(b, loc, chunk0, args.latentCache,
                                         plan.latentVectors, vectorType);
    loaded.append(
        loadRows(b, loc, chunk0, args.ropeCache, plan.ropeVectors, vectorType));
    if (plan.scaled)
      loaded.append(loadRows(b, loc, chunk0, args.scales, blocks, f32Type));
    return loaded;
  };
  int64_t latentLoads = llvm::divideCeil(chunk * plan.latentVectors, kBlock);
  int64_t ropeLoads = llvm::divideCeil(chunk * plan.ropeVectors, kBlock);
  // The scales as the staged codes need them: times wordScale.
  double codeScale = simt::wordScale(kernel.storage.format);
  auto store = [&](OpBuilder &b, Location loc, ArrayRef<Value> loaded) {
    storeRows(b, loc, loaded.take_front(latentLoads), kernel.storage.format,
              plan.latentVectors, 0);
    storeRows(b, loc, loaded.slice(latentLoads, ropeLoads),
              kernel.storage.ropeFormat, plan.ropeVectors, rank / 2);
    for (auto [n, scale] :
         llvm::enumerate(loaded.drop_front(latentLoads + ropeLoads))) {
      Value e, inside;
      std::tie(e, inside) = itemOf(b, loc, n * kBlock, chunk * blocks);
      Value scaled =
          arith::MulFOp::create(b, loc, scale, f32(b, loc, codeScale));
      scf::IfOp::create(b, loc, inside, [&](OpBuilder &b, Location loc) {
        memref::StoreOp::create(b, loc, scaled, scales, e);
        scf::YieldOp::create(b, loc);
      });
    }
  };
  // The scale of block `block` of the chunk's key in column `column`.
  auto keyScale = [&](OpBuilder &b, Location loc, Value column,
                      Value block) -> Value {
    Value start = arith::MulIOp::create(b, loc, column, index(b, loc, blocks));
    Value at = arith::AddIOp::create(b, loc, start, block);
    return memref::LoadOp::create(b, loc, scales, at);
  };
  // The column (key of the chunk, or channel of a tile group) of C
  // element e of tile n.
  auto columnOf = [&](OpBuilder &b, Location loc, int64_t n,
                      int64_t e) -> Value {
    Value inTile = mma::elementOf(b, loc, false, lane.parts, e).second;
    return arith::AddIOp::create(b, loc, inTile, index(b, loc, 8 * n));
  };
  // The chunk's B fragments of the k-step at staged word `word` (keys are
  // the n-major rows), two tiles an ldmatrix.x4.
  auto keyFragments = [&](OpBuilder &b, Location loc,
                          Value word) -> SmallVector<Value> {
    SmallVector<Value> fragments;
    for (int64_t p = 0; p < tiles / 2; ++p)
      fragments.append(mma::loadFragmentsB(b, loc, products, staged, pitch,
                                           index(b, loc, 16 * p), word));
    return fragments;
  };
  // The B fragments of the values of latent channels [c0, c0 + 16) (two
  // tiles) for keys [16k, 16k + 16) of the chunk: the key-major staging
  // transposed (ldmatrix.x4.trans: two keys of a channel a word).
  auto valueFragments = [&](OpBuilder &b, Location loc, Value c0,
                            int64_t k) -> SmallVector<Value> {
    Value column = arith::DivUIOp::create(b, loc, c0, index(b, loc, 2));
    return mma::loadFragmentsB(b, loc, products, staged, pitch,
                               index(b, loc, 16 * k), column,
                               /*transposed=*/true);
  };
  // Warp w's first latent channel, and that of its tile group `group`.
  Value warpChannels =
      arith::MulIOp::create(b, loc, warp, index(b, loc, plan.channelsPerWarp));
  auto groupChannel = [&](OpBuilder &b, Location loc, int64_t group) -> Value {
    return arith::AddIOp::create(b, loc, warpChannels,
                                 index(b, loc, 8 * plan.tilesPerGroup * group));
  };

  // State: the lane's two rows' running maxima and (its part of the) sums,
  // then its outputs (4 f32 a tile). The maximum starts at a finite lowest
  // value: a masked key (-inf) then gives exp(-inf - max) = 0.
  double negInf = -std::numeric_limits<double>::infinity();
  // Then, with plan.prefetch, the next chunk's loads.
  SmallVector<Value> init(2, f32(b, loc, -1e30));
  init.append(2, zeroF32);
  init.append(outputTiles * 4, zeroF32);
  int64_t loadsAt = init.size();
  if (plan.prefetch)
    init.append(load(b, loc, first));
  auto chunks = scf::ForOp::create(
      b, loc, first, last, index(b, loc, chunk), init,
      [&](OpBuilder &b, Location loc, Value chunk0, ValueRange state) {
        SmallVector<Value> loaded(state.drop_front(loadsAt)), prefetched;
        if (!plan.prefetch)
          loaded = load(b, loc, chunk0);
        store(b, loc, loaded);
        mlir::gpu::BarrierOp::create(b, loc);
        if (plan.prefetch) {
          Value following =
              arith::AddIOp::create(b, loc, chunk0, index(b, loc, chunk));
          prefetched = load(b, loc, following);
        }
        // This warp's part of the scores: its latent steps in runs of one
        // scale block, each run's sums times the keys' scales of that block,
        // then its rope steps.
        SmallVector<Value> partial(tiles * 4, zeroF32);
        for (int64_t run = 0; run < plan.stepsPerWarp / plan.stepRun; ++run) {
          SmallVector<Value> sums(tiles * 4, zeroF32);
          for (int64_t i = 0; i < plan.stepRun; ++i) {
            int64_t s = run * plan.stepRun + i;
            Value step =
                stepOf(b, loc, plan.stepsPerWarp, s, plan.latentSteps).first;
            Value word = arith::MulIOp::create(b, loc, step, index(b, loc, 8));
            SmallVector<Value> fragments = keyFragments(b, loc, word);
            sums = mma::multiplyGrid(b, loc, products, WeightFormat::BF16,
                                     latentQueries[s], fragments, sums);
          }
          if (!plan.scaled) {
            partial = sums;
            continue;
          }
          Value step = stepOf(b, loc, plan.stepsPerWarp, run * plan.stepRun,
                              plan.latentSteps)
                           .first;
          Value block = arith::DivUIOp::create(b, loc, step,
                                               index(b, loc, kScaleBlock / 16));
          for (int64_t n = 0; n < tiles; ++n)
            for (int64_t e = 0; e < 4; ++e) {
              Value column = columnOf(b, loc, n, e);
              Value scale = keyScale(b, loc, column, block);
              partial[4 * n + e] =
                  simt::fma(b, loc, sums[4 * n + e], scale, partial[4 * n + e]);
            }
        }
        for (int64_t i = 0; i < plan.ropePerWarp; ++i) {
          Value step =
              stepOf(b, loc, plan.ropePerWarp, i, plan.ropeSteps).first;
          Value word = arith::MulIOp::create(b, loc, step, index(b, loc, 8));
          word = arith::AddIOp::create(b, loc, word, index(b, loc, rank / 2));
          SmallVector<Value> fragments = keyFragments(b, loc, word);
          partial = mma::multiplyGrid(b, loc, products, WeightFormat::BF16,
                                      ropeQueries[i], fragments, partial);
        }
        // Every warp adds up all the warps' parts of its lane's elements.
        Value warpStart = arith::MulIOp::create(
            b, loc, warp, index(b, loc, kHeads * plan.scorePitch()));
        auto partAt = [&](OpBuilder &b, Location loc, Value start, int64_t n,
                          int64_t e) -> Value {
          Value row = lane.rows[e / 2];
          Value rowStart = arith::MulIOp::create(
              b, loc, row, index(b, loc, plan.scorePitch()));
          Value at = arith::AddIOp::create(b, loc, start, rowStart);
          Value column = columnOf(b, loc, n, e);
          return arith::AddIOp::create(b, loc, at, column);
        };
        for (int64_t n = 0; n < tiles; ++n)
          for (int64_t e = 0; e < 4; ++e) {
            Value at = partAt(b, loc, warpStart, n, e);
            memref::StoreOp::create(b, loc, partial[4 * n + e], partials, at);
          }
        mlir::gpu::BarrierOp::create(b, loc);
        SmallVector<Value> scores(tiles * 4);
        SmallVector<Value> rowMax(2, f32(b, loc, negInf));
        for (int64_t n = 0; n < tiles; ++n)
          for (int64_t e = 0; e < 4; ++e) {
            Value sum = zeroF32;
            for (int64_t w = 0; w < kWarps; ++w) {
              Value start = index(b, loc, w * kHeads * plan.scorePitch());
              Value at = partAt(b, loc, start, n, e);
              Value part = memref::LoadOp::create(b, loc, partials, at);
              sum = arith::AddFOp::create(b, loc, sum, part);
            }
            Value score =
                arith::MulFOp::create(b, loc, sum, f32(b, loc, kernel.scale));
            Value column = columnOf(b, loc, n, e);
            Value inside = existing(b, loc, chunk0, column).second;
            scores[4 * n + e] = arith::SelectOp::create(b, loc, inside, score,
                                                        f32(b, loc, negInf));
            rowMax[e / 2] = arith::MaximumFOp::create(b, loc, rowMax[e / 2],
                                                      scores[4 * n + e]);
          }
        SmallVector<Value> next(state.begin(), state.end());
        SmallVector<Value> correction =
            mma::runningMaxima(b, loc, products, rowMax,
                               MutableArrayRef<Value>(next).take_front(2));
        SmallVector<Value> sums(2, zeroF32);
        SmallVector<Value> probabilities(tiles * 4);
        for (int64_t n = 0; n < tiles; ++n)
          for (int64_t e = 0; e < 4; ++e) {
            Value shifted =
                arith::SubFOp::create(b, loc, scores[4 * n + e], next[e / 2]);
            probabilities[4 * n + e] = math::ExpOp::create(b, loc, shifted);
            sums[e / 2] = arith::AddFOp::create(b, loc, sums[e / 2],
                                                probabilities[4 * n + e]);
          }
        for (int64_t r = 0; r < 2; ++r) {
          Value kept =
              arith::MulFOp::create(b, loc, state[2 + r], correction[r]);
          next[2 + r] = arith::AddFOp::create(b, loc, kept, sums[r]);
        }
        // O = O * correction + P C, a tile group (one scale block) at a
        // time: P times the keys' scales of the group's block, as the A
        // fragments of the steps of 16 keys (C tiles 2k and 2k + 1, rows g
        // then g + 8: the registers as they are).
        SmallVector<Value> o;
        for (int64_t j = 0; j < outputTiles; ++j)
          for (int64_t e = 0; e < 4; ++e)
            o.push_back(arith::MulFOp::create(b, loc, state[4 + 4 * j + e],
                                              correction[e / 2]));
        int64_t groups = outputTiles / plan.tilesPerGroup;
        for (int64_t group = 0; group < groups; ++group) {
          Value c0 = groupChannel(b, loc, group);
          Value block;
          if (plan.scaled)
            block =
                arith::DivUIOp::create(b, loc, c0, index(b, loc, kScaleBlock));
          SmallVector<Value> weights(probabilities);
          if (plan.scaled)
            for (int64_t n = 0; n < tiles; ++n)
              for (int64_t e = 0; e < 4; ++e) {
                Value column = columnOf(b, loc, n, e);
                Value scale = keyScale(b, loc, column, block);
                weights[4 * n + e] =
                    arith::MulFOp::create(b, loc, weights[4 * n + e], scale);
              }
          for (int64_t k = 0; k < valueSteps; ++k) {
            Value a = mma::fragmentOfSums(b, loc, weights, k, portable);
            // B fragments a grid of `tiles` at most (the emulation's
            // workgroup memory holds that many).
            for (int64_t j0 = 0; j0 < plan.tilesPerGroup; j0 += tiles) {
              int64_t count = std::min(tiles, plan.tilesPerGroup - j0);
              SmallVector<Value> v, c;
              for (int64_t j = j0; j < j0 + count; j += 2) {
                Value channel =
                    arith::AddIOp::create(b, loc, c0, index(b, loc, 8 * j));
                v.append(valueFragments(b, loc, channel, k));
              }
              int64_t first = 4 * (group * plan.tilesPerGroup + j0);
              c.append(o.begin() + first, o.begin() + first + 4 * count);
              SmallVector<Value> d = mma::multiplyGrid(
                  b, loc, products, WeightFormat::BF16, a, v, c);
              int64_t at = 4 * (group * plan.tilesPerGroup + j0);
              std::copy(d.begin(), d.end(), o.begin() + at);
            }
          }
        }
        std::copy(o.begin(), o.end(), next.begin() + 4);
        std::copy(prefetched.begin(), prefetched.end(), next.begin() + loadsAt);
        // Nobody restages the chunk or its scores before everyone has read
        // them.
        mlir::gpu::BarrierOp::create(b, loc);
        scf::YieldOp::create(b, loc, next);
      });

  // Each row's sum over the quad. Decode: the slice's outputs of this
  // warp's channels, and (warp 0, t = 0) each row's maximum and sum, for
  // the heads of the group; prefill: the outputs over the sum.
  SmallVector<Value> totals;
  for (int64_t r = 0; r < 2; ++r)
    totals.push_back(mma::rowReduce(b, loc, products, chunks.getResult(2 + r),
                                    /*max=*/false));
  for (int64_t r = 0; r < 2; ++r) {
    Value row = lane.rows[r];
    Value inGroup = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                          row, index(b, loc, plan.group));
    Value head = arith::AddIOp::create(b, loc, h0, row);
    scf::IfOp::create(b, loc, inGroup, [&](OpBuilder &b, Location loc) {
      Value inverse;
      if (!walk.scratch)
        inverse = arith::DivFOp::create(b, loc, f32(b, loc, 1.0), totals[r]);
      for (int64_t j = 0; j < outputTiles; ++j)
        for (int64_t e = 2 * r; e < 2 * r + 2; ++e) {
          Value inTile = columnOf(b, loc, j, e);
          Value channel = arith::AddIOp::create(b, loc, warpChannels, inTile);
          Value o = chunks.getResult(4 + 4 * j + e);
          if (!walk.scratch) {
            Value result = arith::MulFOp::create(b, loc, o, inverse);
            memref::StoreOp::create(b, loc, result, args.output,
                                    ValueRange{walk.token, head, channel});
            continue;
          }
          memref::StoreOp::create(b, loc, o, walk.scratch,
                                  ValueRange{walk.slice, head, channel});
        }
      if (!walk.scratch) {
        scf::YieldOp::create(b, loc);
        return;
      }
      Value firstWarp = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                              warp, index(b, loc, 0));
      Value firstLane = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                              lane.parts.t, index(b, loc, 0));
      Value writer = arith::AndIOp::create(b, loc, firstWarp, firstLane);
      scf::IfOp::create(b, loc, writer, [&](OpBuilder &b, Location loc) {
        Value maxColumn = index(b, loc, rank);
        memref::StoreOp::create(b, loc, chunks.getResult(r), walk.scratch,
                                ValueRange{walk.slice, head, maxColumn});
        Value sumColumn = index(b, loc, rank + 1);
        memref::StoreOp::create(b, loc, totals[r], walk.scratch,
                                ValueRange{walk.slice, head, sumColumn});
        scf::YieldOp::create(b, loc);
      });
      scf::YieldOp::create(b, loc);
    });
  }
}
} // namespace

SymbolRefAttr mma::latentTiles(GPUKernelTarget &target,
                               const LatentAttendKernel &kernel,
                               LatentAttendOperands<Type> types,
                               StringRef key) {
  std::optional<Plan> found = planFor(target, kernel);
  if (!found)
    return {};
  Plan plan = *found;
  MLIRContext *context = target.getModule().getContext();
  unsigned startOperand = types.scales ? 5 : 4;
  // The kernels read the cache's rows 16 bytes (a vector<4xi32>) a load.
  auto rows = [&](int64_t vectors) {
    auto vector = VectorType::get({4}, IntegerType::get(context, 32));
    return MemRefType::get({kernel.capacity, vectors}, vector);
  };
  types.latentCache = rows(plan.latentVectors);
  types.ropeCache = rows(plan.ropeVectors);
  std::string name = key.str();
  // Decode: flash decoding's slices of the keys, then their combination.
  SymbolRefAttr partial = flash::slicesKernel(
      target, name + "_mma_slices", presentOperands(types), startOperand,
      kernel.heads, kernel.rank, kernel.capacity, plan.chunk, kernel.window,
      kernel.sinks,
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          ValueRange operands, Value slice, Value h0, const VisibleKeys &keys,
          const flash::Slice &range) {
        LatentAttendOperands<Value> args =
            bindOperands(types, operands.drop_back());
        mma::WarpProducts products =
            mma::warpProducts(target, thread, 1, plan.tiles());
        Walk walk{index(b, loc, 0), h0,   keys, range.first, range.last,
                  operands.back(),  slice};
        latentTilesBody(b, loc, thread, args, walk, kernel, plan, products);
      },
      plan.group, kBlock, kLatentSlices);
  SymbolRefAttr combine = flash::combineKernel(
      target, name + "_mma_combine", kernel.heads, kernel.rank, kernel.capacity,
      plan.chunk, kernel.window, kernel.sinks, kLatentSlices);
  MemRefType scratchType =
      flash::scratchType(context, kernel.heads, kernel.rank, kLatentSlices);
  SymbolRefAttr decode =
      target.twoSteps(name + "_mma_decode", partial, combine, scratchType,
                      {startOperand, startOperand + 1});
  // Prefill: a workgroup per (token, group of heads) over all the keys the
  // token sees (enough workgroups without slices).
  int64_t groups = kernel.heads / plan.group;
  SymbolRefAttr prefill = target.get<LatentAttendOperands>(
      name + "_mma_prefill", types, kBlock,
      [groups](OpBuilder &b, Location loc,
               LatentAttendOperands<Value> args) -> Value {
        Value tokens = memref::DimOp::create(b, loc, args.query, 0);
        return arith::MulIOp::create(b, loc, tokens, index(b, loc, groups));
      },
      [&](OpBuilder &b, Location loc, const GPUThread &thread,
          LatentAttendOperands<Value> args) {
        Value t = arith::DivUIOp::create(b, loc, thread.workgroup,
                                         index(b, loc, groups));
        Value group = arith::RemUIOp::create(b, loc, thread.workgroup,
                                             index(b, loc, groups));
        Value h0 =
            arith::MulIOp::create(b, loc, group, index(b, loc, plan.group));
        Value position = arith::AddIOp::create(b, loc, args.start, t);
        VisibleKeys keys = visibleKeys(b, loc, position, kernel.capacity,
                                       kernel.window, kernel.sinks);
        mma::WarpProducts products =
            mma::warpProducts(target, thread, 1, plan.tiles());
        Walk walk{t, h0, keys, keys.begin, keys.end, Value(), Value()};
        latentTilesBody(b, loc, thread, args, walk, kernel, plan, products);
      });
  // The latent query is the first operand.
  return target.byLeadingSize(name + "_mma_by_tokens", decode, prefill,
                              /*operand=*/0);
}
