//===- XfmrDialect.cpp - xfmr dialect registration --------------*- C++ -*-===//

#include "dialects/Xfmr/XfmrDialect.h"
#include "dialects/Xfmr/XfmrOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Interfaces/FunctionInterfaces.h"

using namespace mlir;
using namespace xfmr;

#include "dialects/Xfmr/XfmrDialect.cpp.inc"

void XfmrDialect::initialize() {
  registerAttributes();
  registerTypes();
  addOperations<
#define GET_OP_LIST
#include "dialects/Xfmr/XfmrOps.cpp.inc"
      >();
}

LogicalResult XfmrDialect::verifyOperationAttribute(Operation *op,
                                                    NamedAttribute attr) {
  StringRef name = attr.getName().getValue();
  if (name == kEntryAttrName) {
    // Entry points stay marked down to the LLVM dialect.
    if (!isa<FunctionOpInterface>(op))
      return op->emitError() << "'" << kEntryAttrName
                             << "' may only mark a function";
    auto kind = dyn_cast<StringAttr>(attr.getValue());
    // "step" marks the batched decode that xfmr-lower-to-kernels adds.
    if (!kind || !llvm::is_contained({"prefill", "decode", "mtp", "step"},
                                     kind.getValue()))
      return op->emitError()
             << "'" << kEntryAttrName
             << "' must be \"prefill\", \"decode\", \"mtp\" or \"step\", got "
             << attr.getValue();
    return success();
  }
  // The model description the importer records on the module.
  if (name == "xfmr.model") {
    if (!isa<ModuleOp>(op) || !isa<DictionaryAttr>(attr.getValue()))
      return op->emitError() << "'xfmr.model' must be a dictionary on a module";
    return success();
  }
  // What the module's code is compiled for (the compile driver sets it).
  if (name == "xfmr.target") {
    if (!isa<ModuleOp>(op) || !isa<TargetAttr>(attr.getValue()))
      return op->emitError()
             << "'xfmr.target' must be a #xfmr.target on a module";
    return success();
  }
  // The memory plan of xfmr-plan-memory, and the weight slots it assigns.
  if (name == "xfmr.memory_plan") {
    if (!isa<ModuleOp>(op) || !isa<MemoryPlanAttr>(attr.getValue()))
      return op->emitError()
             << "'xfmr.memory_plan' must be a #xfmr.memory_plan on a module";
    return success();
  }
  if (name == "xfmr.slot" || name == "xfmr.scale_slot") {
    auto index = dyn_cast<IntegerAttr>(attr.getValue());
    if (!index || index.getInt() < 0)
      return op->emitError() << "'" << name
                             << "' must be a non-negative integer (a weight "
                                "slot of xfmr.memory_plan)";
    return success();
  }
  // Statistics recorded by xfmr-annotate-model-stats.
  if (name == "xfmr.weight_bytes" || name == "xfmr.parameter_count" ||
      name == "xfmr.kv_cache_bytes_per_token") {
    if (!isa<IntegerAttr>(attr.getValue()))
      return op->emitError() << "'" << name << "' must be an integer";
    return success();
  }
  return op->emitError() << "unknown xfmr attribute '" << name << "'";
}
