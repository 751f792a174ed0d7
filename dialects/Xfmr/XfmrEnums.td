//===- XfmrEnums.td - enums of the xfmr dialect -----------*- tablegen -*-===//

#ifndef XFMR_ENUMS_TD
#define XFMR_ENUMS_TD

include "mlir/IR/EnumAttr.td"
include "dialects/Xfmr/XfmrDialect.td"

def Xfmr_RopeStyle : I32EnumAttr<"RopeStyle", "how RoPE pairs channels", [
    I32EnumAttrCase<"rotate_half", 0>,  // pairs (x[i], x[i + d/2]): Llama/HF
    I32EnumAttrCase<"interleaved", 1>   // pairs (x[2i], x[2i+1]): DeepSeek, GPT-J
  ]> {
  let cppNamespace = "::xfmr";
  let genSpecializedAttr = 0;
}

def Xfmr_RopeScaling : I32EnumAttr<"RopeScalingKind", "RoPE context extension", [
    I32EnumAttrCase<"none", 0>,
    I32EnumAttrCase<"linear", 1>,
    I32EnumAttrCase<"llama3", 2>,
    I32EnumAttrCase<"yarn", 3>
  ]> {
  let cppNamespace = "::xfmr";
  let genSpecializedAttr = 0;
}

def Xfmr_ScoringFunc : I32EnumAttr<"ScoringFunc", "MoE router score function", [
    I32EnumAttrCase<"softmax", 0>,
    I32EnumAttrCase<"sigmoid", 1>
  ]> {
  let cppNamespace = "::xfmr";
  let genSpecializedAttr = 0;
}
def Xfmr_ScoringFuncAttr : EnumAttr<Xfmr_Dialect, Xfmr_ScoringFunc, "scoring">;

def Xfmr_MoEDispatch : I32EnumAttr<"MoEDispatch", "how xfmr.moe_experts is evaluated", [
    I32EnumAttrCase<"dense", 0>,    // every expert on every token, unrouted ones weighted 0
    I32EnumAttrCase<"sparse", 1>,   // token by token, only its top-k experts
    I32EnumAttrCase<"grouped", 2>   // tokens sorted by expert, one GEMM per expert
  ]> {
  let cppNamespace = "::xfmr";
  let genSpecializedAttr = 0;
}
def Xfmr_MoEDispatchAttr : EnumAttr<Xfmr_Dialect, Xfmr_MoEDispatch, "moe_dispatch">;

def Xfmr_MLAFold : I32EnumAttr<"MLAFold", "which MLA weight product xfmr.fold_mla_weight computes", [
    I32EnumAttrCase<"query_latent", 0>, // per head W_UK^T . (no-rope rows of the query weight)
    I32EnumAttrCase<"query_rope", 1>,   // the rope rows of the query weight
    I32EnumAttrCase<"output", 2>        // per head (o_proj columns) . W_UV
  ]> {
  let cppNamespace = "::xfmr";
  let genSpecializedAttr = 0;
}
def Xfmr_MLAFoldAttr : EnumAttr<Xfmr_Dialect, Xfmr_MLAFold, "mla_fold">;

def Xfmr_QuantizedPart : I32EnumAttr<"QuantizedPart", "which part of a weight quantized at compile time a slot holds", [
    I32EnumAttrCase<"codes", 0>,
    I32EnumAttrCase<"scales", 1>
  ]> {
  let cppNamespace = "::xfmr";
  let genSpecializedAttr = 0;
}

def Xfmr_ScaleKind : I32EnumAttr<"ScaleKind", "granularity of quantization scales", [
    I32EnumAttrCase<"per_tensor", 0>,
    I32EnumAttrCase<"per_channel", 1>,
    I32EnumAttrCase<"block", 2>
  ]> {
  let cppNamespace = "::xfmr";
  let genSpecializedAttr = 0;
}

def Xfmr_CacheLayout : I32EnumAttr<"CacheLayout", "order of KV-cache dimensions", [
    I32EnumAttrCase<"token_major", 0>,  // [capacity, heads, dim]
    I32EnumAttrCase<"head_major", 1>    // [heads, capacity, dim]
  ]> {
  let cppNamespace = "::xfmr";
  let genSpecializedAttr = 0;
}

#endif // XFMR_ENUMS_TD
