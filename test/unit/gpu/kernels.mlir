// Kernels for VulkanDeviceTest, compiled to one SPIR-V module at build time
// (see CMakeLists.txt). They follow the Vulkan form of the GPU kernel
// parameter ABI of runtime/src/backends/gpu/GpuDevice.h: the buffers, then
// one i32 buffer with an element offset per buffer and the scalars; each
// thread handles element i < n.
module attributes {
  gpu.container_module,
  spirv.target_env = #spirv.target_env<#spirv.vce<v1.3,
      [Shader, Int64, Int16, Int8, StorageBuffer16BitAccess,
       StorageBuffer8BitAccess],
      [SPV_KHR_storage_buffer_storage_class, SPV_KHR_8bit_storage,
       SPV_KHR_16bit_storage]>, #spirv.resource_limits<>>
} {
  gpu.module @kernels {
    // out[i] = x[i] * float(s) + float(y[i]), y in bf16 (i16 storage).
    gpu.func @axpy(%x: memref<?xf32>, %y: memref<?xi16>, %out: memref<?xf32>,
                   %params: memref<?xi32>)
        kernel attributes {spirv.entry_point_abi = #spirv.entry_point_abi<workgroup_size = [64, 1, 1]>} {
      %p0 = arith.constant 0 : index
      %offx = memref.load %params[%p0] : memref<?xi32>
      %p1 = arith.constant 1 : index
      %offy = memref.load %params[%p1] : memref<?xi32>
      %p2 = arith.constant 2 : index
      %offout = memref.load %params[%p2] : memref<?xi32>
      %p3 = arith.constant 3 : index
      %s = memref.load %params[%p3] : memref<?xi32>
      %p4 = arith.constant 4 : index
      %n = memref.load %params[%p4] : memref<?xi32>
      %gid = gpu.global_id x
      %i = arith.index_cast %gid : index to i32
      %in = arith.cmpi slt, %i, %n : i32
      scf.if %in {
        %ix = arith.addi %i, %offx : i32
        %iy = arith.addi %i, %offy : i32
        %io = arith.addi %i, %offout : i32
        %jx = arith.index_cast %ix : i32 to index
        %jy = arith.index_cast %iy : i32 to index
        %jo = arith.index_cast %io : i32 to index
        %xv = memref.load %x[%jx] : memref<?xf32>
        %yv = memref.load %y[%jy] : memref<?xi16>
        %y32 = arith.extui %yv : i16 to i32
        %c16 = arith.constant 16 : i32
        %ybits = arith.shli %y32, %c16 : i32
        %yf = arith.bitcast %ybits : i32 to f32
        %sf = arith.sitofp %s : i32 to f32
        %m = arith.mulf %xv, %sf : f32
        %r = arith.addf %m, %yf : f32
        memref.store %r, %out[%jo] : memref<?xf32>
      }
      gpu.return
    }

    // out[i] = in[i] + 1.
    gpu.func @addone(%a: memref<?xf32>, %out: memref<?xf32>,
                   %params: memref<?xi32>)
        kernel attributes {spirv.entry_point_abi = #spirv.entry_point_abi<workgroup_size = [64, 1, 1]>} {
      %p0 = arith.constant 0 : index
      %offa = memref.load %params[%p0] : memref<?xi32>
      %p1 = arith.constant 1 : index
      %offout = memref.load %params[%p1] : memref<?xi32>
      %p2 = arith.constant 2 : index
      %n = memref.load %params[%p2] : memref<?xi32>
      %gid = gpu.global_id x
      %i = arith.index_cast %gid : index to i32
      %in = arith.cmpi slt, %i, %n : i32
      scf.if %in {
        %ia = arith.addi %i, %offa : i32
        %io = arith.addi %i, %offout : i32
        %ja = arith.index_cast %ia : i32 to index
        %jo = arith.index_cast %io : i32 to index
        %v = memref.load %a[%ja] : memref<?xf32>
        %one = arith.constant 1.0 : f32
        %r = arith.addf %v, %one : f32
        memref.store %r, %out[%jo] : memref<?xf32>
      }
      gpu.return
    }

    // out[i] = bf16(in[i]) by truncation (16-bit stores).
    gpu.func @tobf16(%a: memref<?xf32>, %out: memref<?xi16>,
                   %params: memref<?xi32>)
        kernel attributes {spirv.entry_point_abi = #spirv.entry_point_abi<workgroup_size = [64, 1, 1]>} {
      %p0 = arith.constant 0 : index
      %offa = memref.load %params[%p0] : memref<?xi32>
      %p1 = arith.constant 1 : index
      %offout = memref.load %params[%p1] : memref<?xi32>
      %p2 = arith.constant 2 : index
      %n = memref.load %params[%p2] : memref<?xi32>
      %gid = gpu.global_id x
      %i = arith.index_cast %gid : index to i32
      %in = arith.cmpi slt, %i, %n : i32
      scf.if %in {
        %ia = arith.addi %i, %offa : i32
        %io = arith.addi %i, %offout : i32
        %ja = arith.index_cast %ia : i32 to index
        %jo = arith.index_cast %io : i32 to index
        %v = memref.load %a[%ja] : memref<?xf32>
        %bits = arith.bitcast %v : f32 to i32
        %c16 = arith.constant 16 : i32
        %high = arith.shrui %bits, %c16 : i32
        %r = arith.trunci %high : i32 to i16
        memref.store %r, %out[%jo] : memref<?xi16>
      }
      gpu.return
    }

    // out[i] = i32(in[i]) * s, in i8 (8-bit loads, 64-bit arithmetic).
    gpu.func @widen8(%a: memref<?xi8>, %out: memref<?xi32>,
                   %params: memref<?xi32>)
        kernel attributes {spirv.entry_point_abi = #spirv.entry_point_abi<workgroup_size = [64, 1, 1]>} {
      %p0 = arith.constant 0 : index
      %offa = memref.load %params[%p0] : memref<?xi32>
      %p1 = arith.constant 1 : index
      %offout = memref.load %params[%p1] : memref<?xi32>
      %p2 = arith.constant 2 : index
      %s = memref.load %params[%p2] : memref<?xi32>
      %p3 = arith.constant 3 : index
      %n = memref.load %params[%p3] : memref<?xi32>
      %gid = gpu.global_id x
      %i = arith.index_cast %gid : index to i32
      %in = arith.cmpi slt, %i, %n : i32
      scf.if %in {
        %ia = arith.addi %i, %offa : i32
        %io = arith.addi %i, %offout : i32
        %ja = arith.index_cast %ia : i32 to index
        %jo = arith.index_cast %io : i32 to index
        %v = memref.load %a[%ja] : memref<?xi8>
        %v64 = arith.extsi %v : i8 to i64
        %s64 = arith.extsi %s : i32 to i64
        %p = arith.muli %v64, %s64 : i64
        %r = arith.trunci %p : i64 to i32
        memref.store %r, %out[%jo] : memref<?xi32>
      }
      gpu.return
    }
  }
}
