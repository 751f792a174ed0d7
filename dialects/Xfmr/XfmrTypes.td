//===- XfmrTypes.td - types of the xfmr dialect -----------*- tablegen -*-===//

#ifndef XFMR_TYPES_TD
#define XFMR_TYPES_TD

include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"
include "dialects/Xfmr/XfmrDialect.td"
include "dialects/Xfmr/XfmrEnums.td"

class Xfmr_Type<string name, string typeMnemonic, list<Trait> traits = []>
    : TypeDef<Xfmr_Dialect, name, traits> {
  let mnemonic = typeMnemonic;
}

def Xfmr_KVCacheType : Xfmr_Type<"KVCache", "kv_cache"> {
  let summary = "one layer's key/value cache";
  let description = [{
    Keys and values of one attention layer for up to `capacity` tokens.
    Keys have `key_dim` channels per KV head, values `value_dim` (equal for
    Llama-style attention; MLA in expanded form has key_dim = qk_nope +
    qk_rope, value_dim = v_head_dim). `layout` orders the stored dimensions:
    `token_major` is `[capacity, heads, dim]`; `head_major` (`[heads,
    capacity, dim]`) is reserved and rejected by the verifier until a back
    end lowers it. The cache is a value: attention ops take one and return
    the updated one.

    The element type is the stored precision: f32, bf16, f16, or an 8-bit
    format (f8E4M3FN, i8) in which case every token's key and value of every
    head also carry one f32 scale each, computed from their max-abs when the
    entry is written (`value = code * scale`).
    ```mlir
    !xfmr.kv_cache<f32, capacity = 512, heads = 4, key_dim = 8, value_dim = 8>
    !xfmr.kv_cache<f8E4M3FN, capacity = 4096, heads = 8, key_dim = 128, value_dim = 128>
    ```
  }];
  let parameters = (ins
    "::mlir::Type":$element_type,
    "int64_t":$capacity,
    "int64_t":$heads,
    "int64_t":$key_dim,
    "int64_t":$value_dim,
    DefaultEnumParameter<Xfmr_CacheLayout, "::xfmr::CacheLayout::token_major">:$layout
  );
  let assemblyFormat =
      "`<` $element_type `,` struct($capacity, $heads, $key_dim, $value_dim, $layout) `>`";
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// Bytes one token occupies (keys and values of all heads, and their
    /// scales for 8-bit caches).
    int64_t bytesPerToken() const;
    /// True for 8-bit caches, which store a scale per token, head and
    /// key/value.
    bool hasScales() const;
  }];
}

def Xfmr_LatentCacheType : Xfmr_Type<"LatentCache", "latent_cache"> {
  let summary = "one MLA layer's compressed (latent) cache";
  let description = [{
    Multi-head latent attention caches, per token, the normalized latent
    `c_KV` (`latent_dim` = kv_lora_rank channels) and the shared rotary key
    `k_pe` (`rope_dim` channels) instead of per-head keys and values.

    The element type is the latent's stored precision. f32, bf16 and f16
    store both parts in it. 8-bit formats (f8E4M3FN, i8) follow FlashMLA:
    the latent as codes with one f32 scale per 128 channels (`value = code *
    scale`, scale = max-abs / max-code, computed when the entry is written)
    and `k_pe` in bf16, so DeepSeek-V3's 512 + 64 values take
    512 + 4 x 4 + 64 x 2 = 656 bytes.
    ```mlir
    !xfmr.latent_cache<f32, capacity = 4096, latent_dim = 512, rope_dim = 64>
    !xfmr.latent_cache<f8E4M3FN, capacity = 4096, latent_dim = 512, rope_dim = 64>
    ```
  }];
  let parameters = (ins
    "::mlir::Type":$element_type,
    "int64_t":$capacity,
    "int64_t":$latent_dim,
    "int64_t":$rope_dim
  );
  let assemblyFormat =
      "`<` $element_type `,` struct($capacity, $latent_dim, $rope_dim) `>`";
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// Bytes one token occupies (latent, its scales and rotary key).
    int64_t bytesPerToken() const;
    /// True for 8-bit latents, which store a scale per token and 128
    /// channels.
    bool hasScales() const;
    /// Scales per token (0 without scales).
    int64_t scaleBlocks() const;
    /// The stored type of k_pe: the element type, bf16 for 8-bit latents.
    ::mlir::Type ropeElementType() const;
    /// Channels per latent scale.
    static constexpr int64_t kScaleBlock = 128;
  }];
}

def Xfmr_AnyCache : AnyTypeOf<[Xfmr_KVCacheType, Xfmr_LatentCacheType],
                              "KV or latent cache">;

#endif // XFMR_TYPES_TD
