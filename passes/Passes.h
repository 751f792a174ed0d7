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

/// The per-token int8 quantize/dequantize pair of a [tokens, in] `input`
/// (W8A8's activations, which the CPU lowering fuses into the integer
/// products); returns the dequantized value.
mlir::Value quantizeTokensInt8(mlir::PatternRewriter &rewriter,
                               mlir::Location loc, mlir::Value input);

/// Why `experts` cannot have its routed stacks quantized ("" when it can):
/// already quantized, a fused shared expert, stacks that are not checkpoint
/// weights or whose names `keep` matches.
llvm::StringRef whyExpertsKept(MoEExpertsOp experts,
                               llvm::ArrayRef<std::string> keep);

/// Replaces `experts` by the same experts over stacks quantized to
/// `codeType` codes with `scaleType` scales in `layout`, their input and
/// each expert's SwiGLU output quantized to int8 per token.
void replaceWithQuantizedExperts(mlir::PatternRewriter &rewriter,
                                 MoEExpertsOp experts, mlir::Type codeType,
                                 mlir::Type scaleType, ScaleLayoutAttr layout);

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
