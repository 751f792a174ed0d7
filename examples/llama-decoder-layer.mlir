// A Llama decoder layer with embedding and tied LM head, shaped like stories260K
// (hidden 64, 8 heads, 4 KV heads, head dim 8, ffn 172, vocab 512). The MLP is
// written unfused (silu, mul) as an importer might; xfmr-graph-opt fuses it.

!cache = !xfmr.kv_cache<f32, capacity = 512, heads = 4, key_dim = 8, value_dim = 8>

func.func @prefill(%ids: tensor<?xi32>, %start: index, %cache: !cache)
    -> (tensor<?x512xf32>, !cache) attributes {xfmr.entry = "prefill"} {
  %emb = xfmr.weight "model.embed_tokens.weight" : tensor<512x64xf32>
  %h = xfmr.embedding %emb[%ids] : tensor<512x64xf32>, tensor<?xi32> -> tensor<?x64xf32>

  // Attention block.
  %ln1 = xfmr.weight "model.layers.0.input_layernorm.weight" : tensor<64xf32>
  %x = xfmr.rms_norm %h, %ln1 {eps = 1.0e-05 : f64} : tensor<?x64xf32>, tensor<64xf32>
  %wq = xfmr.weight "model.layers.0.self_attn.q_proj.weight" : tensor<64x64xf32>
  %wk = xfmr.weight "model.layers.0.self_attn.k_proj.weight" : tensor<32x64xf32>
  %wv = xfmr.weight "model.layers.0.self_attn.v_proj.weight" : tensor<32x64xf32>
  %wo = xfmr.weight "model.layers.0.self_attn.o_proj.weight" : tensor<64x64xf32>
  %q = xfmr.linear %x, %wq : tensor<?x64xf32>, tensor<64x64xf32> -> tensor<?x64xf32>
  %k = xfmr.linear %x, %wk : tensor<?x64xf32>, tensor<32x64xf32> -> tensor<?x32xf32>
  %v = xfmr.linear %x, %wv : tensor<?x64xf32>, tensor<32x64xf32> -> tensor<?x32xf32>
  %q3 = xfmr.split_heads %q : tensor<?x64xf32> -> tensor<?x8x8xf32>
  %k3 = xfmr.split_heads %k : tensor<?x32xf32> -> tensor<?x4x8xf32>
  %v3 = xfmr.split_heads %v : tensor<?x32xf32> -> tensor<?x4x8xf32>
  %qr = xfmr.rope %q3 at %start {config = #xfmr.rope<theta = 10000.0>} : tensor<?x8x8xf32>
  %kr = xfmr.rope %k3 at %start {config = #xfmr.rope<theta = 10000.0>} : tensor<?x4x8xf32>
  %o, %cache1 = xfmr.attention %qr, %kr, %v3, %cache[%start] {scale = 0.35355339059327379 : f64}
      : tensor<?x8x8xf32>, tensor<?x4x8xf32>, tensor<?x4x8xf32>, !cache -> tensor<?x8x8xf32>
  %om = xfmr.merge_heads %o : tensor<?x8x8xf32> -> tensor<?x64xf32>
  %attn = xfmr.linear %om, %wo : tensor<?x64xf32>, tensor<64x64xf32> -> tensor<?x64xf32>
  %h1 = xfmr.add %h, %attn : tensor<?x64xf32>

  // SwiGLU MLP block.
  %ln2 = xfmr.weight "model.layers.0.post_attention_layernorm.weight" : tensor<64xf32>
  %y = xfmr.rms_norm %h1, %ln2 {eps = 1.0e-05 : f64} : tensor<?x64xf32>, tensor<64xf32>
  %wg = xfmr.weight "model.layers.0.mlp.gate_proj.weight" : tensor<172x64xf32>
  %wu = xfmr.weight "model.layers.0.mlp.up_proj.weight" : tensor<172x64xf32>
  %wd = xfmr.weight "model.layers.0.mlp.down_proj.weight" : tensor<64x172xf32>
  %g = xfmr.linear %y, %wg : tensor<?x64xf32>, tensor<172x64xf32> -> tensor<?x172xf32>
  %u = xfmr.linear %y, %wu : tensor<?x64xf32>, tensor<172x64xf32> -> tensor<?x172xf32>
  %s = xfmr.silu %g : tensor<?x172xf32>
  %a = xfmr.mul %s, %u : tensor<?x172xf32>
  %m = xfmr.linear %a, %wd : tensor<?x172xf32>, tensor<64x172xf32> -> tensor<?x64xf32>
  %h2 = xfmr.add %h1, %m : tensor<?x64xf32>

  // Final norm and tied LM head.
  %lnf = xfmr.weight "model.norm.weight" : tensor<64xf32>
  %z = xfmr.rms_norm %h2, %lnf {eps = 1.0e-05 : f64} : tensor<?x64xf32>, tensor<64xf32>
  %logits = xfmr.linear %z, %emb : tensor<?x64xf32>, tensor<512x64xf32> -> tensor<?x512xf32>
  return %logits, %cache1 : tensor<?x512xf32>, !cache
}
