//===- XfmrDialect.cpp - xfmr dialect registration --------------*- C++ -*-===//

#include "dialects/Xfmr/XfmrDialect.h"
#include "dialects/Xfmr/XfmrOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"

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
    if (!isa<func::FuncOp>(op))
      return op->emitError() << "'" << kEntryAttrName
                             << "' may only mark a func.func";
    auto kind = dyn_cast<StringAttr>(attr.getValue());
    if (!kind || (kind.getValue() != "prefill" && kind.getValue() != "decode"))
      return op->emitError() << "'" << kEntryAttrName
                             << "' must be \"prefill\" or \"decode\", got "
                             << attr.getValue();
    return success();
  }
  // The model description the importer records on the module.
  if (name == "xfmr.model") {
    if (!isa<ModuleOp>(op) || !isa<DictionaryAttr>(attr.getValue()))
      return op->emitError() << "'xfmr.model' must be a dictionary on a module";
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
