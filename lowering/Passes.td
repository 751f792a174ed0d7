//===- Passes.td - xfmr lowering passes --------------------*- tablegen -*-===//

#ifndef XFMR_LOWERING_PASSES_TD
#define XFMR_LOWERING_PASSES_TD

include "mlir/Pass/PassBase.td"

def LowerToKernels : Pass<"xfmr-lower-to-kernels", "::mlir::ModuleOp"> {
  let summary = "Lower xfmr entry points to kernels and a host schedule over buffers";
  let description = [{
    Partitions each model entry point (`xfmr.entry`) into kernels (private
    functions of scf/vector/memref code, one per distinct op configuration)
    and a host-side schedule that binds buffers and calls them, with the
    fixed entry ABI of the artifact:

    ```
    func.func @prefill(%ids: memref<?xi32>, %start: index,
                       %weights: memref<?xi8>, %cache: memref<?xi8>,
                       %logits: memref<?xVxf32>) attributes {llvm.emit_c_interface}
    ```

    Weights become views into one blob at offsets recorded in
    `xfmr.weight_layout`; each layer's KV cache becomes a view into one cache
    buffer (`xfmr.cache_layout`), updated in place. Activations are f32
    buffers allocated per op and freed after their last use.
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::func::FuncDialect",
    "::mlir::math::MathDialect", "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect", "::mlir::vector::VectorDialect"
  ];
}

#endif // XFMR_LOWERING_PASSES_TD
