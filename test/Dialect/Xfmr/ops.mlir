// Every xfmr op, type and attribute round-trips through the custom and the
// generic form.
// RUN: xfmr-opt %s | xfmr-opt | FileCheck %s
// RUN: xfmr-opt %s --mlir-print-op-generic | xfmr-opt | FileCheck %s

// CHECK-LABEL: func.func @weights
func.func @weights() -> (tensor<16x8xbf16>, tensor<4x16x8xf8E4M3FN>) {
  // CHECK: xfmr.weight "model.layers.0.mlp.up_proj.weight" : tensor<16x8xbf16>
  %0 = xfmr.weight "model.layers.0.mlp.up_proj.weight" : tensor<16x8xbf16>
  // CHECK: xfmr.weight "model.layers.1.mlp.experts.*.up_proj.weight" : tensor<4x16x8xf8E4M3FN>
  %1 = xfmr.weight "model.layers.1.mlp.experts.*.up_proj.weight" : tensor<4x16x8xf8E4M3FN>
  return %0, %1 : tensor<16x8xbf16>, tensor<4x16x8xf8E4M3FN>
}

// CHECK-LABEL: func.func @embedding
func.func @embedding(%t: tensor<32x8xbf16>, %ids: tensor<?xi64>) -> tensor<?x8xf32> {
  // CHECK: xfmr.embedding %{{.+}}[%{{.+}}] : tensor<32x8xbf16>, tensor<?xi64> -> tensor<?x8xf32>
  %0 = xfmr.embedding %t[%ids] : tensor<32x8xbf16>, tensor<?xi64> -> tensor<?x8xf32>
  return %0 : tensor<?x8xf32>
}

// CHECK-LABEL: func.func @norm_and_linear
func.func @norm_and_linear(%x: tensor<?x8xf32>, %n: tensor<8xf32>, %w: tensor<16x8xf16>,
                           %b: tensor<16xf32>, %w8: tensor<16x8xf8E5M2>, %s: tensor<16xf32>)
    -> (tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x16xf32>) {
  // CHECK: %[[N:.+]] = xfmr.rms_norm %{{.+}}, %{{.+}} {eps = 9.9999999999999995E-7 : f64} : tensor<?x8xf32>, tensor<8xf32>
  %0 = xfmr.rms_norm %x, %n {eps = 1.0e-06 : f64} : tensor<?x8xf32>, tensor<8xf32>
  // CHECK: xfmr.linear %[[N]], %{{.+}} : tensor<?x8xf32>, tensor<16x8xf16> -> tensor<?x16xf32>
  %1 = xfmr.linear %0, %w : tensor<?x8xf32>, tensor<16x8xf16> -> tensor<?x16xf32>
  // CHECK: xfmr.linear %[[N]], %{{.+}} bias(%{{.+}} : tensor<16xf32>) : tensor<?x8xf32>, tensor<16x8xf16> -> tensor<?x16xf32>
  %2 = xfmr.linear %0, %w bias(%b : tensor<16xf32>) : tensor<?x8xf32>, tensor<16x8xf16> -> tensor<?x16xf32>
  // CHECK: xfmr.linear %[[N]], %{{.+}} bias(%{{.+}} : tensor<16xf32>) scale(%{{.+}} : tensor<16xf32>) {scale_layout = #xfmr.scale_layout<per_channel>}
  %3 = xfmr.linear %0, %w8 bias(%b : tensor<16xf32>) scale(%s : tensor<16xf32>)
      {scale_layout = #xfmr.scale_layout<per_channel>} : tensor<?x8xf32>, tensor<16x8xf8E5M2> -> tensor<?x16xf32>
  return %1, %2, %3 : tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x16xf32>
}

// CHECK-LABEL: func.func @elementwise
func.func @elementwise(%a: tensor<?x16xbf16>, %b: tensor<?x16xbf16>) -> tensor<?x16xbf16> {
  // CHECK: xfmr.add %{{.+}}, %{{.+}} : tensor<?x16xbf16>
  %0 = xfmr.add %a, %b : tensor<?x16xbf16>
  // CHECK: xfmr.mul %{{.+}}, %{{.+}} : tensor<?x16xbf16>
  %1 = xfmr.mul %0, %b : tensor<?x16xbf16>
  // CHECK: xfmr.silu %{{.+}} : tensor<?x16xbf16>
  %2 = xfmr.silu %1 : tensor<?x16xbf16>
  // CHECK: xfmr.gelu %{{.+}} : tensor<?x16xbf16>
  %3 = xfmr.gelu %2 : tensor<?x16xbf16>
  // CHECK: xfmr.gelu %{{.+}} {approximate} : tensor<?x16xbf16>
  %4 = xfmr.gelu %3 {approximate} : tensor<?x16xbf16>
  // CHECK: xfmr.swiglu %{{.+}}, %{{.+}} : tensor<?x16xbf16>
  %5 = xfmr.swiglu %4, %a : tensor<?x16xbf16>
  return %5 : tensor<?x16xbf16>
}

// CHECK-LABEL: func.func @shapes
func.func @shapes(%x: tensor<?x40xf32>) -> (tensor<?x32xf32>, tensor<?x1x8xf32>) {
  // CHECK: %[[P:.+]]:2 = xfmr.split %{{.+}} : tensor<?x40xf32> -> tensor<?x32xf32>, tensor<?x8xf32>
  %a, %b = xfmr.split %x : tensor<?x40xf32> -> tensor<?x32xf32>, tensor<?x8xf32>
  // CHECK: xfmr.split_heads %[[P]]#0 : tensor<?x32xf32> -> tensor<?x4x8xf32>
  %h = xfmr.split_heads %a : tensor<?x32xf32> -> tensor<?x4x8xf32>
  // CHECK: xfmr.merge_heads %{{.+}} : tensor<?x4x8xf32> -> tensor<?x32xf32>
  %m = xfmr.merge_heads %h : tensor<?x4x8xf32> -> tensor<?x32xf32>
  %r = xfmr.split_heads %b : tensor<?x8xf32> -> tensor<?x1x8xf32>
  return %m, %r : tensor<?x32xf32>, tensor<?x1x8xf32>
}

// CHECK-LABEL: func.func @rope
func.func @rope(%x: tensor<?x2x16xf32>, %p: index) -> (tensor<?x2x16xf32>, tensor<?x2x16xf32>, tensor<?x2x16xf32>) {
  // CHECK: {config = #xfmr.rope<theta = 500000.0, scaling = llama3, factor = 8.0, original_max_positions = 8192>}
  %0 = xfmr.rope %x at %p {config = #xfmr.rope<theta = 500000.0, scaling = llama3, factor = 8.0,
                                               original_max_positions = 8192, low_freq_factor = 1.0,
                                               high_freq_factor = 4.0>} : tensor<?x2x16xf32>
  // CHECK: {config = #xfmr.rope<theta = 10000.0, rotary_dim = 8, scaling = linear, factor = 2.5>}
  %1 = xfmr.rope %0 at %p {config = #xfmr.rope<theta = 10000.0, rotary_dim = 8, scaling = linear, factor = 2.5>} : tensor<?x2x16xf32>
  // CHECK: {config = #xfmr.rope<theta = 10000.0, style = interleaved, scaling = yarn, factor = 40.0, original_max_positions = 4096, beta_fast = 16.0, beta_slow = 0.5, mscale = 0.707, mscale_all_dim = 0.707>}
  %2 = xfmr.rope %1 at %p {config = #xfmr.rope<theta = 10000.0, style = interleaved, scaling = yarn, factor = 40.0,
                                               original_max_positions = 4096, beta_fast = 16.0, beta_slow = 0.5,
                                               mscale = 0.707, mscale_all_dim = 0.707>} : tensor<?x2x16xf32>
  return %0, %1, %2 : tensor<?x2x16xf32>, tensor<?x2x16xf32>, tensor<?x2x16xf32>
}

// The default layout (token_major) is not printed.
// CHECK-LABEL: func.func @attention
// CHECK-SAME: !xfmr.kv_cache<f16, capacity = 64, heads = 1, key_dim = 8, value_dim = 4>
func.func @attention(%q: tensor<?x4x8xf16>, %k: tensor<?x1x8xf16>, %v: tensor<?x1x4xf16>, %p: index,
                     %c: !xfmr.kv_cache<f16, capacity = 64, heads = 1, key_dim = 8, value_dim = 4, layout = token_major>)
    -> tensor<?x4x4xf16> {
  // CHECK: xfmr.attention %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}[%{{.+}}] {scale = 1.250000e-01 : f64, sliding_window = 16 : i64}
  %o, %c1 = xfmr.attention %q, %k, %v, %c[%p] {scale = 0.125 : f64, sliding_window = 16 : i64}
      : tensor<?x4x8xf16>, tensor<?x1x8xf16>, tensor<?x1x4xf16>,
        !xfmr.kv_cache<f16, capacity = 64, heads = 1, key_dim = 8, value_dim = 4, layout = token_major> -> tensor<?x4x4xf16>
  return %o : tensor<?x4x4xf16>
}

// An evicting ring: 4 sinks + a window of 12 in a cache of 16.
// CHECK-LABEL: func.func @attention_sinks
// CHECK: xfmr.attention {{.*}} {scale = 1.250000e-01 : f64, sinks = 4 : i64, sliding_window = 12 : i64}
func.func @attention_sinks(%q: tensor<?x4x8xf32>, %k: tensor<?x2x8xf32>, %p: index,
                           %c: !xfmr.kv_cache<i8, capacity = 16, heads = 2, key_dim = 8, value_dim = 8>)
    -> tensor<?x4x8xf32> {
  %o, %c1 = xfmr.attention %q, %k, %k, %c[%p] {scale = 0.125 : f64, sinks = 4 : i64, sliding_window = 12 : i64}
      : tensor<?x4x8xf32>, tensor<?x2x8xf32>, tensor<?x2x8xf32>,
        !xfmr.kv_cache<i8, capacity = 16, heads = 2, key_dim = 8, value_dim = 8> -> tensor<?x4x8xf32>
  return %o : tensor<?x4x8xf32>
}

// CHECK-LABEL: func.func @mla_latent
// CHECK-SAME: !xfmr.latent_cache<f8E4M3FN, capacity = 128, latent_dim = 32, rope_dim = 8>
func.func @mla_latent(%q: tensor<?x4x24xf32>, %ckv: tensor<?x32xf32>, %kpe: tensor<?x1x8xf32>,
                      %w: tensor<128x32xbf16>, %p: index,
                      %c: !xfmr.latent_cache<f8E4M3FN, capacity = 128, latent_dim = 32, rope_dim = 8>)
    -> tensor<?x4x16xf32> {
  // CHECK: xfmr.mla_attention %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}[%{{.+}}] {scale = 2.000000e-01 : f64}
  %o, %c1 = xfmr.mla_attention %q, %ckv, %kpe, %w, %c[%p] {scale = 0.2 : f64}
      : tensor<?x4x24xf32>, tensor<?x32xf32>, tensor<?x1x8xf32>, tensor<128x32xbf16>,
        !xfmr.latent_cache<f8E4M3FN, capacity = 128, latent_dim = 32, rope_dim = 8> -> tensor<?x4x16xf32>
  return %o : tensor<?x4x16xf32>
}

// MLA with W_UK/W_UV folded at compile time (xfmr-absorb-mla{fold=true}).
// CHECK-LABEL: func.func @mla_folded
func.func @mla_folded(%ql: tensor<?x4x32xf32>, %qr: tensor<?x4x8xf32>, %ckv: tensor<?x32xf32>,
                      %kpe: tensor<?x1x8xf32>, %p: index,
                      %c: !xfmr.latent_cache<bf16, capacity = 20, latent_dim = 32, rope_dim = 8>,
                      %wq: tensor<96x24xbf16>, %wkv: tensor<128x32xbf16>, %wo: tensor<48x64xf32>)
    -> tensor<?x4x32xf32> {
  // CHECK: xfmr.mla_latent_attention %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}[%{{.+}}] {scale = 2.000000e-01 : f64, sinks = 4 : i64, sliding_window = 16 : i64}
  %o, %c1 = xfmr.mla_latent_attention %ql, %qr, %ckv, %kpe, %c[%p] {scale = 0.2 : f64, sinks = 4 : i64, sliding_window = 16 : i64}
      : tensor<?x4x32xf32>, tensor<?x4x8xf32>, tensor<?x32xf32>, tensor<?x1x8xf32>,
        !xfmr.latent_cache<bf16, capacity = 20, latent_dim = 32, rope_dim = 8> -> tensor<?x4x32xf32>
  // CHECK: xfmr.fold_mla_weight %{{.+}}, %{{.+}} {heads = 4 : i64, kind = #xfmr<mla_fold query_latent>, nope = 16 : i64, rope = 8 : i64, value_dim = 16 : i64} : tensor<96x24xbf16>, tensor<128x32xbf16> -> tensor<128x24xf32>
  %a = xfmr.fold_mla_weight %wq, %wkv {kind = #xfmr<mla_fold query_latent>, heads = 4 : i64, nope = 16 : i64, rope = 8 : i64, value_dim = 16 : i64}
      : tensor<96x24xbf16>, tensor<128x32xbf16> -> tensor<128x24xf32>
  // CHECK: xfmr.fold_mla_weight %{{.+}} {{{.+}}kind = #xfmr<mla_fold query_rope>{{.+}}} : tensor<96x24xbf16> -> tensor<32x24xf32>
  %b = xfmr.fold_mla_weight %wq {kind = #xfmr<mla_fold query_rope>, heads = 4 : i64, nope = 16 : i64, rope = 8 : i64, value_dim = 16 : i64}
      : tensor<96x24xbf16> -> tensor<32x24xf32>
  // CHECK: xfmr.fold_mla_weight {{.+}}kind = #xfmr<mla_fold output>{{.+}} : tensor<48x64xf32>, tensor<128x32xbf16> -> tensor<48x128xf32>
  %d = xfmr.fold_mla_weight %wo, %wkv {kind = #xfmr<mla_fold output>, heads = 4 : i64, nope = 16 : i64, rope = 8 : i64, value_dim = 16 : i64}
      : tensor<48x64xf32>, tensor<128x32xbf16> -> tensor<48x128xf32>
  return %o : tensor<?x4x32xf32>
}

// CHECK-LABEL: func.func @moe
func.func @moe(%x: tensor<?x8xf32>, %g: tensor<4x8xf32>, %eg: tensor<4x6x8xf32>, %eu: tensor<4x6x8xf32>,
               %ed: tensor<4x8x6xf32>, %sg: tensor<6x8xf32>, %sd: tensor<8x6xf32>,
               %qg: tensor<4x6x8xf8E4M3FN>, %qd: tensor<4x8x6xf8E4M3FN>, %qs: tensor<4x1x1xf32>) -> tensor<?x8xf32> {
  // CHECK: xfmr.moe_gate %{{.+}}, %{{.+}} {norm_topk_prob = true, scoring = #xfmr<scoring softmax>, top_k = 2 : i64} : tensor<?x8xf32>, tensor<4x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %w, %i = xfmr.moe_gate %x, %g {scoring = #xfmr<scoring softmax>, top_k = 2 : i64, norm_topk_prob = true}
      : tensor<?x8xf32>, tensor<4x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  // CHECK: xfmr.moe_experts %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}} : tensor<?x8xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32> -> tensor<?x8xf32>
  %y = xfmr.moe_experts %x, %w, %i, %eg, %eu, %ed
      : tensor<?x8xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32> -> tensor<?x8xf32>
  // The evaluation form; dense (the default) is not printed.
  // CHECK: xfmr.moe_experts {{.+}} {dispatch = #xfmr<moe_dispatch grouped>}
  %z = xfmr.moe_experts %x, %w, %i, %eg, %eu, %ed {dispatch = #xfmr<moe_dispatch grouped>}
      : tensor<?x8xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32> -> tensor<?x8xf32>
  // CHECK: xfmr.moe_experts {{.+}} {dispatch = #xfmr<moe_dispatch sparse>}
  %s = xfmr.moe_experts %x, %w, %i, %eg, %eu, %ed {dispatch = #xfmr<moe_dispatch sparse>}
      : tensor<?x8xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32> -> tensor<?x8xf32>
  // A fused shared expert (DeepSeek).
  // CHECK: xfmr.moe_experts {{.+}} shared(%{{.+}}, %{{.+}}, %{{.+}} : tensor<6x8xf32>, tensor<6x8xf32>, tensor<8x6xf32>) {dispatch = #xfmr<moe_dispatch sparse>}
  %sh = xfmr.moe_experts %x, %w, %i, %eg, %eu, %ed shared(%sg, %sg, %sd : tensor<6x8xf32>, tensor<6x8xf32>, tensor<8x6xf32>)
      {dispatch = #xfmr<moe_dispatch sparse>}
      : tensor<?x8xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32> -> tensor<?x8xf32>
  // FP8 experts whose SwiGLU outputs are quantized per token in groups of 128.
  // CHECK: xfmr.moe_experts {{.+}} scales({{.+}}) {activation_group = 128 : i64, scale_layout = #xfmr.scale_layout<block [128, 128]>}
  %q = xfmr.moe_experts %x, %w, %i, %qg, %qg, %qd scales(%qs, %qs, %qs : tensor<4x1x1xf32>, tensor<4x1x1xf32>, tensor<4x1x1xf32>)
      {activation_group = 128 : i64, scale_layout = #xfmr.scale_layout<block [128, 128]>}
      : tensor<?x8xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<4x6x8xf8E4M3FN>, tensor<4x6x8xf8E4M3FN>, tensor<4x8x6xf8E4M3FN> -> tensor<?x8xf32>
  // CHECK: xfmr.moe_experts {{[^{]+}} : tensor<?x8xf32>
  %d = xfmr.moe_experts %x, %w, %i, %eg, %eu, %ed {dispatch = #xfmr<moe_dispatch dense>}
      : tensor<?x8xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32> -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

// CHECK-LABEL: func.func @quantization
func.func @quantization(%x: tensor<?x200xf32>, %w: tensor<300x200xbf16>) -> (tensor<?x200xf32>, tensor<300x200xi8>) {
  // CHECK: xfmr.quantize %{{.+}} {layout = #xfmr.scale_layout<block [1, 128]>} : tensor<?x200xf32> -> tensor<?x200xf8E4M3FNUZ>, tensor<?x2xf32>
  %q, %s = xfmr.quantize %x {layout = #xfmr.scale_layout<block [1, 128]>}
      : tensor<?x200xf32> -> tensor<?x200xf8E4M3FNUZ>, tensor<?x2xf32>
  // CHECK: xfmr.dequantize %{{.+}}, %{{.+}} {layout = #xfmr.scale_layout<block [1, 128]>} : tensor<?x200xf8E4M3FNUZ>, tensor<?x2xf32> -> tensor<?x200xf32>
  %d = xfmr.dequantize %q, %s {layout = #xfmr.scale_layout<block [1, 128]>}
      : tensor<?x200xf8E4M3FNUZ>, tensor<?x2xf32> -> tensor<?x200xf32>
  // CHECK: xfmr.quantize %{{.+}} {layout = #xfmr.scale_layout<per_tensor>} : tensor<300x200xbf16> -> tensor<300x200xi8>, tensor<f32>
  %qi, %si = xfmr.quantize %w {layout = #xfmr.scale_layout<per_tensor>}
      : tensor<300x200xbf16> -> tensor<300x200xi8>, tensor<f32>
  return %d, %qi : tensor<?x200xf32>, tensor<300x200xi8>
}

// Int4 weights: f16 scales per row and group of 32 inputs (xfmr-quantize-int4).
// CHECK-LABEL: func.func @int4_linear
func.func @int4_linear(%x: tensor<?x200xf32>, %w: tensor<300x200xbf16>) -> tensor<?x300xf32> {
  // CHECK: xfmr.quantize %{{.+}} {layout = #xfmr.scale_layout<block [1, 32]>} : tensor<300x200xbf16> -> tensor<300x200xi4>, tensor<300x7xf16>
  %q, %s = xfmr.quantize %w {layout = #xfmr.scale_layout<block [1, 32]>}
      : tensor<300x200xbf16> -> tensor<300x200xi4>, tensor<300x7xf16>
  // CHECK: xfmr.linear %{{.+}}, %{{.+}} scale(%{{.+}} : tensor<300x7xf16>) {scale_layout = #xfmr.scale_layout<block [1, 32]>} : tensor<?x200xf32>, tensor<300x200xi4> -> tensor<?x300xf32>
  %y = xfmr.linear %x, %q scale(%s : tensor<300x7xf16>) {scale_layout = #xfmr.scale_layout<block [1, 32]>}
      : tensor<?x200xf32>, tensor<300x200xi4> -> tensor<?x300xf32>
  return %y : tensor<?x300xf32>
}
