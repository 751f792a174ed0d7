//===- KernelHarness.h - compile and call one CPU kernel --------*- C++ -*-===//
//
// For the kernel unit tests: materializes the kernel of one configuration
// through the kernel registry (as xfmr-lower-to-kernels does), compiles it
// with the CPU back end's own pipeline (xfmr-lower-to-llvm, LLVM for the
// host CPU, ld.lld with OpenMP), loads it and calls it on host buffers. A
// kernel bug shows up here as a kernel failure, not as a whole-model drift.
//
//===----------------------------------------------------------------------===//

#ifndef XFMR_TEST_UNIT_LOWERING_KERNELHARNESS_H
#define XFMR_TEST_UNIT_LOWERING_KERNELHARNESS_H

#include "lowering/Common/KernelContracts.h"

#include "mlir/IR/MLIRContext.h"

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace xfmr::testing {

/// A host array passed to a kernel as a memref (its descriptor), or an
/// index scalar. Storage is raw bytes of `elementSize` each.
class Buffer {
public:
  Buffer() = default;
  Buffer(std::vector<int64_t> shape, size_t elementSize);
  /// An index argument.
  static Buffer index(int64_t value);

  template <typename T> T *as() { return reinterpret_cast<T *>(bytes.data()); }
  template <typename T> const T *as() const {
    return reinterpret_cast<const T *>(bytes.data());
  }
  int64_t elements() const;
  const std::vector<int64_t> &shape() const { return shape_; }

  /// What the kernel's C interface takes for this argument: a pointer to
  /// the memref descriptor, or the index value.
  uintptr_t argument();

private:
  std::vector<int64_t> shape_;
  std::vector<uint8_t> bytes;
  bool isIndex = false;
  int64_t value = 0;
  /// allocated, aligned, offset, sizes..., strides... (MLIR's layout).
  std::vector<int64_t> descriptor;
};

/// f32 buffer of `shape` filled from `values` (or zeros).
Buffer f32Buffer(std::vector<int64_t> shape,
                 const std::vector<double> &values = {});
std::vector<double> readF32(const Buffer &buffer);

/// The stored code of `value` in `format` (round to nearest even,
/// saturating for FP8; i8 rounds and clamps to [-127, 127]), and its value.
uint32_t encode(kernels::WeightFormat format, double value);
double decode(kernels::WeightFormat format, uint32_t code);
/// decode(encode(value)).
double roundTo(kernels::WeightFormat format, double value);
/// Bytes per stored element of `format`.
size_t storageSize(kernels::WeightFormat format);
/// A buffer of `format` codes of `values` (rounded as encode()).
Buffer codesBuffer(kernels::WeightFormat format, std::vector<int64_t> shape,
                   const std::vector<double> &values);

/// One compiled kernel.
class CompiledKernel {
public:
  ~CompiledKernel();
  /// Calls it with the present roles of `operands` (Operands<Buffer *>), in
  /// the order of the family's contract.
  template <typename Operands> void operator()(Operands operands) {
    std::vector<uintptr_t> words;
    for (Buffer *buffer : kernels::presentOperands(operands))
      words.push_back(buffer->argument());
    call(words);
  }
  const std::string &name() const { return name_; }

private:
  friend class KernelHarness;
  void call(const std::vector<uintptr_t> &words);
  void *handle = nullptr;
  void *function = nullptr;
  std::string name_, path;
};

class KernelHarness {
public:
  KernelHarness();
  ~KernelHarness();
  /// Materializes, compiles and loads the kernel of `config` for `cpu` (an
  /// LLVM CPU name the host can run, or "native"). Fails the calling test
  /// (and returns null) on any error.
  std::unique_ptr<CompiledKernel> compile(const kernels::KernelConfig &config,
                                          const std::string &cpu = "native");
  mlir::MLIRContext &context() { return *context_; }

private:
  std::unique_ptr<mlir::MLIRContext> context_;
};

/// Deterministic uniform values in [lo, hi).
std::vector<double> randomValues(size_t count, double lo, double hi,
                                 uint64_t seed);

} // namespace xfmr::testing

#endif // XFMR_TEST_UNIT_LOWERING_KERNELHARNESS_H
