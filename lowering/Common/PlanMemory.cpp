//===- PlanMemory.cpp - xfmr-plan-memory ------------------------*- C++ -*-===//
//
// Decides the two blobs every entry point shares, for every target: one slot
// per distinct stored weight (checkpoint tensors, FP8 codes and scales
// computed at compile time, folded MLA products), one slot per layer's cache
// in entry-argument order, then the MoE layers' token counters. Records the
// plan as #xfmr.memory_plan on the module and the slot of each weight-reading
// op as `xfmr.slot`. Also checks what every back end relies on: the entry
// points' signatures, one cache layout for all of them, embedding tables
// that cover the vocabulary.
//
//===----------------------------------------------------------------------===//

#include "lowering/Common/MemoryPlan.h"
#include "lowering/Passes.h"

#include "dialects/Xfmr/XfmrOps.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/MathExtras.h"

namespace xfmr {
#define GEN_PASS_DEF_PLANMEMORY
#include "lowering/Passes.h.inc"
} // namespace xfmr

using namespace mlir;
using namespace xfmr;

namespace {

/// True when every user of `weight` derives another weight from it at
/// compile time (FP8 codes and scales, folded MLA products): only those are
/// stored.
bool onlyDerived(WeightOp weight) {
  return !weight->use_empty() &&
         llvm::all_of(weight->getUsers(), [](Operation *user) {
           return isa<QuantizeOp, FoldMLAWeightOp>(user);
         });
}

/// True when the CPU's panel kernels can read `weight`: a bf16 matrix that
/// only linear layers multiply by (an embedding table or an MoE expert
/// stack keeps its rows).
bool panelPackable(WeightOp weight) {
  RankedTensorType type = weight.getType();
  return type.getRank() == 2 && type.getElementType().isBF16() &&
         !weight->use_empty() &&
         llvm::all_of(weight->getUses(), [](OpOperand &use) {
           auto linear = dyn_cast<LinearOp>(use.getOwner());
           return linear && &use == &linear.getWeightMutable();
         });
}

/// True when the panel kernels can read the codes of `quantize` (a weight
/// quantized at compile time): a matrix only linear layers read, with its
/// scales; FP8 in blocks of whole panels (a multiple of 64 rows) and whole
/// input pairs, int8 with one scale per row (the int8 kernels scale whole
/// sums).
bool panelPackable(QuantizeOp quantize) {
  auto codes = cast<RankedTensorType>(quantize.getResult().getType());
  ScaleLayoutAttr layout = quantize.getLayout();
  if (codes.getRank() != 2 || layout.getKind() != ScaleKind::block ||
      quantize.getResult().use_empty())
    return false;
  if (codes.getElementType().isInteger(8)) {
    if (layout.getBlock()[0] != 1 || layout.getBlock()[1] < codes.getDimSize(1))
      return false;
  } else if (codes.getElementType().isInteger(4)) {
    // Groups of whole octets (one 32-bit word of nibbles a row), f16 scales.
    if (layout.getBlock()[0] != 1 || layout.getBlock()[1] % 8 != 0 ||
        !cast<RankedTensorType>(quantize.getScale().getType())
             .getElementType()
             .isF16())
      return false;
  } else if (layout.getBlock()[0] % kWeightPanelRows != 0 ||
             layout.getBlock()[1] % 2 != 0) {
    return false;
  }
  return llvm::all_of(quantize.getResult().getUses(), [&](OpOperand &use) {
    auto linear = dyn_cast<LinearOp>(use.getOwner());
    return linear && &use == &linear.getWeightMutable() &&
           linear.getScale() == quantize.getScale();
  });
}

/// Checks that `func` has the importer's entry signature: (ids, start,
/// caches...) -> (logits, caches...).
LogicalResult checkEntrySignature(func::FuncOp func) {
  if (auto kind = func->getAttrOfType<StringAttr>(kEntryAttrName);
      kind && kind.getValue() == "mtp")
    return func.emitOpError("the multi-token-prediction entry point ('mtp') "
                            "is not compiled yet; import without --mtp");
  FunctionType type = func.getFunctionType();
  auto ids = type.getNumInputs() > 0
                 ? dyn_cast<RankedTensorType>(type.getInput(0))
                 : RankedTensorType();
  if (!ids || ids.getRank() != 1 || !ids.getElementType().isInteger(32) ||
      type.getNumInputs() < 2 || !type.getInput(1).isIndex())
    return func.emitOpError("entry point must take (tensor<?xi32> ids, index "
                            "start, caches...)");
  if (type.getNumResults() != type.getNumInputs() - 1)
    return func.emitOpError("entry point must return (logits, caches...)");
  auto logits = dyn_cast<RankedTensorType>(type.getResult(0));
  if (!logits || logits.getRank() != 2 || !logits.getElementType().isF32())
    return func.emitOpError("entry point must return f32 logits [tokens, "
                            "vocab] first");
  for (unsigned i = 2; i < type.getNumInputs(); ++i) {
    if (type.getInput(i) != type.getResult(i - 1))
      return func.emitOpError("cache argument ")
             << i << " and its returned update differ in type";
    if (!isa<KVCacheType, LatentCacheType>(type.getInput(i)))
      return func.emitOpError("argument ")
             << i << " must be a !xfmr.kv_cache or a !xfmr.latent_cache";
  }
  if (func.getBody().getBlocks().size() != 1)
    return func.emitOpError("entry point must be a single block");
  return success();
}

/// Slots of the weight blob, deduplicated by what their bytes depend on.
class WeightPlanner {
public:
  explicit WeightPlanner(MLIRContext *context) : builder(context) {}

  /// The index of the slot for `key`, adding one of `type` from `source`
  /// (computed by `transform` if set); -1 if `key` has another type.
  int64_t slot(StringRef key, StringAttr source, RankedTensorType type,
               Attribute transform = {}, int64_t panel = 0) {
    auto [it, inserted] = indices.try_emplace(key, int64_t(slots.size()));
    if (!inserted)
      return slots[it->second].getType() == type ? it->second : -1;
    int64_t elements = type.getNumElements();
    if (panel)
      elements = llvm::product_of(
          panelStorageShape(type.getShape(), panel, type.getElementType()));
    else if (type.getElementType().isInteger(4))
      elements = llvm::product_of(int4RowStorageShape(type.getShape()));
    int64_t bytes = elements * storedElementBytes(type.getElementType());
    slots.push_back(WeightSlotAttr::get(builder.getContext(), source, size,
                                        bytes, type, transform, panel));
    size = llvm::alignTo(size + bytes, kBufferAlignment);
    return it->second;
  }

  void annotate(Operation *op, StringRef attrName, int64_t index) {
    op->setAttr(attrName, builder.getI64IntegerAttr(index));
  }

  Builder builder;
  SmallVector<WeightSlotAttr> slots;
  int64_t size = 0;

private:
  llvm::StringMap<int64_t> indices;
};

/// The key of a slot the packer computes: everything its bytes depend on.
template <typename... Parts> std::string slotKey(const Parts &...parts) {
  std::string key;
  llvm::raw_string_ostream os(key);
  ((os << parts << "#"), ...);
  return key;
}

struct PlanMemoryPass : xfmr::impl::PlanMemoryBase<PlanMemoryPass> {
  using PlanMemoryBase::PlanMemoryBase;
  void runOnOperation() override;
  LogicalResult planWeights(ArrayRef<func::FuncOp> entries,
                            WeightPlanner &planner);
};

LogicalResult PlanMemoryPass::planWeights(ArrayRef<func::FuncOp> entries,
                                          WeightPlanner &planner) {
  for (func::FuncOp func : entries) {
    WalkResult walk = func.walk([&](Operation *op) -> WalkResult {
      if (auto weight = dyn_cast<WeightOp>(op)) {
        if (onlyDerived(weight))
          return WalkResult::advance(); // its derived slots are stored
        int64_t panel =
            weightPanels && panelPackable(weight) ? kWeightPanelRows : 0;
        std::string key = weight.getName().str();
        if (panel)
          key = slotKey("panel", weight.getName(), panel);
        int64_t index = planner.slot(key, weight.getNameAttr(),
                                     weight.getType(), {}, panel);
        if (index < 0)
          return weight.emitOpError()
                 << "weight '" << weight.getName() << "' is used with two types";
        planner.annotate(op, kSlotAttrName, index);
        return WalkResult::advance();
      }
      if (auto fold = dyn_cast<FoldMLAWeightOp>(op)) {
        auto source = fold.getWeight().getDefiningOp<WeightOp>();
        auto kvB = fold.getKvB() ? fold.getKvB().getDefiningOp<WeightOp>()
                                 : WeightOp();
        if (!source || (fold.getKvB() && !kvB))
          return fold.emitOpError("folds checkpoint weights (xfmr.weight) only");
        auto transform = FoldedWeightAttr::get(
            &getContext(), fold.getKind(), fold.getHeads(), fold.getNope(),
            fold.getRope(), fold.getValueDim(), source.getType(),
            kvB ? kvB.getNameAttr() : StringAttr(),
            kvB ? Type(kvB.getType()) : Type());
        std::string key = slotKey("fold", source.getName(), transform,
                                  fold.getResult().getType());
        planner.annotate(op, kSlotAttrName,
                         planner.slot(key, source.getNameAttr(),
                                      fold.getResult().getType(), transform));
        return WalkResult::advance();
      }
      auto quantize = dyn_cast<QuantizeOp>(op);
      if (!quantize)
        return WalkResult::advance();
      auto source = quantize.getInput().getDefiningOp<WeightOp>();
      if (!source)
        return WalkResult::advance(); // activations: no slot
      // Codes and scales the packer computes from the source weight; the
      // codes in panels when the CPU's panel kernels read them.
      int64_t panel =
          weightPanels && panelPackable(quantize) ? kWeightPanelRows : 0;
      // Int4 codes (and their f16 group scales, 16 rows of a group in one
      // load) for linears exist in panels only; the MoE kernels read expert
      // stacks row-major, two codes a byte.
      bool int4 = cast<RankedTensorType>(quantize.getResult().getType())
                      .getElementType()
                      .isInteger(4);
      bool expertStacks =
          llvm::all_of(quantize.getResult().getUsers(),
                       [](Operation *user) { return isa<MoEExpertsOp>(user); });
      if (int4 && !panel && !expertStacks)
        return quantize.emitOpError()
               << "int4 weights are stored in the CPU's panels only: a "
                  "CPU-only artifact, a matrix that only linear layers "
                  "read, with f16 scales in groups [1, 8k]";
      for (auto [part, result, attrName] :
           {std::tuple(QuantizedPart::codes, quantize.getResult(),
                       kSlotAttrName),
            std::tuple(QuantizedPart::scales, quantize.getScale(),
                       kScaleSlotAttrName)}) {
        auto type = cast<RankedTensorType>(result.getType());
        auto transform = QuantizedWeightAttr::get(
            &getContext(), part, quantize.getLayout(), source.getType());
        int64_t partPanel = part == QuantizedPart::codes || int4 ? panel : 0;
        std::string key = slotKey("quantized", source.getName(), transform,
                                  type, partPanel);
        planner.annotate(op, attrName,
                         planner.slot(key, source.getNameAttr(), type,
                                      transform, partPanel));
      }
      return WalkResult::advance();
    });
    if (walk.wasInterrupted())
      return failure();
  }
  return success();
}

void PlanMemoryPass::runOnOperation() {
  ModuleOp module = getOperation();
  SmallVector<func::FuncOp> entries;
  for (auto func : module.getOps<func::FuncOp>()) {
    if (!func->hasAttr(kEntryAttrName)) {
      func.emitOpError("is not an entry point; xfmr compiles modules of "
                       "entry points (func.func with xfmr.entry) only");
      return signalPassFailure();
    }
    if (failed(checkEntrySignature(func)))
      return signalPassFailure();
    entries.push_back(func);
  }
  if (entries.empty()) {
    module.emitError("no entry point (func.func with xfmr.entry) to lower");
    return signalPassFailure();
  }
  ArrayRef<Type> cacheTypes =
      entries.front().getFunctionType().getInputs().drop_front(2);
  for (func::FuncOp func : entries)
    if (func.getFunctionType().getInputs().drop_front(2) != cacheTypes) {
      func.emitOpError("entry points must share one cache layout");
      return signalPassFailure();
    }

  // The runtime accepts token ids below the vocabulary (the logits' width):
  // every embedding table must have a row for each of them.
  int64_t vocab = cast<RankedTensorType>(
                      entries.front().getFunctionType().getResult(0))
                      .getDimSize(1);
  bool tablesCoverVocabulary = true;
  module.walk([&](EmbeddingOp embedding) {
    int64_t rows = embedding.getTable().getType().getDimSize(0);
    if (rows < vocab) {
      embedding.emitOpError()
          << "table has " << rows << " rows but the logits have " << vocab
          << " entries: token ids in [" << rows << ", " << vocab
          << ") would read past the table";
      tablesCoverVocabulary = false;
    }
  });
  if (!tablesCoverVocabulary)
    return signalPassFailure();

  WeightPlanner planner(&getContext());
  if (failed(planWeights(entries, planner)))
    return signalPassFailure();

  // One slot per layer's cache, in entry-argument order.
  SmallVector<CacheSlotAttr> caches;
  int64_t cacheBytes = 0;
  for (Type type : cacheTypes) {
    CacheStorage storage = cacheStorage(type);
    int64_t bytes = storage.bytes;
    cacheBytes = llvm::alignTo(cacheBytes, storage.alignment);
    caches.push_back(CacheSlotAttr::get(&getContext(), cacheBytes, bytes, type));
    cacheBytes = llvm::alignTo(cacheBytes + bytes, kBufferAlignment);
  }

  // Per-expert token counters, after the caches (zeroed with them). The
  // n-th xfmr.moe_experts of every entry point counts into the n-th slot.
  SmallVector<CounterSlotAttr> counters;
  llvm::StringSet<> counterNames;
  entries.front().walk([&](MoEExpertsOp experts) {
    int64_t count = experts.getGateWeight().getType().getDimSize(0);
    std::string name = "moe." + std::to_string(counters.size());
    if (auto named = dyn_cast<NameLoc>(experts.getLoc()))
      name = named.getName().str();
    // Names key the runtime's statistics: keep them unique.
    if (!counterNames.insert(name).second) {
      name += "#" + std::to_string(counters.size());
      counterNames.insert(name);
    }
    counters.push_back(CounterSlotAttr::get(
        &getContext(), StringAttr::get(&getContext(), name), cacheBytes,
        count));
    cacheBytes = llvm::alignTo(cacheBytes + count * 8, kBufferAlignment);
  });
  for (func::FuncOp func : entries) {
    SmallVector<int64_t> sizes;
    func.walk([&](MoEExpertsOp experts) {
      sizes.push_back(experts.getGateWeight().getType().getDimSize(0));
    });
    if (sizes.size() != counters.size() ||
        !llvm::all_of(llvm::zip(sizes, counters), [](auto pair) {
          return std::get<0>(pair) == std::get<1>(pair).getExperts();
        })) {
      func.emitOpError("entry points must have the same MoE layers");
      return signalPassFailure();
    }
  }

  auto toArray = [&](auto slots) {
    return planner.builder.getArrayAttr(
        SmallVector<Attribute>(slots.begin(), slots.end()));
  };
  ArrayAttr weightSlots = toArray(planner.slots);
  ArrayAttr cacheSlots = toArray(caches);
  ArrayAttr counterSlots = toArray(counters);
  module->setAttr(kMemoryPlanAttrName,
                  MemoryPlanAttr::get(&getContext(), weightSlots, cacheSlots,
                                      counterSlots, planner.size, cacheBytes));
  // Hand-written IR may lack the model description the importer writes: its
  // vocabulary is the logits' width, which the artifact manifest needs.
  auto model = module->getAttrOfType<DictionaryAttr>("xfmr.model");
  if (!model || !model.get("vocab_size")) {
    NamedAttrList description(model ? model
                                    : planner.builder.getDictionaryAttr({}));
    description.set("vocab_size", planner.builder.getI64IntegerAttr(vocab));
    module->setAttr("xfmr.model", description.getDictionary(&getContext()));
  }
}

} // namespace
