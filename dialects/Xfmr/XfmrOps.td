//===- XfmrOps.td - ops of the xfmr dialect ---------------*- tablegen -*-===//
//
// Shapes: activations are `[tokens, channels]` or, per head, `[tokens, heads,
// head_dim]`; linear weights are `[out, in]` as Hugging Face stores them.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_OPS_TD
#define XFMR_OPS_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/CommonAttrConstraints.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "dialects/Xfmr/XfmrDialect.td"
include "dialects/Xfmr/XfmrEnums.td"
include "dialects/Xfmr/XfmrAttrs.td"
include "dialects/Xfmr/XfmrTypes.td"

//===----------------------------------------------------------------------===//
// Type constraints
//===----------------------------------------------------------------------===//

def Xfmr_Float : AnyTypeOf<[F32, BF16, F16]>;
def Xfmr_Float8 : AnyTypeOf<[F8E4M3FN, F8E5M2, F8E4M3FNUZ]>;
def Xfmr_ActTensor : RankedTensorOf<[F32, BF16, F16]>;
def Xfmr_WeightTensor : RankedTensorOf<[F32, BF16, F16, F8E4M3FN, F8E5M2, F8E4M3FNUZ]>;
// Linear layers also multiply int8 codes (W8A8, xfmr-quantize-int8) and
// int4 codes (xfmr-quantize-int4).
def Xfmr_LinearWeightTensor : RankedTensorOf<[F32, BF16, F16, F8E4M3FN, F8E5M2, F8E4M3FNUZ, I8, I<4>]>;
def Xfmr_QuantTensor : RankedTensorOf<[F8E4M3FN, F8E5M2, F8E4M3FNUZ, I8, I<4>]>;
// f16 scales: int4 weights' group scales (as llama.cpp's Q4_0).
def Xfmr_ScaleTensor : RankedTensorOf<[F32, F16]>;
def Xfmr_IdsTensor : 1DTensorOf<[I32, I64]>;

//===----------------------------------------------------------------------===//
// Parameters
//===----------------------------------------------------------------------===//

def Xfmr_WeightOp : Xfmr_Op<"weight", [Pure]> {
  let summary = "a named tensor from the parameter store";
  let description = [{
    References a tensor that lives outside the IR (a checkpoint or the
    artifact's weight section) by its name, e.g. the Hugging Face name
    `model.layers.0.self_attn.q_proj.weight`. A single `*` in the name stacks
    the tensors obtained by replacing it with 0, 1, ... along a new leading
    dimension, which is how per-expert weights become one `[experts, ...]`
    tensor.
    ```mlir
    %wq = xfmr.weight "model.layers.0.self_attn.q_proj.weight" : tensor<64x64xf32>
    %wg = xfmr.weight "model.layers.1.mlp.experts.*.gate_proj.weight" : tensor<8x96x64xbf16>
    ```
  }];
  let arguments = (ins StrAttr:$name);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$name attr-dict `:` type($result)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Token and channel ops
//===----------------------------------------------------------------------===//

def Xfmr_EmbeddingOp : Xfmr_Op<"embedding", [Pure]> {
  let summary = "gather rows of an embedding table";
  let description = [{
    `result[t] = table[ids[t]]`. Ids outside `[0, vocab)` are rejected by the
    runtime before any computation.
    ```mlir
    %h = xfmr.embedding %table[%ids] : tensor<512x64xf32>, tensor<?xi32> -> tensor<?x64xf32>
    ```
  }];
  let arguments = (ins Xfmr_WeightTensor:$table, Xfmr_IdsTensor:$ids);
  let results = (outs Xfmr_ActTensor:$result);
  let assemblyFormat = [{
    $table `[` $ids `]` attr-dict `:` type($table) `,` type($ids) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Xfmr_RMSNormOp : Xfmr_Op<"rms_norm", [Pure, AllTypesMatch<["input", "result"]>]> {
  let summary = "root-mean-square normalization over the last dimension";
  let description = [{
    `result = input / sqrt(mean(input^2, -1) + eps) * weight`, computed in f32.
    ```mlir
    %n = xfmr.rms_norm %h, %w {eps = 1.0e-05 : f64} : tensor<?x64xf32>, tensor<64xf32>
    ```
  }];
  let arguments = (ins Xfmr_ActTensor:$input, Xfmr_WeightTensor:$weight,
                       F64Attr:$eps);
  let results = (outs Xfmr_ActTensor:$result);
  let assemblyFormat = "$input `,` $weight attr-dict `:` type($input) `,` type($weight)";
  let hasVerifier = 1;
}

def Xfmr_LinearOp : Xfmr_Op<"linear", [Pure, AttrSizedOperandSegments]> {
  let summary = "y = x W^T (+ b), optionally with a quantized weight";
  let description = [{
    Multiplies the last dimension of `input` (`[..., in]`) by a weight stored
    `[out, in]`, adding an optional `bias` of shape `[out]`. The weight may be
    f32/bf16/f16, or FP8 or int8 with a `scale` tensor laid out by
    `scale_layout` (real weight = code x scale of its block); accumulation
    is f32.
    ```mlir
    %y = xfmr.linear %x, %w : tensor<?x64xf32>, tensor<128x64xf32> -> tensor<?x128xf32>
    %z = xfmr.linear %x, %wq bias(%b : tensor<128xf32>) : tensor<?x64xf32>, tensor<128x64xbf16> -> tensor<?x128xf32>
    %f = xfmr.linear %x, %w8 scale(%s : tensor<1x1xf32>) {scale_layout = #xfmr.scale_layout<block [128, 128]>}
        : tensor<?x64xf32>, tensor<128x64xf8E4M3FN> -> tensor<?x128xf32>
    ```
  }];
  let arguments = (ins Xfmr_ActTensor:$input, Xfmr_LinearWeightTensor:$weight,
                       Optional<Xfmr_ActTensor>:$bias,
                       Optional<Xfmr_ScaleTensor>:$scale,
                       OptionalAttr<Xfmr_ScaleLayoutAttr>:$scale_layout);
  let results = (outs Xfmr_ActTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight (`bias` `(` $bias^ `:` type($bias) `)`)?
    (`scale` `(` $scale^ `:` type($scale) `)`)? attr-dict
    `:` type($input) `,` type($weight) `->` type($result)
  }];
  let hasVerifier = 1;
}

class Xfmr_ElementwiseOp<string mnemonic, list<Trait> traits = []>
    : Xfmr_Op<mnemonic, !listconcat(traits, [Pure, SameOperandsAndResultType])> {
  let results = (outs Xfmr_ActTensor:$result);
  let assemblyFormat = "operands attr-dict `:` type($result)";
}

def Xfmr_AddOp : Xfmr_ElementwiseOp<"add", [Commutative]> {
  let summary = "elementwise sum (residual connections)";
  let description = [{
    ```mlir
    %r = xfmr.add %h, %attn : tensor<?x64xf32>
    ```
  }];
  let arguments = (ins Xfmr_ActTensor:$lhs, Xfmr_ActTensor:$rhs);
}

def Xfmr_MulOp : Xfmr_ElementwiseOp<"mul", [Commutative]> {
  let summary = "elementwise product";
  let description = [{
    ```mlir
    %p = xfmr.mul %a, %b : tensor<?x172xf32>
    ```
  }];
  let arguments = (ins Xfmr_ActTensor:$lhs, Xfmr_ActTensor:$rhs);
}

def Xfmr_SiluOp : Xfmr_ElementwiseOp<"silu"> {
  let summary = "x * sigmoid(x)";
  let description = [{
    ```mlir
    %s = xfmr.silu %g : tensor<?x172xf32>
    ```
  }];
  let arguments = (ins Xfmr_ActTensor:$input);
}

def Xfmr_GeluOp : Xfmr_ElementwiseOp<"gelu"> {
  let summary = "Gaussian error linear unit (erf form, or tanh if `approximate`)";
  let description = [{
    ```mlir
    %g = xfmr.gelu %x : tensor<?x256xf32>
    %t = xfmr.gelu %x {approximate} : tensor<?x256xf32>
    ```
  }];
  let arguments = (ins Xfmr_ActTensor:$input, UnitAttr:$approximate);
}

def Xfmr_SwiGLUOp : Xfmr_ElementwiseOp<"swiglu"> {
  let summary = "silu(gate) * up, the gated unit of Llama-style MLPs";
  let description = [{
    ```mlir
    %a = xfmr.swiglu %gate, %up : tensor<?x172xf32>
    ```
  }];
  let arguments = (ins Xfmr_ActTensor:$gate, Xfmr_ActTensor:$up);
}

//===----------------------------------------------------------------------===//
// Shape ops
//===----------------------------------------------------------------------===//

def Xfmr_SplitHeadsOp : Xfmr_Op<"split_heads", [Pure]> {
  let summary = "[tokens, heads * dim] -> [tokens, heads, dim]";
  let description = [{
    ```mlir
    %q3 = xfmr.split_heads %q : tensor<?x64xf32> -> tensor<?x8x8xf32>
    ```
  }];
  let arguments = (ins Xfmr_ActTensor:$input);
  let results = (outs Xfmr_ActTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
  let hasVerifier = 1;
  let hasFolder = 1;
}

def Xfmr_MergeHeadsOp : Xfmr_Op<"merge_heads", [Pure]> {
  let summary = "[tokens, heads, dim] -> [tokens, heads * dim]";
  let description = [{
    ```mlir
    %o = xfmr.merge_heads %o3 : tensor<?x8x8xf32> -> tensor<?x64xf32>
    ```
  }];
  let arguments = (ins Xfmr_ActTensor:$input);
  let results = (outs Xfmr_ActTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
  let hasVerifier = 1;
  let hasFolder = 1;
}

def Xfmr_SplitOp : Xfmr_Op<"split", [Pure]> {
  let summary = "split the last dimension into consecutive pieces";
  let description = [{
    The sizes of the pieces are the last dimensions of the result types.
    MLA uses it to separate the compressed KV latent from the rotary key.
    ```mlir
    %ckv, %kpe = xfmr.split %kva : tensor<?x40xf32> -> tensor<?x32xf32>, tensor<?x8xf32>
    ```
  }];
  let arguments = (ins Xfmr_ActTensor:$input);
  let results = (outs Variadic<Xfmr_ActTensor>:$results);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($results)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Positions and attention
//===----------------------------------------------------------------------===//

def Xfmr_RopeOp : Xfmr_Op<"rope", [Pure, AllTypesMatch<["input", "result"]>]> {
  let summary = "rotary position embedding";
  let description = [{
    Rotates each head of `input` (`[tokens, heads, head_dim]`) by the angles of
    positions `start, start + 1, ...` as configured by `config`.
    ```mlir
    %qr = xfmr.rope %q at %start {config = #xfmr.rope<theta = 10000.0>} : tensor<?x8x8xf32>
    ```
  }];
  let arguments = (ins Xfmr_ActTensor:$input, Index:$start, Xfmr_RopeAttr:$config);
  let results = (outs Xfmr_ActTensor:$result);
  let assemblyFormat = "$input `at` $start attr-dict `:` type($input)";
  let hasVerifier = 1;
}

def Xfmr_AttentionOp : Xfmr_Op<"attention",
    [Pure, AllTypesMatch<["cache", "new_cache"]>]> {
  let summary = "causal multi-head attention that appends to a KV cache";
  let description = [{
    Writes `key` and `value` (`[tokens, kv_heads, dim]`) of the positions
    `start ... start + tokens - 1` into the cache, then lets each query
    (`[tokens, heads, key_dim]`) at position `p` attend to the cached
    positions `<= p` (and `> p - sliding_window` when a window is set) with
    softmax(q k^T * scale). `heads / kv_heads` query heads share a KV head
    (GQA; MQA when kv_heads = 1). Returns the attention output
    `[tokens, heads, value_dim]` and the updated cache.

    With `sinks = S` (and `sliding_window = W`) the cache evicts
    (StreamingLLM): it holds `capacity = S + W` entries, the first `S`
    positions (attention sinks) stay and position `p >= S` goes to slot
    `S + (p - S) mod W`, overwriting the oldest windowed entry. A query at `p`
    attends the sinks `< min(S, p + 1)` and the positions `(p - W, p]`, so
    positions grow without bound in constant memory. Keys keep the rotation
    of their absolute position, so query-key distances stay exact. A call
    with several tokens must not wrap (`start + tokens <= capacity`); past
    that, tokens go one per call.
    ```mlir
    %o, %c1 = xfmr.attention %q, %k, %v, %c0[%start] {scale = 0.35355339059327379 : f64}
        : tensor<?x8x8xf32>, tensor<?x4x8xf32>, tensor<?x4x8xf32>,
          !xfmr.kv_cache<f32, capacity = 512, heads = 4, key_dim = 8, value_dim = 8>
        -> tensor<?x8x8xf32>
    ```
  }];
  let arguments = (ins Xfmr_ActTensor:$query, Xfmr_ActTensor:$key,
                       Xfmr_ActTensor:$value, Xfmr_KVCacheType:$cache,
                       Index:$start, F64Attr:$scale,
                       OptionalAttr<I64Attr>:$sliding_window,
                       OptionalAttr<I64Attr>:$sinks);
  let results = (outs Xfmr_ActTensor:$output, Xfmr_KVCacheType:$new_cache);
  let assemblyFormat = [{
    $query `,` $key `,` $value `,` $cache `[` $start `]` attr-dict `:`
    type($query) `,` type($key) `,` type($value) `,` qualified(type($cache)) `->` type($output)
  }];
  let hasVerifier = 1;
}

def Xfmr_MLAAttentionOp : Xfmr_Op<"mla_attention",
    [Pure, AllTypesMatch<["cache", "new_cache"]>]> {
  let summary = "multi-head latent attention (DeepSeek-V2/V3)";
  let description = [{
    Attention whose keys and values are decompressed from a shared latent.
    Operands:
    - `query` `[tokens, heads, qk_nope + qk_rope]`, rotary part already
      rotated (the last `qk_rope` channels of each head);
    - `latent` `[tokens, kv_lora_rank]`: the normalized compressed KV `c_KV`;
    - `rope_key` `[tokens, 1, qk_rope]`: the rotated key `k_pe`, shared by all
      heads;
    - `kv_b_weight` `[heads * (qk_nope + v_head_dim), kv_lora_rank]`
      (`kv_b_proj`, head-major rows `[k_nope | v]`), optionally FP8 with a
      `scale`.
    Per head, `k = [c_KV W_UK^T | k_pe]` and `v = c_KV W_UV^T`. With a
    `!xfmr.kv_cache` (key_dim = qk_nope + qk_rope, value_dim = v_head_dim) the
    expanded keys and values are cached; with a `!xfmr.latent_cache` only
    `c_KV` and `k_pe` are, and attention runs in latent space with `W_UK`
    absorbed into the query and `W_UV` into the output. Both compute the same
    function. Result: `[tokens, heads, v_head_dim]` and the updated cache.
    `sliding_window` and `sinks` mean what they mean on `xfmr.attention`
    (with `sinks`, either cache is an evicting ring of `sinks +
    sliding_window` entries).
    ```mlir
    %o, %c1 = xfmr.mla_attention %q, %ckv, %kpe, %wkvb, %c0[%start] {scale = 0.1767766952966369 : f64}
        : tensor<?x4x24xf32>, tensor<?x32xf32>, tensor<?x1x8xf32>, tensor<128x32xf32>,
          !xfmr.kv_cache<f32, capacity = 512, heads = 4, key_dim = 24, value_dim = 16>
        -> tensor<?x4x16xf32>
    ```
  }];
  let arguments = (ins Xfmr_ActTensor:$query, Xfmr_ActTensor:$latent,
                       Xfmr_ActTensor:$rope_key, Xfmr_WeightTensor:$kv_b_weight,
                       Optional<Xfmr_ScaleTensor>:$scale_tensor,
                       Xfmr_AnyCache:$cache, Index:$start, F64Attr:$scale,
                       OptionalAttr<Xfmr_ScaleLayoutAttr>:$scale_layout,
                       OptionalAttr<I64Attr>:$sliding_window,
                       OptionalAttr<I64Attr>:$sinks);
  let results = (outs Xfmr_ActTensor:$output, Xfmr_AnyCache:$new_cache);
  let assemblyFormat = [{
    $query `,` $latent `,` $rope_key `,` $kv_b_weight
    (`scale` `(` $scale_tensor^ `:` type($scale_tensor) `)`)?
    `,` $cache `[` $start `]` attr-dict `:`
    type($query) `,` type($latent) `,` type($rope_key) `,` type($kv_b_weight)
    `,` qualified(type($cache)) `->` type($output)
  }];
  let hasVerifier = 1;
}

def Xfmr_MLALatentAttentionOp : Xfmr_Op<"mla_latent_attention",
    [Pure, AllTypesMatch<["cache", "new_cache"]>]> {
  let summary = "MLA attention in latent space, weights absorbed at compile time";
  let description = [{
    The form of `xfmr.mla_attention` over a latent cache after
    `xfmr-absorb-mla{fold=true}` has folded `W_UK` into the query weight and
    `W_UV` into the output projection: operands are the query already in
    latent space `query_latent` `[tokens, heads, kv_lora_rank]`, its rotated
    rope part `query_rope` `[tokens, heads, qk_rope]`, the normalized latent
    `[tokens, kv_lora_rank]` and the rotated `rope_key` `[tokens, 1,
    qk_rope]` to append to the cache. Scores are `q_lat . c_KV + q_pe .
    k_pe` times `scale`; the result is the softmax-weighted sum of the cached
    latents, `[tokens, heads, kv_lora_rank]`, which the folded output
    projection reads. `sliding_window` and `sinks` as on `xfmr.attention`.
    ```mlir
    %o, %c1 = xfmr.mla_latent_attention %ql, %qr, %ckv, %kpe, %c0[%start] {scale = 0.2 : f64}
        : tensor<?x4x32xf32>, tensor<?x4x8xf32>, tensor<?x32xf32>, tensor<?x1x8xf32>,
          !xfmr.latent_cache<f32, capacity = 64, latent_dim = 32, rope_dim = 8>
        -> tensor<?x4x32xf32>
    ```
  }];
  let arguments = (ins Xfmr_ActTensor:$query_latent, Xfmr_ActTensor:$query_rope,
                       Xfmr_ActTensor:$latent, Xfmr_ActTensor:$rope_key,
                       Xfmr_LatentCacheType:$cache, Index:$start, F64Attr:$scale,
                       OptionalAttr<I64Attr>:$sliding_window,
                       OptionalAttr<I64Attr>:$sinks);
  let results = (outs Xfmr_ActTensor:$output, Xfmr_LatentCacheType:$new_cache);
  let assemblyFormat = [{
    $query_latent `,` $query_rope `,` $latent `,` $rope_key `,` $cache `[` $start `]`
    attr-dict `:` type($query_latent) `,` type($query_rope) `,` type($latent) `,`
    type($rope_key) `,` qualified(type($cache)) `->` type($output)
  }];
  let hasVerifier = 1;
}

def Xfmr_FoldMLAWeightOp : Xfmr_Op<"fold_mla_weight", [Pure]> {
  let summary = "an MLA weight with W_UK or W_UV folded in, computed at compile time";
  let description = [{
    Products of checkpoint weights that `xfmr-absorb-mla{fold=true}` uses,
    evaluated (in double precision) when the artifact is packed. `weight` is
    the query projection (`q_b_proj`, or `q_proj` without a query LoRA)
    `[heads * (nope + rope), in]` or `o_proj` `[hidden, heads * value_dim]`;
    `kv_b` is `kv_b_proj` `[heads * (nope + value_dim), rank]`:
    - `query_latent`: per head `W_UK_h^T W_q,nope,h`, `[heads * rank, in]`
      (the query in latent space straight from the projection's input);
    - `query_rope`: the rope rows of the query projection, `[heads * rope,
      in]` (no `kv_b`);
    - `output`: per head `W_o,h W_UV_h`, `[hidden, heads * rank]` (the
      output projection reading the latent attention output).
    The result is stored in its element type (f32, or bf16/f16 rounded to
    nearest even, so a bf16 model's folded weights stay bf16).
    ```mlir
    %wq = xfmr.fold_mla_weight %qb, %kvb {kind = #xfmr<mla_fold query_latent>, heads = 4 : i64,
        nope = 16 : i64, rope = 8 : i64, value_dim = 16 : i64}
        : tensor<96x24xf32>, tensor<128x32xf32> -> tensor<128x24xf32>
    ```
  }];
  let arguments = (ins Xfmr_WeightTensor:$weight, Optional<Xfmr_WeightTensor>:$kv_b,
                       Xfmr_MLAFoldAttr:$kind,
                       ConfinedAttr<I64Attr, [IntPositive]>:$heads,
                       ConfinedAttr<I64Attr, [IntPositive]>:$nope,
                       ConfinedAttr<I64Attr, [IntPositive]>:$rope,
                       ConfinedAttr<I64Attr, [IntPositive]>:$value_dim);
  let results = (outs RankedTensorOf<[F32, BF16, F16]>:$result);
  let assemblyFormat = [{
    $weight (`,` $kv_b^)? attr-dict `:` type($weight) (`,` type($kv_b)^)? `->` type($result)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Mixture of experts
//===----------------------------------------------------------------------===//

def Xfmr_MoEGateOp : Xfmr_Op<"moe_gate", [Pure]> {
  let summary = "MoE router: scores, (group-limited) top-k and routing weights";
  let description = [{
    Scores `input x gate_weight^T` with `scoring` (softmax over experts, or
    sigmoid). Selection ranks `score + bias` (the optional
    `e_score_correction_bias`): experts are split into `n_group` groups, a
    group's rank is the sum of its two best biased scores, the best
    `topk_group` groups are kept and the `top_k` best experts inside them are
    chosen (ties go to the lowest index). The routing weights are the
    unbiased scores of the chosen experts, divided by their sum when
    `norm_topk_prob`, times `routed_scaling_factor`. Results: weights
    `[tokens, top_k]` (f32) and expert indices `[tokens, top_k]` (i32).
    Mixtral is `softmax`, `n_group = 1`, `norm_topk_prob`; DeepSeek-V3 is
    `sigmoid` with a bias and 8 groups.
    ```mlir
    %w, %i = xfmr.moe_gate %h, %g bias(%b : tensor<16xf32>)
        {scoring = #xfmr<scoring sigmoid>, top_k = 4 : i64, n_group = 4 : i64,
         topk_group = 2 : i64, norm_topk_prob = true, routed_scaling_factor = 2.5 : f64}
        : tensor<?x64xf32>, tensor<16x64xf32> -> tensor<?x4xf32>, tensor<?x4xi32>
    ```
  }];
  let arguments = (ins Xfmr_ActTensor:$input, Xfmr_WeightTensor:$gate_weight,
                       Optional<Xfmr_ScaleTensor>:$bias,
                       Xfmr_ScoringFuncAttr:$scoring,
                       ConfinedAttr<I64Attr, [IntPositive]>:$top_k,
                       DefaultValuedAttr<I64Attr, "1">:$n_group,
                       DefaultValuedAttr<I64Attr, "1">:$topk_group,
                       DefaultValuedAttr<BoolAttr, "false">:$norm_topk_prob,
                       DefaultValuedAttr<F64Attr, "1.0">:$routed_scaling_factor);
  let results = (outs RankedTensorOf<[F32]>:$weights, RankedTensorOf<[I32]>:$indices);
  let assemblyFormat = [{
    $input `,` $gate_weight (`bias` `(` $bias^ `:` type($bias) `)`)? attr-dict
    `:` type($input) `,` type($gate_weight) `->` type($weights) `,` type($indices)
  }];
  let hasVerifier = 1;
}

def Xfmr_MoEExpertsOp : Xfmr_Op<"moe_experts", [Pure, AttrSizedOperandSegments]> {
  let summary = "routed SwiGLU experts, combined with the routing weights";
  let description = [{
    `result[t] = sum_j weights[t, j] * expert_{indices[t, j]}(input[t])`, where
    expert `e` is `down_e(silu(gate_e(x)) * up_e(x))`. Expert weights are
    stacked: `gate` and `up` `[experts, inter, hidden]`, `down` `[experts,
    hidden, inter]`. FP8 expert weights carry one scale tensor each
    (`scales(...)`, stacked the same way) laid out by `scale_layout`.

    The result does not depend on `dispatch`, which says how it is computed:
    `dense` (the default, what the importer writes) runs every expert on every
    token and weights the experts a token did not select by 0, reading all
    expert weights; `sparse` runs each token through its `top_k` experts only;
    `grouped` sorts the tokens by expert and runs one matrix product per
    expert over its tokens, so each selected expert's weights are read once
    per call. `xfmr-sparsify-moe` chooses between them.

    `shared(gate, up, down)` adds an always-on SwiGLU expert (DeepSeek's
    shared experts: gate and up `[shared_inter, hidden]`, down `[hidden,
    shared_inter]`) with weight 1 to every token, in the same kernel
    (`xfmr-fuse-shared-experts`); FP8 shared weights carry
    `shared_scales(...)` in the same `scale_layout`.

    With `activation_group = G` (FP8 or int8 weights only), every expert's
    SwiGLU output is quantized per token in groups of G channels to the
    weights' format before its down projection, as DeepSeek-V3's recipe
    quantizes the input of every FP8 linear (and W8A8 that of every int8
    one); the op's input arrives quantized the same way
    (`xfmr.dequantize(xfmr.quantize(...))`).
    ```mlir
    %y = xfmr.moe_experts %h, %w, %i, %eg, %eu, %ed {dispatch = #xfmr<moe_dispatch grouped>}
        : tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>,
          tensor<8x96x64xf32>, tensor<8x96x64xf32>, tensor<8x64x96xf32> -> tensor<?x64xf32>
    ```
  }];
  let arguments = (ins Xfmr_ActTensor:$input, RankedTensorOf<[F32]>:$weights,
                       RankedTensorOf<[I32]>:$indices,
                       Xfmr_LinearWeightTensor:$gate_weight,
                       Xfmr_LinearWeightTensor:$up_weight,
                       Xfmr_LinearWeightTensor:$down_weight,
                       Optional<Xfmr_ScaleTensor>:$gate_scale,
                       Optional<Xfmr_ScaleTensor>:$up_scale,
                       Optional<Xfmr_ScaleTensor>:$down_scale,
                       Optional<Xfmr_WeightTensor>:$shared_gate,
                       Optional<Xfmr_WeightTensor>:$shared_up,
                       Optional<Xfmr_WeightTensor>:$shared_down,
                       Optional<Xfmr_ScaleTensor>:$shared_gate_scale,
                       Optional<Xfmr_ScaleTensor>:$shared_up_scale,
                       Optional<Xfmr_ScaleTensor>:$shared_down_scale,
                       OptionalAttr<Xfmr_ScaleLayoutAttr>:$scale_layout,
                       OptionalAttr<ConfinedAttr<I64Attr, [IntPositive]>>:$activation_group,
                       DefaultValuedAttr<Xfmr_MoEDispatchAttr,
                                         "::xfmr::MoEDispatch::dense">:$dispatch);
  let results = (outs Xfmr_ActTensor:$result);
  let assemblyFormat = [{
    $input `,` $weights `,` $indices `,` $gate_weight `,` $up_weight `,` $down_weight
    (`scales` `(` $gate_scale^ `,` $up_scale `,` $down_scale `:`
       type($gate_scale) `,` type($up_scale) `,` type($down_scale) `)`)?
    (`shared` `(` $shared_gate^ `,` $shared_up `,` $shared_down `:`
       type($shared_gate) `,` type($shared_up) `,` type($shared_down) `)`)?
    (`shared_scales` `(` $shared_gate_scale^ `,` $shared_up_scale `,` $shared_down_scale `:`
       type($shared_gate_scale) `,` type($shared_up_scale) `,` type($shared_down_scale) `)`)?
    attr-dict `:` type($input) `,` type($weights) `,` type($indices) `,`
    type($gate_weight) `,` type($up_weight) `,` type($down_weight) `->` type($result)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    ::mlir::LogicalResult verifySharedExpert();
  }];
}

//===----------------------------------------------------------------------===//
// Quantization
//===----------------------------------------------------------------------===//

def Xfmr_QuantizeOp : Xfmr_Op<"quantize", [Pure]> {
  let summary = "scale and cast to FP8/INT8 with scales computed from max-abs";
  let description = [{
    For each tile of `layout`, `scale = max(max|x|, eps) / max_representable`
    and `result = saturate(round(x / scale))`. Returns the quantized tensor and
    its f32 scales.
    ```mlir
    %q, %s = xfmr.quantize %x {layout = #xfmr.scale_layout<block [1, 128]>}
        : tensor<?x256xf32> -> tensor<?x256xf8E4M3FN>, tensor<?x2xf32>
    ```
  }];
  let arguments = (ins Xfmr_ActTensor:$input, Xfmr_ScaleLayoutAttr:$layout);
  let results = (outs Xfmr_QuantTensor:$result, Xfmr_ScaleTensor:$scale);
  let assemblyFormat = [{
    $input attr-dict `:` type($input) `->` type($result) `,` type($scale)
  }];
  let hasVerifier = 1;
}

def Xfmr_DequantizeOp : Xfmr_Op<"dequantize", [Pure]> {
  let summary = "quantized value times the scale of its tile";
  let description = [{
    ```mlir
    %w = xfmr.dequantize %w8, %s {layout = #xfmr.scale_layout<block [128, 128]>}
        : tensor<256x200xf8E4M3FN>, tensor<2x2xf32> -> tensor<256x200xf32>
    ```
  }];
  let arguments = (ins Xfmr_QuantTensor:$input, Xfmr_ScaleTensor:$scale,
                       Xfmr_ScaleLayoutAttr:$layout);
  let results = (outs Xfmr_ActTensor:$result);
  let assemblyFormat = [{
    $input `,` $scale attr-dict `:` type($input) `,` type($scale) `->` type($result)
  }];
  let hasVerifier = 1;
}

#endif // XFMR_OPS_TD
