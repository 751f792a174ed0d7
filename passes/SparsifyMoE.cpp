//===- SparsifyMoE.cpp - dense MoE -> sparse dispatch -----------*- C++ -*-===//
//
// Chooses how each dense xfmr.moe_experts is evaluated: token-by-token top-k
// dispatch for one token (decode), grouped expert GEMMs for many (prefill).
// The op's value does not change; the lowering emits a different kernel.
//
//===----------------------------------------------------------------------===//

#include "dialects/Xfmr/XfmrOps.h"
#include "passes/Passes.h"

#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

using namespace mlir;

namespace xfmr {
#define GEN_PASS_DEF_SPARSIFYMOE
#include "passes/Passes.h.inc"
} // namespace xfmr

using namespace xfmr;

namespace {
struct SparsifyDenseExperts : OpRewritePattern<MoEExpertsOp> {
  SparsifyDenseExperts(MLIRContext *context, MoEDispatch prefill)
      : OpRewritePattern(context), prefill(prefill) {}

  LogicalResult matchAndRewrite(MoEExpertsOp experts,
                                PatternRewriter &rewriter) const override {
    if (experts.getDispatch() != MoEDispatch::dense)
      return rewriter.notifyMatchFailure(experts, "already sparse");
    // One token has nothing to group: its experts each see one row.
    bool singleToken = experts.getInput().getType().getDimSize(0) == 1;
    MoEDispatch dispatch = singleToken ? MoEDispatch::sparse : prefill;
    rewriter.modifyOpInPlace(experts, [&] {
      experts.setDispatchAttr(
          MoEDispatchAttr::get(rewriter.getContext(), dispatch));
    });
    return success();
  }

  MoEDispatch prefill;
};

struct SparsifyMoEPass : xfmr::impl::SparsifyMoEBase<SparsifyMoEPass> {
  using SparsifyMoEBase::SparsifyMoEBase;

  void runOnOperation() override {
    std::optional<MoEDispatch> dispatch = symbolizeMoEDispatch(prefill);
    if (!dispatch || *dispatch == MoEDispatch::dense) {
      emitError(getOperation()->getLoc())
          << "xfmr-sparsify-moe: prefill must be grouped or sparse, got '"
          << prefill << "'";
      return signalPassFailure();
    }
    RewritePatternSet patterns(&getContext());
    populateSparsifyMoEPatterns(patterns, *dispatch);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace

void xfmr::populateSparsifyMoEPatterns(RewritePatternSet &patterns,
                                       MoEDispatch prefill) {
  patterns.add<SparsifyDenseExperts>(patterns.getContext(), prefill);
}
