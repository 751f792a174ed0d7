//===- Passes.h - xfmr passes -----------------------------------*- C++ -*-===//

#ifndef XFMR_PASSES_PASSES_H
#define XFMR_PASSES_PASSES_H

#include "dialects/Xfmr/XfmrOps.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Pass/Pass.h"

namespace xfmr {

#define GEN_PASS_DECL
#include "passes/Passes.h.inc"

/// silu(gate) * up -> swiglu(gate, up).
void populateFuseSwiGLUPatterns(mlir::RewritePatternSet &patterns);

/// add(moe_experts, shared SwiGLU) -> moe_experts with shared(...).
void populateFuseSharedExpertsPatterns(mlir::RewritePatternSet &patterns);

/// Why xfmr-quantize-int8 and -int4 leave `weight` as it is ("" when they
/// quantize it): only f32, bf16 and f16 weights whose names match no entry
/// of `keep` are quantized.
llvm::StringRef whyKeptForIntegerCodes(WeightOp weight,
                                       llvm::ArrayRef<std::string> keep);

/// xfmr-quantize-int8's rewrites (W8A8 linears and routed experts), keeping
/// weights whose names contain one of `keep`.
void populateQuantizeInt8Patterns(mlir::RewritePatternSet &patterns,
                                  llvm::ArrayRef<std::string> keep);

/// Dense xfmr.moe_experts -> sparse (one token) or `prefill` dispatch.
void populateSparsifyMoEPatterns(mlir::RewritePatternSet &patterns,
                                 MoEDispatch prefill);

#define GEN_PASS_REGISTRATION
#include "passes/Passes.h.inc"

} // namespace xfmr

#endif // XFMR_PASSES_PASSES_H
