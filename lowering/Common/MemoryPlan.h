//===- MemoryPlan.h - the weight and cache blobs, target-neutral -*- C++ -*-===//
//
// xfmr-plan-memory decides, once for every target, where each weight lives
// in the weight blob and each layer's cache (and each MoE layer's counters)
// in the cache blob, and records it as `#xfmr.memory_plan` on the module
// (dialects/Xfmr/XfmrAttrs.td). Kernel lowering (any target) and the
// artifact writer read that plan; these helpers say how a slot's bytes are
// laid out, so that both read it the same way.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_LOWERING_COMMON_MEMORYPLAN_H
#define XFMR_LOWERING_COMMON_MEMORYPLAN_H

#include "dialects/Xfmr/XfmrOps.h"

#include "mlir/IR/BuiltinOps.h"

namespace xfmr {

/// The module attribute holding the plan.
inline constexpr llvm::StringLiteral kMemoryPlanAttrName = "xfmr.memory_plan";
/// On ops that read a weight slot (xfmr.weight, xfmr.quantize of a weight,
/// xfmr.fold_mla_weight): the index of the slot in the plan's weights, and
/// for a quantized weight the index of its scales.
inline constexpr llvm::StringLiteral kSlotAttrName = "xfmr.slot";
inline constexpr llvm::StringLiteral kScaleSlotAttrName = "xfmr.scale_slot";

/// Every tensor, cache part and counter block starts at a multiple of this.
inline constexpr int64_t kBufferAlignment = 64;

/// Bytes of one element of a stored type (f32 4, bf16 2, FP8 and i8 1; i4
/// 1, for the panel storage shape, whose elements are bytes).
int64_t storedElementBytes(mlir::Type type);

/// The stored shape of a tensor of i4 codes outside panels (the MoE kernels'
/// expert stacks): row-major, two codes a byte, so its last dimension
/// halves (rounded up). Bytes, [..., ceil(cols / 2)].
llvm::SmallVector<int64_t, 3>
int4RowStorageShape(llvm::ArrayRef<int64_t> shape);

/// Rows of a weight panel (a slot's `panel` when xfmr-plan-memory packs
/// weights for the CPU): four 16-lane vectors of sums per activation row.
inline constexpr int64_t kWeightPanelRows = 64;
/// Consecutive input columns of one row that panels keep together: pairs
/// (bf16 and FP8, for `vdpbf16ps`), quads of i8 codes (for `vpdpbusd`,
/// which also reads them as code + 128: see WeightPacking.h), octets of i4
/// codes (4 bytes), or single columns of f16 (int4 weights' group scales,
/// 16 rows of one group in one load).
int64_t panelGroup(mlir::Type element);
/// The stored shape of a [rows, cols] matrix of `element`s in panels of
/// `panel` rows: [ceil(rows / panel), ceil(cols / g), g * panel] for
/// g = panelGroup(element); for i4, [.., g / 2 * panel] bytes.
llvm::SmallVector<int64_t, 3> panelStorageShape(llvm::ArrayRef<int64_t> shape,
                                                int64_t panel,
                                                mlir::Type element);

/// How a layer's cache is laid out inside its slot. A KV cache is codes
/// [capacity, heads, key_dim + value_dim], then for 8-bit types f32 scales
/// [capacity, heads, 2] (key, value). A latent cache is the latent codes
/// [capacity, latent_dim], then for 8-bit types f32 scales [capacity,
/// scale blocks], then k_pe [capacity, rope_dim].
///
/// Parts of a cache of 16 pages or more start at a page (and the plan starts
/// its slot at one): a runtime that pages the cache (KVBlockPool) maps each
/// part's rows block by block, which needs page-aligned parts. Smaller caches
/// keep kBufferAlignment (a page each would mostly be padding).
struct CacheStorage {
  int64_t scalesOffset = 0; ///< 0 when the cache has no scales
  int64_t ropeOffset = 0;   ///< latent caches only
  int64_t bytes = 0;        ///< the whole slot
  int64_t alignment = 0;    ///< of the slot and of each part
};
CacheStorage cacheStorage(mlir::Type cacheType);

/// The page size cacheStorage aligns large caches to.
inline constexpr int64_t kCachePageBytes = 4096;

/// One token-indexed part of a cache slot: row t (a token's position, or its
/// slot in an evicting ring) is `rowBytes` bytes at offset + t * rowBytes,
/// for t in [0, capacity).
struct CacheRegion {
  int64_t offset = 0; ///< from the start of the slot
  int64_t rowBytes = 0;
};
/// The parts of a cache slot, in the order CacheStorage describes them.
llvm::SmallVector<CacheRegion, 3> cacheRegions(mlir::Type cacheType);

/// The module's plan; null when xfmr-plan-memory has not run.
MemoryPlanAttr getMemoryPlan(mlir::ModuleOp module);

/// The weight slot an op reads (`attrName`: kSlotAttrName or
/// kScaleSlotAttrName), or null.
WeightSlotAttr getWeightSlot(MemoryPlanAttr plan, mlir::Operation *op,
                             llvm::StringRef attrName = kSlotAttrName);

} // namespace xfmr

#endif // XFMR_LOWERING_COMMON_MEMORYPLAN_H
