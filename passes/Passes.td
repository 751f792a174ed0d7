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

def QuantizeFP8 : Pass<"xfmr-quantize-fp8"> {
  let summary = "Quantize linear weights to FP8 with block scales (DeepSeek-V3 recipe)";
  let description = [{
    Rewrites every `xfmr.linear` whose weight is an f32/bf16/f16
    `xfmr.weight` (and the stacked weights of `xfmr.moe_experts`, and MLA's
    `kv_b` weight) into an FP8 linear: the weight goes through
    `xfmr.quantize` with a block scale layout (128 x 128 by default; 1 x in
    per output channel; out x in per tensor), which the compiler evaluates
    at compile time, so the artifact holds FP8 bytes and f32 scales. With
    `activations`, each linear's input is quantized dynamically per token in
    groups of `activation-group` channels (`xfmr.quantize` +
    `xfmr.dequantize`), so the matmul multiplies FP8 values and accumulates
    in f32. Weights whose name contains one of `keep` stay in high precision
    (default: the embedding and the LM head; norms and the MoE router are
    not linears and are never quantized). Routed experts are quantized
    like linears: their stacked weights, and with `activations` their
    input and (`activation_group`) each expert's SwiGLU output. Linears whose weights are already
    FP8 (native FP8 checkpoints) only get activation quantization.
  }];
  let options = [
    Option<"granularity", "granularity", "std::string", "\"block\"",
           "Weight scales: block (block-rows x block-cols), channel, tensor">,
    Option<"blockRows", "block-rows", "int64_t", "128", "Weight block rows">,
    Option<"blockCols", "block-cols", "int64_t", "128", "Weight block columns">,
    Option<"activations", "activations", "bool", "true",
           "Also quantize linear inputs dynamically (per token, per group)">,
    Option<"activationGroup", "activation-group", "int64_t", "128",
           "Channels per activation scale">,
    Option<"format", "format", "std::string", "\"e4m3fn\"",
           "FP8 format: e4m3fn (NVIDIA, CPU) or e4m3fnuz (AMD MI300)">,
    ListOption<"keep", "keep", "std::string",
               "Weight-name substrings kept in high precision "
               "(default: embed_tokens, lm_head)">
  ];
  let dependentDialects = ["::xfmr::XfmrDialect"];
}

def QuantizeInt8 : Pass<"xfmr-quantize-int8"> {
  let summary = "Quantize linears to int8 weights and int8 activations (W8A8)";
  let description = [{
    Rewrites every `xfmr.linear` whose weight is an f32/bf16/f16
    `xfmr.weight` into a W8A8 linear: the weight goes through
    `xfmr.quantize` to i8 codes with one f32 scale per output channel
    (block [1, in]), evaluated at compile time, and the input through an
    `xfmr.quantize` + `xfmr.dequantize` pair with one scale per token (block
    [1, in]). Scales are max-abs / 127 and codes round to nearest even, so
    a product is an exact integer sum times the two scales. On CPUs the
    lowering multiplies the codes with VNNI dot products (`vpdpbusd`).
    Routed experts (`xfmr.moe_experts` without a fused shared expert) are
    quantized the same way: each expert's weight rows get a scale (one block
    as wide as the widest row of the three stacks), the input one per token,
    and each expert's SwiGLU output one per token (`activation_group` = the
    intermediate size). Weights whose name contains one of `keep` stay as
    they are (default: the embedding and the LM head); so do linears and
    experts whose weights or input are already quantized, inputs wider than
    65536 (their int32 sums could overflow) and MLA's `kv_b`.
  }];
  let options = [
    ListOption<"keep", "keep", "std::string",
               "Weight-name substrings kept in high precision "
               "(default: embed_tokens, lm_head)">
  ];
  let dependentDialects = ["::xfmr::XfmrDialect"];
}

def QuantizeInt4 : Pass<"xfmr-quantize-int4"> {
  let summary = "Quantize linears to group-wise int4 weights and int8 activations";
  let description = [{
    Rewrites every `xfmr.linear` whose weight is an f32/bf16/f16
    `xfmr.weight` into a W4A8 linear (llama.cpp's Q4_0 x Q8_0, MLC's q4f16):
    the weight goes through `xfmr.quantize` to i4 codes with one f16 scale
    per output channel and group of `group` inputs (block [1, group]),
    evaluated at compile time as llama.cpp's Q4_0 does: scale = f16(m / -8)
    for m the group's first value of the largest magnitude (a negative scale
    for a positive m), codes = round_even(w / scale) in [-8, 7], so m is
    code -8 and all 16 levels are used. The input goes through an
    `xfmr.quantize` + `xfmr.dequantize` pair to i8 codes with one scale per
    token (block [1, in]), as xfmr-quantize-int8 does. Each group's product
    is an exact integer sum; the sums are scaled by their group's weight
    scale and added in f32, then scaled by the token's. The CPU lowering
    multiplies the codes with VNNI (`vpdpbusd`) or AArch64 dot products
    (`sdot`, `usdot`); int4 weights are read by the CPU's kernels only
    (linears in panels), so only CPU-only artifacts have them. Routed expert stacks
    (`xfmr.moe_experts`) get the same group scales and int8 input and SwiGLU
    output per token (`activation_group`) when the group is a multiple of 16
    (the expert kernels scale each 16-weight vector as they load it), else
    xfmr-quantize-int8's W8A8. The LM head (`lm_head`) is W8A8 int8 by
    default (`head=int8`: xfmr-quantize-int8's rewrite); `head=int4`
    quantizes the head like the other linears, `head=keep` keeps it. A tied LM head (a linear reading the table an
    `xfmr.embedding` reads) is quantized as `head` says too, from a copy of
    the table: the embedding keeps it, and decode reads the head's codes.
    Weights whose name contains one of `keep` stay as they are (default: the
    embedding); so do linears whose weights or input are already quantized
    and MLA's `kv_b`.
  }];
  let options = [
    Option<"group", "group", "int64_t", "32",
           "Inputs per weight scale: a multiple of 8 (default 32)">,
    Option<"head", "head", "std::string", "\"int8\"",
           "The LM head: int8 (W8A8, default), int4 or keep">,
    Option<"experts", "experts", "std::string", "\"int4\"",
           "Routed expert stacks: int4 (default; int8 when the group is no "
           "multiple of 16) or int8 (W8A8: faster prefill, twice the bytes)">,
    ListOption<"keep", "keep", "std::string",
               "Weight-name substrings kept in high precision "
               "(default: embed_tokens)">
  ];
  let dependentDialects = ["::xfmr::XfmrDialect"];
}

def CompressKVCache : Pass<"xfmr-compress-kv-cache", "::mlir::ModuleOp"> {
  let summary = "Store the KV caches in a narrower element type (bf16, fp8, int8)";
  let description = [{
    Changes the element type of every `!xfmr.kv_cache` in the module: entry
    point arguments and results and the attention ops that read and append
    to them. `bf16` halves the cache; `fp8` (E4M3FN) and `int8` quarter it,
    with one f32 scale per token, head and key/value computed from the
    max-abs of the entry when it is written (fp8: max-abs / 448, int8:
    max-abs / 127, rounding to nearest even). Attention reads the codes and
    applies the scales; queries and the softmax stay f32. MLA latent caches
    (after `xfmr-absorb-mla`) get the element type too; 8-bit latents are
    stored FlashMLA-style, with one scale per 128 latent channels and `k_pe`
    in bf16 (see `!xfmr.latent_cache`).

    With `window=W` (and `sinks=S`, default 0) the caches also evict
    (StreamingLLM attention sinks + sliding window): every cache shrinks to
    `S + W` entries, every `xfmr.attention` gets `sliding_window = W, sinks =
    S` (the first S positions and the last W stay; positions grow without
    bound), as does every `xfmr.mla_attention` (expanded or latent cache),
    and `xfmr.model` records `kv_window` and `kv_sinks` for the runtime.
    Models with their own sliding window are rejected.
  }];
  let options = [
    Option<"element", "element", "std::string", "\"bf16\"",
           "Cache element type: f32, bf16, f16, fp8 or int8">,
    Option<"window", "window", "int64_t", "0",
           "Evict: keep the last `window` positions (0: no eviction)">,
    Option<"sinks", "sinks", "int64_t", "0",
           "Evict: also keep the first `sinks` positions (attention sinks)">
  ];
  let dependentDialects = ["::xfmr::XfmrDialect"];
}

def AbsorbMLA : Pass<"xfmr-absorb-mla", "::mlir::ModuleOp"> {
  let summary = "Cache MLA's latent instead of expanded keys and values";
  let description = [{
    Replaces the `!xfmr.kv_cache` of every `xfmr.mla_attention` (keys and
    values expanded per head: heads x (qk_nope + qk_rope + v_head_dim) values
    per token) by a `!xfmr.latent_cache` holding the normalized latent c_KV
    and the shared rotary key k_pe (kv_lora_rank + qk_rope_head_dim values
    per token). `xfmr.mla_attention` over a latent cache runs attention in
    latent space: W_UK is applied to the query and W_UV to the attention
    output, so keys and values are never expanded. Same function, fewer
    bytes: 57x fewer per token for DeepSeek-V3's shape.

    By default the products with W_UK and W_UV are applied per token. With
    `fold`, they are computed at compile time instead: the query projection
    becomes one projection straight into latent space (per head W_UK^T times
    its no-rope rows) and one for its rope rows, `o_proj` absorbs W_UV, and
    attention becomes `xfmr.mla_latent_attention`; the folded weights are
    `xfmr.fold_mla_weight`s the packer evaluates in double precision. This
    needs high-precision query, `kv_b` and `o_proj` weights.
  }];
  let options = [
    Option<"fold", "fold", "bool", "false",
           "Fold W_UK into the query projection and W_UV into o_proj at "
           "compile time">
  ];
  let dependentDialects = ["::xfmr::XfmrDialect"];
}

def SparsifyMoE : Pass<"xfmr-sparsify-moe"> {
  let summary = "Evaluate MoE layers sparsely: top-k dispatch, grouped expert GEMMs";
  let description = [{
    The importer writes `xfmr.moe_experts` in its `dense` form: every expert
    runs on every token and the experts a token did not select get weight 0,
    so a step reads all expert weights and does `experts / top_k` times the
    needed arithmetic. This pass picks a sparse evaluation for each one:
    over a single token (the decode entry) `sparse`, which runs only the
    token's `top_k` experts, so the bytes read per token follow the active
    parameters; over many tokens (prefill) `prefill` (default `grouped`:
    tokens are sorted by expert and each selected expert runs one matrix
    product over its tokens, then scatters back with the routing weights;
    `sparse` keeps token-by-token dispatch). The result is unchanged up to
    float rounding order.
  }];
  let options = [
    Option<"prefill", "prefill", "std::string", "\"grouped\"",
           "Dispatch over many tokens: grouped or sparse">
  ];
  let dependentDialects = ["::xfmr::XfmrDialect"];
}

def FuseSharedExperts : Pass<"xfmr-fuse-shared-experts"> {
  let summary = "Fold DeepSeek's shared experts into the routed-expert op";
  let description = [{
    DeepSeek-V3 adds always-on shared experts to the routed ones:
    `add(moe_experts(x, ...), linear(swiglu(linear(x, g), linear(x, u)), d))`.
    This pass moves the shared SwiGLU into `xfmr.moe_experts` as its
    `shared(g, u, d)` operands (with their FP8 scales, when they share the
    routed experts' scale layout), so one kernel evaluates the routed and
    the shared experts over the same input and accumulates both into one
    output: no separate linears, no intermediate buffers, no add. Linears
    with a bias, or whose input differs from the experts' input (dynamic
    activation quantization inserts its own), stay as they are.
  }];
  let dependentDialects = ["::xfmr::XfmrDialect"];
}

#endif // XFMR_PASSES_TD
