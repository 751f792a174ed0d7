//===- CPUPipeline.cpp - kernels -> LLVM -> shared object -------*- C++ -*-===//

#include "lowering/CPU/CPUPipeline.h"
#include "lowering/Passes.h"
#include "passes/Pipelines.h"
#include "xfmr/runtime/OutputFile.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/OpenMP/OpenMPToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "mlir/Transforms/Passes.h"

#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/TargetParser/X86TargetParser.h"

using namespace mlir;

llvm::Error xfmr::resolveCPUTarget(CPUTarget &target) {
  llvm::InitializeNativeTarget();
  llvm::InitializeNativeTargetAsmPrinter();
  target.triple = llvm::sys::getDefaultTargetTriple();
  llvm::Triple triple(target.triple);
  std::string error;
  const llvm::Target *llvmTarget =
      llvm::TargetRegistry::lookupTarget(triple, error);
  if (!llvmTarget)
    return llvm::createStringError("no LLVM target for '" + target.triple +
                                   "': " + error);
  llvm::SmallVector<std::string> features;
  if (target.cpu == "native") {
    // The host's own features, including those its CPU name would imply but
    // this machine (or VM) lacks ("-avx512f").
    target.cpuName = llvm::sys::getHostCPUName().str();
    for (const auto &[name, enabled] : llvm::sys::getHostCPUFeatures())
      features.push_back((enabled ? "+" : "-") + name.str());
  } else {
    target.cpuName = target.cpu;
    // Validity from the CPU table itself: a subtarget for an unknown CPU
    // would print LLVM's own warning before our error.
    std::unique_ptr<llvm::MCSubtargetInfo> generic(
        llvmTarget->createMCSubtargetInfo(triple, "", ""));
    if (!generic || !generic->isCPUStringValid(target.cpuName))
      return llvm::createStringError(
          std::make_error_code(std::errc::invalid_argument),
          "unknown CPU '" + target.cpuName + "' for " + target.triple +
              " (use an LLVM CPU name such as x86-64-v3, znver4, "
              "sapphirerapids, or 'native')");
    // Every ISA extension the CPU has, so that the runtime can refuse a host
    // that lacks one instead of dying on SIGILL.
    if (triple.isX86()) {
      llvm::SmallVector<llvm::StringRef> names;
      llvm::X86::getFeaturesForCPU(target.cpuName, names, /*NeedPlus=*/true);
      for (llvm::StringRef name : names)
        features.push_back(name.str());
    }
  }
  llvm::sort(features);
  target.features = llvm::join(features, ",");
  return llvm::Error::success();
}

void xfmr::buildLowerToLLVMPipeline(OpPassManager &pm) {
  buildLowerToLLVMPipeline(pm, /*deviceAllocations=*/false);
}

void xfmr::buildLowerToLLVMPipeline(OpPassManager &pm,
                                    bool deviceAllocations) {
  pm.addPass(createConvertSCFToOpenMPPass());
  pm.addPass(createConvertVectorToSCFPass());
  // x86vector: the CPU's bf16 dot products (PanelLinear.cpp).
  ConvertVectorToLLVMPassOptions vectorOptions;
  vectorOptions.x86Vector = true;
  pm.addPass(createConvertVectorToLLVMPass(vectorOptions));
  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createLowerAffinePass());
  // GPU host code: buffers are device memory, allocated through the
  // _mlir_memref_to_llvm_alloc/free hooks the GPU back end defines.
  FinalizeMemRefToLLVMConversionPassOptions memrefOptions;
  memrefOptions.useGenericFunctions = deviceAllocations;
  pm.addPass(createFinalizeMemRefToLLVMConversionPass(memrefOptions));
  // LLVM intrinsics where they exist, libm calls (erf, ...) for the rest.
  pm.addPass(createConvertMathToLLVMPass());
  pm.addPass(createConvertMathToLibmPass());
  pm.addPass(createSCFToControlFlowPass());
  pm.addPass(createConvertToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
  pm.addPass(createCanonicalizerPass());
}

void xfmr::buildCPULoweringPipeline(OpPassManager &pm,
                                    const CPULoweringOptions &options) {
  PlanMemoryOptions plan;
  plan.weightPanels = options.weightPanels;
  pm.addPass(createPlanMemory(plan));
  LowerToKernelsOptions kernels;
  kernels.precise = options.precise;
  pm.addPass(createLowerToKernels(kernels));
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  buildLowerToLLVMPipeline(pm);
}

void xfmr::buildCPUPipeline(OpPassManager &pm) {
  buildGraphOptPipeline(pm);
  buildCPULoweringPipeline(pm);
}

llvm::ArrayRef<xfmr::NamedPipeline> xfmr::cpuPipelines() {
  static const NamedPipeline pipelines[] = {
      {"xfmr-lower-to-llvm", kLowerToLLVMDescription, buildLowerToLLVMPipeline},
      {"xfmr-cpu", kCPUPipelineDescription, buildCPUPipeline}};
  return pipelines;
}

void xfmr::registerCPUPipelines() { registerNamedPipelines(cpuPipelines()); }

llvm::Expected<std::string> xfmr::emitObject(ModuleOp module,
                                             const CPUTarget &target,
                                             std::string *llvmIR) {
  registerBuiltinDialectTranslation(*module->getContext());
  registerLLVMDialectTranslation(*module->getContext());
  registerOpenMPDialectTranslation(*module->getContext());

  llvm::LLVMContext llvmContext;
  std::unique_ptr<llvm::Module> llvmModule =
      translateModuleToLLVMIR(module, llvmContext, "xfmr");
  if (!llvmModule)
    return llvm::createStringError("translation to LLVM IR failed");

  std::string error;
  llvm::Triple triple(target.triple);
  const llvm::Target *llvmTarget =
      llvm::TargetRegistry::lookupTarget(triple, error);
  if (!llvmTarget)
    return llvm::createStringError(error);
  llvm::TargetOptions options;
  auto level = target.optLevel >= 3   ? llvm::CodeGenOptLevel::Aggressive
               : target.optLevel == 0 ? llvm::CodeGenOptLevel::None
                                      : llvm::CodeGenOptLevel::Default;
  std::unique_ptr<llvm::TargetMachine> machine(
      llvmTarget->createTargetMachine(triple, target.cpuName, target.features,
                                      options, llvm::Reloc::PIC_,
                                      std::nullopt, level));
  if (!machine)
    return llvm::createStringError("cannot create a target machine for CPU '" +
                                   target.cpuName + "'");
  llvmModule->setDataLayout(machine->createDataLayout());
  llvmModule->setTargetTriple(triple);

  // The standard optimization pipeline (vectorization, inlining, unrolling).
  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  llvm::PassBuilder passBuilder(machine.get());
  passBuilder.registerModuleAnalyses(mam);
  passBuilder.registerCGSCCAnalyses(cgam);
  passBuilder.registerFunctionAnalyses(fam);
  passBuilder.registerLoopAnalyses(lam);
  passBuilder.crossRegisterProxies(lam, fam, cgam, mam);
  llvm::OptimizationLevel optLevel =
      target.optLevel >= 3   ? llvm::OptimizationLevel::O3
      : target.optLevel == 2 ? llvm::OptimizationLevel::O2
      : target.optLevel == 1 ? llvm::OptimizationLevel::O1
                             : llvm::OptimizationLevel::O0;
  llvm::ModulePassManager modulePasses =
      optLevel == llvm::OptimizationLevel::O0
          ? passBuilder.buildO0DefaultPipeline(optLevel)
          : passBuilder.buildPerModuleDefaultPipeline(optLevel);
  modulePasses.run(*llvmModule, mam);
  if (llvmIR) {
    llvm::raw_string_ostream os(*llvmIR);
    llvmModule->print(os, nullptr);
  }

  llvm::SmallString<0> object;
  llvm::raw_svector_ostream objectStream(object);
  llvm::legacy::PassManager codegen;
  if (machine->addPassesToEmitFile(codegen, objectStream, nullptr,
                                   llvm::CodeGenFileType::ObjectFile))
    return llvm::createStringError("the target cannot emit object files");
  codegen.run(*llvmModule);
  return std::string(object.str());
}

llvm::Expected<std::string> xfmr::linkSharedObject(llvm::StringRef object) {
  llvm::ErrorOr<std::string> linker = llvm::sys::findProgramByName("ld.lld-22");
  if (!linker)
    linker = llvm::sys::findProgramByName("ld.lld");
  if (!linker)
    return llvm::createStringError(
        "cannot find ld.lld-22 or ld.lld to link the model code (install "
        "lld-22: scripts/setup.sh)");
  // The linker reads and writes files: two temporary ones, removed when
  // this function returns and, in the tools, when a signal ends the process.
  struct TemporaryFile {
    llvm::SmallString<128> path;
    ~TemporaryFile() {
      if (path.empty())
        return;
      llvm::sys::fs::remove(path);
      runtime::keepOnSignal(path.str().str());
    }
  } objectFile, libraryFile;
  const llvm::SmallString<128> &objectPath = objectFile.path;
  const llvm::SmallString<128> &libraryPath = libraryFile.path;
  int fd;
  if (std::error_code ec = llvm::sys::fs::createTemporaryFile(
          "xfmr-model", "o", fd, objectFile.path))
    return llvm::createStringError("cannot create a temporary file: " +
                                   ec.message());
  runtime::removeOnSignal(objectPath.str().str());
  {
    llvm::raw_fd_ostream os(fd, /*shouldClose=*/true);
    os << object;
    os.close();
    if (os.has_error()) {
      os.clear_error();
      return llvm::createStringError("cannot write the temporary file '" +
                                     objectPath.str() + "'");
    }
  }
  if (std::error_code ec = llvm::sys::fs::createTemporaryFile(
          "xfmr-model", "so", libraryFile.path))
    return llvm::createStringError("cannot create a temporary file: " +
                                   ec.message());
  runtime::removeOnSignal(libraryPath.str().str());
  // OpenMP comes from LLVM's libomp, the math functions from libm.
  std::string lib = "/usr/lib/llvm-22/lib";
  llvm::SmallVector<llvm::StringRef> args{
      *linker, "-shared", "--as-needed", "-o", libraryPath, objectPath,
      "-L", lib, "-lomp", "-rpath", lib, "-L", "/lib/x86_64-linux-gnu",
      "-L", "/usr/lib/x86_64-linux-gnu", "-l:libm.so.6", "-l:libc.so.6",
      // Half-precision conversions without F16C call libgcc helpers.
      "-l:libgcc_s.so.1"};
  std::string message;
  int status = llvm::sys::ExecuteAndWait(*linker, args, std::nullopt, {}, 0, 0,
                                         &message);
  if (status != 0) {
    return llvm::createStringError("linking the model code with " + *linker +
                                   " failed (status " + std::to_string(status) +
                                   ")" + (message.empty() ? "" : ": " + message));
  }
  llvm::ErrorOr<std::unique_ptr<llvm::MemoryBuffer>> library =
      llvm::MemoryBuffer::getFile(libraryPath);
  if (!library)
    return llvm::createStringError("cannot read the linked model code: " +
                                   library.getError().message());
  return (*library)->getBuffer().str();
}
