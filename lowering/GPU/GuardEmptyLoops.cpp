//===- GuardEmptyLoops.cpp - empty loops yield their initial values ---===//
//
// The xfmr-guard-empty-loops pass (Passes.td): every scf.for with results
// runs inside an scf.if on lb < ub whose else branch yields the loop's
// initial values, so a loop that runs zero times returns them even where a
// conversion (SCF to SPIR-V) only stores results from the loop body.
//
//===----------------------------------------------------------------------===//

#include "lowering/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/Builders.h"

namespace xfmr {
#define GEN_PASS_DEF_GUARDEMPTYLOOPS
#include "lowering/Passes.h.inc"
} // namespace xfmr

using namespace mlir;

namespace {

struct GuardEmptyLoops
    : public xfmr::impl::GuardEmptyLoopsBase<GuardEmptyLoops> {
  void runOnOperation() override {
    SmallVector<scf::ForOp> loops;
    getOperation()->walk([&](scf::ForOp loop) {
      if (loop.getNumResults() > 0 && !loop->hasAttr(kGuarded))
        loops.push_back(loop);
    });
    for (scf::ForOp loop : loops)
      guard(loop);
  }

  /// Marks guarded loops, so that running the pass again changes nothing.
  static constexpr llvm::StringLiteral kGuarded = "xfmr_guarded";

  static void guard(scf::ForOp loop) {
    OpBuilder b(loop);
    Location loc = loop.getLoc();
    auto predicate = loop.getUnsignedCmp() ? arith::CmpIPredicate::ult
                                           : arith::CmpIPredicate::slt;
    Value runs = arith::CmpIOp::create(b, loc, predicate, loop.getLowerBound(),
                                       loop.getUpperBound());
    auto branch = scf::IfOp::create(b, loc, loop.getResultTypes(), runs,
                                    /*withElseRegion=*/true);
    loop->replaceAllUsesWith(branch.getResults());
    Block &then = branch.getThenRegion().front();
    loop->moveBefore(&then, then.end());
    b.setInsertionPointToEnd(&then);
    scf::YieldOp::create(b, loc, loop.getResults());
    b.setInsertionPointToEnd(&branch.getElseRegion().front());
    scf::YieldOp::create(b, loc, loop.getInitArgs());
    loop->setAttr(kGuarded, b.getUnitAttr());
  }
};

} // namespace
