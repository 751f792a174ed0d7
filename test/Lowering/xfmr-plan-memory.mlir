// RUN: xfmr-opt %s --xfmr-plan-memory --split-input-file --verify-diagnostics | FileCheck %s
// The plan round-trips.
// RUN: xfmr-opt %s --xfmr-plan-memory --split-input-file --verify-diagnostics | xfmr-opt --split-input-file | FileCheck %s

!cache = !xfmr.kv_cache<i8, capacity = 16, heads = 2, key_dim = 8, value_dim = 8>

// One slot per distinct stored weight, in first-use order, 64-byte aligned:
// "embed" once for both entry points; "w" is only quantized at compile time,
// so its FP8 codes and scales are stored (computed by the packer), not "w".
// An 8-bit KV cache is 16 x 2 x 16 codes then 16 x 2 x 2 f32 scales (768
// bytes). MoE counters follow the caches, named after the op's location.
// CHECK-LABEL: module attributes {xfmr.memory_plan = #xfmr.memory_plan<weights = [
// CHECK-SAME: #xfmr.weight_slot<source = "embed", offset = 0, bytes = 1024, type = tensor<32x8xf32>>,
// CHECK-SAME: #xfmr.weight_slot<source = "w", offset = 1024, bytes = 64, type = tensor<8x8xf8E4M3FN>, transform = #xfmr.quantized_weight<part = codes, layout = <block [4, 4]>, source_type = tensor<8x8xf32>>>,
// CHECK-SAME: #xfmr.weight_slot<source = "w", offset = 1088, bytes = 16, type = tensor<2x2xf32>, transform = #xfmr.quantized_weight<part = scales, layout = <block [4, 4]>, source_type = tensor<8x8xf32>>>,
// CHECK-SAME: #xfmr.weight_slot<source = "gate", offset = 1152,
// CHECK-SAME: caches = [#xfmr.cache_slot<offset = 0, bytes = 768, type = !xfmr.kv_cache<i8, capacity = 16, heads = 2, key_dim = 8, value_dim = 8>>],
// CHECK-SAME: counters = [#xfmr.counter_slot<name = "model.layers.0.mlp", offset = 768, experts = 4>],
// CHECK-SAME: cache_bytes = 832>
// Hand-written IR gets the vocabulary (the logits' width) the manifest needs.
// CHECK-SAME: xfmr.model = {vocab_size = 32 : i64}
// CHECK-LABEL: func.func @prefill
// CHECK: xfmr.weight "embed" {xfmr.slot = 0 : i64}
// CHECK: %[[W:.+]] = xfmr.weight "w" : tensor<8x8xf32>
// CHECK: xfmr.quantize %[[W]] {layout = {{.+}}, xfmr.scale_slot = 2 : i64, xfmr.slot = 1 : i64}
// CHECK-LABEL: func.func @decode
// CHECK: xfmr.weight "embed" {xfmr.slot = 0 : i64}
func.func @prefill(%ids: tensor<?xi32>, %start: index, %c: !cache) -> (tensor<?x32xf32>, !cache)
    attributes {xfmr.entry = "prefill"} {
  %emb = xfmr.weight "embed" : tensor<32x8xf32>
  %x = xfmr.embedding %emb[%ids] : tensor<32x8xf32>, tensor<?xi32> -> tensor<?x8xf32>
  %w = xfmr.weight "w" : tensor<8x8xf32>
  %wq, %ws = xfmr.quantize %w {layout = #xfmr.scale_layout<block [4, 4]>}
      : tensor<8x8xf32> -> tensor<8x8xf8E4M3FN>, tensor<2x2xf32>
  %y = xfmr.linear %x, %wq scale(%ws : tensor<2x2xf32>) {scale_layout = #xfmr.scale_layout<block [4, 4]>}
      : tensor<?x8xf32>, tensor<8x8xf8E4M3FN> -> tensor<?x8xf32>
  %g = xfmr.weight "gate" : tensor<4x8xf32>
  %eg = xfmr.weight "experts.gate" : tensor<4x6x8xf32>
  %eu = xfmr.weight "experts.up" : tensor<4x6x8xf32>
  %ed = xfmr.weight "experts.down" : tensor<4x8x6xf32>
  %rw, %ri = xfmr.moe_gate %y, %g {scoring = #xfmr<scoring softmax>, top_k = 2 : i64, norm_topk_prob = true}
      : tensor<?x8xf32>, tensor<4x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %m = xfmr.moe_experts %y, %rw, %ri, %eg, %eu, %ed
      : tensor<?x8xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32> -> tensor<?x8xf32> loc("model.layers.0.mlp")
  %q3 = xfmr.split_heads %m : tensor<?x8xf32> -> tensor<?x2x4xf32>
  %k3 = xfmr.split_heads %m : tensor<?x8xf32> -> tensor<?x2x4xf32>
  %logits = xfmr.linear %m, %emb : tensor<?x8xf32>, tensor<32x8xf32> -> tensor<?x32xf32>
  return %logits, %c : tensor<?x32xf32>, !cache
}
func.func @decode(%ids: tensor<?xi32>, %start: index, %c: !cache) -> (tensor<?x32xf32>, !cache)
    attributes {xfmr.entry = "decode"} {
  %emb = xfmr.weight "embed" : tensor<32x8xf32>
  %x = xfmr.embedding %emb[%ids] : tensor<32x8xf32>, tensor<?xi32> -> tensor<?x8xf32>
  %g = xfmr.weight "gate" : tensor<4x8xf32>
  %eg = xfmr.weight "experts.gate" : tensor<4x6x8xf32>
  %eu = xfmr.weight "experts.up" : tensor<4x6x8xf32>
  %ed = xfmr.weight "experts.down" : tensor<4x8x6xf32>
  %rw, %ri = xfmr.moe_gate %x, %g {scoring = #xfmr<scoring softmax>, top_k = 2 : i64, norm_topk_prob = true}
      : tensor<?x8xf32>, tensor<4x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
  %m = xfmr.moe_experts %x, %rw, %ri, %eg, %eu, %ed
      : tensor<?x8xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<4x6x8xf32>, tensor<4x6x8xf32>, tensor<4x8x6xf32> -> tensor<?x8xf32> loc("model.layers.0.mlp")
  %logits = xfmr.linear %m, %emb : tensor<?x8xf32>, tensor<32x8xf32> -> tensor<?x32xf32>
  return %logits, %c : tensor<?x32xf32>, !cache
}

// -----

// A latent cache with 8-bit codes: 16 x 64 codes (1024 bytes), one f32 scale
// per token and 128-channel block at 1024 (64 bytes), 16 x 4 bf16 k_pe at
// 1088 (128 bytes).
!latent = !xfmr.latent_cache<f8E4M3FN, capacity = 16, latent_dim = 64, rope_dim = 4>
// CHECK-LABEL: module attributes {xfmr.memory_plan = #xfmr.memory_plan<weights = [#xfmr.weight_slot<source = "embed", offset = 0, bytes = 1024, type = tensor<32x8xf32>>],
// CHECK-SAME: caches = [#xfmr.cache_slot<offset = 0, bytes = 1216, type = !xfmr.latent_cache<f8E4M3FN, capacity = 16, latent_dim = 64, rope_dim = 4>>, #xfmr.cache_slot<offset = 1216, bytes = 1216,
// CHECK-SAME: counters = [], weight_bytes = 1024, cache_bytes = 2432>
func.func @decode(%ids: tensor<?xi32>, %start: index, %c0: !latent, %c1: !latent) -> (tensor<?x32xf32>, !latent, !latent)
    attributes {xfmr.entry = "decode"} {
  %emb = xfmr.weight "embed" : tensor<32x8xf32>
  %x = xfmr.embedding %emb[%ids] : tensor<32x8xf32>, tensor<?xi32> -> tensor<?x8xf32>
  %logits = xfmr.linear %x, %emb : tensor<?x8xf32>, tensor<32x8xf32> -> tensor<?x32xf32>
  return %logits, %c0, %c1 : tensor<?x32xf32>, !latent, !latent
}

// -----

// A cache of 16 pages or more starts at a page, and so do its parts, so that a
// runtime can page it block by block: 1500 x 2 x 16 i8 codes (48000 bytes),
// then the f32 scales at the next page (49152), 73152 bytes in all, after a
// small cache packed at 64 bytes.
!small = !xfmr.kv_cache<i8, capacity = 16, heads = 2, key_dim = 8, value_dim = 8>
!large = !xfmr.kv_cache<i8, capacity = 1500, heads = 2, key_dim = 8, value_dim = 8>
// CHECK-LABEL: module attributes {xfmr.memory_plan = #xfmr.memory_plan<weights = [#xfmr.weight_slot<source = "embed", offset = 0, bytes = 1024, type = tensor<32x8xf32>>],
// CHECK-SAME: caches = [#xfmr.cache_slot<offset = 0, bytes = 768, type = !xfmr.kv_cache<i8, capacity = 16, {{.+}}>>, #xfmr.cache_slot<offset = 4096, bytes = 73152, type = !xfmr.kv_cache<i8, capacity = 1500, {{.+}}>>],
// CHECK-SAME: cache_bytes = 77248>
func.func @decode(%ids: tensor<?xi32>, %start: index, %c0: !small, %c1: !large) -> (tensor<?x32xf32>, !small, !large)
    attributes {xfmr.entry = "decode"} {
  %emb = xfmr.weight "embed" : tensor<32x8xf32>
  %x = xfmr.embedding %emb[%ids] : tensor<32x8xf32>, tensor<?xi32> -> tensor<?x8xf32>
  %logits = xfmr.linear %x, %emb : tensor<?x8xf32>, tensor<32x8xf32> -> tensor<?x32xf32>
  return %logits, %c0, %c1 : tensor<?x32xf32>, !small, !large
}

// -----

// expected-error @+1 {{'func.func' op is not an entry point; xfmr compiles modules of entry points (func.func with xfmr.entry) only}}
func.func @helper(%x: tensor<?x8xf32>) -> tensor<?x8xf32> {
  return %x : tensor<?x8xf32>
}

// -----

// expected-error @+1 {{no entry point (func.func with xfmr.entry) to lower}}
module {
}

// -----

// expected-error @+1 {{'func.func' op entry point must take (tensor<?xi32> ids, index start, caches...)}}
func.func @prefill(%ids: tensor<?xi64>, %start: index) -> tensor<?x32xf32> attributes {xfmr.entry = "prefill"} {
  %emb = xfmr.weight "embed" : tensor<32x8xf32>
  %x = arith.constant dense<0.0> : tensor<4x32xf32>
  %y = tensor.cast %x : tensor<4x32xf32> to tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}

// -----

func.func @prefill(%ids: tensor<?xi32>, %start: index) -> tensor<?x32xf32> attributes {xfmr.entry = "prefill"} {
  %emb = xfmr.weight "embed" : tensor<32x8xf32>
  %h = xfmr.embedding %emb[%ids] : tensor<32x8xf32>, tensor<?xi32> -> tensor<?x8xf32>
  // expected-error @+1 {{'xfmr.weight' op weight 'embed' is used with two types}}
  %other = xfmr.weight "embed" : tensor<32x8xbf16>
  %logits = xfmr.linear %h, %other : tensor<?x8xf32>, tensor<32x8xbf16> -> tensor<?x32xf32>
  return %logits : tensor<?x32xf32>
}

// -----

func.func @prefill(%ids: tensor<?xi32>, %start: index, %c: !xfmr.kv_cache<f32, capacity = 16, heads = 1, key_dim = 8, value_dim = 8>)
    -> (tensor<?x32xf32>, !xfmr.kv_cache<f32, capacity = 16, heads = 1, key_dim = 8, value_dim = 8>)
    attributes {xfmr.entry = "prefill"} {
  %emb = xfmr.weight "embed" : tensor<32x8xf32>
  %h = xfmr.embedding %emb[%ids] : tensor<32x8xf32>, tensor<?xi32> -> tensor<?x8xf32>
  %logits = xfmr.linear %h, %emb : tensor<?x8xf32>, tensor<32x8xf32> -> tensor<?x32xf32>
  return %logits, %c : tensor<?x32xf32>, !xfmr.kv_cache<f32, capacity = 16, heads = 1, key_dim = 8, value_dim = 8>
}
// expected-error @+1 {{'func.func' op entry points must share one cache layout}}
func.func @decode(%ids: tensor<?xi32>, %start: index, %c: !xfmr.kv_cache<f32, capacity = 32, heads = 1, key_dim = 8, value_dim = 8>)
    -> (tensor<?x32xf32>, !xfmr.kv_cache<f32, capacity = 32, heads = 1, key_dim = 8, value_dim = 8>)
    attributes {xfmr.entry = "decode"} {
  %emb = xfmr.weight "embed" : tensor<32x8xf32>
  %h = xfmr.embedding %emb[%ids] : tensor<32x8xf32>, tensor<?xi32> -> tensor<?x8xf32>
  %logits = xfmr.linear %h, %emb : tensor<?x8xf32>, tensor<32x8xf32> -> tensor<?x32xf32>
  return %logits, %c : tensor<?x32xf32>, !xfmr.kv_cache<f32, capacity = 32, heads = 1, key_dim = 8, value_dim = 8>
}

// -----

func.func @prefill(%ids: tensor<?xi32>, %start: index) -> tensor<?x32xf32> attributes {xfmr.entry = "prefill"} {
  %emb = xfmr.weight "embed" : tensor<16x8xf32>
  // expected-error @+1 {{'xfmr.embedding' op table has 16 rows but the logits have 32 entries: token ids in [16, 32) would read past the table}}
  %h = xfmr.embedding %emb[%ids] : tensor<16x8xf32>, tensor<?xi32> -> tensor<?x8xf32>
  %w = xfmr.weight "head" : tensor<32x8xf32>
  %logits = xfmr.linear %h, %w : tensor<?x8xf32>, tensor<32x8xf32> -> tensor<?x32xf32>
  return %logits : tensor<?x32xf32>
}
