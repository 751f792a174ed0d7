//===- XfmrAttrs.td - attributes of the xfmr dialect ------*- tablegen -*-===//

#ifndef XFMR_ATTRS_TD
#define XFMR_ATTRS_TD

include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"
include "dialects/Xfmr/XfmrDialect.td"
include "dialects/Xfmr/XfmrEnums.td"

class Xfmr_Attr<string name, string attrMnemonic, list<Trait> traits = []>
    : AttrDef<Xfmr_Dialect, name, traits> {
  let mnemonic = attrMnemonic;
}

/// A double-precision parameter, printed in its shortest exact form.
class F64Parameter<string desc, string default> : APFloatParameter<desc> {
  let parser = "::xfmr::parseF64Parameter($_parser)";
  let printer = "::xfmr::printF64Parameter($_printer, $_self)";
  let defaultValue = "::llvm::APFloat(" # default # ")";
}

class RequiredF64Parameter<string desc> : APFloatParameter<desc> {
  let parser = "::xfmr::parseF64Parameter($_parser)";
  let printer = "::xfmr::printF64Parameter($_printer, $_self)";
}

class DefaultEnumParameter<EnumAttrInfo info, string default>
    : EnumParameter<info> {
  let defaultValue = default;
}

def Xfmr_RopeAttr : Xfmr_Attr<"Rope", "rope"> {
  let summary = "rotary position embedding configuration";
  let description = [{
    Everything needed to compute the rotation angles of RoPE. `theta` is the
    base; `style` says which channels form a pair (`rotate_half`: x[i] with
    x[i + d/2], as in Hugging Face Llama; `interleaved`: x[2i] with x[2i+1], as
    in DeepSeek's reference code). Only the channels
    `[rotary_offset, rotary_offset + rotary_dim)` of each head rotate
    (`rotary_dim = 0` means the whole head). `scaling` selects a context
    extension: `linear` divides positions by `factor`; `llama3` rescales low
    frequencies with `low_freq_factor`/`high_freq_factor` around
    `original_max_positions`; `yarn` blends interpolated and extrapolated
    frequencies between `beta_fast` and `beta_slow` and multiplies cos/sin by
    `mscale(factor, mscale) / mscale(factor, mscale_all_dim)`.

    `theta` is required; other parameters equal to their default are omitted
    when printing:
    ```mlir
    #xfmr.rope<theta = 10000.0>
    #xfmr.rope<theta = 10000.0, style = interleaved, rotary_dim = 64,
               rotary_offset = 128, scaling = yarn, factor = 40.0,
               original_max_positions = 4096, mscale_all_dim = 1.0>
    ```
  }];
  let parameters = (ins
    RequiredF64Parameter<"base of the rotation frequencies">:$theta,
    DefaultEnumParameter<Xfmr_RopeStyle, "::xfmr::RopeStyle::rotate_half">:$style,
    DefaultValuedParameter<"int64_t", "0", "rotated channels per head (0: all)">:$rotary_dim,
    DefaultValuedParameter<"int64_t", "0", "first rotated channel">:$rotary_offset,
    DefaultEnumParameter<Xfmr_RopeScaling, "::xfmr::RopeScalingKind::none">:$scaling,
    F64Parameter<"context extension factor", "1.0">:$factor,
    DefaultValuedParameter<"int64_t", "0", "pre-extension context length">:$original_max_positions,
    F64Parameter<"llama3 low frequency factor", "1.0">:$low_freq_factor,
    F64Parameter<"llama3 high frequency factor", "4.0">:$high_freq_factor,
    F64Parameter<"YaRN fast boundary (rotations)", "32.0">:$beta_fast,
    F64Parameter<"YaRN slow boundary (rotations)", "1.0">:$beta_slow,
    F64Parameter<"YaRN magnitude scale", "1.0">:$mscale,
    F64Parameter<"YaRN magnitude scale over all dims", "0.0">:$mscale_all_dim
  );
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// YaRN's attention-magnitude correction 0.1 * m * ln(factor) + 1 (1 when
    /// the factor is <= 1), as DeepSeek's reference `yarn_get_mscale`.
    static double yarnMscale(double factor, double m);
  }];
}

def Xfmr_ScaleLayoutAttr : Xfmr_Attr<"ScaleLayout", "scale_layout"> {
  let summary = "how quantization scales tile a tensor";
  let description = [{
    The layout of the scale tensor that goes with a quantized tensor of shape
    `[..., M, N]`:
    - `per_tensor`: one scale, `tensor<f32>`;
    - `per_channel`: one scale per row (output channel of a weight, token of an
      activation), `tensor<...xMxf32>`;
    - `block [bm, bn]`: one scale per bm x bn tile, `tensor<...x ceil(M/bm) x
      ceil(N/bn) x f32>`; edge tiles are partial. DeepSeek-V3 weights use
      `block [128, 128]`, its activations `block [1, 128]`.
    ```mlir
    #xfmr.scale_layout<per_tensor>
    #xfmr.scale_layout<block [128, 128]>
    ```
  }];
  let parameters = (ins
    EnumParameter<Xfmr_ScaleKind>:$kind,
    OptionalArrayRefParameter<"int64_t", "block sizes [bm, bn]">:$block
  );
  let assemblyFormat = "`<` $kind (` ` `[` $block^ `]`)? `>`";
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// The scale tensor shape for a quantized tensor of shape `shape`
    /// (dynamic dimensions stay dynamic).
    ::llvm::SmallVector<int64_t> scaleShape(::llvm::ArrayRef<int64_t> shape) const;
  }];
}

def Xfmr_TargetAttr : Xfmr_Attr<"Target", "target"> {
  let summary = "what a module's code is compiled for";
  let description = [{
    The module attribute `xfmr.target`: the back end (`kind`: `cpu` today;
    `cuda`, `rocm`, `vulkan` later), the LLVM target triple, the chip (an
    LLVM CPU name such as `znver4`, later `sm_90a` or `gfx942`) and the ISA
    features the code may use (LLVM's `+feature` list), and on AArch64 the
    SVE vector length the code assumes (`sve_bits`, omitted when 0: any
    length). The compile driver sets it from `--target`, `--cpu` and
    `--sve-bits`; kernel lowering picks kernels by it.
    ```mlir
    module attributes {xfmr.target = #xfmr.target<kind = "cpu",
        triple = "x86_64-pc-linux-gnu", chip = "znver4",
        features = "+avx2,+avx512bf16,+avx512f,+fma">} { ... }
    ```
  }];
  let parameters = (ins
    StringRefParameter<"back end kind">:$kind,
    StringRefParameter<"LLVM target triple">:$triple,
    StringRefParameter<"chip: LLVM CPU or GPU name">:$chip,
    StringRefParameter<"comma-separated +feature list", "\"\"">:$features,
    DefaultValuedParameter<"int64_t", "0",
        "AArch64: the SVE vector length in bits the code is specialized for "
        "(256 or 512); 0: none (any length, NEON kernels)">:$sve_bits
  );
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// Whether `features` lists `+feature`.
    bool hasFeature(::llvm::StringRef feature) const;
  }];
}

//===----------------------------------------------------------------------===//
// The memory plan (xfmr-plan-memory)
//===----------------------------------------------------------------------===//

def Xfmr_QuantizedWeightAttr : Xfmr_Attr<"QuantizedWeight", "quantized_weight"> {
  let summary = "a weight slot computed at compile time: FP8 codes or scales";
  let description = [{
    The slot holds the `part` (codes or scales) of checkpoint weight
    `source_type` quantized with `layout`, as `xfmr.quantize` of an
    `xfmr.weight` describes it; the artifact packer computes it.
    ```mlir
    #xfmr.quantized_weight<part = codes, layout = #xfmr.scale_layout<block [128, 128]>,
                           source_type = tensor<256x256xbf16>>
    ```
  }];
  let parameters = (ins
    EnumParameter<Xfmr_QuantizedPart>:$part,
    "ScaleLayoutAttr":$layout,
    "::mlir::Type":$source_type
  );
  let assemblyFormat = "`<` struct(params) `>`";
}

def Xfmr_FoldedWeightAttr : Xfmr_Attr<"FoldedWeight", "folded_weight"> {
  let summary = "a weight slot computed at compile time: a folded MLA product";
  let description = [{
    The slot holds `xfmr.fold_mla_weight` of the checkpoint weight
    `source_type` (and of `kv_b`, the MLA up-projection, when the product
    needs it), for the given head shape; the artifact packer computes it in
    double precision.
  }];
  let parameters = (ins
    EnumParameter<Xfmr_MLAFold>:$kind,
    "int64_t":$heads,
    "int64_t":$nope,
    "int64_t":$rope,
    "int64_t":$value_dim,
    "::mlir::Type":$source_type,
    OptionalParameter<"::mlir::StringAttr">:$kv_b,
    OptionalParameter<"::mlir::Type">:$kv_b_type
  );
  let assemblyFormat = "`<` struct(params) `>`";
}

def Xfmr_WeightSlotAttr : Xfmr_Attr<"WeightSlot", "weight_slot"> {
  let summary = "where one weight lives in the weight blob";
  let description = [{
    `bytes` bytes at `offset` of the artifact's weight blob hold `type`
    (element type as stored: FP8 stays one byte per element). `source` names
    the checkpoint tensor they come from; a `*` in it stands for the indices
    `0, 1, ...` of tensors stacked in order (MoE experts). Without a
    `transform` the bytes are the checkpoint's; with one
    (`#xfmr.quantized_weight`, `#xfmr.folded_weight`) the packer computes
    them. A nonzero `panel` stores a matrix `[rows, cols]` in the layout of
    the CPU's dot-product microkernels: panels of `panel` rows, each column
    pair of a panel's rows together, `[ceil(rows / panel)][ceil(cols / 2)]
    [panel][2]`, zero-padded (`bytes` counts the padding).
    ```mlir
    #xfmr.weight_slot<source = "model.norm.weight", offset = 0, bytes = 256,
                      type = tensor<64xf32>>
    #xfmr.weight_slot<source = "w", offset = 256, bytes = 16384,
                      type = tensor<64x128xbf16>, panel = 64>
    ```
  }];
  let parameters = (ins
    "::mlir::StringAttr":$source,
    "int64_t":$offset,
    "int64_t":$bytes,
    "::mlir::Type":$type,
    OptionalParameter<"::mlir::Attribute">:$transform,
    DefaultValuedParameter<"int64_t", "0">:$panel
  );
  let assemblyFormat = "`<` struct(params) `>`";
}

def Xfmr_CacheSlotAttr : Xfmr_Attr<"CacheSlot", "cache_slot"> {
  let summary = "where one layer's cache lives in the cache blob";
  let description = [{
    `bytes` bytes at `offset` of the cache blob hold one layer's cache of
    `type` (`!xfmr.kv_cache` or `!xfmr.latent_cache`); how its parts are laid
    out inside the slot follows from the type (CacheStorage in
    lowering/Common/MemoryPlan.h).
  }];
  let parameters = (ins
    "int64_t":$offset,
    "int64_t":$bytes,
    "::mlir::Type":$type
  );
  let assemblyFormat = "`<` struct(params) `>`";
}

def Xfmr_CounterSlotAttr : Xfmr_Attr<"CounterSlot", "counter_slot"> {
  let summary = "per-expert token counters of one MoE layer";
  let description = [{
    `experts` int64 counters at `offset` of the cache blob (zeroed with the
    caches) that the MoE layer `name` increments for every token routed to
    each expert.
  }];
  let parameters = (ins
    "::mlir::StringAttr":$name,
    "int64_t":$offset,
    "int64_t":$experts
  );
  let assemblyFormat = "`<` struct(params) `>`";
}

def Xfmr_MemoryPlanAttr : Xfmr_Attr<"MemoryPlan", "memory_plan"> {
  let summary = "the buffers an artifact's code reads and writes";
  let description = [{
    Decided once, for every target, by `xfmr-plan-memory`: the weight blob
    (`weight_bytes`, one slot per distinct stored weight), the cache blob
    (`cache_bytes`: one slot per layer's cache in entry-argument order, then
    the MoE counters). Ops that read a weight slot carry its index as
    `xfmr.slot` (and `xfmr.scale_slot` for the scales of a quantized weight).
    The module holds the plan as `xfmr.memory_plan`; kernel lowering and the
    artifact writer read it.
  }];
  // Arrays of the slot attributes (checked by the verifier).
  let parameters = (ins
    "::mlir::ArrayAttr":$weights,
    "::mlir::ArrayAttr":$caches,
    "::mlir::ArrayAttr":$counters,
    "int64_t":$weight_bytes,
    "int64_t":$cache_bytes
  );
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    auto getWeightSlots() const { return getWeights().getAsRange<WeightSlotAttr>(); }
    auto getCacheSlots() const { return getCaches().getAsRange<CacheSlotAttr>(); }
    auto getCounterSlots() const { return getCounters().getAsRange<CounterSlotAttr>(); }
  }];
}

#endif // XFMR_ATTRS_TD
