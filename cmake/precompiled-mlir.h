//===- precompiled-mlir.h - headers precompiled once for the compiler -----===//
//
// The MLIR and LLVM headers that most of the compiler's sources include
// (the dialects kernels build IR with, builders, passes, patterns) and the
// xfmr dialect's own. Parsing them is most of a source's compile time;
// CMake precompiles them once (XFMR_PRECOMPILED_HEADERS, CMakeLists.txt)
// and the compiler's libraries reuse that. Sources still include what they
// use: this list only makes it faster.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/raw_ostream.h"

#include "dialects/Xfmr/XfmrOps.h"
