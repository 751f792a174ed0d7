//===- GPUBackend.cpp - --target cuda:CHIP, rocm:CHIP, vulkan ---------===//
//
// A GPU artifact's code is two parts:
//   - host code: the schedule (xfmr-lower-to-kernels), lowered like CPU code
//     into a shared object, whose buffers are device memory and whose kernel
//     launches call back into the runtime (the hooks defined below);
//   - device code: the generic kernels (lowering/GPU) of gpu.module
//     @xfmr_kernels, lowered by upstream MLIR to PTX + cubin (NVVM, ptxas),
//     an AMD code object (ROCDL, ld.lld) or one SPIR-V module (Vulkan).
// The code section is the shared object followed by the device binaries; the
// manifest's "target" says where each one is and describes every kernel
// (name, block size, buffers, scalars) for the runtime's launches.
//
//===----------------------------------------------------------------------===//

#include "compiler/TargetBackend.h"
#include "lowering/CPU/CPUPipeline.h"
#include "lowering/Common/MemoryPlan.h"
#include "lowering/GPU/GPUKernelTarget.h"
#include "lowering/Passes.h"

#include "mlir/Conversion/GPUToNVVM/GPUToNVVMPass.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/SPIRV/IR/SPIRVOps.h"
#include "mlir/Dialect/SPIRV/IR/TargetAndABI.h"
#include "mlir/AsmParser/AsmParser.h"
#include "mlir/IR/AsmState.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Target/SPIRV/Serialization.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"

using namespace llvm;
using namespace xfmr;

namespace {

Error usage(const Twine &message) {
  return createStringError(std::make_error_code(std::errc::invalid_argument),
                           message);
}

/// The chips each GPU kind is built and tested for.
const char *const kCudaChips[] = {"sm_80", "sm_89", "sm_90", "sm_90a"};
const char *const kRocmChips[] = {"gfx90a", "gfx942"};

/// Collects diagnostics of the device lowering for the error message.
struct Diagnostics {
  explicit Diagnostics(mlir::MLIRContext *context)
      : handler(context, [this](mlir::Diagnostic &diag) {
          raw_string_ostream os(text);
          os << diag.getLocation() << ": " << diag << "\n";
          return mlir::success();
        }) {}
  std::string text;
  mlir::ScopedDiagnosticHandler handler;
};

/// A temporary directory removed with its contents when this goes away.
struct TemporaryDirectory {
  SmallString<128> path;
  ~TemporaryDirectory() {
    if (!path.empty())
      sys::fs::remove_directories(path);
  }
};

Expected<std::string> readFile(StringRef path) {
  ErrorOr<std::unique_ptr<MemoryBuffer>> file = MemoryBuffer::getFile(path);
  if (!file)
    return createStringError("cannot read '" + path +
                             "': " + file.getError().message());
  return (*file)->getBuffer().str();
}

/// A CUDA toolkit program: CUDA_HOME / CUDA_PATH, /usr/local/cuda, PATH.
Expected<std::string> findCudaProgram(StringRef name) {
  for (const char *variable : {"CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"})
    if (const char *root = std::getenv(variable)) {
      SmallString<128> path(root);
      sys::path::append(path, "bin", name);
      if (sys::fs::can_execute(path))
        return path.str().str();
    }
  if (sys::fs::can_execute("/usr/local/cuda/bin/" + name))
    return ("/usr/local/cuda/bin/" + name).str();
  if (ErrorOr<std::string> found = sys::findProgramByName(name))
    return *found;
  return createStringError(name + " not found: install the CUDA toolkit "
                                  "(/usr/local/cuda) or set CUDA_HOME");
}

/// Runs `program` with `args`; its output (stdout and stderr) in `output`.
Error run(StringRef program, ArrayRef<StringRef> args, std::string &output) {
  TemporaryDirectory scratch;
  if (std::error_code ec =
          sys::fs::createUniqueDirectory("xfmr-tool", scratch.path))
    return createStringError("cannot create a temporary directory: " +
                             ec.message());
  SmallString<128> log(scratch.path);
  sys::path::append(log, "output.txt");
  std::optional<StringRef> redirects[] = {std::nullopt, StringRef(log),
                                          StringRef(log)};
  std::string message;
  int status = sys::ExecuteAndWait(program, args, std::nullopt, redirects, 0,
                                   0, &message);
  if (Expected<std::string> text = readFile(log))
    output = *text;
  else
    consumeError(text.takeError());
  if (status != 0)
    return createStringError(program + " failed (status " + Twine(status) +
                             ")" + (message.empty() ? "" : ": " + message) +
                             "\n" + output);
  return Error::success();
}

class GPUBackend : public TargetBackend {
public:
  explicit GPUBackend(StringRef kind) : kind(kind.str()) {}

  Error configure(const CompileOptions &options) override {
    auto [name, chipName] = StringRef(options.target).split(':');
    chip = chipName.str();
    precise = options.precise;
    if (kind == "vulkan") {
      // vulkan:mma-emulation and vulkan:mfma-emulation run the NVIDIA and
      // AMD matrix-unit kernels with their products emulated
      // (WarpProducts.cpp): for testing them anywhere.
      if (!chip.empty() && chip != "mma-emulation" && chip != "mfma-emulation")
        return usage("target '" + options.target +
                     "': Vulkan takes no chip (the SPIR-V runs on any "
                     "Vulkan 1.1 device; vulkan:mma-emulation and "
                     "vulkan:mfma-emulation test the NVIDIA and AMD "
                     "matrix-unit kernels)");
    } else {
      ArrayRef<const char *> chips =
          kind == "cuda" ? ArrayRef<const char *>(kCudaChips)
                         : ArrayRef<const char *>(kRocmChips);
      if (!llvm::is_contained(
              llvm::map_range(chips, [](const char *c) { return StringRef(c); }),
              StringRef(chip)))
        return usage(
            "target '" + options.target + "': " +
            (chip.empty() ? Twine("a chip is required")
                          : Twine("unknown chip '") + chip + "'") +
            " (" + kind + ":" + join(chips, ", " + kind + ":") + ")");
    }
    // The host code runs on the CPU the user names, like CPU code.
    dumpDirectory = options.dumpDeviceCode;
    host.cpu = options.cpu.empty() ? "x86-64-v2" : options.cpu;
    host.optLevel = options.optLevel;
    return resolveCPUTarget(host);
  }

  TargetAttr getTarget(mlir::MLIRContext *context) const override {
    return TargetAttr::get(context, kind, deviceTriple(), chip, "", 0);
  }

  void buildLoweringPipeline(mlir::OpPassManager &pm) const override {
    pm.addPass(createPlanMemory());
    LowerToKernelsOptions kernels;
    kernels.precise = precise;
    // Vulkan binds at most maxStorageBufferRange bytes of a buffer to a
    // kernel parameter; 2^27 is what many devices (and lavapipe) allow, so
    // larger weights (a large vocabulary's embedding and LM head) are split
    // over launches. A binding starts at most an offset alignment (at most
    // 256 bytes on any device) before its first element: 4 KiB to spare.
    if (kind == "vulkan")
      kernels.maxBindingBytes = (int64_t(1) << 27) - 4096;
    pm.addPass(createLowerToKernels(kernels));
    pm.addPass(mlir::createCanonicalizerPass());
    pm.addPass(mlir::createCSEPass());
  }

  std::string describe() const override {
    std::string device = kind == "cuda"   ? "PTX and cubin for " + chip
                         : kind == "rocm" ? "an AMD code object for " + chip
                                          : std::string("SPIR-V for Vulkan");
    return device + ", host code for " + host.triple + " (cpu " +
           host.cpuName + ")";
  }

  Expected<TargetCode> generateCode(mlir::ModuleOp module,
                                    const ModelSizes &sizes,
                                    const ProgressFn &step) override;

private:
  std::string deviceTriple() const {
    if (kind == "cuda")
      return "nvptx64-nvidia-cuda";
    if (kind == "rocm")
      return "amdgcn-amd-amdhsa";
    return "spirv64-unknown-vulkan1.1";
  }

  /// The device binaries of `device` (a module holding the gpu.module):
  /// format name and bytes, the first one being what the runtime loads.
  Expected<std::vector<std::pair<std::string, std::string>>>
  compileDevice(mlir::ModuleOp device);
  Expected<std::string> lowerToBinary(mlir::ModuleOp device,
                                      StringRef pipeline);
  Expected<std::vector<std::pair<std::string, std::string>>>
  compileCuda(mlir::ModuleOp device);
  Expected<std::string> compileRocm(mlir::ModuleOp device);
  Expected<std::string> compileVulkan(mlir::ModuleOp device);

  /// Writes `name` into --dump-device-code's directory, if given.
  Error dump(StringRef name, StringRef bytes) const;

  std::string kind, chip, dumpDirectory;
  /// --precise: the tensor-core linears keep about 16 bits of their input.
  bool precise = false;
  CPUTarget host;
  /// ptxas' resource report (registers, shared memory, spills).
  std::string ptxasReport;
};

Error GPUBackend::dump(StringRef name, StringRef bytes) const {
  if (dumpDirectory.empty())
    return Error::success();
  if (std::error_code ec = sys::fs::create_directories(dumpDirectory))
    return createStringError("--dump-device-code: cannot create '" +
                             dumpDirectory + "': " + ec.message());
  SmallString<128> path(dumpDirectory);
  sys::path::append(path, name);
  std::error_code ec;
  raw_fd_ostream os(path, ec);
  if (ec)
    return createStringError("--dump-device-code: cannot write '" + path +
                             "': " + ec.message());
  os << bytes;
  return Error::success();
}

/// Defines, in the lowered host module, the functions its code calls: the
/// launch hook and the generic allocation functions, each a call through a
/// pointer the runtime stores in an exported global
/// (runtime/src/backends/gpu/GpuBackend.cpp): xfmr_gpu_context,
/// xfmr_gpu_launch_fn(ctx, kernel, grid x, grid y, args),
/// xfmr_gpu_alloc_fn(ctx, bytes) and xfmr_gpu_free_fn(ctx, pointer).
void defineRuntimeHooks(mlir::ModuleOp module) {
  mlir::MLIRContext *context = module.getContext();
  mlir::OpBuilder b(context);
  mlir::Location loc = module.getLoc();
  auto ptr = mlir::LLVM::LLVMPointerType::get(context);
  auto i64 = b.getI64Type();
  auto voidType = mlir::LLVM::LLVMVoidType::get(context);
  b.setInsertionPointToStart(module.getBody());
  auto global = [&](StringRef name) {
    // A zero-initialized, exported pointer.
    auto op = mlir::LLVM::GlobalOp::create(
        b, loc, ptr, /*isConstant=*/false, mlir::LLVM::Linkage::External, name,
        mlir::Attribute());
    mlir::Block *init = b.createBlock(&op.getInitializerRegion());
    mlir::OpBuilder::InsertionGuard guard(b);
    b.setInsertionPointToStart(init);
    mlir::LLVM::ReturnOp::create(b, loc,
                                 mlir::LLVM::ZeroOp::create(b, loc, ptr));
  };
  for (StringRef name : {"xfmr_gpu_context", "xfmr_gpu_launch_fn",
                         "xfmr_gpu_alloc_fn", "xfmr_gpu_free_fn"}) {
    b.setInsertionPointToStart(module.getBody());
    global(name);
  }
  // Defines `name` (declared by the lowering, or new) as a call of the
  // function pointer in `slot` with the context first.
  auto define = [&](StringRef name, StringRef slot,
                    mlir::LLVM::LLVMFunctionType type) {
    auto func = module.lookupSymbol<mlir::LLVM::LLVMFuncOp>(name);
    if (!func) {
      b.setInsertionPointToEnd(module.getBody());
      func = mlir::LLVM::LLVMFuncOp::create(b, loc, name, type);
    }
    func.setLinkage(mlir::LLVM::Linkage::Internal);
    mlir::Block *entry = func.addEntryBlock(b);
    b.setInsertionPointToStart(entry);
    auto load = [&](StringRef symbol) -> mlir::Value {
      mlir::Value address = mlir::LLVM::AddressOfOp::create(
          b, loc, ptr, mlir::FlatSymbolRefAttr::get(context, symbol));
      return mlir::LLVM::LoadOp::create(b, loc, ptr, address);
    };
    SmallVector<mlir::Value> args{load(slot), load("xfmr_gpu_context")};
    SmallVector<mlir::Type> calleeInputs{ptr};
    for (mlir::Value arg : entry->getArguments()) {
      args.push_back(arg);
      calleeInputs.push_back(arg.getType());
    }
    auto calleeType = mlir::LLVM::LLVMFunctionType::get(
        type.getReturnType(), calleeInputs);
    auto call = mlir::LLVM::CallOp::create(b, loc, calleeType, args);
    if (isa<mlir::LLVM::LLVMVoidType>(type.getReturnType()))
      mlir::LLVM::ReturnOp::create(b, loc, mlir::ValueRange{});
    else
      mlir::LLVM::ReturnOp::create(b, loc, call.getResult());
  };
  define(kGPULaunchFunction, "xfmr_gpu_launch_fn",
         mlir::LLVM::LLVMFunctionType::get(voidType, {i64, i64, i64, i64}));
  define("_mlir_memref_to_llvm_alloc", "xfmr_gpu_alloc_fn",
         mlir::LLVM::LLVMFunctionType::get(ptr, {i64}));
  define("_mlir_memref_to_llvm_free", "xfmr_gpu_free_fn",
         mlir::LLVM::LLVMFunctionType::get(voidType, {ptr}));
}

Expected<std::string> GPUBackend::lowerToBinary(mlir::ModuleOp device,
                                                StringRef pipeline) {
  mlir::PassManager pm(device.getContext());
  std::string parseErrors;
  raw_string_ostream parseStream(parseErrors);
  if (mlir::failed(mlir::parsePassPipeline(pipeline, pm, parseStream)))
    return createStringError("the device pipeline does not parse: " +
                             parseErrors);
  Diagnostics diagnostics(device.getContext());
  if (mlir::failed(pm.run(device)))
    return createStringError("lowering the kernels for " + kind +
                             (chip.empty() ? "" : ":" + chip) + " failed:\n" +
                             diagnostics.text);
  std::string object;
  device.walk([&](mlir::gpu::BinaryOp binary) {
    for (mlir::Attribute attr : binary.getObjects())
      object = cast<mlir::gpu::ObjectAttr>(attr).getObject().str();
  });
  if (object.empty())
    return createStringError("lowering the kernels for " + kind +
                             " produced no binary");
  return object;
}

Expected<std::vector<std::pair<std::string, std::string>>>
GPUBackend::compileCuda(mlir::ModuleOp device) {
  // PTX from LLVM's NVPTX back end; cubin from the toolkit's ptxas. The PTX
  // travels too, so that a newer GPU can JIT it.
  Expected<std::string> ptxas = findCudaProgram("ptxas");
  if (!ptxas)
    return ptxas.takeError();
  // The toolkit (ptxas' bin/..) has libdevice, which math functions
  // (__nv_rsqrtf, __nv_expf) link against.
  std::string toolkit =
      sys::path::parent_path(sys::path::parent_path(*ptxas)).str();
  // PTX 8.4: mma.sync with E4M3 operands (sm_89 and later); sm_90a's wgmma
  // needs 8.0.
  std::string features = chip == "sm_80" ? "" : " features=+ptx84";
  Expected<std::string> ptx = lowerToBinary(
      device, "nvvm-attach-target{chip=" + chip + " O=3" +
                  features +
                  "},gpu.module(fold-memref-alias-ops,lower-affine,"
                  "convert-scf-to-cf,convert-gpu-to-nvvm,canonicalize,cse,"
                  "reconcile-unrealized-casts),gpu-module-to-binary{format="
                  "isa toolkit=" +
                  toolkit + "}");
  if (!ptx)
    return ptx.takeError();
  TemporaryDirectory scratch;
  if (std::error_code ec =
          sys::fs::createUniqueDirectory("xfmr-cuda", scratch.path))
    return createStringError("cannot create a temporary directory: " +
                             ec.message());
  SmallString<128> ptxPath(scratch.path), cubinPath(scratch.path);
  sys::path::append(ptxPath, "kernels.ptx");
  sys::path::append(cubinPath, "kernels.cubin");
  {
    std::error_code ec;
    raw_fd_ostream os(ptxPath, ec);
    if (ec)
      return createStringError("cannot write '" + ptxPath + "': " +
                               ec.message());
    os << *ptx;
  }
  std::string output;
  std::string arch = "-arch=" + chip;
  if (Error error = run(*ptxas, {*ptxas, arch, "-O3", "-v", ptxPath, "-o",
                                 cubinPath},
                        output))
    return std::move(error);
  Expected<std::string> cubin = readFile(cubinPath);
  if (!cubin)
    return cubin.takeError();
  ptxasReport = output;
  return std::vector<std::pair<std::string, std::string>>{
      {"cubin", *cubin}, {"ptx", *ptx}};
}

Expected<std::string> GPUBackend::compileRocm(mlir::ModuleOp device) {
  // MLIR's ROCDL target links with <toolkit>/llvm/bin/ld.lld and the device
  // libraries (ocml, ockl) in <toolkit>/amdgcn/bitcode: a toolkit made of
  // links to Debian's lld-22 and rocm-device-libs.
  ErrorOr<std::string> lld = sys::findProgramByName("ld.lld-22");
  if (!lld)
    lld = sys::findProgramByName("ld.lld");
  if (!lld)
    return createStringError("cannot find ld.lld-22 to link the AMD code "
                             "object (install lld-22: scripts/setup.sh)");
  std::string bitcode;
  for (const char *dir : {"/usr/lib/x86_64-linux-gnu/amdgcn/bitcode",
                          "/usr/lib/amdgcn/bitcode",
                          "/opt/rocm/amdgcn/bitcode"})
    if (sys::fs::exists(Twine(dir) + "/ocml.bc")) {
      bitcode = dir;
      break;
    }
  if (bitcode.empty())
    return createStringError("the AMD device libraries (ocml.bc, ockl.bc) "
                             "are not installed: install rocm-device-libs "
                             "(scripts/setup.sh)");
  TemporaryDirectory toolkit;
  if (std::error_code ec =
          sys::fs::createUniqueDirectory("xfmr-rocm", toolkit.path))
    return createStringError("cannot create a temporary directory: " +
                             ec.message());
  SmallString<128> bin(toolkit.path), amdgcn(toolkit.path);
  sys::path::append(bin, "llvm", "bin");
  sys::path::append(amdgcn, "amdgcn");
  if (std::error_code ec = sys::fs::create_directories(bin))
    return createStringError("cannot create '" + bin + "': " + ec.message());
  if (std::error_code ec = sys::fs::create_directories(amdgcn))
    return createStringError("cannot create '" + amdgcn + "': " +
                             ec.message());
  if (std::error_code ec = sys::fs::create_link(*lld, bin + "/ld.lld"))
    return createStringError("cannot link ld.lld: " + ec.message());
  if (std::error_code ec = sys::fs::create_link(bitcode, amdgcn + "/bitcode"))
    return createStringError("cannot link the device libraries: " +
                             ec.message());
  // Code object v5 (abi=500): what ROCm 5.x and 6.x load.
  return lowerToBinary(
      device, "rocdl-attach-target{chip=" + chip +
                  " O=3 abi=500},gpu.module(fold-memref-alias-ops,"
                  "lower-affine,convert-scf-to-cf,convert-gpu-to-rocdl{"
                  "chipset=" +
                  chip +
                  "},canonicalize,cse,reconcile-unrealized-casts),"
                  "gpu-module-to-binary{format=bin toolkit=" +
                  toolkit.path.str().str() + "}");
}

Expected<std::string> GPUBackend::compileVulkan(mlir::ModuleOp device) {
  mlir::MLIRContext *context = device.getContext();
  // Vulkan 1.1 with 8- and 16-bit storage: what lavapipe, desktop GPUs and
  // current phones have. No Int64/Float64: the kernels avoid them.
  mlir::Attribute env = mlir::parseAttribute(
      "#spirv.target_env<#spirv.vce<v1.3, [Shader, Int8, Int16, Float16, "
      "StorageBuffer8BitAccess, StorageBuffer16BitAccess], "
      "[SPV_KHR_storage_buffer_storage_class, SPV_KHR_8bit_storage, "
      "SPV_KHR_16bit_storage]>, #spirv.resource_limits<>>",
      context);
  if (!env)
    return createStringError("the SPIR-V target environment does not parse");
  device->setAttr(mlir::spirv::getTargetEnvAttrName(), env);
  device.walk([&](mlir::gpu::GPUFuncOp func) {
    std::optional<SmallVector<int32_t>> block;
    if (auto known = func.getKnownBlockSizeAttr())
      block = SmallVector<int32_t>(known.asArrayRef());
    func->setAttr(mlir::spirv::getEntryPointABIAttrName(),
                  mlir::spirv::getEntryPointABIAttr(
                      context, block ? ArrayRef<int32_t>(*block)
                                     : ArrayRef<int32_t>{64, 1, 1}));
  });
  mlir::PassManager pm(context);
  std::string parseErrors;
  raw_string_ostream parseStream(parseErrors);
  if (mlir::failed(mlir::parsePassPipeline(
          "gpu.module(fold-memref-alias-ops,lower-affine,"
          "canonicalize,cse,xfmr-guard-empty-loops,convert-math-to-spirv),"
          "map-memref-spirv-storage-class{client-api="
          "vulkan},convert-gpu-to-spirv{use-64bit-index=false},spirv.module("
          "spirv-lower-abi-attrs,spirv-update-vce)",
          pm, parseStream)))
    return createStringError("the SPIR-V pipeline does not parse: " +
                             parseErrors);
  Diagnostics diagnostics(context);
  if (mlir::failed(pm.run(device)))
    return createStringError("lowering the kernels to SPIR-V failed:\n" +
                             diagnostics.text);
  mlir::spirv::ModuleOp spirvModule;
  device.walk([&](mlir::spirv::ModuleOp op) { spirvModule = op; });
  if (!spirvModule)
    return createStringError("the SPIR-V lowering produced no spirv.module");
  SmallVector<uint32_t, 0> words;
  if (mlir::failed(mlir::spirv::serialize(spirvModule, words)))
    return createStringError("serializing the SPIR-V module failed:\n" +
                             diagnostics.text);
  return std::string(reinterpret_cast<const char *>(words.data()),
                     words.size() * sizeof(uint32_t));
}

Expected<std::vector<std::pair<std::string, std::string>>>
GPUBackend::compileDevice(mlir::ModuleOp device) {
  if (kind == "cuda")
    return compileCuda(device);
  if (kind == "rocm") {
    Expected<std::string> hsaco = compileRocm(device);
    if (!hsaco)
      return hsaco.takeError();
    return std::vector<std::pair<std::string, std::string>>{
        {"hsaco", *hsaco}};
  }
  Expected<std::string> spirv = compileVulkan(device);
  if (!spirv)
    return spirv.takeError();
  return std::vector<std::pair<std::string, std::string>>{{"spirv", *spirv}};
}

Expected<TargetCode> GPUBackend::generateCode(mlir::ModuleOp module,
                                              const ModelSizes &sizes,
                                              const ProgressFn &step) {
  mlir::MLIRContext *context = module.getContext();
  // Device lowering translates NVVM/ROCDL to LLVM IR.
  mlir::DialectRegistry translations;
  mlir::registerAllToLLVMIRTranslations(translations);
  context->appendDialectRegistry(translations);

  auto kernels =
      module.lookupSymbol<mlir::gpu::GPUModuleOp>(kGPUKernelModuleName);
  if (!kernels)
    return createStringError("the lowered module has no kernels (gpu.module @" +
                             kGPUKernelModuleName + ")");
  // The kernel table, by launch index.
  json::Array table;
  {
    std::vector<std::pair<int64_t, json::Object>> rows;
    for (auto func : kernels.getOps<mlir::gpu::GPUFuncOp>()) {
      int64_t index =
          cast<mlir::IntegerAttr>(func->getAttr(kGPUKernelIndexAttr)).getInt();
      json::Array block, buffers;
      if (auto known = func.getKnownBlockSizeAttr())
        for (int32_t size : known.asArrayRef())
          block.push_back(size);
      for (int64_t bytes :
           cast<mlir::DenseI64ArrayAttr>(func->getAttr(kGPUKernelBuffersAttr))
               .asArrayRef())
        buffers.push_back(bytes);
      int64_t scalars =
          cast<mlir::IntegerAttr>(func->getAttr(kGPUKernelScalarsAttr))
              .getInt();
      json::Array extents;
      for (mlir::Attribute extent :
           cast<mlir::ArrayAttr>(func->getAttr(kGPUKernelExtentsAttr))) {
        json::Array row;
        for (int64_t value : cast<mlir::DenseI64ArrayAttr>(extent).asArrayRef())
          row.push_back(value);
        extents.push_back(std::move(row));
      }
      rows.emplace_back(index, json::Object{{"name", func.getName()},
                                            {"block", std::move(block)},
                                            {"buffers", std::move(buffers)},
                                            {"extents", std::move(extents)},
                                            {"scalars", scalars}});
    }
    llvm::sort(rows, [](auto &a, auto &b) { return a.first < b.first; });
    for (auto &[index, row] : rows) {
      if (index != int64_t(table.size()))
        return createStringError("kernel indices are not contiguous");
      table.push_back(std::move(row));
    }
  }

  // The device part moves into a module of its own.
  mlir::OwningOpRef<mlir::ModuleOp> device =
      mlir::ModuleOp::create(module.getLoc());
  (*device)->setAttr(mlir::gpu::GPUDialect::getContainerModuleAttrName(),
                     mlir::UnitAttr::get(context));
  kernels->moveBefore(device->getBody(), device->getBody()->end());
  module->removeAttr(mlir::gpu::GPUDialect::getContainerModuleAttrName());

  if (step)
    step("compiling " + Twine(table.size()).str() + " kernels for " + kind +
         (chip.empty() ? "" : ":" + chip));
  // The generic kernels have no FP8 matrix path on any chip: say what they
  // do instead (the FP8 tensor-core kernels are issue 15's).
  bool fp8 = false;
  if (MemoryPlanAttr plan = getMemoryPlan(module))
    for (WeightSlotAttr slot : plan.getWeightSlots())
      fp8 |= isa<mlir::Float8E4M3FNType>(
          cast<mlir::RankedTensorType>(slot.getType()).getElementType());
  if (fp8 && step)
    step("FP8 weights: decoded to f32 inside the generic kernels (dequantize "
         "path, no FP8 tensor cores; docs/gpu.md)");
  Expected<std::vector<std::pair<std::string, std::string>>> binaries =
      compileDevice(*device);
  if (!binaries)
    return binaries.takeError();
  for (auto &[format, bytes] : *binaries) {
    std::string name = "kernels." + std::string(format == "spirv" ? "spv"
                                                                  : format);
    if (Error error = dump(name, bytes))
      return std::move(error);
  }
  if (!ptxasReport.empty())
    if (Error error = dump("ptxas.txt", ptxasReport))
      return std::move(error);

  if (step)
    step("host code for " + host.cpuName);
  {
    mlir::PassManager pm(context);
    buildLowerToLLVMPipeline(pm, /*deviceAllocations=*/true);
    Diagnostics diagnostics(context);
    if (mlir::failed(pm.run(module)))
      return createStringError("lowering the host code failed:\n" +
                               diagnostics.text);
  }
  if (Error error = addModelInfo(module, sizes, host.cpuName, host.features))
    return std::move(error);
  defineRuntimeHooks(module);
  Expected<std::string> object = emitObject(module, host);
  if (!object)
    return object.takeError();
  Expected<std::string> hostCode = linkSharedObject(*object, host);
  if (!hostCode)
    return hostCode.takeError();

  TargetCode result;
  result.code = std::move(*hostCode);
  uint64_t hostCodeSize = result.code.size();
  json::Array deviceCode;
  for (auto &[format, bytes] : *binaries) {
    deviceCode.push_back(json::Object{{"format", format},
                                      {"offset", uint64_t(result.code.size())},
                                      {"size", uint64_t(bytes.size())}});
    result.code += bytes;
  }
  result.manifest = json::Object{{"kind", kind},
                                 {"triple", host.triple},
                                 {"cpu", host.cpuName},
                                 {"features", host.features},
                                 {"chip", chip},
                                 {"device_triple", deviceTriple()},
                                 {"host_code_size", hostCodeSize},
                                 {"device_code", std::move(deviceCode)},
                                 {"kernels", std::move(table)}};
  return result;
}

} // namespace

void xfmr::registerGPUBackends() {
  for (StringRef kind : gpuTargetKinds())
    registerTargetBackend(kind, [kind](StringRef) {
      return std::make_unique<GPUBackend>(kind);
    });
}
