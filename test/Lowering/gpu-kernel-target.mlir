// On a GPU target (cuda, rocm, vulkan) the kernels are gpu.func's of one
// gpu.module (@xfmr_kernels), shared by the three targets: one flat buffer
// per memref operand of the family's contract (bf16 stored as i16, FP8 as
// i8), an i32 element offset per buffer, then i32 scalars (dynamic sizes,
// index operands, the workgroup count and the grid's x size); for Vulkan the
// offsets and scalars are one i32 buffer. The host schedule launches them
// through @xfmr_gpu_launch(kernel index, grid x, grid y, pointer to the i64
// arguments).
// RUN: xfmr-opt %s --split-input-file --xfmr-plan-memory --xfmr-lower-to-kernels | FileCheck %s

!cache = !xfmr.kv_cache<bf16, capacity = 16, heads = 1, key_dim = 16, value_dim = 16>
// CHECK: module attributes {gpu.container_module, {{.*}}xfmr.target = #xfmr.target<kind = "vulkan"
module attributes {xfmr.target = #xfmr.target<kind = "vulkan", triple = "spirv64-unknown-vulkan1.1", chip = "">} {
  // CHECK-LABEL: func.func @prefill
  // CHECK: %[[ARGS:.+]] = memref.alloca() : memref<7xi64>
  // CHECK: %[[PTR:.+]] = memref.extract_aligned_pointer_as_index %[[ARGS]]
  // CHECK: call @xfmr_gpu_launch(%{{.+}}, %{{.+}}, %{{.+}}, %[[PTR]]) : (i64, i64, i64, index) -> ()
  // CHECK-NOT: call @xfmr_embedding
  // A linear launches its matrix-vector form for one token (decode), its
  // tiled form otherwise (prefill).
  // CHECK: %[[SINGLE:.+]] = arith.cmpi eq, %{{.+}}, %{{.+}} : index
  // CHECK-NEXT: scf.if %[[SINGLE]] {
  // CHECK: call @xfmr_gpu_launch
  // CHECK: } else {
  // CHECK: call @xfmr_gpu_launch
  // Attention decodes one token in slices of the cache (flash decoding): a
  // scratch of [32 slices, query heads, Dv + 2], the slices' launch, the
  // combination's, then the scratch released; prefill's launch is the whole
  // form.
  // CHECK: %[[SCRATCH:.+]] = memref.alloc() : memref<32x1x18xf32>
  // CHECK: call @xfmr_gpu_launch
  // CHECK: call @xfmr_gpu_launch
  // CHECK: memref.dealloc %[[SCRATCH]] : memref<32x1x18xf32>
  // CHECK: } else {
  // CHECK: call @xfmr_gpu_launch
  // CHECK: gpu.module @xfmr_kernels
  // CHECK: gpu.func @xfmr_embedding_32x16_f32(%{{.+}}: memref<?xf32>, %{{.+}}: memref<?xi32>, %{{.+}}: memref<?xf32>, %[[PARAMS:[a-z0-9]+]]: memref<?xi32>)
  // CHECK-SAME: kernel
  // CHECK-SAME: known_block_size = array<i32: 128, 1, 1>
  // CHECK-SAME: xfmr_kernel_buffer_bytes = array<i64: 4, 4, 4>
  // CHECK-SAME: xfmr_kernel_index = 0 : i64
  // CHECK-SAME: xfmr_kernel_scalars = 4 : i64
  // CHECK: memref.load %[[PARAMS]]
  // CHECK: memref.subview
  // CHECK: gpu.block_id
  // CHECK: gpu.thread_id
  // The matrix-vector form reads rows of whole 16-byte words a word at a time
  // (the input 4 f32 at a time), and reduces through workgroup memory (for
  // SPIR-V an allocation in memory space 3, Workgroup; other targets: an
  // attribution).
  // CHECK: gpu.func @xfmr_linear_16x16_f8e4m3fn_b128x128_bias_f32_words(%{{.+}}: memref<?xvector<4xf32>>, %{{.+}}: memref<?xvector<4xi32>>, %{{.+}}: memref<?xf32>, %{{.+}}: memref<?xf32>, %{{.+}}: memref<?xf32>, %{{.+}}: memref<?xi32>)
  // CHECK-SAME: xfmr_kernel_buffer_bytes = array<i64: 16, 16, 4, 4, 4>
  // CHECK: memref.alloc() : memref<64xf32, 3>
  // CHECK: memref.load %{{.+}} : memref<16x1xvector<4xi32>
  // FP8 codes widen as f16 pairs (the scale 256 = 2^(15 - 7) folds into the
  // block's).
  // CHECK: vector.bitcast %{{.+}} : vector<1xi32> to vector<2xf16>
  // CHECK: arith.extf %{{.+}} : vector<2xf16> to vector<2xf32>
  // CHECK: arith.constant 2.560000e+02 : f32
  // CHECK: gpu.barrier
  // The tiled form stages 32 x 32 slices of x and W (pitch 33) in workgroup
  // memory; edge loads are guarded.
  // CHECK: gpu.func @xfmr_linear_16x16_f8e4m3fn_b128x128_bias_f32_tiles(
  // CHECK: memref.alloc() : memref<1056xf32, 3>
  // CHECK: memref.alloc() : memref<1056xf32, 3>
  // CHECK: scf.if %{{.+}} -> (f32)
  // CHECK: gpu.barrier
  // The bf16 cache is i16 storage, encoded with integer arithmetic.
  // CHECK: gpu.func @xfmr_cache_write_16x1x16x16_bf16(%{{.+}}: memref<?xf32>, %{{.+}}: memref<?xf32>, %{{.+}}: memref<?xi16>
  // CHECK: arith.trunci {{.*}} : i32 to i16
  // Prefill attends in tiles of 16 queries of a head (queries and scores
  // staged in workgroup memory: 16 x 16 and 16 x 64 f32).
  // CHECK: gpu.func @xfmr_attend_16x1x1x16x16_0x1p_2_bf16_tiles(
  // CHECK-DAG: memref.alloc() : memref<256xf32, 3>
  // CHECK-DAG: memref.alloc() : memref<1024xf32, 3>
  // The slices take the attention's operands and the scratch; the
  // combination the scratch and the output.
  // CHECK: gpu.func @xfmr_attend_16x1x1x16x16_0x1p_2_bf16_slices(%{{.+}}: memref<?xf32>, %{{.+}}: memref<?xi16>, %{{.+}}: memref<?xf32>, %{{.+}}: memref<?xf32>, %{{.+}}: memref<?xi32>)
  // CHECK: gpu.barrier
  // CHECK: gpu.func @xfmr_attend_16x1x1x16x16_0x1p_2_bf16_combine(%{{.+}}: memref<?xf32>, %{{.+}}: memref<?xf32>, %{{.+}}: memref<?xi32>)
  // CHECK: math.exp
  func.func @prefill(%ids: tensor<?xi32>, %start: index, %c: !cache) -> (tensor<?x32xf32>, !cache)
      attributes {xfmr.entry = "prefill"} {
    %emb = xfmr.weight "embed" : tensor<32x16xf32>
    %h = xfmr.embedding %emb[%ids] : tensor<32x16xf32>, tensor<?xi32> -> tensor<?x16xf32>
    %w = xfmr.weight "wk" : tensor<16x16xf8E4M3FN>
    %s = xfmr.weight "wk_scale" : tensor<1x1xf32>
    %b = xfmr.weight "bias" : tensor<16xf32>
    %k = xfmr.linear %h, %w bias(%b : tensor<16xf32>) scale(%s : tensor<1x1xf32>) {scale_layout = #xfmr.scale_layout<block [128, 128]>}
        : tensor<?x16xf32>, tensor<16x16xf8E4M3FN> -> tensor<?x16xf32>
    %k3 = xfmr.split_heads %k : tensor<?x16xf32> -> tensor<?x1x16xf32>
    %o, %c1 = xfmr.attention %k3, %k3, %k3, %c[%start] {scale = 0.25 : f64}
        : tensor<?x1x16xf32>, tensor<?x1x16xf32>, tensor<?x1x16xf32>, !cache -> tensor<?x1x16xf32>
    %om = xfmr.merge_heads %o : tensor<?x1x16xf32> -> tensor<?x16xf32>
    %logits = xfmr.linear %om, %emb : tensor<?x16xf32>, tensor<32x16xf32> -> tensor<?x32xf32>
    return %logits, %c1 : tensor<?x32xf32>, !cache
  }
}

// -----

// CUDA (and ROCm): the offsets and scalars are kernel arguments; workgroup
// memory is an attribution. Rows of 6 f32 are not whole 16-byte words: the
// matrix-vector form reads them an element at a time.
// CHECK: module attributes {gpu.container_module, {{.*}}kind = "cuda"
// Workgroup memory is 16-byte aligned. Each buffer's extent is its bytes times
// its dynamic sizes' scalars (the input's rows are scalar 0, the output's 1):
// the Vulkan device refuses a launch that spans more than one binding can.
// CHECK: gpu.func @xfmr_linear_8x6_f32_vector(%{{.+}}: memref<?xf32>, %{{.+}}: memref<?xf32>, %{{.+}}: memref<?xf32>, %{{.+}}: i32, %{{.+}}: i32, %{{.+}}: i32, %{{.+}}: i32, %{{.+}}: i32, %{{.+}}: i32, %{{.+}}: i32) workgroup(%{{.+}} : memref<64xf32, #gpu.address_space<workgroup>> {llvm.align = 16 : i64}) kernel
// CHECK-SAME: xfmr_kernel_buffer_bytes = array<i64: 4, 4, 4>
// CHECK-SAME: xfmr_kernel_buffer_extents = [array<i64: 24, 0>, array<i64: 192>, array<i64: 32, 1>]
module attributes {xfmr.target = #xfmr.target<kind = "cuda", triple = "nvptx64-nvidia-cuda", chip = "sm_90a">} {
  func.func @prefill(%ids: tensor<?xi32>, %start: index) -> tensor<?x8xf32> attributes {xfmr.entry = "prefill"} {
    %emb = xfmr.weight "embed" : tensor<8x6xf32>
    %h = xfmr.embedding %emb[%ids] : tensor<8x6xf32>, tensor<?xi32> -> tensor<?x6xf32>
    %logits = xfmr.linear %h, %emb : tensor<?x6xf32>, tensor<8x6xf32> -> tensor<?x8xf32>
    return %logits : tensor<?x8xf32>
  }
}
