//===- Passes.td - xfmr lowering passes --------------------*- tablegen -*-===//

#ifndef XFMR_LOWERING_PASSES_TD
#define XFMR_LOWERING_PASSES_TD

include "mlir/Pass/PassBase.td"

def PlanMemory : Pass<"xfmr-plan-memory", "::mlir::ModuleOp"> {
  let summary = "Plan the weight and cache blobs, once for every target";
  let description = [{
    Decides where every stored weight lives in the weight blob (checkpoint
    tensors, FP8 codes and scales computed at compile time, folded MLA
    products: one slot each, deduplicated, 64-byte aligned), where each
    layer's cache lives in the cache blob (in entry-argument order), and
    where each MoE layer's per-expert token counters go (after the caches).
    The plan is the module attribute `xfmr.memory_plan`
    (`#xfmr.memory_plan<...>`); every op that reads a weight slot gets its
    index as `xfmr.slot` (`xfmr.scale_slot` for a quantized weight's
    scales). Kernel lowering and the artifact writer read the plan; nothing
    re-derives it.

    Also checks what every back end relies on: entry points with the
    importer's signature `(ids, start, caches...) -> (logits, caches...)`,
    one cache layout for all of them, the same MoE layers, and embedding
    tables with a row for every token id below the vocabulary.

    With `weight-panels` (CPU-only artifacts), bf16 matrices that only
    linear layers read, and the FP8 codes of weights quantized at compile
    time in blocks of whole panels, are stored in panels of 64 rows
    (`panel = 64` on their slot), the layout of the CPU's dot-product
    microkernels; packing them is part of the plan, so xfmr-pack does it
    too.
  }];
  let options = [
    Option<"weightPanels", "weight-panels", "bool", "false",
           "Store bf16 linear weights in the CPU microkernels' panels">
  ];
}

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

    Weights become views into one blob and each layer's cache a view into one
    cache buffer (updated in place), at the offsets of the module's
    `xfmr.memory_plan` (run `xfmr-plan-memory` first). Activations are f32
    buffers allocated per op and freed after their last use.

    With `step` (the default) the decode entry is lowered a second time as
    `@batch_step` (entry kind "step"), which runs several sequences in one
    call: its second argument is `memref<?x4xi64>`, one row per sequence (first token row, token
    count, start position, byte offset of its cache blob in the cache
    buffer). Row-wise ops run once over all tokens; RoPE, cache writes and
    attention loop over the sequences.

    Linear layers whose weight is stored in panels multiply bf16 activations
    (rounded to nearest even), as PyTorch and llama.cpp do on CPUs with bf16
    dot products; `precise` keeps them f32.

    With `max-binding-bytes`, an embedding table or linear weight larger
    than that is split by rows over several launches, each reading a view
    within the limit: the embedding launch of rows [r0, r1) writes the
    tokens whose ids fall there, the linear launch writes its window of the
    output's columns. Vulkan binds at most `maxStorageBufferRange` bytes of
    a buffer per kernel parameter, 2^27 on many devices.
  }];
  let options = [
    Option<"precise", "precise", "bool", "false",
           "Keep f32 inputs in linear layers with panel weights">,
    Option<"step", "step", "bool", "true",
           "Also lower the decode entry as @batch_step (several sequences per call)">,
    Option<"maxBindingBytes", "max-binding-bytes", "int64_t", "0",
           "Split embedding tables and linear weights larger than this many bytes "
           "over several launches (0: never; Vulkan: 2^27, the storage-buffer "
           "range every device binds)">
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::func::FuncDialect",
    "::mlir::math::MathDialect", "::mlir::memref::MemRefDialect",
    "::mlir::scf::SCFDialect", "::mlir::vector::VectorDialect",
    "::mlir::gpu::GPUDialect", "::mlir::x86vector::X86VectorDialect",
    "::mlir::LLVM::LLVMDialect"
  ];
}

def GuardEmptyLoops : Pass<"xfmr-guard-empty-loops"> {
  let summary = "Guard loops with results so that an empty loop yields its inits";
  let description = [{
    Rewrites every `scf.for` with loop-carried values into

    ```
    %r = scf.if (lb < ub) { %f = scf.for ...; scf.yield %f } else { scf.yield %inits }
    ```

    MLIR's SCF-to-SPIR-V conversion (LLVM 22) returns a loop's results
    through function variables that only the loop body stores to: a loop
    that runs zero times returns undefined values, not its initial ones
    (lavapipe reads zeros). The GPU kernels' strided loops run zero times
    on some threads whenever a count is not a multiple of the workgroup, so
    the Vulkan back end runs this pass on the kernels before the
    conversion.
  }];
  let dependentDialects = ["::mlir::scf::SCFDialect",
                           "::mlir::arith::ArithDialect"];
}

#endif // XFMR_LOWERING_PASSES_TD
