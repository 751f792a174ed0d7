//===- XfmrDialect.h - the xfmr dialect -------------------------*- C++ -*-===//

#ifndef XFMR_DIALECTS_XFMR_XFMRDIALECT_H
#define XFMR_DIALECTS_XFMR_XFMRDIALECT_H

#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Dialect.h"

#include "dialects/Xfmr/XfmrDialect.h.inc"

namespace xfmr {
/// The function attribute that marks a model entry point; its value is
/// `"prefill"`, `"decode"` or `"mtp"` (DeepSeek-V3 multi-token prediction).
inline constexpr llvm::StringLiteral kEntryAttrName = "xfmr.entry";
} // namespace xfmr

#endif // XFMR_DIALECTS_XFMR_XFMRDIALECT_H
