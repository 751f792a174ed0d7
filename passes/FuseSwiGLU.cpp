//===- FuseSwiGLU.cpp - silu(gate) * up -> swiglu ---------------*- C++ -*-===//

#include "dialects/Xfmr/XfmrOps.h"
#include "passes/Passes.h"

#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

using namespace mlir;

namespace xfmr {
#define GEN_PASS_DEF_FUSESWIGLU
#include "passes/Passes.h.inc"
} // namespace xfmr

using namespace xfmr;

namespace {
struct FuseMulOfSilu : OpRewritePattern<MulOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(MulOp mul,
                                PatternRewriter &rewriter) const override {
    // mul is commutative: the silu may sit on either side.
    for (auto [gateSide, upSide] :
         {std::pair(mul.getLhs(), mul.getRhs()),
          std::pair(mul.getRhs(), mul.getLhs())}) {
      auto silu = gateSide.getDefiningOp<SiluOp>();
      if (!silu)
        continue;
      rewriter.replaceOpWithNewOp<SwiGLUOp>(mul, mul.getType(),
                                            silu.getInput(), upSide);
      return success();
    }
    return rewriter.notifyMatchFailure(mul, "no silu operand");
  }
};

struct FuseSwiGLUPass : xfmr::impl::FuseSwiGLUBase<FuseSwiGLUPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    populateFuseSwiGLUPatterns(patterns);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};
} // namespace

void xfmr::populateFuseSwiGLUPatterns(RewritePatternSet &patterns) {
  patterns.add<FuseMulOfSilu>(patterns.getContext());
}
