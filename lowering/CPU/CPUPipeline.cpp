//===- CPUPipeline.cpp - kernels -> LLVM -> shared object -------*- C++ -*-===//

#include "lowering/CPU/CPUPipeline.h"
#include "lowering/Passes.h"
#include "passes/Pipelines.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/OpenMP/OpenMPToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "mlir/Transforms/Passes.h"

#include "llvm/ADT/StringSwitch.h"
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

#include "llvm/TargetParser/AArch64TargetParser.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/TargetParser/X86TargetParser.h"
#include <cerrno>
#include <cstring>
#include <set>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace mlir;

/// The AArch64 extensions the compiler records and the runtime checks
/// (HWCAP): those the kernels and LLVM's vectorizer may use.
static const char *const kAArch64Features[] = {
    "fp-armv8", "neon", "fullfp16", "dotprod", "i8mm", "bf16", "sve", "sve2"};

/// The SVE vector length of CPUs that have one length only, wider than
/// NEON's 128 bits: there, SVE kernels do twice or four times the work of
/// NEON's per instruction.
static int fixedSVEBits(llvm::StringRef cpu) {
  return llvm::StringSwitch<int>(cpu)
      .Case("neoverse-v1", 256) // AWS Graviton3
      .Case("a64fx", 512)
      .Default(0);
}

/// Checks --sve-bits against the CPU (or takes the CPU's own length).
static llvm::Error resolveSVEBits(xfmr::CPUTarget &target, bool hasSVE) {
  if (target.sveBits < 0) {
    target.sveBits = hasSVE ? fixedSVEBits(target.cpuName) : 0;
    return llvm::Error::success();
  }
  auto invalid = [&](const llvm::Twine &why) {
    return llvm::createStringError(
        std::make_error_code(std::errc::invalid_argument),
        "--sve-bits " + llvm::Twine(target.sveBits) + ": " + why);
  };
  if (target.sveBits != 0 && target.sveBits != 256 && target.sveBits != 512)
    return invalid("the kernels take SVE vectors of 256 or 512 bits (their "
                   "512-bit vectors split into whole SVE registers), or 0 "
                   "for none; at 128 bits the NEON kernels run the same "
                   "instructions");
  if (target.sveBits != 0 && !hasSVE)
    return invalid("cpu '" + target.cpu +
                   "' has no SVE (add +sve, or name an SVE CPU such as "
                   "neoverse-v1)");
  return llvm::Error::success();
}

/// "NAME[+EXT...]" for AArch64: the CPU's own extensions and the ones
/// named, as the features the runtime checks.
static llvm::Error resolveAArch64CPU(xfmr::CPUTarget &target,
                                     llvm::SmallVector<std::string> &features) {
  llvm::SmallVector<llvm::StringRef> parts;
  llvm::StringRef(target.cpu).split(parts, '+');
  target.cpuName = parts.front().str();
  std::optional<llvm::AArch64::CpuInfo> cpu =
      llvm::AArch64::parseCpu(target.cpuName);
  if (!cpu)
    return llvm::createStringError(
        std::make_error_code(std::errc::invalid_argument),
        "unknown CPU '" + target.cpuName + "' for " + target.triple +
            " (use an LLVM AArch64 CPU name such as generic, cortex-a76, "
            "cortex-x3, neoverse-n1, neoverse-v2 or apple-m1, optionally "
            "with +extensions: generic+dotprod+i8mm)");
  std::vector<llvm::StringRef> implied;
  llvm::AArch64::getExtensionFeatures(cpu->getImpliedExtensions(), implied);
  std::set<std::string> enabled;
  for (llvm::StringRef feature : implied)
    if (feature.consume_front("+"))
      enabled.insert(feature.str());
  for (llvm::StringRef extension : llvm::ArrayRef(parts).drop_front()) {
    std::optional<llvm::AArch64::ExtensionInfo> info =
        llvm::AArch64::parseArchExtension(extension);
    if (!info)
      return llvm::createStringError(
          std::make_error_code(std::errc::invalid_argument),
          "unknown AArch64 extension '" + extension.str() + "' in --cpu '" +
              target.cpu + "' (e.g. dotprod, i8mm, bf16, fp16, sve, sve2)");
    llvm::StringRef feature = info->PosTargetFeature;
    if (feature.consume_front("+"))
      enabled.insert(feature.str());
  }
  // SVE2 and i8mm imply what they build on (LLVM enables those itself).
  for (const char *name : kAArch64Features)
    if (enabled.count(name))
      features.push_back(std::string("+") + name);
  return resolveSVEBits(target, enabled.count("sve") != 0);
}

bool xfmr::isCrossTarget(const CPUTarget &target) {
  return !target.arch.empty() &&
         llvm::Triple(target.triple).getArch() !=
             llvm::Triple(llvm::sys::getDefaultTargetTriple()).getArch();
}

llvm::Error xfmr::resolveCPUTarget(CPUTarget &target) {
  llvm::InitializeAllTargetInfos();
  llvm::InitializeAllTargets();
  llvm::InitializeAllTargetMCs();
  llvm::InitializeAllAsmPrinters();
  std::string host = llvm::sys::getDefaultTargetTriple();
  if (target.arch.empty() || target.arch == llvm::Triple(host).getArchName())
    target.triple = host;
  else if (target.arch == "aarch64")
    target.triple = "aarch64-unknown-linux-gnu";
  else
    return llvm::createStringError(
        std::make_error_code(std::errc::invalid_argument),
        "unknown CPU architecture '" + target.arch +
            "' (--target cpu, this machine's, or cpu:aarch64; the CPU is "
            "chosen with --cpu)");
  llvm::Triple triple(target.triple);
  std::string error;
  const llvm::Target *llvmTarget =
      llvm::TargetRegistry::lookupTarget(triple, error);
  if (!llvmTarget)
    return llvm::createStringError("no LLVM target for '" + target.triple +
                                   "': " + error);
  llvm::SmallVector<std::string> features;
  if (target.cpu == "native" && isCrossTarget(target))
    return llvm::createStringError(
        std::make_error_code(std::errc::invalid_argument),
        "--cpu native names this machine's CPU, which is not " +
            target.triple + ": name the device's CPU (generic, cortex-a76, "
                            "neoverse-n1, ...)");
  if (target.cpu == "native") {
    // The host's own features, including those its CPU name would imply but
    // this machine (or VM) lacks ("-avx512f").
    target.cpuName = llvm::sys::getHostCPUName().str();
    for (const auto &[name, enabled] : llvm::sys::getHostCPUFeatures())
      features.push_back((enabled ? "+" : "-") + name.str());
  } else if (triple.isAArch64()) {
    if (llvm::Error error = resolveAArch64CPU(target, features))
      return error;
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
  if (!triple.isAArch64()) {
    if (target.sveBits > 0)
      return llvm::createStringError(
          std::make_error_code(std::errc::invalid_argument),
          "--sve-bits applies to code for AArch64 CPUs (--target "
          "cpu:aarch64), not " +
              target.triple);
    target.sveBits = 0;
  } else if (target.cpu == "native") {
    // This AArch64 machine's own CPU: its SVE, if any, by its name.
    if (llvm::Error error = resolveSVEBits(
            target, llvm::is_contained(features, std::string("+sve"))))
      return error;
  }
  llvm::sort(features);
  target.features = llvm::join(features, ",");
  return llvm::Error::success();
}

void xfmr::buildLowerToLLVMPipeline(OpPassManager &pm) {
  buildLowerToLLVMPipeline(pm, /*deviceAllocations=*/false);
}

void xfmr::buildLowerToLLVMPipeline(OpPassManager &pm, bool deviceAllocations,
                                    bool openmp) {
  // Without OpenMP, scf-to-cf runs parallel loops as sequential ones.
  if (openmp)
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
  buildLowerToLLVMPipeline(pm, /*deviceAllocations=*/false, options.openmp);
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
  // Code for one SVE vector length: LLVM then keeps the kernels' 512-bit
  // vectors in whole SVE registers and the SVE intrinsics' scalable operands
  // are those registers (the runtime sets the length, or refuses the CPU).
  if (target.sveBits > 0) {
    unsigned vscale = target.sveBits / 128;
    for (llvm::Function &function : *llvmModule)
      if (!function.isDeclaration())
        function.addFnAttr(llvm::Attribute::getWithVScaleRangeArgs(
            llvmContext, vscale, vscale));
  }

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

llvm::Expected<std::string> xfmr::linkSharedObject(llvm::StringRef object,
                                                   const CPUTarget &target) {
  llvm::ErrorOr<std::string> linker = llvm::sys::findProgramByName("ld.lld-22");
  if (!linker)
    linker = llvm::sys::findProgramByName("ld.lld");
  if (!linker)
    return llvm::createStringError(
        "cannot find ld.lld-22 or ld.lld to link the model code (install "
        "lld-22: scripts/setup.sh)");
  // The linker reads the object from and writes the library to anonymous
  // memory files (memfd), which it inherits and names /dev/fd/N: nothing
  // lands on disk. Named temporary files could not be cleaned up reliably:
  // posix_spawn blocks signals on the spawning thread, so a signal lands on
  // another thread, whose handler could remove a file before the spawn (or
  // the linker) created it.
  struct MemoryFile {
    int fd = -1;
    ~MemoryFile() {
      if (fd >= 0)
        ::close(fd);
    }
    std::string path() const { return "/dev/fd/" + std::to_string(fd); }
  } objectFile, libraryFile;
  objectFile.fd = ::memfd_create("xfmr-model.o", 0);
  libraryFile.fd = ::memfd_create("xfmr-model.so", 0);
  if (objectFile.fd < 0 || libraryFile.fd < 0)
    return llvm::createStringError(
        llvm::Twine("cannot create a memory file for the linker: ") +
        std::strerror(errno));
  {
    llvm::raw_fd_ostream os(objectFile.fd, /*shouldClose=*/false);
    os << object;
    os.flush();
    if (os.has_error()) {
      os.clear_error();
      return llvm::createStringError(
          "cannot write the object code to a memory file");
    }
  }
  std::string objectPath = objectFile.path();
  std::string libraryPath = libraryFile.path();
  // OpenMP comes from LLVM's libomp, the math functions from libm.
  std::string lib = "/usr/lib/llvm-22/lib";
  // "-o -": the library goes to the linker's standard output, which the
  // spawn opens on the library's memory file.
  llvm::SmallVector<llvm::StringRef> args{*linker, "-shared", "--as-needed",
                                          "-o",    "-",       objectPath};
  // Cross targets: the glibc of Debian's cross toolchain
  // (libc6-dev-arm64-cross); no libomp of that architecture here.
  std::string crossLib = "/usr/" +
                         llvm::Triple(target.triple).getArchName().str() +
                         "-linux-gnu/lib";
  if (isCrossTarget(target)) {
    if (!llvm::sys::fs::exists(crossLib + "/libc.so.6"))
      return llvm::createStringError(
          "cannot find " + crossLib +
          "/libc.so.6 to link code for " + target.triple +
          " (install the cross toolchain: scripts/setup.sh --aarch64)");
    args.append({"-L", crossLib});
  } else {
    args.append({"-L", lib, "-lomp", "-rpath", lib, "-L",
                 "/lib/x86_64-linux-gnu", "-L", "/usr/lib/x86_64-linux-gnu"});
  }
  args.append({"-l:libm.so.6", "-l:libc.so.6",
               // Half-precision conversions without F16C call libgcc
               // helpers.
               "-l:libgcc_s.so.1"});
  std::string message;
  std::optional<llvm::StringRef> redirects[] = {
      std::nullopt, llvm::StringRef(libraryPath), std::nullopt};
  int status = llvm::sys::ExecuteAndWait(*linker, args, std::nullopt, redirects,
                                         0, 0, &message);
  if (status != 0) {
    return llvm::createStringError("linking the model code with " + *linker +
                                   " failed (status " + std::to_string(status) +
                                   ")" + (message.empty() ? "" : ": " + message));
  }
  struct stat libraryStat;
  if (::fstat(libraryFile.fd, &libraryStat) != 0 || libraryStat.st_size == 0)
    return llvm::createStringError("the linker " + *linker +
                                   " wrote no model code");
  llvm::ErrorOr<std::unique_ptr<llvm::MemoryBuffer>> library =
      llvm::MemoryBuffer::getOpenFile(
          llvm::sys::fs::convertFDToNativeFile(libraryFile.fd), libraryPath,
          libraryStat.st_size);
  if (!library)
    return llvm::createStringError("cannot read the linked model code: " +
                                   library.getError().message());
  return (*library)->getBuffer().str();
}
