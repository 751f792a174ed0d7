//===- KernelHarness.cpp - compile and call one CPU kernel ------------===//

#include "KernelHarness.h"

#include "dialects/Xfmr/XfmrDialect.h"
#include "lowering/CPU/CPUPipeline.h"
#include "lowering/Common/KernelTarget.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/ADT/APFloat.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/raw_ostream.h"

#include "gtest/gtest.h"

#include <array>
#include <cmath>
#include <dlfcn.h>
#include <map>
#include <random>
#include <unistd.h>

using namespace mlir;
using namespace xfmr;
using namespace xfmr::kernels;
using namespace xfmr::testing;

//===----------------------------------------------------------------------===//
// Buffers
//===----------------------------------------------------------------------===//

Buffer::Buffer(std::vector<int64_t> shape, size_t elementSize)
    : shape_(std::move(shape)) {
  bytes.assign(static_cast<size_t>(elements()) * elementSize + 64, 0);
}

Buffer Buffer::index(int64_t value) {
  Buffer buffer;
  buffer.isIndex = true;
  buffer.value = value;
  return buffer;
}

int64_t Buffer::elements() const {
  int64_t n = 1;
  for (int64_t d : shape_)
    n *= d;
  return n;
}

uintptr_t Buffer::argument() {
  if (isIndex)
    return static_cast<uintptr_t>(value);
  auto address = reinterpret_cast<int64_t>(bytes.data());
  descriptor = {address, address, 0};
  descriptor.insert(descriptor.end(), shape_.begin(), shape_.end());
  int64_t stride = 1;
  std::vector<int64_t> strides(shape_.size());
  for (size_t i = shape_.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= shape_[i];
  }
  descriptor.insert(descriptor.end(), strides.begin(), strides.end());
  return reinterpret_cast<uintptr_t>(descriptor.data());
}

Buffer xfmr::testing::f32Buffer(std::vector<int64_t> shape,
                                const std::vector<double> &values) {
  Buffer buffer(std::move(shape), sizeof(float));
  for (size_t i = 0; i < values.size(); ++i)
    buffer.as<float>()[i] = static_cast<float>(values[i]);
  return buffer;
}

std::vector<double> xfmr::testing::readF32(const Buffer &buffer) {
  const float *data = buffer.as<float>();
  return std::vector<double>(data, data + buffer.elements());
}

//===----------------------------------------------------------------------===//
// Formats
//===----------------------------------------------------------------------===//

static const llvm::fltSemantics &semanticsOf(WeightFormat format) {
  switch (format) {
  case WeightFormat::BF16:
    return llvm::APFloat::BFloat();
  case WeightFormat::F16:
    return llvm::APFloat::IEEEhalf();
  case WeightFormat::F8E4M3FN:
    return llvm::APFloat::Float8E4M3FN();
  case WeightFormat::F8E4M3FNUZ:
    return llvm::APFloat::Float8E4M3FNUZ();
  case WeightFormat::F8E5M2:
    return llvm::APFloat::Float8E5M2();
  default:
    return llvm::APFloat::IEEEsingle();
  }
}

size_t xfmr::testing::storageSize(WeightFormat format) {
  switch (format) {
  case WeightFormat::F32:
    return 4;
  case WeightFormat::BF16:
  case WeightFormat::F16:
    return 2;
  default:
    return 1;
  }
}

uint32_t xfmr::testing::encode(WeightFormat format, double value) {
  if (format == WeightFormat::I8) {
    double code = std::clamp(std::nearbyint(value), -127.0, 127.0);
    return static_cast<uint8_t>(static_cast<int8_t>(code));
  }
  const llvm::fltSemantics &semantics = semanticsOf(format);
  if (isFP8(format)) {
    // Saturate: FP8 formats without infinities would round to NaN.
    double largest =
        llvm::APFloat::getLargest(semantics).convertToDouble();
    value = std::clamp(value, -largest, largest);
  }
  llvm::APFloat number(value);
  bool lost = false;
  number.convert(semantics, llvm::APFloat::rmNearestTiesToEven, &lost);
  return static_cast<uint32_t>(number.bitcastToAPInt().getZExtValue());
}

double xfmr::testing::decode(WeightFormat format, uint32_t code) {
  if (format == WeightFormat::I8)
    return static_cast<int8_t>(code);
  const llvm::fltSemantics &semantics = semanticsOf(format);
  unsigned bits = llvm::APFloat::getSizeInBits(semantics);
  return llvm::APFloat(semantics, llvm::APInt(bits, code)).convertToDouble();
}

double xfmr::testing::roundTo(WeightFormat format, double value) {
  return decode(format, encode(format, value));
}

Buffer xfmr::testing::codesBuffer(WeightFormat format,
                                  std::vector<int64_t> shape,
                                  const std::vector<double> &values) {
  size_t size = storageSize(format);
  Buffer buffer(std::move(shape), size);
  auto *bytes = buffer.as<uint8_t>();
  for (size_t i = 0; i < values.size(); ++i) {
    uint32_t code = encode(format, values[i]);
    std::memcpy(bytes + i * size, &code, size); // little-endian
  }
  return buffer;
}

std::vector<double> xfmr::testing::randomValues(size_t count, double lo,
                                                double hi, uint64_t seed) {
  std::mt19937_64 engine(seed);
  std::uniform_real_distribution<double> uniform(lo, hi);
  std::vector<double> values(count);
  for (double &v : values)
    v = uniform(engine);
  return values;
}

//===----------------------------------------------------------------------===//
// Compiling and calling
//===----------------------------------------------------------------------===//

namespace {
// Every argument of a kernel's C interface is a pointer (to a memref
// descriptor) or an index (i64): both are one integer register or stack
// word in the x86-64 and AArch64 calling conventions, so a kernel of N
// arguments can be called as a function of N uintptr_t.
using Caller = void (*)(void *, const uintptr_t *);
template <size_t... I>
void callWith(void *function, const uintptr_t *words,
              std::index_sequence<I...>) {
  using Fn = void (*)(decltype((void)I, uintptr_t())...);
  reinterpret_cast<Fn>(function)(words[I]...);
}
template <size_t N> void callN(void *function, const uintptr_t *words) {
  callWith(function, words, std::make_index_sequence<N>());
}
template <size_t... N>
constexpr std::array<Caller, sizeof...(N)> callers(std::index_sequence<N...>) {
  return {&callN<N>...};
}
constexpr size_t kMaxArguments = 24;
} // namespace

void CompiledKernel::call(const std::vector<uintptr_t> &words) {
  static constexpr auto table =
      callers(std::make_index_sequence<kMaxArguments + 1>());
  ASSERT_LE(words.size(), kMaxArguments);
  table[words.size()](function, words.data());
}

CompiledKernel::~CompiledKernel() {
  if (handle)
    dlclose(handle);
  if (!path.empty())
    ::unlink(path.c_str());
}

KernelHarness::KernelHarness() {
  registerKernelTargets();
  DialectRegistry registry;
  registerAllDialects(registry);
  registerAllExtensions(registry);
  registry.insert<XfmrDialect>();
  context_ = std::make_unique<MLIRContext>(registry);
  context_->loadAllAvailableDialects();
}

KernelHarness::~KernelHarness() = default;

std::unique_ptr<CompiledKernel>
KernelHarness::compile(const KernelConfig &config, const std::string &cpu) {
  static std::map<std::string, CPUTarget> targets;
  if (!targets.count(cpu)) {
    CPUTarget target;
    target.cpu = cpu;
    llvm::Error error = resolveCPUTarget(target);
    EXPECT_FALSE(error) << llvm::toString(std::move(error));
    targets[cpu] = target;
  }
  const CPUTarget &host = targets[cpu];
  Location loc = UnknownLoc::get(context_.get());
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  (*module)->setAttr(kTargetAttrName,
                     TargetAttr::get(context_.get(), "cpu", host.triple,
                                     host.cpuName, host.features,
                                     host.sveBits));
  std::string name;
  {
    std::unique_ptr<KernelTarget> target =
        KernelRegistry::global().createTarget(*module);
    EXPECT_TRUE(target);
    if (!target)
      return nullptr;
    FailureOr<SymbolRefAttr> symbol = target->materialize(config, loc);
    EXPECT_TRUE(succeeded(symbol)) << kernelName(config).str();
    if (failed(symbol))
      return nullptr;
    name = symbol->getLeafReference().str();
  }
  auto func = module->lookupSymbol<func::FuncOp>(name);
  func.setPublic();
  func->setAttr("llvm.emit_c_interface", UnitAttr::get(context_.get()));

  PassManager pm(context_.get());
  buildLowerToLLVMPipeline(pm);
  EXPECT_TRUE(succeeded(pm.run(*module))) << name;
  llvm::Expected<std::string> object = emitObject(*module, host);
  if (!object) {
    ADD_FAILURE() << llvm::toString(object.takeError());
    return nullptr;
  }
  llvm::Expected<std::string> code = linkSharedObject(*object, host);
  if (!code) {
    ADD_FAILURE() << llvm::toString(code.takeError());
    return nullptr;
  }
  auto kernel = std::make_unique<CompiledKernel>();
  kernel->name_ = name;
  int fd = -1;
  llvm::SmallString<128> path;
  if (llvm::sys::fs::createTemporaryFile("xfmr-kernel", "so", fd, path)) {
    ADD_FAILURE() << "cannot create a temporary file";
    return nullptr;
  }
  kernel->path = path.str().str();
  {
    llvm::raw_fd_ostream out(fd, /*shouldClose=*/true);
    out << *code;
  }
  kernel->handle = dlopen(kernel->path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!kernel->handle) {
    ADD_FAILURE() << dlerror();
    return nullptr;
  }
  kernel->function =
      dlsym(kernel->handle, ("_mlir_ciface_" + name).c_str());
  EXPECT_NE(kernel->function, nullptr) << name;
  if (!kernel->function)
    return nullptr;
  return kernel;
}
