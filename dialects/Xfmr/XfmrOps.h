//===- XfmrOps.h - types, attributes and ops of xfmr ------------*- C++ -*-===//

#ifndef XFMR_DIALECTS_XFMR_XFMROPS_H
#define XFMR_DIALECTS_XFMR_XFMROPS_H

#include "dialects/Xfmr/XfmrDialect.h"

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/DialectImplementation.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "dialects/Xfmr/XfmrEnums.h.inc"

namespace xfmr {
/// Parses a double-precision attribute parameter (integer or float literal).
mlir::FailureOr<llvm::APFloat> parseF64Parameter(mlir::AsmParser &parser);
/// Formats a double in the shortest form that reads back exactly ("10000.0",
/// "1e-05", "0.707"): for IR and for error messages.
std::string formatF64(double value);
/// Prints a double-precision parameter in the shortest form that reads back
/// exactly.
void printF64Parameter(mlir::AsmPrinter &printer, const llvm::APFloat &value);
} // namespace xfmr

#define GET_ATTRDEF_CLASSES
#include "dialects/Xfmr/XfmrAttrs.h.inc"

#define GET_TYPEDEF_CLASSES
#include "dialects/Xfmr/XfmrTypes.h.inc"

#define GET_OP_CLASSES
#include "dialects/Xfmr/XfmrOps.h.inc"

#endif // XFMR_DIALECTS_XFMR_XFMROPS_H
