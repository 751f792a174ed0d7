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

/// Int4 expert stacks (xfmr.moe_experts with i4 weights) have f16 scales in
/// groups [1, g] with g a multiple of this: the CPU's expert kernels widen 16
/// codes at a time and scale whole vectors. xfmr-quantize-int4 leaves other
/// groups' experts int8; the lowering refuses them.
inline constexpr int64_t kInt4ExpertGroupMultiple = 16;
} // namespace xfmr

#endif // XFMR_DIALECTS_XFMR_XFMRDIALECT_H
