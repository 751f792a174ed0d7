//===- ModelInfo.cpp - the sizes the code is compiled for -----------------===//

#include "lowering/Artifact/ModelInfo.h"
#include "lowering/Common/MemoryPlan.h"

#include "dialects/Xfmr/XfmrOps.h"
#include "xfmr/runtime/ArtifactFormat.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/Builders.h"

#include <climits>

using namespace mlir;
using namespace xfmr;

int64_t xfmr::intAttr(DictionaryAttr dict, StringRef name) {
  auto attr = dict ? dict.getAs<IntegerAttr>(name) : IntegerAttr();
  return attr ? attr.getInt() : 0;
}

llvm::Expected<ModelSizes> xfmr::readModelSizes(ModuleOp module) {
  auto model = module->getAttrOfType<DictionaryAttr>("xfmr.model");
  MemoryPlanAttr plan = getMemoryPlan(module);
  if (!plan)
    return llvm::createStringError(
        "the module has no memory plan (run xfmr-plan-memory first)");
  ModelSizes sizes;
  // xfmr-plan-memory records the vocabulary (the logits' width) even for
  // hand-written IR.
  sizes.vocabSize = intAttr(model, "vocab_size");
  if (sizes.vocabSize <= 0 || sizes.vocabSize > INT32_MAX)
    return llvm::createStringError(
        "cannot tell the vocabulary size: the module has no valid xfmr.model "
        "vocab_size (run xfmr-plan-memory first)");
  // Positions are bounded by the smallest cache (unbounded without caches,
  // which the runtime caps at 2^30) and by what the model says.
  int64_t capacity = int64_t(1) << 30;
  for (CacheSlotAttr slot : plan.getCacheSlots()) {
    Type type = slot.getType();
    capacity = std::min(capacity, isa<LatentCacheType>(type)
                                      ? cast<LatentCacheType>(type).getCapacity()
                                      : cast<KVCacheType>(type).getCapacity());
  }
  int64_t declared = intAttr(model, "context_length");
  sizes.contextLength = declared > 0 ? std::min(declared, capacity) : capacity;
  // Evicting caches (xfmr-compress-kv-cache window/sinks) bound memory, not
  // positions; the runtime splits calls that would wrap the ring.
  sizes.kvWindow = intAttr(model, "kv_window");
  sizes.kvSinks = intAttr(model, "kv_sinks");
  if (sizes.kvWindow > 0)
    sizes.contextLength = INT32_MAX;
  if (sizes.contextLength <= 0 || sizes.contextLength > INT32_MAX)
    return llvm::createStringError("the context length " +
                                   std::to_string(sizes.contextLength) +
                                   " is outside [1, 2147483647]");
  sizes.weightsBytes = 0;
  for (WeightSlotAttr slot : plan.getWeightSlots())
    sizes.weightsBytes =
        std::max(sizes.weightsBytes, slot.getOffset() + slot.getBytes());
  sizes.kvCacheBytes = plan.getCacheBytes();
  return sizes;
}

llvm::Error xfmr::addModelInfo(ModuleOp module, const ModelSizes &sizes,
                               StringRef cpu, StringRef features) {
  MLIRContext *context = module.getContext();
  // The runtime calls both: prefill for prompts, decode for each new token.
  for (StringRef kind : {"prefill", "decode"})
    if (!module.lookupSymbol<LLVM::LLVMFuncOp>(("_mlir_ciface_" + kind).str()))
      return llvm::createStringError(
          "the model has no '" + kind.str() +
          "' entry point; an artifact needs both prefill and decode");
  Location loc = module.getLoc();
  OpBuilder b = OpBuilder::atBlockEnd(module.getBody());
  Type i32 = b.getI32Type(), i64 = b.getI64Type();
  auto ptr = LLVM::LLVMPointerType::get(context);
  // NUL-terminated strings for the target.
  auto string = [&](StringRef name, StringRef text) {
    std::string bytes = text.str();
    bytes.push_back('\0');
    auto type = LLVM::LLVMArrayType::get(b.getI8Type(), bytes.size());
    LLVM::GlobalOp::create(b, loc, type, /*isConstant=*/true,
                           LLVM::Linkage::Internal, name,
                           b.getStringAttr(bytes));
  };
  string("xfmr_target_cpu", cpu);
  string("xfmr_target_features", features);
  // The field order of artifact::ModelInfo.
  auto type = LLVM::LLVMStructType::getLiteral(
      context,
      {i32, i32, i64, i64, i64, i64, i64, i64, ptr, ptr, ptr, ptr, ptr});
  auto global = LLVM::GlobalOp::create(b, loc, type, /*isConstant=*/true,
                                       LLVM::Linkage::External,
                                       artifact::kModelInfoSymbol, Attribute());
  b.setInsertionPointToStart(b.createBlock(&global.getInitializerRegion()));
  Value info = LLVM::UndefOp::create(b, loc, type);
  int64_t position = 0;
  auto insert = [&](Value field) {
    info = LLVM::InsertValueOp::create(b, loc, info, field, position++);
  };
  auto constant = [&](Type fieldType, int64_t value) {
    insert(LLVM::ConstantOp::create(b, loc, fieldType,
                                    b.getIntegerAttr(fieldType, value)));
  };
  constant(i32, artifact::kModelAbiVersion);
  constant(i32, sizeof(artifact::ModelInfo));
  constant(i64, sizes.vocabSize);
  constant(i64, sizes.contextLength);
  constant(i64, sizes.kvCacheBytes);
  constant(i64, sizes.weightsBytes);
  constant(i64, sizes.kvWindow);
  constant(i64, sizes.kvSinks);
  for (StringRef symbol : {"_mlir_ciface_prefill", "_mlir_ciface_decode",
                           "xfmr_target_cpu", "xfmr_target_features"})
    insert(LLVM::AddressOfOp::create(b, loc, ptr, symbol));
  // The batched decode, when the lowering made one (null otherwise).
  if (module.lookupSymbol<LLVM::LLVMFuncOp>("_mlir_ciface_batch_step"))
    insert(LLVM::AddressOfOp::create(b, loc, ptr, "_mlir_ciface_batch_step"));
  else
    insert(LLVM::ZeroOp::create(b, loc, ptr));
  LLVM::ReturnOp::create(b, loc, info);
  return llvm::Error::success();
}
