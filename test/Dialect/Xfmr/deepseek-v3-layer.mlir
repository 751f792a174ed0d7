// One DeepSeek-V3 decoder layer (MLA attention + MoE with shared experts) with
// FP8 block-scaled weights as DeepSeek ships them, at toy sizes: hidden 64,
// 4 heads, q_lora_rank 48, kv_lora_rank 32, qk_nope 16, qk_rope 8, v_head 16,
// 16 routed experts in 4 groups (top-4 of the best 2 groups), 2 shared experts,
// moe_intermediate 24, YaRN factor 40. It parses, verifies and round-trips.
// RUN: xfmr-opt %s | FileCheck %s
// RUN: xfmr-opt %s | xfmr-opt | FileCheck %s
// RUN: xfmr-opt %s --mlir-print-op-generic | xfmr-opt | FileCheck %s

!cache = !xfmr.kv_cache<bf16, capacity = 4096, heads = 4, key_dim = 24, value_dim = 16>
#blocks = #xfmr.scale_layout<block [128, 128]>
#rope_q = #xfmr.rope<theta = 10000.0, style = interleaved, rotary_dim = 8, rotary_offset = 16,
                     scaling = yarn, factor = 40.0, original_max_positions = 4096,
                     mscale_all_dim = 1.0>
#rope_k = #xfmr.rope<theta = 10000.0, style = interleaved, scaling = yarn, factor = 40.0,
                     original_max_positions = 4096, mscale_all_dim = 1.0>

// CHECK-LABEL: func.func @decode
// CHECK-SAME: attributes {xfmr.entry = "decode"}
func.func @decode(%h: tensor<?x64xf32>, %start: index, %cache: !cache)
    -> (tensor<?x64xf32>, !cache) attributes {xfmr.entry = "decode"} {
  %ln1 = xfmr.weight "model.layers.3.input_layernorm.weight" : tensor<64xbf16>
  %x = xfmr.rms_norm %h, %ln1 {eps = 1.0e-06 : f64} : tensor<?x64xf32>, tensor<64xbf16>

  // Query: low-rank projection with its own norm.
  %wqa = xfmr.weight "model.layers.3.self_attn.q_a_proj.weight" : tensor<48x64xf8E4M3FN>
  %sqa = xfmr.weight "model.layers.3.self_attn.q_a_proj.weight_scale_inv" : tensor<1x1xf32>
  // CHECK: xfmr.linear %{{.+}}, %{{.+}} scale(%{{.+}} : tensor<1x1xf32>) {scale_layout = #xfmr.scale_layout<block [128, 128]>} : tensor<?x64xf32>, tensor<48x64xf8E4M3FN> -> tensor<?x48xf32>
  %qa = xfmr.linear %x, %wqa scale(%sqa : tensor<1x1xf32>) {scale_layout = #blocks}
      : tensor<?x64xf32>, tensor<48x64xf8E4M3FN> -> tensor<?x48xf32>
  %qan = xfmr.weight "model.layers.3.self_attn.q_a_layernorm.weight" : tensor<48xbf16>
  %qn = xfmr.rms_norm %qa, %qan {eps = 1.0e-06 : f64} : tensor<?x48xf32>, tensor<48xbf16>
  %wqb = xfmr.weight "model.layers.3.self_attn.q_b_proj.weight" : tensor<96x48xf8E4M3FN>
  %sqb = xfmr.weight "model.layers.3.self_attn.q_b_proj.weight_scale_inv" : tensor<1x1xf32>
  %qb = xfmr.linear %qn, %wqb scale(%sqb : tensor<1x1xf32>) {scale_layout = #blocks}
      : tensor<?x48xf32>, tensor<96x48xf8E4M3FN> -> tensor<?x96xf32>
  %q = xfmr.split_heads %qb : tensor<?x96xf32> -> tensor<?x4x24xf32>
  // CHECK: xfmr.rope %{{.+}} at %{{.+}} {config = #xfmr.rope<theta = 10000.0, style = interleaved, rotary_dim = 8, rotary_offset = 16, scaling = yarn, factor = 40.0, original_max_positions = 4096, mscale_all_dim = 1.0>} : tensor<?x4x24xf32>
  %qr = xfmr.rope %q at %start {config = #rope_q} : tensor<?x4x24xf32>

  // Compressed KV and the decoupled rotary key.
  %wkva = xfmr.weight "model.layers.3.self_attn.kv_a_proj_with_mqa.weight" : tensor<40x64xf8E4M3FN>
  %skva = xfmr.weight "model.layers.3.self_attn.kv_a_proj_with_mqa.weight_scale_inv" : tensor<1x1xf32>
  %kva = xfmr.linear %x, %wkva scale(%skva : tensor<1x1xf32>) {scale_layout = #blocks}
      : tensor<?x64xf32>, tensor<40x64xf8E4M3FN> -> tensor<?x40xf32>
  // CHECK: %[[CKV:.+]]:2 = xfmr.split %{{.+}} : tensor<?x40xf32> -> tensor<?x32xf32>, tensor<?x8xf32>
  %ckv, %kpe = xfmr.split %kva : tensor<?x40xf32> -> tensor<?x32xf32>, tensor<?x8xf32>
  %kvan = xfmr.weight "model.layers.3.self_attn.kv_a_layernorm.weight" : tensor<32xbf16>
  %ckvn = xfmr.rms_norm %ckv, %kvan {eps = 1.0e-06 : f64} : tensor<?x32xf32>, tensor<32xbf16>
  %kpe3 = xfmr.split_heads %kpe : tensor<?x8xf32> -> tensor<?x1x8xf32>
  %kper = xfmr.rope %kpe3 at %start {config = #rope_k} : tensor<?x1x8xf32>

  // Attention: k = [c_KV W_UK^T | k_pe], v = c_KV W_UV^T, YaRN-corrected scale.
  %wkvb = xfmr.weight "model.layers.3.self_attn.kv_b_proj.weight" : tensor<128x32xf8E4M3FN>
  %skvb = xfmr.weight "model.layers.3.self_attn.kv_b_proj.weight_scale_inv" : tensor<1x1xf32>
  // CHECK: %{{.+}}, %[[C1:.+]] = xfmr.mla_attention %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}} scale(%{{.+}} : tensor<1x1xf32>), %{{.+}}[%{{.+}}] {scale = 0.38249888831204115 : f64, scale_layout = #xfmr.scale_layout<block [128, 128]>}
  // CHECK-SAME: !xfmr.kv_cache<bf16, capacity = 4096, heads = 4, key_dim = 24, value_dim = 16> -> tensor<?x4x16xf32>
  %o, %cache1 = xfmr.mla_attention %qr, %ckvn, %kper, %wkvb scale(%skvb : tensor<1x1xf32>), %cache[%start]
      {scale = 0.38249888831204115 : f64, scale_layout = #blocks}
      : tensor<?x4x24xf32>, tensor<?x32xf32>, tensor<?x1x8xf32>, tensor<128x32xf8E4M3FN>, !cache
      -> tensor<?x4x16xf32>
  %om = xfmr.merge_heads %o : tensor<?x4x16xf32> -> tensor<?x64xf32>
  %wo = xfmr.weight "model.layers.3.self_attn.o_proj.weight" : tensor<64x64xf8E4M3FN>
  %so = xfmr.weight "model.layers.3.self_attn.o_proj.weight_scale_inv" : tensor<1x1xf32>
  %attn = xfmr.linear %om, %wo scale(%so : tensor<1x1xf32>) {scale_layout = #blocks}
      : tensor<?x64xf32>, tensor<64x64xf8E4M3FN> -> tensor<?x64xf32>
  %h1 = xfmr.add %h, %attn : tensor<?x64xf32>

  // MoE: sigmoid router with correction bias and group-limited top-k.
  %ln2 = xfmr.weight "model.layers.3.post_attention_layernorm.weight" : tensor<64xbf16>
  %y = xfmr.rms_norm %h1, %ln2 {eps = 1.0e-06 : f64} : tensor<?x64xf32>, tensor<64xbf16>
  %wgate = xfmr.weight "model.layers.3.mlp.gate.weight" : tensor<16x64xbf16>
  %bias = xfmr.weight "model.layers.3.mlp.gate.e_score_correction_bias" : tensor<16xf32>
  // CHECK: %[[W:.+]], %[[I:.+]] = xfmr.moe_gate %{{.+}}, %{{.+}} bias(%{{.+}} : tensor<16xf32>) {n_group = 4 : i64, norm_topk_prob = true, routed_scaling_factor = 2.5{{0*}}e+00 : f64, scoring = #xfmr<scoring sigmoid>, top_k = 4 : i64, topk_group = 2 : i64}
  %w, %i = xfmr.moe_gate %y, %wgate bias(%bias : tensor<16xf32>)
      {scoring = #xfmr<scoring sigmoid>, top_k = 4 : i64, n_group = 4 : i64, topk_group = 2 : i64,
       norm_topk_prob = true, routed_scaling_factor = 2.5 : f64}
      : tensor<?x64xf32>, tensor<16x64xbf16> -> tensor<?x4xf32>, tensor<?x4xi32>
  %eg = xfmr.weight "model.layers.3.mlp.experts.*.gate_proj.weight" : tensor<16x24x64xf8E4M3FN>
  %eu = xfmr.weight "model.layers.3.mlp.experts.*.up_proj.weight" : tensor<16x24x64xf8E4M3FN>
  %ed = xfmr.weight "model.layers.3.mlp.experts.*.down_proj.weight" : tensor<16x64x24xf8E4M3FN>
  %sg = xfmr.weight "model.layers.3.mlp.experts.*.gate_proj.weight_scale_inv" : tensor<16x1x1xf32>
  %su = xfmr.weight "model.layers.3.mlp.experts.*.up_proj.weight_scale_inv" : tensor<16x1x1xf32>
  %sd = xfmr.weight "model.layers.3.mlp.experts.*.down_proj.weight_scale_inv" : tensor<16x1x1xf32>
  // CHECK: xfmr.moe_experts %{{.+}}, %[[W]], %[[I]], %{{.+}}, %{{.+}}, %{{.+}} scales(%{{.+}}, %{{.+}}, %{{.+}} : tensor<16x1x1xf32>, tensor<16x1x1xf32>, tensor<16x1x1xf32>)
  %routed = xfmr.moe_experts %y, %w, %i, %eg, %eu, %ed
      scales(%sg, %su, %sd : tensor<16x1x1xf32>, tensor<16x1x1xf32>, tensor<16x1x1xf32>)
      {scale_layout = #blocks}
      : tensor<?x64xf32>, tensor<?x4xf32>, tensor<?x4xi32>, tensor<16x24x64xf8E4M3FN>,
        tensor<16x24x64xf8E4M3FN>, tensor<16x64x24xf8E4M3FN> -> tensor<?x64xf32>

  // Shared experts: one SwiGLU MLP of width n_shared_experts * moe_intermediate.
  %wsg = xfmr.weight "model.layers.3.mlp.shared_experts.gate_proj.weight" : tensor<48x64xf8E4M3FN>
  %ssg = xfmr.weight "model.layers.3.mlp.shared_experts.gate_proj.weight_scale_inv" : tensor<1x1xf32>
  %wsu = xfmr.weight "model.layers.3.mlp.shared_experts.up_proj.weight" : tensor<48x64xf8E4M3FN>
  %ssu = xfmr.weight "model.layers.3.mlp.shared_experts.up_proj.weight_scale_inv" : tensor<1x1xf32>
  %wsd = xfmr.weight "model.layers.3.mlp.shared_experts.down_proj.weight" : tensor<64x48xf8E4M3FN>
  %ssd = xfmr.weight "model.layers.3.mlp.shared_experts.down_proj.weight_scale_inv" : tensor<1x1xf32>
  %g = xfmr.linear %y, %wsg scale(%ssg : tensor<1x1xf32>) {scale_layout = #blocks}
      : tensor<?x64xf32>, tensor<48x64xf8E4M3FN> -> tensor<?x48xf32>
  %u = xfmr.linear %y, %wsu scale(%ssu : tensor<1x1xf32>) {scale_layout = #blocks}
      : tensor<?x64xf32>, tensor<48x64xf8E4M3FN> -> tensor<?x48xf32>
  %a = xfmr.swiglu %g, %u : tensor<?x48xf32>
  %shared = xfmr.linear %a, %wsd scale(%ssd : tensor<1x1xf32>) {scale_layout = #blocks}
      : tensor<?x48xf32>, tensor<64x48xf8E4M3FN> -> tensor<?x64xf32>
  %moe = xfmr.add %routed, %shared : tensor<?x64xf32>
  %h2 = xfmr.add %h1, %moe : tensor<?x64xf32>
  // CHECK: return %{{.+}}, %[[C1]]
  return %h2, %cache1 : tensor<?x64xf32>, !cache
}
