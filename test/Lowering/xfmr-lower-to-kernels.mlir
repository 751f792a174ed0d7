// RUN: xfmr-opt %s --xfmr-plan-memory --xfmr-lower-to-kernels --split-input-file --verify-diagnostics | FileCheck %s

!cache = !xfmr.kv_cache<f32, capacity = 16, heads = 1, key_dim = 8, value_dim = 8>

// The entry point gets the fixed ABI; weights and the cache are views into the
// two blobs at the offsets of the memory plan (embed 0, wq 512, wk 768,
// wk_scale 832; the cache at 0); intermediate buffers are freed after their
// last reader; the last linear writes the caller's logits.
// CHECK: module attributes {xfmr.memory_plan = #xfmr.memory_plan<
// CHECK-LABEL: func.func @prefill
// CHECK-SAME: (%[[IDS:.+]]: memref<?xi32>, %[[START:.+]]: index, %[[W:.+]]: memref<?xi8>, %[[C:.+]]: memref<?xi8>, %[[LOGITS:.+]]: memref<?x32xf32>)
// CHECK-SAME: attributes {llvm.emit_c_interface, xfmr.entry = "prefill"}
// CHECK: %[[S:.+]] = memref.dim %[[IDS]]
// CHECK: %[[EMB:.+]] = memref.view %[[W]][%{{.+}}][] : memref<?xi8> to memref<32x8xbf16>
// Activations are views of byte allocations (so that the step entry can view
// one sequence's rows of them).
// CHECK: %[[HBYTES:.+]] = arith.muli %[[S]], %c32
// CHECK: %[[HRAW:.+]] = memref.alloc(%[[HBYTES]]) {alignment = 64 : i64} : memref<?xi8>
// CHECK: %[[H:.+]] = memref.view %[[HRAW]][%{{.+}}][%[[S]]] : memref<?xi8> to memref<?x8xf32>
// CHECK: call @xfmr_embedding_32x8_bf16(%[[EMB]], %[[IDS]], %[[H]])
// CHECK: memref.view %[[W]][%c512{{.*}}][] : memref<?xi8> to memref<8x8xf32>
// FP8 weights are read as bytes and decoded in registers, scaled per block.
// CHECK: memref.view %[[W]][%{{.+}}][] : memref<?xi8> to memref<8x8xi8>
// CHECK: %[[QRAW:.+]] = memref.alloc
// CHECK: call @xfmr_linear_8x8_f32(%[[H]], %{{.+}}, %[[Q:[a-z_0-9]+]])
// CHECK: call @xfmr_linear_8x8_f8e4m3fn_b128x128(%[[H]], %{{.+}}, %{{.+}}, %[[K:[a-z_0-9]+]])
// CHECK-NEXT: memref.dealloc %[[HRAW]]
// CHECK: %[[Q3:.+]] = memref.expand_shape %[[Q]] {{\[\[}}0], [1, 2]] output_shape [%[[S]], 1, 8]
// CHECK: %[[ORAW:.+]] = memref.alloc
// CHECK: %[[CACHE:.+]] = memref.view %[[C]][%{{.+}}][] : memref<?xi8> to memref<16x1x16xf32>
// CHECK: call @xfmr_cache_write_16x1x8x8(%{{.+}}, %{{.+}}, %[[CACHE]], %[[START]])
// CHECK: call @xfmr_attend_16x1x1x8x8_0x1d6a09e667f3bcdpm2(%[[Q3]], %[[CACHE]], %[[START]], %{{.+}})
// CHECK: memref.dealloc %[[QRAW]]
// CHECK: call @xfmr_linear_32x8_bf16(%{{.+}}, %[[EMB]], %[[LOGITS]])
// CHECK-NOT: memref.dealloc %[[LOGITS]]
// CHECK: memref.dealloc %[[ORAW]]
// CHECK-NEXT: return
// Kernels are private functions of loops over memrefs.
// CHECK: func.func private @xfmr_embedding_32x8_bf16(%{{.+}}: memref<32x8xbf16>, %{{.+}}: memref<?xi32>, %{{.+}}: memref<?x8xf32>)
// CHECK: scf.parallel
// CHECK: func.func private @xfmr_linear_8x8_f32
// CHECK: scf.parallel
// CHECK: arith.mulf
// CHECK: func.func private @xfmr_linear_8x8_f8e4m3fn_b128x128
// CHECK: memref.get_global @xfmr_decode_f8e4m3fn
func.func @prefill(%ids: tensor<?xi32>, %start: index, %c: !cache) -> (tensor<?x32xf32>, !cache)
    attributes {xfmr.entry = "prefill"} {
  %emb = xfmr.weight "embed" : tensor<32x8xbf16>
  %h = xfmr.embedding %emb[%ids] : tensor<32x8xbf16>, tensor<?xi32> -> tensor<?x8xf32>
  %wq = xfmr.weight "wq" : tensor<8x8xf32>
  %wk = xfmr.weight "wk" : tensor<8x8xf8E4M3FN>
  %sk = xfmr.weight "wk_scale" : tensor<1x1xf32>
  %q = xfmr.linear %h, %wq : tensor<?x8xf32>, tensor<8x8xf32> -> tensor<?x8xf32>
  %k = xfmr.linear %h, %wk scale(%sk : tensor<1x1xf32>) {scale_layout = #xfmr.scale_layout<block [128, 128]>}
      : tensor<?x8xf32>, tensor<8x8xf8E4M3FN> -> tensor<?x8xf32>
  %q3 = xfmr.split_heads %q : tensor<?x8xf32> -> tensor<?x1x8xf32>
  %k3 = xfmr.split_heads %k : tensor<?x8xf32> -> tensor<?x1x8xf32>
  %o, %c1 = xfmr.attention %q3, %k3, %k3, %c[%start] {scale = 0.35355339059327379 : f64}
      : tensor<?x1x8xf32>, tensor<?x1x8xf32>, tensor<?x1x8xf32>, !cache -> tensor<?x1x8xf32>
  %om = xfmr.merge_heads %o : tensor<?x1x8xf32> -> tensor<?x8xf32>
  %logits = xfmr.linear %om, %emb : tensor<?x8xf32>, tensor<32x8xbf16> -> tensor<?x32xf32>
  return %logits, %c1 : tensor<?x32xf32>, !cache
}

// -----

// expected-error @+1 {{'func.func' op is not an entry point; xfmr compiles modules of entry points (func.func with xfmr.entry) only}}
func.func @helper(%x: tensor<?x8xf32>) -> tensor<?x8xf32> {
  return %x : tensor<?x8xf32>
}

// -----

!latent = !xfmr.latent_cache<f64, capacity = 16, latent_dim = 8, rope_dim = 4>
// expected-error @+1 {{the CPU lowering supports f32, bf16, f16, f8E4M3FN and i8 caches, got '!xfmr.latent_cache<f64, capacity = 16, latent_dim = 8, rope_dim = 4>'}}
func.func @decode(%ids: tensor<?xi32>, %start: index, %c: !latent) -> (tensor<?x32xf32>, !latent)
    attributes {xfmr.entry = "decode"} {
  %emb = xfmr.weight "embed" : tensor<32x8xf32>
  %h = xfmr.embedding %emb[%ids] : tensor<32x8xf32>, tensor<?xi32> -> tensor<?x8xf32>
  %logits = xfmr.linear %h, %emb : tensor<?x8xf32>, tensor<32x8xf32> -> tensor<?x32xf32>
  return %logits, %c : tensor<?x32xf32>, !latent
}

// -----

func.func @prefill(%ids: tensor<?xi32>, %start: index) -> (tensor<?x8xf32>) attributes {xfmr.entry = "prefill"} {
  %emb = xfmr.weight "embed" : tensor<32x8xf32>
  %h = xfmr.embedding %emb[%ids] : tensor<32x8xf32>, tensor<?xi32> -> tensor<?x8xf32>
  %q, %s = xfmr.quantize %h {layout = #xfmr.scale_layout<per_tensor>}
      : tensor<?x8xf32> -> tensor<?x8xf8E4M3FN>, tensor<f32>
  // expected-error @+1 {{'xfmr.dequantize' op kernels quantize activations per token in groups (block [1, G] on [tokens, channels]), got #xfmr.scale_layout<per_tensor>}}
  %d = xfmr.dequantize %q, %s {layout = #xfmr.scale_layout<per_tensor>}
      : tensor<?x8xf8E4M3FN>, tensor<f32> -> tensor<?x8xf32>
  return %d : tensor<?x8xf32>
}

// -----

// expected-error @+1 {{no entry point (func.func with xfmr.entry) to lower}}
module {
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
