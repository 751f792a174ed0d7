//===- Passes.td - xfmr passes -----------------------------*- tablegen -*-===//

#ifndef XFMR_PASSES_TD
#define XFMR_PASSES_TD

include "mlir/Pass/PassBase.td"

def FuseSwiGLU : Pass<"xfmr-fuse-swiglu"> {
  let summary = "Fuse silu(gate) * up into xfmr.swiglu";
  let description = [{
    Rewrites `xfmr.mul(xfmr.silu(a), b)` (either operand order) into
    `xfmr.swiglu(a, b)`, so later stages see one gated unit (one fused kernel,
    one pass over memory) instead of two elementwise ops and a temporary.
  }];
  let dependentDialects = ["::xfmr::XfmrDialect"];
}

def AnnotateModelStats : Pass<"xfmr-annotate-model-stats", "::mlir::ModuleOp"> {
  let summary = "Record parameter and KV-cache sizes on each model entry point";
  let description = [{
    For every `func.func` marked `xfmr.entry`, sets `xfmr.weight_bytes`
    (bytes of the distinct weights it reads), `xfmr.parameter_count` and
    `xfmr.kv_cache_bytes_per_token` (summed over the cache arguments). The
    runtime reports these figures in `--stats`.
  }];
}

#endif // XFMR_PASSES_TD
