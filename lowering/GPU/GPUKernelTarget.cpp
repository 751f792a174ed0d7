//===- GPUKernelTarget.cpp - the GPUs' side of the kernel seam --------===//

#include "lowering/GPU/GPUKernelTarget.h"
#include "lowering/GPU/Kernels/GPUKernels.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "llvm/ADT/StringExtras.h"

using namespace mlir;
using namespace xfmr;
using namespace xfmr::kernels;

llvm::ArrayRef<llvm::StringLiteral> xfmr::gpuTargetKinds() {
  static const llvm::StringLiteral kinds[] = {"cuda", "rocm", "vulkan"};
  return kinds;
}

Type xfmr::gpuStorageType(Type type) {
  if (type.isBF16() || type.isF16())
    return IntegerType::get(type.getContext(), 16);
  return type;
}

/// Bytes of a buffer element: a scalar, or a vector of them (the 16-byte
/// loads of vector<4xi32> elements).
static int64_t elementBytes(Type type) {
  if (auto vector = dyn_cast<VectorType>(type))
    return vector.getNumElements() * elementBytes(vector.getElementType());
  return std::max<int64_t>(1, type.getIntOrFloatBitWidth() / 8);
}

GPUKernelTarget::GPUKernelTarget(ModuleOp module, TargetAttr target)
    : KernelTarget(module, target) {}

LogicalResult GPUKernelTarget::checkCacheType(Type type, Operation *entry) {
  Type element = isa<LatentCacheType>(type)
                     ? cast<LatentCacheType>(type).getElementType()
                     : cast<KVCacheType>(type).getElementType();
  if (element.isF32() || element.isBF16() || element.isF16() ||
      isa<Float8E4M3FNType>(element) || element.isInteger(8))
    return success();
  return entry->emitOpError("the GPU kernels support f32, bf16, f16, "
                            "f8E4M3FN and i8 caches, got ")
         << type;
}

bool GPUKernelTarget::takesFP8InputCodes(const LinearKernel &linear) {
  // The FP8 matrix units multiply the codes; elsewhere the SIMT prefill
  // tiles read them (a byte an input instead of four, the same values).
  return linear.fp8InputGroup > 0 && !linear.weight.panel;
}

bool GPUKernelTarget::expertsTakeFP8InputCodes(
    const MoEExpertsKernel &experts) {
  return expertsOnFP8Units(*this, experts);
}

gpu::GPUModuleOp GPUKernelTarget::kernelModule(Location loc) {
  ModuleOp module = getModule();
  if (auto existing =
          module.lookupSymbol<gpu::GPUModuleOp>(kGPUKernelModuleName))
    return existing;
  module->setAttr(gpu::GPUDialect::getContainerModuleAttrName(),
                  UnitAttr::get(module.getContext()));
  OpBuilder b(module.getContext());
  b.setInsertionPointToEnd(module.getBody());
  return gpu::GPUModuleOp::create(b, loc, kGPUKernelModuleName);
}

SymbolRefAttr GPUKernelTarget::get(StringRef key, TypeRange types,
                                   int64_t block, GridFn grid, BodyFn body) {
  MLIRContext *context = getModule().getContext();
  // Kernel names are PTX/SPIR-V identifiers: keys with '.', '+', '-' (hex
  // floats) become '_'.
  std::string name = ("xfmr_" + key).str();
  for (char &c : name)
    if (!llvm::isAlnum(c))
      c = '_';
  auto ref = SymbolRefAttr::get(
      StringAttr::get(context, kGPUKernelModuleName),
      {FlatSymbolRefAttr::get(context, name)});
  if (kernels.count(name))
    return ref;
  Location loc = getModule().getLoc();
  gpu::GPUModuleOp module = kernelModule(loc);

  // The signature: buffers, their element offsets, then the scalars.
  Type i32 = IntegerType::get(context, 32);
  SmallVector<Type> arguments;
  SmallVector<int64_t> bufferBytes;
  // Each buffer's extent: its bytes are extent[0] times the scalars at
  // positions extent[1...] (its dynamic sizes).
  SmallVector<Attribute> extents;
  int64_t operandScalars = 0;
  for (Type type : types) {
    if (auto memref = dyn_cast<MemRefType>(type)) {
      Type storage = gpuStorageType(memref.getElementType());
      arguments.push_back(MemRefType::get({ShapedType::kDynamic}, storage));
      int64_t bytes = elementBytes(storage);
      SmallVector<int64_t> extent{bytes};
      for (int64_t size : memref.getShape()) {
        if (ShapedType::isDynamic(size))
          extent.push_back(operandScalars++);
        else
          extent[0] *= size;
      }
      bufferBytes.push_back(bytes);
      extents.push_back(DenseI64ArrayAttr::get(context, extent));
    } else {
      operandScalars += 1;
    }
  }
  int64_t scalars = operandScalars + 2; // then workgroups, grid x
  size_t buffers = arguments.size();
  bool vulkan = isVulkan();
  if (vulkan)
    arguments.push_back(MemRefType::get({ShapedType::kDynamic}, i32));
  else
    arguments.append(buffers + scalars, i32);

  OpBuilder b(context);
  b.setInsertionPointToEnd(module.getBody());
  auto func = gpu::GPUFuncOp::create(b, loc, name,
                                     b.getFunctionType(arguments, {}));
  func->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), b.getUnitAttr());
  func.setKnownBlockSizeAttr(
      b.getDenseI32ArrayAttr({static_cast<int32_t>(block), 1, 1}));
  func->setAttr(kGPUKernelIndexAttr, b.getI64IntegerAttr(nextIndex));
  func->setAttr(kGPUKernelBuffersAttr, b.getDenseI64ArrayAttr(bufferBytes));
  func->setAttr(kGPUKernelScalarsAttr, b.getI64IntegerAttr(scalars));
  func->setAttr(kGPUKernelExtentsAttr, b.getArrayAttr(extents));
  kernels[name] = Kernel{nextIndex++, std::move(grid),
                         SmallVector<Type>(types.begin(), types.end())};

  Block &entry = func.getBody().front();
  b.setInsertionPointToStart(&entry);
  auto asIndex = [&](Value v) -> Value {
    return arith::IndexCastOp::create(b, loc, b.getIndexType(), v);
  };
  // The i-th i32 after the buffers: an argument, or on Vulkan an element
  // of the parameter buffer.
  auto scalarArgument = [&](size_t i) -> Value {
    if (!vulkan)
      return entry.getArgument(buffers + i);
    Value at = arith::ConstantIndexOp::create(b, loc, int64_t(i));
    return memref::LoadOp::create(b, loc, entry.getArgument(buffers),
                                  ValueRange{at});
  };
  // The logical operands: each buffer viewed with its shape.
  size_t nextBuffer = 0, nextScalar = buffers;
  SmallVector<Value> operands;
  for (Type type : types) {
    auto memref = dyn_cast<MemRefType>(type);
    if (!memref) {
      operands.push_back(asIndex(scalarArgument(nextScalar++)));
      continue;
    }
    Value flat = entry.getArgument(nextBuffer);
    Value offset = asIndex(scalarArgument(nextBuffer));
    ++nextBuffer;
    SmallVector<OpFoldResult> shape;
    Value total = arith::ConstantIndexOp::create(b, loc, 1);
    for (int64_t dim : memref.getShape()) {
      Value size;
      if (ShapedType::isDynamic(dim)) {
        size = asIndex(scalarArgument(nextScalar++));
        shape.push_back(size);
      } else {
        size = arith::ConstantIndexOp::create(b, loc, dim);
        shape.push_back(b.getIndexAttr(dim));
      }
      total = arith::MulIOp::create(b, loc, total, size);
    }
    // A static size where the shape is static: expand_shape needs the
    // collapsed dimension dynamic exactly when a part is.
    OpFoldResult size = total;
    if (memref.hasStaticShape())
      size = b.getIndexAttr(memref.getNumElements());
    Value view = memref::SubViewOp::create(
        b, loc, flat, ArrayRef<OpFoldResult>{offset},
        ArrayRef<OpFoldResult>{size}, ArrayRef<OpFoldResult>{b.getIndexAttr(1)});
    if (memref.getRank() > 1) {
      ReassociationIndices all;
      for (int64_t i = 0; i < memref.getRank(); ++i)
        all.push_back(i);
      view = memref::ExpandShapeOp::create(
          b, loc, memref.getShape(), view, ArrayRef<ReassociationIndices>{all},
          shape);
    }
    operands.push_back(view);
  }
  Value workgroups = asIndex(scalarArgument(nextScalar++));
  Value gridX = asIndex(scalarArgument(nextScalar++));

  // Workgroups on a 2-D grid (x is capped), numbered row by row.
  Value x = gpu::BlockIdOp::create(b, loc, gpu::Dimension::x);
  Value y = gpu::BlockIdOp::create(b, loc, gpu::Dimension::y);
  Value workgroup = arith::AddIOp::create(
      b, loc, arith::MulIOp::create(b, loc, y, gridX), x);
  Value inside = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                       workgroup, workgroups);
  GPUThread thread;
  thread.workgroup = workgroup;
  thread.thread = gpu::ThreadIdOp::create(b, loc, gpu::Dimension::x);
  thread.block = block;
  thread.kernel = func;
  thread.scratch = [&b, &entry, func, loc, vulkan,
                    context](int64_t size) mutable -> Value {
    Type f32 = Float32Type::get(context);
    if (!vulkan) {
      auto type = MemRefType::get(
          {size}, f32, MemRefLayoutAttrInterface(),
          gpu::AddressSpaceAttr::get(context, gpu::AddressSpace::Workgroup));
      // 16-byte aligned: vector accesses, and wgmma's matrix descriptors.
      BlockArgument attribution = func.addWorkgroupAttribution(type, loc);
      func.setWorkgroupAttributionAttr(
          func.getNumWorkgroupAttributions() - 1,
          LLVM::LLVMDialect::getAlignAttrName(),
          IntegerAttr::get(IntegerType::get(context, 64), 16));
      return attribution;
    }
    // SPIR-V: a Workgroup storage-class allocation (memory space 3, mapped
    // by map-memref-spirv-storage-class).
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(&entry);
    auto type = MemRefType::get({size}, f32, MemRefLayoutAttrInterface(),
                                b.getI64IntegerAttr(3));
    return memref::AllocOp::create(b, loc, type);
  };
  // Every thread of a workgroup takes the same branch, so barriers inside
  // the body are reached by all of them.
  scf::IfOp::create(b, loc, inside, [&](OpBuilder &nested, Location loc) {
    body(nested, loc, thread, operands);
    scf::YieldOp::create(nested, loc);
  });
  gpu::ReturnOp::create(b, loc);
  return ref;
}

SymbolRefAttr GPUKernelTarget::byLeadingSize(StringRef key,
                                             SymbolRefAttr single,
                                             SymbolRefAttr several,
                                             unsigned operand) {
  std::string name = ("xfmr_" + key).str();
  choices[name] = Choice{single, several, operand};
  return SymbolRefAttr::get(getModule().getContext(), name);
}

SymbolRefAttr GPUKernelTarget::twoSteps(StringRef key, SymbolRefAttr first,
                                        SymbolRefAttr second,
                                        MemRefType scratch,
                                        ArrayRef<unsigned> secondOperands) {
  // `first` takes every operand, then the scratch (no arguments listed).
  Step secondStep{second, {StepArgument{true, 0}}};
  for (unsigned i : secondOperands)
    secondStep.arguments.push_back(StepArgument{false, i});
  return sequence(key, {Scratch{scratch, nullptr}},
                  {Step{first, {}}, std::move(secondStep)});
}

SymbolRefAttr GPUKernelTarget::sequence(StringRef key,
                                        ArrayRef<Scratch> scratches,
                                        ArrayRef<Step> launches) {
  std::string name = ("xfmr_" + key).str();
  sequences[name] =
      Sequence{SmallVector<Scratch>(scratches), SmallVector<Step>(launches)};
  return SymbolRefAttr::get(getModule().getContext(), name);
}

void GPUKernelTarget::launch(OpBuilder &b, Location loc, SymbolRefAttr kernel,
                             ValueRange operands) {
  if (auto found = sequences.find(kernel.getLeafReference());
      found != sequences.end()) {
    Sequence sequence = found->second;
    SmallVector<Value> buffers;
    for (const Scratch &scratch : sequence.scratches) {
      SmallVector<Value> sizes;
      if (scratch.size)
        sizes.push_back(scratch.size(b, loc, operands));
      buffers.push_back(memref::AllocOp::create(b, loc, scratch.type, sizes));
    }
    for (const Step &step : sequence.launches) {
      SmallVector<Value> arguments;
      // No arguments listed: every operand, then every scratch.
      if (step.arguments.empty()) {
        arguments.append(operands.begin(), operands.end());
        arguments.append(buffers.begin(), buffers.end());
      }
      for (StepArgument argument : step.arguments)
        arguments.push_back(argument.scratch ? buffers[argument.index]
                                             : operands[argument.index]);
      launch(b, loc, step.kernel, arguments);
    }
    // Device memory is released after the work already launched.
    for (Value buffer : buffers)
      memref::DeallocOp::create(b, loc, buffer);
    return;
  }
  if (auto choice = choices.find(kernel.getLeafReference());
      choice != choices.end()) {
    Choice c = choice->second;
    Value size = memref::DimOp::create(b, loc, operands[c.operand], 0);
    Value one = arith::ConstantIndexOp::create(b, loc, 1);
    Value single =
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, size, one);
    scf::IfOp::create(
        b, loc, single,
        [&](OpBuilder &b, Location loc) {
          launch(b, loc, c.single, operands);
          scf::YieldOp::create(b, loc);
        },
        [&](OpBuilder &b, Location loc) {
          launch(b, loc, c.several, operands);
          scf::YieldOp::create(b, loc);
        });
    return;
  }
  const Kernel &record = kernels.find(kernel.getLeafReference())->second;
  Type i64 = b.getI64Type();
  auto asI64 = [&](Value v) -> Value {
    return arith::IndexCastOp::create(b, loc, i64, v);
  };
  SmallVector<Value> arguments;
  // Buffer addresses: the aligned pointer plus the view's offset.
  for (Value operand : operands) {
    auto memref = dyn_cast<MemRefType>(operand.getType());
    if (!memref)
      continue;
    Value aligned =
        memref::ExtractAlignedPointerAsIndexOp::create(b, loc, operand);
    auto metadata =
        memref::ExtractStridedMetadataOp::create(b, loc, operand);
    Value bytes = arith::MulIOp::create(
        b, loc, metadata.getOffset(),
        arith::ConstantIndexOp::create(
            b, loc,
            elementBytes(gpuStorageType(memref.getElementType()))));
    arguments.push_back(
        asI64(arith::AddIOp::create(b, loc, aligned, bytes)));
  }
  for (Value operand : operands) {
    auto memref = dyn_cast<MemRefType>(operand.getType());
    if (!memref) {
      arguments.push_back(asI64(operand));
      continue;
    }
    for (int64_t i = 0; i < memref.getRank(); ++i)
      if (memref.isDynamicDim(i))
        arguments.push_back(asI64(memref::DimOp::create(b, loc, operand, i)));
  }
  Value total = record.grid(b, loc, operands);
  Value one = arith::ConstantIndexOp::create(b, loc, 1);
  Value gridX = arith::MaxUIOp::create(
      b, loc,
      arith::MinUIOp::create(
          b, loc, total, arith::ConstantIndexOp::create(b, loc, kGPUMaxGridX)),
      one);
  Value gridY = arith::CeilDivUIOp::create(b, loc, total, gridX);
  arguments.push_back(asI64(total));
  arguments.push_back(asI64(gridX));

  auto argsType = MemRefType::get({int64_t(arguments.size())}, i64);
  Value args = memref::AllocaOp::create(b, loc, argsType);
  for (auto [i, value] : llvm::enumerate(arguments))
    memref::StoreOp::create(b, loc, value, args,
                            ValueRange{arith::ConstantIndexOp::create(b, loc, i)});
  Value pointer = memref::ExtractAlignedPointerAsIndexOp::create(b, loc, args);

  ModuleOp module = getModule();
  if (!module.lookupSymbol(kGPULaunchFunction)) {
    OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(module.getBody());
    auto decl = func::FuncOp::create(
        b, loc, kGPULaunchFunction,
        b.getFunctionType({i64, i64, i64, b.getIndexType()}, {}));
    decl.setPrivate();
  }
  Value index = arith::ConstantOp::create(
      b, loc, b.getI64IntegerAttr(record.index));
  func::CallOp::create(b, loc, kGPULaunchFunction, TypeRange{},
                       ValueRange{index, asI64(gridX), asI64(gridY), pointer});
}

void xfmr::registerGPUKernelTarget(KernelRegistry &registry) {
  for (llvm::StringLiteral kind : gpuTargetKinds())
    registry.addTarget(kind, [](ModuleOp module, TargetAttr target) {
      return std::make_unique<GPUKernelTarget>(module, target);
    });
  addGPUKernel<EmbeddingKernel>(registry, gpuEmbedding);
  addGPUKernel<ElementwiseKernel>(registry, gpuElementwise);
  addGPUKernel<SliceColumnsKernel>(registry, gpuSliceColumns);
  addGPUKernel<FakeQuantizeKernel>(registry, gpuFakeQuantize);
  addGPUKernel<RMSNormKernel>(registry, gpuRMSNorm);
  addGPUKernel<LinearKernel>(registry, gpuLinear);
  addGPUKernel<RopeKernel>(registry, gpuRope);
  addGPUKernel<CacheWriteKernel>(registry, gpuCacheWrite);
  addGPUKernel<AttendKernel>(registry, gpuAttend);
  registerGPUMoEKernels(registry);
  registerGPULatentKernels(registry);
}
